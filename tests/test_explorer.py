"""The explorer's Viewer classes as plain objects: a param change yields the expected plot data.

Fixtures come from ``tests/_store_builder.py`` (closed-form maps and scores, documented there), so
expected values are computed by hand from those formulas — and cross-checked against the store
read back independently with xarray.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("panel")
pytest.importorskip("holoviews")

import holoviews as hv
import panel as pn
import xarray as xr
from bokeh.document import Document

try:  # tests/ as a plain folder: pytest puts it on sys.path
    from _store_builder import (
        BASELINES,
        TEST_MODELS,
        build_all,
        build_dataset,
        build_store,
        peak_map,
        score_value,
    )
except ModuleNotFoundError:  # tests/ as a package (with an __init__.py)
    from tests._store_builder import (
        BASELINES,
        TEST_MODELS,
        build_all,
        build_dataset,
        build_store,
        peak_map,
        score_value,
    )

from ssl_attn import plots
from ssl_attn.explorer import (
    Explorer,
    PathRejectedError,
    build_app,
    resolve_store_path,
)

warnings.filterwarnings("ignore", message=".*Zarr.*")
U = 1.0 / 24  # one cell of the 4 × 6 "vit" grid


@pytest.fixture(scope="module")
def fix(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("explorer_data"))


@pytest.fixture
def ex(fix):
    return Explorer(fix.store)


def _store_slice(fix, model, method, **sel):
    tree = xr.open_datatree(fix.store, engine="zarr", chunks=None)
    return tree[model].to_dataset()[method].sel(**sel).values


# ------------------------------------------------------------------------------ attention view
def test_map_is_the_store_slice_in_the_documented_frame(ex, fix):
    s = ex.state
    s.param.update(image_id="Q200_wd0", model="vit", method="cls", variant="full", layer=1,
                   head=2)
    got = ex.attention.map_values()
    # Hand value: variant index 1, image index 1 -> p = 0.61; peak at (layer 1 % 4, head 2 % 6).
    want = np.full((4, 6), 0.39 * U)
    want[1, 2] += 0.61
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(got, _store_slice(fix, "vit", "cls", variant="full",
                                                    image_id="Q200_wd0", layer=1, head=2))
    el = ex.attention.map_element()
    # HoloViews returns gridded values bottom row first (y ascending): flip back to y-down.
    np.testing.assert_allclose(np.flipud(el.dimension_values(2, flat=False)), got, rtol=1e-6)
    # Q200_wd0 is 40 x 60 px: frame (left, bottom, right, top) = (0, -60, 40, 0).
    assert ex.attention.frame_bounds() == (0.0, -60.0, 40.0, 0.0)
    assert tuple(el.bounds.lbrt()) == (0.0, -60.0, 40.0, 0.0)
    # Row 0 of the array is drawn at the top: the peak cell (row 1, col 2) has centre
    # x = (2 + 0.5) / 6 * 40, y = -(1 + 0.5) / 4 * 60.
    assert el[(2.5 / 6 * 40, -1.5 / 4 * 60)] == pytest.approx(0.61 + 0.39 * U, rel=1e-6)


def test_head_minus_one_is_the_mean_over_heads(ex):
    s = ex.state
    s.param.update(image_id="Q100_wd0", model="vit", method="cls", variant="frozen", layer=0,
                   head=-1)
    got = ex.attention.map_values()
    # p = 0.5; heads 0, 1, 2 peak at (0, 0), (0, 1), (0, 2): each gets p / 3 on top of u.
    want = np.full((4, 6), 0.5 * U)
    want[0, :3] += 0.5 / 3
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.sum() == pytest.approx(1.0, rel=1e-6)


def test_maps_and_embeddings_are_the_stores(ex, fix):
    """ExplorerData reads through the store's API: every map the views can ask for equals
    ``ssl_attn.store.select_map`` bit for bit (head-mean included), cubes and embeddings equal
    the stored slices, and attrs / method list / scores path are the store's."""
    import ssl_attn.explorer as explorer
    from ssl_attn import store as st

    d = ex.data
    tree = st.open_store(fix.store)
    assert explorer.MAP_METHODS is st.MAP_METHODS
    assert d.scores_path == st.scores_path(fix.store) == fix.scores
    assert d.root_attrs == st.decode_attrs(tree.attrs)
    assert d.model_attrs("vit")["grid"] == [4, 6]  # JSON attrs decoded
    n = 0
    for model in d.models:
        for method in d.methods(model):
            layers, heads = d.layers(model, method), d.heads(model, method)
            for variant in d.variants(model):
                for image_id in d.image_ids:
                    cube = d.cube(model, variant, method, image_id)
                    assert not cube.flags.writeable
                    for layer in layers or [None]:
                        for head in [*heads, -1] if heads else [-1]:
                            got = d.attention_map(model, variant, method, image_id, layer, head)
                            want = st.select_map(tree, model, method, variant=variant,
                                                 layer=layer, head=head, image_id=image_id)
                            np.testing.assert_array_equal(got, want.values, strict=True)
                            n += 1
    assert n > 100
    # methods without layers / heads ignore them, as the views pass the state's values
    np.testing.assert_array_equal(d.attention_map("sig", "frozen", "probe", "Q100_wd0", 3, 1),
                                  d.attention_map("sig", "frozen", "probe", "Q100_wd0", None, 1))
    np.testing.assert_array_equal(
        d.attention_map("vit", "frozen", "rollout", "Q100_wd0", 2, 1),
        st.select_map(tree, "vit", "rollout", layer=2, image_id="Q100_wd0").values)
    emb = d.embedding("vit", "full", "Q200_wd0")
    assert emb.dtype == np.float32 and emb.shape == (4, 6, 8)
    np.testing.assert_array_equal(emb, _store_slice(fix, "vit", "embedding", variant="full",
                                                    image_id="Q200_wd0"))
    assert d.embedding("sig", "frozen", "Q200_wd0") is None
    for bad, match in ((("vit", "frozen", "cls", "Q100_wd0", 9, 0), "vit/cls: no layer 9"),
                       (("vit", "frozen", "cls", "Q100_wd0", 0, 9), "vit/cls: no head 9"),
                       (("vit", "frozen", "cls", "Q100_wd0", None, 0), "no layer None"),
                       (("vit", "lora", "cls", "Q100_wd0", 0, 0), "test.zarr: model 'vit' "
                                                                  "has no variant 'lora'"),
                       (("vit", "frozen", "cls", "Q999_wd0", 0, 0), "no image_id 'Q999_wd0'"),
                       (("vit", "frozen", "probe", "Q100_wd0", 0, 0), "no method 'probe'"),
                       (("mae", "frozen", "cls", "Q100_wd0", 0, 0), "no model group 'mae'")):
        with pytest.raises(KeyError, match=match):
            d.attention_map(*bad)


def test_boxes_are_transformed_into_the_frame(ex):
    ex.state.image_id = "Q200_wd0"  # 40 x 60 px
    t = ex.attention.box_table()
    # box 0: left .1, top .1, width .2, height .3 -> x 4..12, y_plot -(0.4*60)..-(0.1*60)
    row = t[t.box_index == 0].iloc[0]
    assert (row.x0, row.x1, row.y0, row.y1) == pytest.approx((4.0, 12.0, -24.0, -6.0))
    row = t[t.box_index == 2].iloc[0]  # .6, .1, .3, .2
    assert (row.x0, row.x1, row.y0, row.y1) == pytest.approx((24.0, 36.0, -18.0, -6.0))
    el = ex.attention.boxes_element()
    assert isinstance(el, hv.Rectangles)
    assert list(el.dimension_values("feature")) == ["Arch window", "Portal", "Buttress"]
    np.testing.assert_allclose(el.dimension_values("x0"), [4.0, 20.0, 24.0])
    np.testing.assert_allclose(el.dimension_values("y1"), [-6.0, -36.0, -6.0])


def test_tap_selects_the_box_and_shows_its_metrics(ex):
    s = ex.state
    s.param.update(image_id="Q200_wd0", model="vit", method="cls", variant="frozen", layer=2)
    ex.attention.tap_at(6.0, -10.0)  # inside box 0 (x 4..12, y -24..-6)
    assert s.selected_box == 0
    assert (s.tap_x, s.tap_y) == pytest.approx((6.0 / 40, 10.0 / 60))
    info = ex.attention.box_info()
    # box_coverage = 0.05 * (box + 1) + 0.01 * layer = 0.05 + 0.02
    assert "Arch window" in info and "box_coverage: 0.0700" in info
    sel = ex.attention.selected_element()
    np.testing.assert_allclose(sel.array(), [[4.0, -24.0, 12.0, -6.0]])
    ex.attention.tap_at(39.0, -59.0)  # outside every box
    assert s.selected_box == -1
    assert "tap a box" in ex.attention.box_info()


def test_outline_keeps_the_top_region(ex):
    from ssl_attn.metrics import top_region

    values = np.arange(1, 101, dtype=float).reshape(10, 10)
    top = top_region(values, 90, frame=10)  # a map at frame size: no resampling
    np.testing.assert_array_equal(top, values >= 91.0)  # top 10 of 100 pixels
    s = ex.state
    s.param.update(image_id="Q100_wd0", model="vit", method="cls", layer=1, head=1,
                   variant="frozen", percentile=90)
    seg = ex.attention.outline_element()
    xy = np.r_[seg.array(["x0", "y0"]), seg.array(["x1", "y1"])]
    assert len(xy) > 4
    # Peak cell of (layer 1, head 1) = (row 1, col 1) on the 4 x 6 grid of a 64 x 48 image:
    # x in [10.7, 21.3], y_plot in [-24, -12]; the outline hugs it (bilinear blur <= 1 cell).
    assert xy[:, 0].min() >= 64 / 6 * 0.5 and xy[:, 0].max() <= 64 / 6 * 2.5
    assert xy[:, 1].max() <= -48 / 4 * 0.5 and xy[:, 1].min() >= -48 / 4 * 2.5


def test_model_change_keeps_the_selection_valid(ex):
    s = ex.state
    s.model = "cnn"  # vit layer 2 is also a cnn stage: kept; no heads -> -1
    assert (s.method, s.layer, s.head) == ("gradcam", 2, -1)
    assert s.param.layer.objects == [1, 2, 3, 4]
    s.layer = 2
    # gradcam stage 2 = layer position 1 -> peak (1 % 2, 1 % 2) on the 2 x 2 grid, p = 0.5.
    np.testing.assert_allclose(ex.attention.map_values(),
                               peak_map(2, 2, 1, 1, 0.5), rtol=1e-6)
    s.model = "sig"  # no cls: falls back to its probe, which has no layer
    assert (s.method, s.layer) == ("probe", -1)
    s.head = 1
    np.testing.assert_allclose(ex.attention.map_values(), peak_map(3, 3, 0, 1, 0.5), rtol=1e-6)


# ------------------------------------------------------------------------------ score views
def test_layer_head_grid_and_tap(ex):
    s = ex.state
    s.param.update(image_id="Q300_wd1", model="vit", method="cls", variant="frozen",
                   metric="coverage")
    layers, heads, vals = ex.grid.grid()
    assert layers == [0, 1, 2] and heads == [-1, 0, 1, 2]
    want = [[score_value(la, h, 2) for h in heads] for la in layers]
    np.testing.assert_allclose(vals, want, rtol=1e-6)
    hm = ex.grid.heatmap()
    assert list(hm.dimension_values("head", expanded=False)) == ["mean", "0", "1", "2"]
    ex.grid.tap.event(x="1", y="0")
    assert (s.layer, s.head) == (0, 1)
    ex.grid.tap.event(x="mean", y="2")
    assert (s.layer, s.head) == (2, -1)


def test_layer_curves_and_baselines(ex):
    s = ex.state
    s.param.update(metric="coverage", method="cls", variant="frozen", model="vit")
    summ = ex.curves.summary()
    vit = summ[summ.model == "vit"].set_index("layer")
    # mean over the 3 images of 0.1 + 0.01 l + 0.0001 i (head -1) = 0.1 + 0.01 l + 0.0001
    np.testing.assert_allclose(vit["mean"], [0.1001, 0.1101, 0.1201], rtol=1e-5)
    assert (vit["lo"] <= vit["mean"]).all() and (vit["mean"] <= vit["hi"]).all()
    assert set(summ[summ.model == "sig"]["label"]) == {"sig (probe)"}
    base = ex.data.baselines("coverage")
    assert base == pytest.approx({k.split(":")[1]: v for k, v in BASELINES.items()}, rel=1e-6)
    ex.curves._on_tap(x=3.0, y=0.13)  # nearest point: cnn (gradcam) at layer 3
    assert (s.model, s.method, s.layer) == ("cnn", "gradcam", 3)


def test_leaderboard_best_layer_with_ci_and_baselines(ex):
    ex.state.param.update(method="cls", variant="frozen", percentile=90)
    df = ex.leaderboard.table().set_index("model")
    assert df.loc["vit", "coverage layer"] == 2  # higher is better -> deepest layer
    assert df.loc["vit", "coverage"] == pytest.approx(0.1201, rel=1e-5)
    assert df.loc["vit", "kl layer"] == 2  # kl = 1 - coverage, lower is better
    assert df.loc["cnn", "coverage layer"] == 4
    assert df.loc["vit", "iou@90"] == pytest.approx(0.1201 * 0.9, rel=1e-5)
    assert df.loc["baseline:center", "coverage"] == pytest.approx(0.30, rel=1e-6)
    assert df.loc["vit", "coverage lo"] <= df.loc["vit", "coverage"] <= df.loc["vit",
                                                                               "coverage hi"]


def _stats_scores(fix):
    from ssl_attn.store import open_scores

    return open_scores(fix.scores)


@pytest.mark.parametrize("metric,method,percentile", [("coverage", "cls", 90),
                                                      ("kl", "rollout", 90),
                                                      ("iou", "cls", 50)])
def test_curve_band_equals_stats_layer_curve(ex, fix, metric, method, percentile):
    """The dashboard's curves and CI bands are ssl_attn.stats.layer_curve's numbers, exactly,
    for every model (with the method each model falls back to), bootstrap settings recorded."""
    from ssl_attn import stats

    s = ex.state
    s.param.update(metric=metric, method=method, variant="frozen", percentile=percentile)
    summ = ex.curves.summary()
    assert summ.attrs == stats.bootstrap_settings() == {
        "n_boot": stats.N_BOOT, "seed": stats.SEED, "ci": stats.CI, "bootstrap": "percentile"}
    scores = _stats_scores(fix)
    assert set(summ["model"]) == {"vit", "sig", "cnn"}
    for model, got in summ.groupby("model"):
        use = got["method"].iloc[0]
        want = stats.layer_curve(scores, metric, model, method=use, percentile=percentile)
        assert want.attrs == summ.attrs
        assert got["layer"].tolist() == want["layer"].tolist()
        for a, b in (("mean", "mean"), ("lo", "ci_lo"), ("hi", "ci_hi"), ("n", "n")):
            np.testing.assert_array_equal(got[a].to_numpy(), want[b].to_numpy())
    vit = summ[summ.model == "vit"]
    assert (vit["method"] == ("rollout" if method == "rollout" else "cls")).all()


def test_leaderboard_and_baselines_equal_stats_best_layer(ex, fix):
    """Leaderboard best layer, value and CI, and the baseline values, are
    ssl_attn.stats.best_layer's, exactly."""
    from ssl_attn import stats

    df = ex.data.leaderboard("cls", "frozen", 90).set_index("model")
    assert df.attrs == stats.bootstrap_settings()
    scores = _stats_scores(fix)
    for metric in ("coverage", "kl", "iou"):
        label = ex.data.metric_label(metric, 90)
        for model in ("vit", "sig", "cnn"):
            use = df.loc[model, "method"]
            want = stats.best_layer(scores, metric, models=[model], method=use,
                                    percentile=90).iloc[0]
            assert df.loc[model, f"{label} layer"] == want["layer"]
            assert (df.loc[model, label], df.loc[model, f"{label} lo"],
                    df.loc[model, f"{label} hi"]) == (want["mean"], want["ci_lo"],
                                                      want["ci_hi"])
        base = ex.data.baselines(metric, 90)
        assert set(base) == {k.split(":")[1] for k in BASELINES}
        for name, value in base.items():
            want = stats.best_layer(scores, metric, models=[f"baseline:{name}"],
                                    percentile=90).iloc[0]
            assert value == want["mean"]
            row = df.loc[f"baseline:{name}"]
            assert (row[label], row[f"{label} lo"], row[f"{label} hi"]) == (
                want["mean"], want["ci_lo"], want["ci_hi"])
            assert pd.isna(row[f"{label} layer"])


# ------------------------------------------------------------------------------ comparisons
def test_model_comparison_uses_the_same_relative_depth(ex):
    s = ex.state
    s.param.update(model="vit", method="cls", layer=1, head=-1, image_id="Q100_wd0")
    panels = {m: (meth, layer) for m, meth, layer, _ in ex.models.panels()}
    # vit layer 1 of [0, 1, 2] = depth 0.5 -> cnn stage 3 of [1..4] (round(0.5 * 3) = 2 -> 3)
    assert panels == {"vit": ("cls", 1), "cnn": ("gradcam", 3), "sig": ("probe", -1)}


def test_variant_shift_map_is_centred_at_zero(ex):
    s = ex.state
    s.param.update(model="vit", method="cls", layer=0, head=0, image_id="Q100_wd0",
                   compare_variant="full")
    _frozen, _other, diff = ex.variants.maps()
    want = np.full((4, 6), -0.1 * U)  # p goes 0.5 -> 0.6: u falls by 0.1/24, the peak gains
    want[0, 0] += 0.1
    np.testing.assert_allclose(diff, want, atol=1e-6)
    el = ex.variants.element("shift")
    img = el.get(1)
    assert img.opts.get().kwargs["cmap"] == "RdBu_r"
    lo, hi = img.opts.get().kwargs["clim"]
    assert lo == -hi and hi == pytest.approx(0.1 - 0.1 * U, rel=1e-4)


def test_patch_similarity_from_embeddings(ex):
    s = ex.state
    s.param.update(model="vit", variant="frozen", image_id="Q100_wd0")
    assert ex.similarity.similarity() is None  # nothing tapped yet
    s.param.update(tap_x=0.01, tap_y=0.01)  # patch (0, 0): one-hot channel 0
    sim = ex.similarity.similarity()
    want = np.zeros((4, 6))
    for i in range(4):
        for j in range(6):
            want[i, j] = float((i * 6 + j) % 8 == 0)
    np.testing.assert_allclose(sim, want, atol=1e-6)


def test_no_embeddings_gives_a_message(ex):
    ex.state.model = "sig"
    col = ex.similarity.__panel__()
    body = col[1]._pane if hasattr(col[1], "_pane") else col[1]
    root = pn.panel(col).get_root(Document())
    assert root is not None
    text = body.object if hasattr(body, "object") else str(body)
    assert "No embeddings in this store" in str(text)


# ------------------------------------------------------------------------------ browser
def test_image_browser_filters_and_selects(ex):
    b = ex.browser
    assert len(b.filtered()) == 3
    b.style = "Gothic"
    assert list(b.filtered()["image_id"]) == ["Q200_wd0"]
    b.style = "All"
    b.feature = "Rose window"
    assert list(b.filtered()["image_id"]) == ["Q100_wd0"]
    b.feature = "All"
    b.search = "q3"
    assert list(b.filtered()["image_id"]) == ["Q300_wd1"]
    assert b.filtered()["thumb"].iloc[0].startswith('<img src="data:image/jpeg;base64,')
    b._table.selection = [0]
    assert ex.state.image_id == "Q300_wd1"
    assert ex.state.selected_box == -1


# ------------------------------------------------------------------------------ safety
def test_missing_store_gives_a_message(tmp_path):
    ex = Explorer(tmp_path / "nope.zarr")
    kinds, texts = zip(*ex.messages())
    assert kinds == ("danger",) and "No attention store at" in texts[0]
    assert ex.state is None
    assert pn.panel(ex).get_root(Document()) is not None


def test_missing_scores_and_dataset_give_messages(tmp_path):
    store = build_store(tmp_path / "s.zarr", dataset=tmp_path / "missing_dataset")
    ex = Explorer(store)
    text = " ".join(t for _, t in ex.messages())
    assert "No scores at" in text and "not found" in text
    assert isinstance(ex.grid.__panel__(), pn.pane.Alert)
    assert isinstance(ex.leaderboard.__panel__(), pn.pane.Alert)
    assert ex.attention.map_values().shape == (4, 6)  # maps still work
    assert len(ex.attention.box_table()) == 0


def test_synthetic_banner_follows_the_data(tmp_path, fix):
    ex = Explorer(fix.store)
    assert any("Synthetic data" in t for _, t in ex.messages())
    real = build_dataset(tmp_path / "real", synthetic=False)
    store = build_store(tmp_path / "real.zarr", dataset=real, synthetic=False)
    ex2 = Explorer(store)
    assert not ex2.data.synthetic
    assert not any("Synthetic data" in t for _, t in ex2.messages())


def test_url_store_outside_the_data_dir_is_rejected(tmp_path, fix):
    data_dir = fix.data_dir
    ok = resolve_store_path("stores/test.zarr", data_dir)
    assert ok == fix.store.resolve()
    for bad in ("../../etc", "/etc/passwd", "stores/../../x.zarr", str(tmp_path)):
        with pytest.raises(PathRejectedError, match="outside the data directory"):
            resolve_store_path(bad, data_dir)
    link = data_dir / "escape.zarr"
    if not link.exists():
        os.symlink(tmp_path, link)
    with pytest.raises(PathRejectedError):
        resolve_store_path("escape.zarr", data_dir)
    app = build_app(fix.store, data_dir=data_dir, requested="/etc")
    root = app.main[0]
    alerts = [o for o in root.select(pn.pane.Alert)]
    assert alerts and "Refused" in alerts[0].object and alerts[0].alert_type == "danger"


@pytest.mark.slow
def test_exercising_the_app_writes_nothing(fix):
    def snapshot():
        return {p: p.stat().st_mtime_ns for p in Path(fix.data_dir).rglob("*")
                if "escape" not in p.parts[-1]}

    before = snapshot()
    ex = Explorer(fix.store)
    doc = Document()
    pn.panel(ex).get_root(doc)
    for view in (ex.leaderboard, ex.similarity):  # the app renders the rest
        pn.panel(view).get_root(doc)
    s = ex.state
    for model in ("cnn", "vit"):
        s.model = model
    s.layer = 0
    s.image_id = "Q200_wd0"
    ex.attention.tap_at(6.0, -10.0)
    s.head = 1
    assert s.selected_box == 0
    assert snapshot() == before
    assert not any(p.suffix in (".pkl", ".cache") for p in before)


def test_status_line_describes_the_selection(ex):
    s = ex.state
    s.param.update(image_id="Q100_wd0", model="vit", method="rollout", variant="frozen",
                   layer=1)
    assert s.describe() == ("image Q100_wd0 · model vit · frozen · rollout · layer 1 · "
                            "head mean · box none")


def test_one_signal_per_action_and_bound_panes_follow_it(ex):
    s = ex.state
    status, info = ex.status(), ex.attention.info_pane()
    versions = []
    s.param.watch(lambda e: versions.append(e.new), "version")
    s.param.update(image_id="Q200_wd0", model="vit", method="cls", variant="frozen", layer=2)
    n = len(versions)
    s.model = "cnn"  # cascades method, layer and head: still one signal
    assert len(versions) == n + 1 and (s.method, s.layer) == ("gradcam", 2)
    assert status.object == s.describe()
    s.model = "vit"
    ex.attention.tap_at(6.0, -10.0)  # box 0: the info pane (pn.bind) shows its metrics
    assert info.object == ex.attention.box_info() and "Box 0" in info.object
    s.image_id = "Q100_wd0"  # clears the box in the same action
    assert "tap a box" in info.object and "box none" in status.object
    b = ex.browser  # param.depends on the browser's own filters
    b.style = "Gothic"
    assert list(b._table.value["image_id"]) == ["Q200_wd0"]


@pytest.mark.slow
def test_rendered_app_updates_the_image_glyph(ex):
    doc = Document()
    root = pn.panel(ex).get_root(doc)
    s = ex.state
    s.param.update(image_id="Q100_wd0", model="vit", method="cls", variant="frozen", head=0)

    def image_values():
        from bokeh.models import GlyphRenderer, Image

        for r in root.select({"type": GlyphRenderer}):
            if isinstance(r.glyph, Image) and r.data_source.data["image"][0].shape == (4, 6):
                return np.asarray(r.data_source.data["image"][0])
        raise AssertionError("no 4 x 6 map glyph in the rendered app")

    s.layer = 0
    a = image_values()
    s.layer = 2
    b = image_values()
    # Bokeh images are stored bottom row first: the peak (row 2, col 0) is row 4 - 1 - 2 = 1.
    assert np.unravel_index(np.argmax(a), a.shape) == (3, 0)
    assert np.unravel_index(np.argmax(b), b.shape) == (1, 0)


def test_builder_follows_the_schema(fix):
    tree = xr.open_datatree(fix.store, engine="zarr", chunks=None)
    assert sorted(tree.children) == sorted(m.key for m in TEST_MODELS)
    vit = tree["vit"].to_dataset()
    assert vit["cls"].dims == ("variant", "image_id", "layer", "head", "y", "x")
    np.testing.assert_allclose(vit["y"].values, (np.arange(4) + 0.5) / 4)
    np.testing.assert_allclose(vit["cls"].sum(("y", "x")).values, 1.0, rtol=1e-5)
    assert bool(tree.attrs["synthetic"]) is True
    scores = xr.open_dataset(fix.scores, engine="zarr", chunks=None)
    assert {"direction", "range", "long_name"} <= set(scores["coverage"].attrs)
    assert isinstance(scores["coverage"].to_series(), pd.Series)


# ------------------------------------------------------------------------------ in-place figures
def test_attention_figure_updates_in_place(ex):
    from bokeh.palettes import Viridis256

    s = ex.state
    s.param.update(image_id="Q200_wd0", model="vit", method="cls", variant="frozen", layer=1,
                   head=2)
    f = ex.attention.figure()
    models_before = {m.id for m in f.fig.references()}
    # Boxes of Q200_wd0 (40 x 60 px): box 0 (.1, .1, .2, .3) -> x 4..12, y_plot -24..-6.
    b = f.boxes.data
    np.testing.assert_allclose(b["x0"], [4.0, 20.0, 24.0])
    np.testing.assert_allclose(b["y0"], [-24.0, -54.0, -18.0])
    np.testing.assert_allclose(b["y1"], [-6.0, -36.0, -6.0])
    assert b["feature"] == ["Arch window", "Portal", "Buttress"]
    colors = plots.feature_colors(ex.data.features_by_frequency)
    assert b["color"] == [colors[x] for x in b["feature"]]
    # box_coverage = 0.05 (box + 1) + 0.01 layer, for layer 1
    np.testing.assert_allclose(b["box_coverage"], [0.06, 0.11, 0.16], rtol=1e-6)
    # The map goes in bottom row first; colours span its range: p = 0.51 (image 1), u = .49/24.
    np.testing.assert_allclose(np.flipud(f.map.data["image"][0]), ex.attention.map_values())
    assert (f.mapper.low, f.mapper.high) == pytest.approx((0.49 * U, 0.51 + 0.49 * U), rel=1e-5)
    # The photo spans (0, -60)..(40, 0) and its dark top-left quadrant is the *last* rows.
    assert (f.photo.data["x"], f.photo.data["y"]) == ([0.0], [-60.0])
    assert (f.photo.data["dw"], f.photo.data["dh"]) == ([40.0], [60.0])
    rgba = f.photo.data["image"][0].view(np.uint8).reshape(60, 40, 4)
    assert rgba[-1, 0, :3].max() < 40 and rgba[0, 0, 2] > 150  # dark corner / blue fill
    # Aspect 1 in the 480 x 420 frame: 7 screen px per photo px -> x spans 480 / 7 around 20.
    assert (f.fig.y_range.start, f.fig.y_range.end) == pytest.approx((-60.0, 0.0))
    assert (f.fig.x_range.start, f.fig.x_range.end) == pytest.approx((20 - 240 / 7, 20 + 240 / 7))
    ex.attention.tap_at(6.0, -10.0)  # inside box 0
    sel = f.selected.data
    assert [sel[k] for k in ("x0", "y0", "x1", "y1")] == [pytest.approx([v]) for v in
                                                          (4.0, -24.0, 12.0, -6.0)]
    for change in ({"layer": 0}, {"head": -1}, {"image_id": "Q100_wd0"}, {"model": "cnn"},
                   {"model": "vit", "cmap": "viridis", "alpha": 0.8}):
        s.param.update(**change)
        np.testing.assert_allclose(np.flipud(f.map.data["image"][0]),
                                   ex.attention.map_values())
    # Only data and plain properties changed: no model was added or replaced.
    assert {m.id for m in f.fig.references()} == models_before
    assert f.map_renderer.glyph.global_alpha == 0.8 and f.mapper.palette[0] == Viridis256[0]
    assert f.selected.data["x0"] == []  # a new image clears the selection
    assert len(f.outline.data["x0"]) > 4
    s.param.update(show_outline=False, show_boxes=False)
    assert len(f.outline.data["x0"]) == 0 and len(f.boxes.data["x0"]) == 0


def test_grid_figure_cells_marker_and_tap(ex):
    from types import SimpleNamespace

    s = ex.state
    s.param.update(image_id="Q300_wd1", model="vit", method="cls", variant="frozen",
                   metric="coverage", layer=1, head=0)
    g = ex.grid.figure()
    assert list(g.fig.x_range.factors) == ["mean", "0", "1", "2"]
    assert list(g.fig.y_range.factors) == ["0", "1", "2"]
    cells = pd.DataFrame(g.cells.data).set_index(["layer", "head"])["value"]
    assert cells[("2", "1")] == pytest.approx(score_value(2, 1, 2), rel=1e-6)
    assert cells[("0", "mean")] == pytest.approx(score_value(0, -1, 2), rel=1e-6)
    assert g.marker.data == {"head": ["0"], "layer": ["1"]}
    # A Bokeh tap at synthetic coordinates: factor i spans [i, i + 1) -> head "2", layer "0".
    g._tap(SimpleNamespace(x=3.5, y=0.2))
    assert (s.layer, s.head) == (0, 2)
    assert g.marker.data == {"head": ["2"], "layer": ["0"]}


def test_curves_figure_points_baselines_and_marker(ex):
    s = ex.state
    s.param.update(metric="coverage", method="cls", variant="frozen", model="vit", layer=1)
    c = ex.curves.figure()
    pts = pd.DataFrame(c.points.data)
    vit = pts[pts.label == "vit"].sort_values("layer")
    np.testing.assert_allclose(vit["mean"], [0.1001, 0.1101, 0.1201], rtol=1e-5)
    assert dict(zip(c.base_text.data["text"], c.base_text.data["y"])) == pytest.approx(
        {f"baseline: {k.split(':')[1]}": v for k, v in BASELINES.items()}, rel=1e-6)
    np.testing.assert_allclose(np.c_[c.marker.data["layer"], c.marker.data["mean"]],
                               [[1.0, 0.1101]], rtol=1e-5)
    s.layer = 2
    np.testing.assert_allclose(c.marker.data["mean"], [0.1201], rtol=1e-5)


def test_tabs_build_their_view_when_first_shown(ex):
    s = ex.state
    s.param.update(metric="coverage", method="cls", variant="frozen", model="vit", layer=1)
    tabs = ex.tabs()
    assert [len(tabs[i].objects) for i in range(5)] == [1, 0, 0, 0, 0]
    tabs.active = 1
    assert [len(tabs[i].objects) for i in range(5)] == [1, 1, 0, 0, 0]
    assert not s.freeze_updates  # the leaderboard is a table: no HoloViews plot shown
    marker = ex.curves.figure().marker
    tabs.active = 3  # variants: HoloViews plots, the curves tab is hidden and paused
    assert s.freeze_updates and not ex.curves.active and ex.variants.active
    s.layer = 2
    np.testing.assert_allclose(marker.data["mean"], [0.1101], rtol=1e-5)  # still layer 1
    tabs.active = 0  # shown again: caught up
    np.testing.assert_allclose(marker.data["mean"], [0.1201], rtol=1e-5)
    assert not s.freeze_updates


def test_upsample_map_is_pixel_centre_bilinear():
    # The dashboard has no upsample of its own: the outline reads the metrics' upsample of a
    # single map. 2 -> 4 px: output centres sample the input at -0.25, 0.25, 0.75, 1.25.
    from ssl_attn.metrics import upsample

    up = upsample(np.array([[0.0, 1.0], [0.0, 1.0]]), 4)[0]
    np.testing.assert_array_equal(up, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)))
    from scipy import ndimage

    arr = np.random.default_rng(0).random((4, 6)).astype(np.float32)  # what the metrics read
    ref = ndimage.zoom(arr.astype(np.float64), (224 / 4, 224 / 6), order=1, grid_mode=True,
                       mode="nearest")
    # float32 frame values (what the metrics rank): the float64 value rounded once, so
    # within half a float32 ulp of it (plus float64 rounding of the two computations).
    up = upsample(arr, 224)[0]
    assert up.dtype == np.float32
    assert (np.abs(up - ref) <= np.spacing(ref.astype(np.float32)) / 2 + 1e-15).all()


def _enclosed(seg: np.ndarray, shape: tuple[int, int], width: float, height: float
              ) -> np.ndarray:
    """bool ``shape``: which frame pixel centres the segments enclose (even-odd rule): a ray
    from each centre to the right crosses the vertical pieces an odd number of times."""
    fh, fw = shape
    sx, sy = width / fw, height / fh
    x0, y0, x1, y1 = seg[:, 0] / sx, -seg[:, 1] / sy, seg[:, 2] / sx, -seg[:, 3] / sy
    vert = x0 == x1
    assert (vert | (y0 == y1)).all()  # axis-aligned pieces only
    cx = np.arange(fw) + 0.5
    inside = np.zeros(shape, bool)
    for xv, ya, yb in zip(x0[vert], np.minimum(y0, y1)[vert], np.maximum(y0, y1)[vert]):
        rows = slice(int(np.rint(ya)), int(np.rint(yb)))
        inside[rows] ^= (cx < xv)[None, :]
    return inside


def _boundary_length(mask: np.ndarray) -> int:
    m = np.pad(mask, 1)
    return int((m[1:] != m[:-1]).sum() + (m[:, 1:] != m[:, :-1]).sum())


@pytest.mark.parametrize("kind", ["three_levels", "constant", "plateaus", "smooth", "border"])
def test_outline_encloses_exactly_the_iou_top_k_pixels(kind):
    """The outline at p encloses exactly the pixels IoU@p counts (the metrics' own top-k on
    their own upsampled values), on maps full of ties, and nothing else is drawn."""
    from ssl_attn.metrics import top_region, topk_size

    rng = np.random.default_rng(len(kind))
    if kind == "three_levels":
        values = rng.integers(0, 3, (14, 14)).astype(float)
    elif kind == "constant":
        values = np.full((14, 14), 1 / 196)
    elif kind == "plateaus":
        values = np.repeat(np.repeat(rng.integers(0, 4, (4, 4)), 4, 0), 4, 1) / 7.0
    elif kind == "smooth":
        values = rng.random((16, 16))
    else:  # the peak touches the frame's corner: the region must close along the border
        values = np.zeros((14, 14))
        values[0, 0] = 1.0
    w, h, res = 640.0, 480.0, 56
    for p in (50, 75, 90, 99):
        seg = plots.outline_segments(values, w, h, p, resolution=res)
        top = top_region(values, p, res)
        assert top.sum() == topk_size(res * res, p)
        np.testing.assert_array_equal(_enclosed(seg, (res, res), w, h), top)
        length = np.abs(seg[:, 2] - seg[:, 0]) * res / w + np.abs(seg[:, 3] - seg[:, 1]) * res / h
        assert round(length.sum()) == _boundary_length(top)  # only the boundary is drawn


def test_outline_of_a_map_with_nan_is_empty():
    values = np.ones((4, 4))
    values[1, 2] = np.nan  # every metric of this map is NaN: no pixel set to outline
    assert plots.outline_segments(values, 40.0, 30.0, 90).shape == (0, 4)


def test_raw_reads_match_xarray_and_fall_back_when_decoding(ex, fix):
    from ssl_attn.store import fast as rawread

    d = ex.data
    var = d._group("cnn").variables["gradcam"]
    assert rawread.direct_array(d._root, "cnn", "gradcam", var) is not None
    np.testing.assert_array_equal(d.cube("cnn", "frozen", "gradcam", "Q300_wd1"),
                                  _store_slice(fix, "cnn", "gradcam", variant="frozen",
                                               image_id="Q300_wd1"))
    scores = xr.open_dataset(fix.scores, engine="zarr", chunks=None)
    want = scores["iou"].sel({"model": "vit", "variant": "full", "method": "cls",
                              "percentile": 50}).transpose("layer", "head", "image_id").values
    np.testing.assert_array_equal(d.score_block("iou", "vit", "full", "cls", 50), want)
    # A variable xarray would decode (scale_factor) is read through xarray instead.
    packed = xr.Variable(("a", "b"), np.arange(6.0).reshape(2, 3),
                         encoding={"scale_factor": 0.5})
    assert rawread.direct_array(d._root, "cnn", "gradcam", packed) is None
    np.testing.assert_array_equal(rawread.read_slice(packed, None, {"a": 1}, ["b"]),
                                  [3.0, 4.0, 5.0])


@pytest.mark.slow
def test_default_page_imports_neither_holoviews_nor_dask_array(fix):
    import subprocess
    import sys

    code = ("import sys, warnings; warnings.simplefilter('ignore')\n"
            "from bokeh.document import Document\n"
            "from ssl_attn.explorer import Explorer\n"
            f"Explorer({str(fix.store)!r}).template().server_doc(Document())\n"
            "print(sorted(m for m in ('holoviews', 'dask.array', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_random_weights_banner_recognises_every_random_init_label(fix):
    from ssl_attn.explorer.app import is_random_init

    # what load_model reports: built in memory, or saved by save_random_model (a marked folder)
    assert is_random_init("random-init")
    assert is_random_init("random-init:/data/weights/demo/dinov2")
    assert not is_random_init("local:/data/weights/dinov2")
    assert not is_random_init("pretrained:facebook/dinov2-with-registers-base@abc123")
    ex = Explorer(fix.store)  # the fixture's groups say "random-init"
    banner = [t for _, t in ex.messages() if "Random weights" in t]
    assert len(banner) == 1 and all(m in banner[0] for m in ex.data.models)


def test_sessions_share_one_store_and_distinct_stores_do_not(fix, tmp_path):
    import gc
    import weakref

    from ssl_attn.explorer.shared import clear_shared, shared_data

    clear_shared()
    a, b = Explorer(fix.store), Explorer(Path(os.path.relpath(fix.store)))  # same store
    assert a.data is b.data and a.state is not b.state  # shared data, per-session state
    for attr in ("tree", "scores", "dataset", "image_table", "_root", "_scores_root"):
        assert getattr(a.data, attr) is getattr(b.data, attr), attr
    iid = a.data.image_ids[0]
    assert a.data.cube("vit", "frozen", "cls", iid) is b.data.cube("vit", "frozen", "cls", iid)
    assert a.data.photo(iid) is b.data.photo(iid)
    assert (a.data.score_block("iou", "vit", "full", "cls", 50)
            is b.data.score_block("iou", "vit", "full", "cls", 50))
    other = build_store(tmp_path / "other.zarr", dataset=tmp_path / "missing_dataset")
    c = Explorer(other)
    assert c.data is not a.data and c.data.tree is not a.data.tree
    # A session's objects are not kept alive by the shared data (memory per closed session).
    refs = [weakref.ref(o) for o in (b, b.state, b.attention, b.browser)]
    del b
    gc.collect()
    assert all(r() is None for r in refs)
    assert shared_data(fix.store) is a.data


def test_a_changed_store_is_reopened_not_served_stale(tmp_path):
    from ssl_attn.explorer.shared import shared_data, store_signature
    from ssl_attn.store import scores_path

    built = build_all(tmp_path / "d")
    first = shared_data(built.store)
    assert shared_data(built.store) is first
    sig = store_signature(built.store)
    for changed in (built.store / "zarr.json", scores_path(built.store) / "zarr.json"):
        st = changed.stat()
        os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten metadata
        again = shared_data(built.store)
        assert again is not first and again.tree is not first.tree
        assert shared_data(built.store) is again
        first = again
    assert store_signature(built.store) != sig
    # An extract batch (region writes, no metadata change) rewrites the `complete` flags.
    flag = next(p for p in (built.store / "vit" / "complete").rglob("*") if p.is_file())
    st = flag.stat()
    os.utime(flag, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert shared_data(built.store) is not first
