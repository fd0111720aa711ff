"""One owner per concept: what the dashboard shows equals what ``store``, ``metrics`` and
``stats`` return for the same selection.

A small store with random-but-structured maps is scored for real by
:func:`ssl_attn.metrics.score` (baselines included). The dashboard (``Explorer``) is then driven
through its shared state, and every number it would show is compared with the owner's:

* the drawn map with :func:`ssl_attn.store.select_map` (head-mean included);
* the outline's pixel set with :func:`ssl_attn.metrics.top_region`, and IoU@p of that set with
  the IoU@p score the dashboard shows for the cell;
* the layer × head grid cell and the per-box values with :func:`ssl_attn.metrics.evaluate` on
  that map (and with the scores Dataset);
* the curves and bands with :func:`ssl_attn.stats.layer_curve`, the leaderboard with
  :func:`ssl_attn.stats.best_layer`, the baselines with the scores' baseline rows.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("panel")

try:  # tests/ as a plain folder: pytest puts it on sys.path
    from _store_builder import TEST_IMAGES, TEST_MODELS, build_dataset, build_store
except ModuleNotFoundError:  # tests/ as a package
    from tests._store_builder import TEST_IMAGES, TEST_MODELS, build_dataset, build_store

from ssl_attn import plots, stats
from ssl_attn.explorer import Explorer
from ssl_attn.metrics import evaluate, make_target, score, top_region
from ssl_attn.store import open_scores, open_store, scores_path, select_map

warnings.filterwarnings("ignore", message=".*Zarr.*")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("consistency")
    data = build_dataset(root / "synthetic")
    store = build_store(root / "stores" / "c.zarr", dataset=data, content="random")
    score(store, data=str(data), n_draws=4, percentiles=(50, 75, 90))
    ex = Explorer(store)
    return {"store": store, "data": data, "ex": ex, "tree": open_store(store),
            "scores": open_scores(scores_path(store)).load()}


def _selections():
    """Every (model, variant, method, layer, head) the test layouts hold, head-mean included."""
    for lay in TEST_MODELS:
        for method in lay.methods:
            layers = [None] if method == "probe" else list(lay.layers)
            heads = [-1, *lay.heads] if method in ("cls", "mean_received", "probe") else [-1]
            for variant in lay.variants:
                for layer in layers:
                    for head in heads:
                        yield lay.key, variant, method, layer, head


def _target(image_id: str, resolution: int):
    w, h, boxes = TEST_IMAGES[image_id]
    arr = np.array([b[:4] for b in boxes], dtype=np.float64)
    return make_target(arr, labels=np.array([b[4] for b in boxes]), frame=resolution,
                       image_size=(h, w))


def _select(ex, model, variant, method, layer, head, image_id, metric="iou", p=90):
    s = ex.state
    s.param.update(image_id=image_id, model=model, method=method, variant=variant,
                   metric=metric, percentile=p)
    s.param.update(layer=-1 if layer is None else layer, head=head)
    assert (s.model, s.variant, s.method, s.head) == (model, variant, method, head)


def test_map_outline_grid_and_boxes_are_the_owners(setup):
    ex, tree, sc = setup["ex"], setup["tree"], setup["scores"]
    res = ex.data.resolution
    assert res == int(sc.attrs["resolution"]) == 224
    checked = 0
    for model, variant, method, layer, head in _selections():
        for image_id in ("Q100_wd0", "Q200_wd0"):
            _select(ex, model, variant, method, layer, head, image_id)
            shown = ex.attention.map_values()
            owner = select_map(tree, model, method, variant=variant, layer=layer, head=head,
                               image_id=image_id).values
            np.testing.assert_array_equal(shown, owner)  # bit for bit, head-mean included

            target = _target(image_id, res)
            ev = evaluate(owner[None], target, percentiles=(50, 75, 90))
            union = target.union.reshape(res, res)
            lay = -1 if layer is None else layer
            for pi, p in enumerate((50, 75, 90)):
                region = top_region(owner, p, res)
                inter = np.count_nonzero(region & union)
                iou = inter / np.count_nonzero(region | union)
                cell = ex.data.cell_score("iou", model, variant, method, image_id, lay, head, p)
                # The outline's pixel set scores exactly the IoU@p the dashboard shows.
                assert cell == pytest.approx(iou, abs=1e-12) == ev["iou"][0, pi]
            ex.state.percentile = 75
            seg = ex.attention.outline()
            w, h = TEST_IMAGES[image_id][:2]
            edges = plots.mask_edges(top_region(owner, 75, res))
            np.testing.assert_allclose(seg, edges * [w / res, -h / res, w / res, -h / res])
            for metric in ("pointing", "pointing_tol", "area_precision", "roc_auc"):
                got = ex.data.cell_score(metric, model, variant, method, image_id, lay, head)
                np.testing.assert_equal(got, ev[metric][0])  # counts: exact
            for metric in ("coverage", "mse", "kl", "emd"):
                # Sums over 224² pixels: scoring evaluates each image's maps in batches, and
                # a BLAS product's last bit may depend on the batch it shares: 1e-12 relative.
                got = ex.data.cell_score(metric, model, variant, method, image_id, lay, head)
                np.testing.assert_allclose(got, ev[metric][0], rtol=1e-12)
            boxes = ex.data.box_score_arrays(model, variant, method, image_id, lay, head)
            assert set(boxes) >= {"box_coverage", "box_iou", "box_pointing"}
            for metric, vals in boxes.items():
                # Per-box scores are stored as float32.
                np.testing.assert_allclose(vals, ev[metric][0].astype(np.float32), rtol=1e-6)
            checked += 1
    assert checked == 2 * sum(1 for _ in _selections()) == 2 * 2 * (3 * 4 + 3 + 3 * 4) + 2 * (
        2 * 3 + 3) + 2 * 4


@pytest.mark.parametrize("metric,method,p", [("iou", "cls", 90), ("coverage", "cls", 50),
                                             ("kl", "mean_received", 90),
                                             ("coverage", "gradcam", 90)])
def test_curves_leaderboard_and_baselines_are_stats(setup, metric, method, p):
    ex, sc = setup["ex"], setup["scores"]
    summ = ex.data.layer_summary(metric, method, "frozen", p)
    assert summ.attrs["n_boot"] == stats.N_BOOT and summ.attrs["seed"] == stats.SEED
    models = [m for m in summ["model"].unique()]
    assert models, "the dashboard shows no curve"
    for model in models:
        rows = summ[summ["model"] == model]
        used = rows["method"].iloc[0]
        ref = stats.layer_curve(sc, metric, model, variant="frozen", method=used, head=-1,
                                percentile=p)
        np.testing.assert_array_equal(rows["layer"].to_numpy(), ref["layer"].to_numpy())
        np.testing.assert_array_equal(rows["mean"].to_numpy(), ref["mean"].to_numpy())
        np.testing.assert_array_equal(rows["lo"].to_numpy(), ref["ci_lo"].to_numpy())
        np.testing.assert_array_equal(rows["hi"].to_numpy(), ref["ci_hi"].to_numpy())
        np.testing.assert_array_equal(rows["n"].to_numpy(), ref["n"].to_numpy())

    board = ex.data.leaderboard(method, "frozen", p, metrics=[metric]).set_index("model")
    label = ex.data.metric_label(metric, p)
    for model in models:
        used = summ.loc[summ["model"] == model, "method"].iloc[0]
        best = stats.best_layer(sc, metric, models=[model], variant="frozen", method=used,
                                percentile=p).iloc[0]
        assert board.loc[model, f"{label} layer"] == best["layer"]
        assert board.loc[model, label] == best["mean"]
        assert (board.loc[model, f"{label} lo"], board.loc[model, f"{label} hi"]) == (
            best["ci_lo"], best["ci_hi"])

    shown = ex.data.baselines(metric, p)
    assert set(shown) == {"uniform", "center", "saliency", "sobel"}
    for name, value in shown.items():
        da = sc[metric].sel({"model": f"baseline:{name}", "variant": "frozen",
                             "method": "baseline", "layer": -1, "head": -1})
        if "percentile" in da.dims:
            da = da.sel(percentile=float(p))
        vals = da.values
        assert value == pytest.approx(float(np.mean(vals[np.isfinite(vals)])), rel=1e-12)
