"""The explorer's fine-tuning tab (Q2): the shift table it shows is the shift Dataset's, a tap
selects that model / variant / layer for the variant comparison, accuracy sits beside it, and a
store without a shift table says how to make one.

The store and the shift Dataset are hand-built (``tests/_store_builder.py``: ``build_q2``,
closed-form ``shift_delta``), so expected values are written by hand from those formulas and
cross-checked against the Dataset read back independently with xarray.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("panel")

import panel as pn
import xarray as xr
from bokeh.document import Document

try:  # tests/ as a plain folder: pytest puts it on sys.path
    from _store_builder import SHIFT_ACCURACY, build_q2, shift_delta
except ModuleNotFoundError:  # tests/ as a package
    from tests._store_builder import SHIFT_ACCURACY, build_q2, shift_delta

from ssl_attn.explorer import Explorer, FinetuneView
from ssl_attn.explorer.finetune_view import ShiftSchemaError, load_shift

warnings.filterwarnings("ignore", message=".*Zarr.*")
U = 1.0 / 24  # one cell of the 4 × 6 "vit" grid
#: Positions in the hand-built Dataset's coords (shift_delta's indices).
METHOD_INDEX = {"cls": 0, "gradcam": 1, "rollout": 2}
METRIC_INDEX = {"iou": 0, "coverage": 1}


@pytest.fixture(scope="module")
def fix(tmp_path_factory):
    return build_q2(tmp_path_factory.mktemp("q2_data"))


@pytest.fixture
def ex(fix):
    ex = Explorer(fix.store, data_dir=fix.data_dir)
    ex.state.param.update(metric="iou", percentile=90, method="cls")
    return ex


def _tap(fig, x: str, y: str) -> None:
    """A Bokeh tap at the centre of the cell ``(x, y)`` (factor i spans [i, i + 1))."""
    xs, ys = list(fig.fig.x_range.factors), list(fig.fig.y_range.factors)
    fig._tap(SimpleNamespace(x=xs.index(x) + 0.5, y=ys.index(y) + 0.5))


def _independent(fix, name, **sel):
    ds = xr.open_zarr(fix.extra["shift"], chunks=None)
    return float(ds[name].sel(sel).values)


# ------------------------------------------------------------------------------ the table
def test_the_table_shows_the_shift_datasets_values(ex, fix):
    v = ex.finetune
    assert v.models() == ["vit", "cnn"]  # "sig" has no fine-tuned variant
    t = v.cells("vit")
    assert t.attrs["method"] == "cls"
    cell = v.cell("vit", "full", 2)
    # Hand value: 0.03 · strength 1 · (layer 2 − 1) + 0.001 · cls (0) + 0.0001 · iou (0).
    assert cell["delta"] == pytest.approx(0.03, abs=1e-12)
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((0.02, 0.04), abs=1e-12)
    assert (cell["p_holm"], cell["dz"], cell["n"], cell["effect"]) == pytest.approx(
        (0.001, 1.5, 3, 1))
    sel = {"model": "vit", "variant": "full", "method": "cls", "metric": "iou", "layer": 2}
    for name in ("delta", "ci_low", "ci_high", "p_value", "p_holm", "dz", "n", "effect",
                 "reference_mean", "variant_mean"):
        assert cell[name] == _independent(fix, name, **sel), name
    # Rows: style variants, then the control, then "full − full_shuffled"; columns: layers
    # then "best" (the variant's own best layer, here the deepest).
    assert list(dict.fromkeys(t["y"])) == ["full", "linear_probe", "full_shuffled",
                                           "full − full_shuffled"]
    assert list(dict.fromkeys(t["x"])) == ["0", "1", "2", "best"]
    assert v.cell("vit", "full", 0)["effect"] == -1  # −0.03 ± 0.01: destroy
    assert v.cell("vit", "linear_probe", 1)["effect"] == 0  # the negative control: preserve
    beyond = v.cell("vit", "full", 0, kind="beyond")
    assert beyond["control"] == "full_shuffled"
    assert beyond["delta"] == pytest.approx(shift_delta("full", 0, 0, 0)
                                            - shift_delta("full_shuffled", 0, 0, 0))
    assert beyond["delta"] == _independent(fix, "beyond_control_delta", **{**sel, "layer": 0})
    best = v.cell("vit", "full", 2, kind="best")
    assert best["delta"] == pytest.approx(0.035) and best["x"] == "best"


def test_the_drawn_cells_are_the_tables_and_follow_metric_and_method(ex, fix):
    v, s = ex.finetune, ex.state
    pn.panel(v).get_root(Document())
    f = v.figures["vit"]
    assert list(f.fig.x_range.factors) == ["0", "1", "2", "best"]
    assert list(f.fig.y_range.factors) == ["full − full_shuffled", "full_shuffled",
                                           "linear_probe", "full"]  # first row on top
    ds = xr.open_zarr(fix.extra["shift"], chunks=None)

    def drawn(variant, layer):
        d = f.cells.data
        at = [i for i in range(len(d["x"])) if d["y"][i] == variant and d["x"][i] == layer]
        assert len(at) == 1
        return {k: d[k][at[0]] for k in d}

    for method, metric in (("cls", "iou"), ("rollout", "coverage")):
        s.param.update(method=method, metric=metric)
        for var in ("full", "linear_probe", "full_shuffled"):
            for layer in (0, 1, 2):
                got = drawn(var, str(layer))
                want = ds.sel({"model": "vit", "variant": var, "method": method,
                               "metric": metric, "layer": layer})
                assert got["delta"] == float(want["delta"]) == pytest.approx(
                    shift_delta(var, layer, METHOD_INDEX[method], METRIC_INDEX[metric]))
                assert (got["ci_low"], got["ci_high"]) == (float(want["ci_low"]),
                                                           float(want["ci_high"]))
        assert f.fig.title.text.startswith(f"vit · {method} · Δ {metric}")
    s.param.update(method="cls", metric="iou")
    full2 = drawn("full", "2")
    assert full2["text"] == "+0.030▲" and full2["alpha"] == 1.0
    assert full2["tip_ci"] == "+0.0200 to +0.0400" and full2["tip_p"] == "0.001"
    assert drawn("full", "0")["text"] == "−0.030▼"
    assert drawn("linear_probe", "1")["alpha"] < 1.0  # preserve: faded, no glyph
    assert drawn("full", "best")["text"] == "+0.035▲\nL2"
    # One diverging scale for every model, centred at 0: the largest |Δ| shown (cnn lora, best).
    lim = 0.03 * 0.5 * 3 + 0.001 * 1 + 0.005
    assert (f.mapper.low, f.mapper.high) == pytest.approx((-lim, lim))
    assert (f.mapper.palette[0], f.mapper.palette[-1]) == ("#053061", "#67001f")  # blue → red
    assert (v.figures["cnn"].mapper.low, v.figures["cnn"].mapper.high) == (f.mapper.low,
                                                                          f.mapper.high)
    # cnn has no cls: it shows its own method, as every all-model view does.
    assert v.figures["cnn"].fig.title.text.startswith("cnn · gradcam")


def test_tapping_a_cell_sets_model_variant_and_layer_for_the_comparison(ex):
    v, s = ex.finetune, ex.state
    pn.panel(v).get_root(Document())
    s.param.update(model="vit", layer=0, head=1, compare_variant="linear_probe")
    versions = []
    s.param.watch(lambda e: versions.append(e.new), "version")
    _tap(v.figures["vit"], "2", "full")
    assert (s.model, s.method, s.compare_variant, s.layer, s.head) == ("vit", "cls", "full", 2,
                                                                       -1)
    assert len(versions) == 1  # one action
    assert v.figures["vit"].marker.data == {"x": ["2"], "y": ["full"]}
    assert "layer 2" in v._detail.object and "**enhance**" in v._detail.object
    assert "Beyond its control `full_shuffled`" in v._detail.object
    # The comparison below shows that variant and layer, head-mean: peak mass 0.5 → 0.6, the
    # heads' peaks at (layer 2 % 4, head h) each get a third of the gain.
    s.image_id = "Q100_wd0"
    _frozen, _full, diff = v.compare.maps()
    want = np.full((4, 6), -0.1 * U)
    want[2, :3] += 0.1 / 3
    np.testing.assert_allclose(diff, want, atol=1e-6)
    # The "best" column selects the variant's best layer; a "V − C" row selects V.
    s.layer = 0
    _tap(v.figures["vit"], "best", "full_shuffled")
    assert (s.compare_variant, s.layer) == ("full_shuffled", 2)
    _tap(v.figures["vit"], "1", "full − full_shuffled")
    assert (s.compare_variant, s.layer) == ("full", 1)
    # Another model: its method (cnn has gradcam only) and its own layers.
    _tap(v.figures["cnn"], "3", "lora")
    assert (s.model, s.method, s.compare_variant, s.layer) == ("cnn", "gradcam", "lora", 3)
    assert v.figures["cnn"].marker.data == {"x": ["3"], "y": ["lora"]}
    assert v.figures["vit"].marker.data == {"x": [], "y": []}
    assert not v.select("cnn", "9", "lora")  # no such cell: nothing changes
    assert s.layer == 3


def test_accuracy_per_strategy_is_the_datasets(ex):
    v = ex.finetune
    acc = v.accuracy()
    assert list(acc.index) == ["full", "linear_probe", "full_shuffled", "lora"]
    assert list(acc.columns) == ["vit", "cnn"]
    for (model, variant), value in SHIFT_ACCURACY.items():
        assert acc.loc[variant, model] == value
    assert np.isnan(acc.loc["lora", "vit"])
    text = v.accuracy_markdown()
    assert "| full | 0.930 | — |" in text and "| linear\\_probe | 0.610 | — |" in text
    assert "| lora | — | 0.740 |" in text


def test_metric_missing_from_the_table_falls_back_with_a_note(ex):
    v, s = ex.finetune, ex.state
    pn.panel(v).get_root(Document())
    s.metric = "kl"  # scored, but not in the shift table (iou, coverage)
    assert v.metric()[0] == "iou"
    assert v._note.visible and "no `kl`" in v._note.object
    assert v.cell("vit", "full", 2)["delta"] == pytest.approx(0.03)
    s.param.update(metric="iou", percentile=50)  # the table is at p = 90 (its attr)
    assert v.percentile() == (90, "The shift table is at p = 90, not the sidebar's p = 50.")
    assert v._note.visible and "p = 90" in v._note.object
    s.percentile = 90
    assert not v._note.visible


# ------------------------------------------------------------------------------ no table
def _texts(view: FinetuneView) -> list[str]:
    return [a.object for a in view.__panel__().select(pn.pane.Alert)]


def test_without_a_shift_file_the_tab_says_how_to_make_it(tmp_path):
    fix = build_q2(tmp_path / "d", shift=False)
    ex = Explorer(fix.store, data_dir=fix.data_dir)
    assert ex.data.shift is None and ex.data.shift_problem is None
    text = " ".join(_texts(ex.finetune))
    assert "No shift table for this store" in text and "`stores/q2.shift.zarr`" in text
    for cmd in ("ssl-attn finetune --model KEY --strategy lora",
                "ssl-attn extract --store stores/q2.zarr --models KEY --variant lora "
                "--finetuned runs/KEY-lora", "ssl-attn score --store stores/q2.zarr",
                "ssl-attn shift --store stores/q2.zarr"):
        assert f"`{cmd}" in text, cmd
    assert str(tmp_path) not in text  # paths relative to the data directory
    # The variant comparison is still there below the message.
    params = ex.finetune.__panel__().select(pn.Param)
    assert [q.parameters for q in params] == [["compare_variant"]]
    assert pn.panel(ex.finetune).get_root(Document()) is not None


def test_a_shift_file_without_the_needed_variables_is_named(tmp_path, fix):
    d = build_q2(tmp_path / "d", shift=False)
    xr.open_zarr(fix.extra["shift"], chunks=None).drop_vars(["delta", "p_holm"]).to_zarr(
        d.extra["shift"], mode="w")
    with pytest.raises(ShiftSchemaError, match=r"q2\.shift\.zarr: the shift table lacks "
                                               r"'delta', 'p_holm'.*ssl-attn shift"):
        load_shift(d.extra["shift"])
    ex = Explorer(d.store, data_dir=d.data_dir)
    assert ex.data.shift is None
    (text,) = _texts(ex.finetune)
    assert text.startswith("Cannot open the shift table `stores/q2.shift.zarr`:")
    assert "ShiftSchemaError" in text and str(tmp_path) not in text


def test_a_renamed_variable_is_one_edit_of_the_adapter(tmp_path, fix, monkeypatch):
    """The view reads the Dataset's names only through SHIFT_NAMES: a table whose Δ is called
    ``mean_shift`` (and whose layer dim is ``depth``) reads the same once the map says so."""
    from ssl_attn.explorer import finetune_view

    ds = xr.open_zarr(fix.extra["shift"], chunks=None).rename(
        {"delta": "mean_shift", "layer": "depth"})
    path = tmp_path / "renamed.shift.zarr"
    ds.to_zarr(path, mode="w")
    with pytest.raises(ShiftSchemaError, match="lacks 'layer', 'delta'"):
        load_shift(path)
    want = load_shift(fix.extra["shift"])
    monkeypatch.setitem(finetune_view.SHIFT_NAMES, "delta", "mean_shift")
    monkeypatch.setitem(finetune_view.SHIFT_NAMES, "layer", "depth")
    got = load_shift(path)
    xr.testing.assert_identical(got, want)
    assert got.attrs["controls"] == {"full": "full_shuffled"}  # JSON attrs decoded
    assert got.attrs["holm_family"] == ["layer"]


# ------------------------------------------------------------------------------ wiring
def test_the_tab_is_built_when_first_shown_and_freezes_updates(ex):
    tabs = ex.tabs()
    names = [tabs[i].name for i in range(len(tabs))]
    assert names[4] == "Fine-tuning"
    assert not tabs[4].objects
    tabs.active = 4
    assert tabs[4].objects == [ex.finetune.__panel__()]  # built once, kept
    assert set(ex.finetune.figures) == {"vit", "cnn"}
    assert ex.state.freeze_updates and ex.finetune.active and ex.finetune.compare.active
    tabs.active = 0
    assert not ex.finetune.active and not ex.finetune.compare.active


def test_the_shift_table_is_read_once_per_store_and_again_when_rewritten(tmp_path):
    from ssl_attn.explorer.shared import clear_shared

    clear_shared()
    d = build_q2(tmp_path / "d")
    a, b = Explorer(d.store), Explorer(Path(os.path.relpath(d.store)))
    assert a.data.shift is b.data.shift is not None
    ds = xr.open_zarr(d.extra["shift"], chunks=None).load()
    ds["delta"] = ds["delta"] + 1.0
    ds.to_zarr(d.extra["shift"], mode="w")
    c = Explorer(d.store)
    assert c.data is not a.data
    c.state.param.update(metric="iou", method="cls")
    assert c.finetune.cell("vit", "full", 2)["delta"] == pytest.approx(1.03)


# ------------------------------------------------------------------------------ browser
_HAS_TITLE = """(text) => Bokeh.index.query_one((v) => v.model && v.model.type === 'Figure'
    && v.model.title && v.model.title.text === text) != null"""
_SHIFT_CELL = """([title, x, y]) => {
  const v = Bokeh.index.query_one((v) => v.model && v.model.type === 'Figure' &&
      v.model.title && v.model.title.text.startsWith(title));
  const r = v.canvas_view.el.getBoundingClientRect();
  return [r.x + v.frame.x_scale.compute(x), r.y + v.frame.y_scale.compute(y)];
}"""


@pytest.mark.browser
@pytest.mark.slow
def test_the_fine_tuning_tab_renders_and_a_tap_selects(tmp_path):
    """Served: open the tab, the tables and accuracy render, a tap on a cell moves the page's
    selection; screenshots at 1280 and 1920 px (kept under ``$SSL_ATTN_SHOTS``)."""
    try:
        from test_ui_browser import ARGS, CHROMIUM, _need_browser, _status, serve
    except ModuleNotFoundError:
        from tests.test_ui_browser import ARGS, CHROMIUM, _need_browser, _status, serve

    _need_browser()
    from playwright.sync_api import sync_playwright

    fix = build_q2(tmp_path / "data")
    errors: list[str] = []
    shots = os.environ.get("SSL_ATTN_SHOTS")
    with serve(fix.store, fix.data_dir, tmp_path / "serve.log") as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            _status(page, r"model vit · frozen · cls · layer 2")
            page.get_by_text("Fine-tuning", exact=True).click()
            page.get_by_text("Best validation accuracy").wait_for(timeout=60000)
            page.get_by_text(re.compile(r"Rows V − C: the style-trained")).wait_for(
                timeout=30000)
            page.wait_for_timeout(1500)
            x, y = page.evaluate(_SHIFT_CELL, ["vit · cls", "1", "full"])
            page.mouse.click(x, y)
            _status(page, r"model vit · frozen · cls · layer 1 · head mean")
            page.get_by_text(re.compile(r"vs frozen · layer 1")).wait_for(timeout=30000)
            # The comparison below follows (its titles are drawn on the canvas, not in the DOM).
            page.wait_for_function(_HAS_TITLE, arg="shift: full − frozen · layer 1",
                                   timeout=60000)
            page.wait_for_timeout(1000)
            for width in (1280, 1920):
                page.set_viewport_size({"width": width, "height": 1000})
                page.wait_for_timeout(800)
                page.get_by_text("Fine-tuning", exact=True).evaluate(
                    "(el) => el.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(300)
                name = f"q2_{width}.png"
                page.screenshot(path=str(tmp_path / name), full_page=True)
                if shots:
                    page.screenshot(path=os.path.join(shots, name), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "q2_1280.png").stat().st_size > 20_000
    assert not errors, f"browser console errors: {errors}"


def test_the_tab_reads_what_shift_table_writes(tmp_path):
    """Integration: the real ``ssl_attn.finetune.shift`` output (not the hand-made Dataset)
    renders in the tab, and a cell shows that Dataset's numbers."""
    from ssl_attn.finetune.shift import open_shift, shift_table, write_shift
    from ssl_attn.store import open_scores, shift_path

    f = build_q2(tmp_path, shift=False)
    table = shift_table(open_scores(f.scores), metrics=("iou", "coverage"), store=f.store)
    write_shift(table, shift_path(f.store))
    ex = Explorer(f.store, data_dir=f.data_dir)
    ex.state.param.update(metric="coverage", method="cls")
    v = ex.finetune
    assert "vit" in v.models()
    ds = open_shift(shift_path(f.store))
    layer = int(ds["layer"].values[0])
    cell = v.cell("vit", "full", layer)
    want = ds["delta"].sel({"model": "vit", "variant": "full", "method": "cls",
                            "metric": "coverage", "layer": layer})
    assert cell["delta"] == pytest.approx(float(want), nan_ok=True)
    assert np.isfinite(cell["delta"])
