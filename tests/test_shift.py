"""The Q2 shift table (ssl_attn.finetune.shift) against hand computation on hand-built scores.

Every expected number is computed here from the scores with numpy/scipy and an explicit Holm
loop, independently of shift.py; only the bootstrap CI is compared with its one owner,
``ssl_attn.stats.bootstrap_ci``, on the same per-image differences.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import xarray as xr

try:  # tests/ as a plain folder: pytest puts it on sys.path
    from _store_builder import (
        SHIFT_IMAGES,
        SHIFT_STYLES,
        SHIFT_VARIANTS,
        ModelLayout,
        build_store,
        shift_scores,
    )
except ModuleNotFoundError:  # tests/ as a package
    from tests._store_builder import (
        SHIFT_IMAGES,
        SHIFT_STYLES,
        SHIFT_VARIANTS,
        ModelLayout,
        build_store,
        shift_scores,
    )

from ssl_attn import stats
from ssl_attn.cli import main
from ssl_attn.finetune.shift import ShiftError, open_shift, shift_frame, shift_table, write_shift
from ssl_attn.store import open_scores, scores_path, shift_path

METRICS3 = ("iou", "coverage", "kl")  # kl: lower is better
MODELS = ("vitA", "vitB")
METHODS = ("cls", "rollout")
LAYERS = (0, 1, 2)
DIRECTION = {"iou": 1, "coverage": 1, "kl": -1}


@pytest.fixture(scope="module")
def scores() -> xr.Dataset:
    return shift_scores()


@pytest.fixture(scope="module")
def table(scores) -> xr.Dataset:
    return shift_table(scores, metrics=METRICS3, styles=SHIFT_STYLES)


def values(scores, metric, model, variant, method, layer) -> np.ndarray:
    sel = {"model": model, "variant": variant, "method": method, "layer": layer, "head": -1}
    if metric == "iou":
        sel["percentile"] = 90.0
    return scores[metric].sel(sel).values.astype(np.float64)


def hand_holm(p) -> np.ndarray:
    """Holm–Bonferroni by its textbook loop (NaN left out)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = [i for i in range(p.size) if np.isfinite(p[i])]
    running = 0.0
    for rank, i in enumerate(sorted(ok, key=lambda i: p[i])):
        running = max(running, min(1.0, (len(ok) - rank) * p[i]))
        out[i] = running
    return out


def hand_effect(delta, p_holm, metric) -> int:
    if not (np.isfinite(p_holm) and p_holm < 0.05):
        return 0
    return int(np.sign(delta) * DIRECTION[metric])


def cell(ds, name, **at):
    return ds[name].sel({k: v for k, v in at.items()}).item()


# ------------------------------------------------------------------ per layer
def test_per_layer_delta_tests_holm_and_effects_equal_hand_computation(scores, table):
    assert table["variant"].values.tolist() == ["full", "full_shuffled"]
    assert table["layer"].values.tolist() == list(LAYERS)
    assert table.attrs["holm_family"] == ["layer"]
    seen = set()
    for model in MODELS:
        for variant in ("full", "full_shuffled"):
            for method in METHODS:
                for metric in METRICS3:
                    p = []
                    for layer in LAYERS:
                        a = values(scores, metric, model, variant, method, layer)
                        b = values(scores, metric, model, "frozen", method, layer)
                        d = a - b
                        at = dict(model=model, variant=variant, metric=metric, layer=layer)
                        got = table.sel(at).sel({"method": method})
                        assert got["n"].item() == 6
                        assert got["delta"].item() == pytest.approx(d.mean(), abs=1e-12)
                        assert got["reference_mean"].item() == pytest.approx(b.mean(), abs=1e-12)
                        assert got["variant_mean"].item() == pytest.approx(a.mean(), abs=1e-12)
                        assert got["dz"].item() == pytest.approx(d.mean() / d.std(ddof=1))
                        pt = scipy.stats.ttest_rel(a, b).pvalue
                        assert got["p_value"].item() == pytest.approx(pt, rel=1e-9)
                        assert got["p_wilcoxon"].item() == pytest.approx(
                            scipy.stats.wilcoxon(a, b).pvalue, rel=1e-9)
                        lo, hi = stats.bootstrap_ci(d)  # the one owner of the CI
                        assert (got["ci_low"].item(), got["ci_high"].item()) == (lo, hi)
                        p.append(pt)
                    adj = hand_holm(p)
                    for layer, padj in zip(LAYERS, adj, strict=True):
                        got = table.sel(model=model, variant=variant, metric=metric,
                                        layer=layer).sel({"method": method})
                        assert got["p_holm"].item() == pytest.approx(padj, rel=1e-9)
                        want = hand_effect(got["delta"].item(), padj, metric)
                        assert got["effect"].item() == want
                        seen.add(want)
    assert seen == {-1, 0, 1}
    assert table["effect"].dtype == np.int8
    assert table["effect"].attrs["flag_meanings"] == "destroy preserve enhance"
    # the planted shifts: vitA/full enhances everywhere, kl (lower is better) by a negative Δ
    full_a = table.sel(model="vitA", variant="full")
    assert (full_a["effect"] == 1).all()
    assert (full_a["delta"].sel(metric="kl") < 0).all()
    # vitB/full destroys at its last layer (kl rises), preserves elsewhere on cls
    cls_b = table.sel(model="vitB", variant="full").sel({"method": "cls"})
    assert cls_b["effect"].sel(layer=2).values.tolist() == [-1, -1, -1]
    assert cls_b["delta"].sel(metric="kl", layer=2).item() > 0
    assert (cls_b["effect"].sel(layer=[0, 1]) == 0).all()


@pytest.mark.parametrize(("family", "borderline"), [
    (("variant", "layer"), 1),  # vitA/full's tiny p take the top ranks: its multiplier stays 3
    (("method", "layer"), 0),
    ("all", 0),
])
def test_holm_family_changes_p_holm_as_hand_computed(scores, table, family, borderline):
    ds = shift_table(scores, metrics=METRICS3, styles=SHIFT_STYLES, holm_family=family)
    dims = ["model", "variant", "method", "metric", "layer"]
    fam = dims if family == "all" else list(family)
    assert ds.attrs["holm_family"] == fam
    assert " × ".join(fam) in ds.attrs["holm_family_text"]
    p = ds["p_value"].transpose(*dims)
    np.testing.assert_array_equal(p.values, table["p_value"].transpose(*dims).values)
    other = [d for d in dims if d not in fam]
    stacked = p.stack(group=other or ["model"]) if other else None
    want = xr.full_like(p, np.nan)
    if other:
        for g in stacked["group"].values:
            sel = dict(zip(other, g if isinstance(g, tuple) else (g,), strict=True))
            block = p.sel(sel)
            want.loc[sel] = hand_holm(block.values.ravel()).reshape(block.shape)
    else:
        want[:] = hand_holm(p.values.ravel()).reshape(p.shape)
    np.testing.assert_allclose(ds["p_holm"].transpose(*dims).values, want.values, rtol=1e-9)
    assert not np.allclose(ds["p_holm"].values, table["p_holm"].values)
    # the borderline cell (raw p 0.015): enhance when its family is only its 3 layers
    at = dict(model="vitA", variant="full_shuffled", metric="coverage", layer=1)
    assert table.sel(at).sel({"method": "rollout"})["effect"].item() == 1
    assert ds.sel(at).sel({"method": "rollout"})["effect"].item() == borderline
    assert ds.attrs["holm_families"]["best"] == [d for d in fam if d != "layer"]


# ------------------------------------------------------------------ beyond control
def test_beyond_control_is_variant_minus_control_per_image(scores, table):
    assert table["control"].values.tolist() == ["full_shuffled", ""]
    assert table.attrs["controls"] == {"full": "full_shuffled"}
    for model in MODELS:
        for method in METHODS:
            for metric in METRICS3:
                p = []
                for layer in LAYERS:
                    v = values(scores, metric, model, "full", method, layer)
                    c = values(scores, metric, model, "full_shuffled", method, layer)
                    r = values(scores, metric, model, "frozen", method, layer)
                    d = (v - r) - (c - r)
                    got = table.sel(model=model, variant="full", metric=metric,
                                    layer=layer).sel({"method": method})
                    assert got["beyond_control_delta"].item() == pytest.approx(d.mean(), abs=1e-12)
                    pt = scipy.stats.ttest_rel(v, c).pvalue
                    assert got["beyond_control_p_value"].item() == pytest.approx(pt, rel=1e-9)
                    lo, hi = stats.bootstrap_ci(v - c)
                    assert got["beyond_control_ci_low"].item() == lo
                    assert got["beyond_control_ci_high"].item() == hi
                    p.append(pt)
                for layer, padj in zip(LAYERS, hand_holm(p), strict=True):
                    got = table.sel(model=model, variant="full", metric=metric,
                                    layer=layer).sel({"method": method})
                    assert got["beyond_control_p_holm"].item() == pytest.approx(padj, rel=1e-9)
                    assert got["beyond_control_effect"].item() == hand_effect(
                        got["beyond_control_delta"].item(), padj, metric)
    none = table.sel(variant="full_shuffled")
    assert (none["beyond_control_n"] == 0).all() and none["beyond_control_delta"].isnull().all()
    # vitA's style-trained shift survives its control on cls at layers 1 and 2; at layer 0
    # (+0.05) it is within the control's noise (sd 0.03 on 6 images)
    got = table.sel(model="vitA", variant="full").sel({"method": "cls"})
    assert got["beyond_control_effect"].transpose("metric", "layer").values.tolist() == [
        [0, 1, 1]] * 3


def test_explicit_controls_are_checked(scores):
    with pytest.raises(ShiftError, match="'lora'"):
        shift_table(scores, controls={"lora": "full_shuffled"})
    ds = shift_table(scores, metrics=("coverage",), controls={})
    assert (ds["beyond_control_n"] == 0).all() and ds.attrs["controls"] == {}


# ------------------------------------------------------------------ best layers
def test_best_layers_each_side_its_own_and_gain_over_uniform(scores, table):
    uniform = 0.2 + 0.01 * np.arange(6)
    want_uniform = {"coverage": uniform.mean(), "iou": (uniform * 0.9).mean(),
                    "kl": (1 - uniform).mean()}
    for metric in METRICS3:
        assert table["uniform_mean"].sel(metric=metric).item() == pytest.approx(
            want_uniform[metric], abs=1e-12)
    for model in MODELS:
        for method in METHODS:
            for metric in METRICS3:
                pick = np.argmin if metric == "kl" else np.argmax

                def best(variant, model=model, method=method, metric=metric, pick=pick):
                    means = [values(scores, metric, model, variant, method, la).mean()
                             for la in LAYERS]
                    return LAYERS[int(pick(means))]

                ref_l = best("frozen")
                r = values(scores, metric, model, "frozen", method, ref_l)
                at_r = dict(model=model, metric=metric)
                assert cell(table.sel({"method": method}), "reference_best_layer", **at_r) \
                    == ref_l
                assert cell(table.sel({"method": method}), "reference_best_mean", **at_r) \
                    == pytest.approx(r.mean(), abs=1e-12)
                assert cell(table.sel({"method": method}), "reference_best_gain_over_uniform",
                            **at_r) == pytest.approx(r.mean() - want_uniform[metric], abs=1e-12)
                for variant in ("full", "full_shuffled"):
                    v_l = best(variant)
                    # the one best-layer rule: stats.best_layer on the scores agrees
                    assert stats.best_layer(scores, metric, models=[model], variant=variant,
                                            method=method)["layer"].item() == v_l
                    v = values(scores, metric, model, variant, method, v_l)
                    got = table.sel(model=model, variant=variant, metric=metric).sel(
                        {"method": method})
                    assert got["best_layer"].item() == v_l
                    assert got["best_mean"].item() == pytest.approx(v.mean(), abs=1e-12)
                    assert (got["best_mean_ci_low"].item(), got["best_mean_ci_high"].item()) \
                        == stats.bootstrap_ci(v)
                    assert got["best_delta"].item() == pytest.approx((v - r).mean(), abs=1e-12)
                    assert (got["best_ci_low"].item(), got["best_ci_high"].item()) == \
                        stats.bootstrap_ci(v - r)
                    pt = scipy.stats.ttest_rel(v, r).pvalue
                    assert got["best_p_value"].item() == pytest.approx(pt, rel=1e-9)
                    # default family (layer): no layer dim left here, so each test stands alone
                    assert got["best_p_holm"].item() == pytest.approx(pt, rel=1e-9)
                    assert got["best_effect"].item() == hand_effect(v.mean() - r.mean(), pt,
                                                                    metric)
                    assert got["best_gain_over_uniform"].item() == pytest.approx(
                        v.mean() - want_uniform[metric], abs=1e-12)
                    assert got["best_n"].item() == 6


def test_best_layer_delta_equals_the_per_layer_cell_when_both_best_layers_agree(scores, table):
    got = table.sel(model="vitB", variant="full", metric="coverage").sel({"method": "cls"})
    assert got["best_layer"].item() == 2 and got["reference_best_layer"].item() == 2
    v = values(scores, "coverage", "vitB", "full", "cls", 2)
    r = values(scores, "coverage", "vitB", "frozen", "cls", 2)
    lo, hi = stats.bootstrap_ci(v - r)
    assert (got["best_ci_low"].item(), got["best_ci_high"].item()) == (lo, hi)
    assert got["best_effect"].item() == -1  # destroyed at the best layer
    # both best layers are 2: the best-layer Δ is the per-layer cell of layer 2
    cell_l = table.sel(model="vitB", variant="full", metric="coverage", layer=2).sel(
        {"method": "cls"})
    assert (cell_l["delta"].item(), cell_l["ci_low"].item(), cell_l["ci_high"].item()) == (
        got["best_delta"].item(), lo, hi)
    # the long table the dashboard and the CLI print from says the same
    frame = shift_frame(table, "best").set_index(["model", "variant", "method", "metric"])
    row = frame.loc[("vitB", "full", "cls", "coverage")]
    assert (row["layer"], row["reference_best_layer"], row["effect"]) == (2, 2, -1)
    assert (row["delta"], row["ci_low"], row["ci_high"]) == (got["best_delta"].item(), lo, hi)
    assert len(frame) == 2 * 2 * 2 * 3  # model × variant × method × metric
    assert len(shift_frame(table, "beyond_control")) == 2 * 2 * 3 * 3  # only full has one


# ------------------------------------------------------------------ per style, per feature
def test_per_style_and_per_feature_deltas_at_the_best_layers(scores, table):
    assert table["style"].values.tolist() == ["Q176483", "Q46261"]
    assert table["feature"].values.tolist() == ["Portal", "Rose window", "Arch window"]
    ids = list(SHIFT_IMAGES)
    fnames = scores["image_feature_name"].values.tolist()
    for model in MODELS:
        for variant in ("full", "full_shuffled"):
            for method in METHODS:
                at = dict(model=model, variant=variant)
                got = table.sel(at).sel({"method": method})
                for metric in METRICS3:
                    v_l = int(got["best_layer"].sel(metric=metric))
                    r_l = int(table["reference_best_layer"].sel(model=model, metric=metric)
                              .sel({"method": method}))
                    v = values(scores, metric, model, variant, method, v_l)
                    r = values(scores, metric, model, "frozen", method, r_l)
                    p = []
                    for style in ("Q176483", "Q46261"):
                        keep = np.array([SHIFT_STYLES[i] == style for i in ids])
                        d = v[keep] - r[keep]
                        g = got.sel(metric=metric, style=style)
                        assert g["style_n"].item() == 3
                        assert g["style_delta"].item() == pytest.approx(d.mean(), abs=1e-12)
                        assert (g["style_ci_low"].item(), g["style_ci_high"].item()) == \
                            stats.bootstrap_ci(d)
                        p.append(scipy.stats.ttest_rel(v[keep], r[keep]).pvalue)
                    adj = hand_holm(p)  # family: the styles of one model/variant/method/metric
                    np.testing.assert_allclose(got["style_p_holm"].sel(metric=metric).values,
                                               adj, rtol=1e-9)
                    if metric != "coverage":  # only coverage has a feature-level metric here
                        assert (got["feature_n"].sel(metric=metric) == 0).all()
                        continue
                    fsel = {"model": model, "method": method, "head": -1}
                    fv = scores["feature_coverage"].sel({**fsel, "variant": variant,
                                                         "layer": v_l})
                    fr = scores["feature_coverage"].sel({**fsel, "variant": "frozen",
                                                         "layer": r_l})
                    for feature, n in (("Portal", 3), ("Rose window", 3), ("Arch window", 6)):
                        rows = [k for k, f in enumerate(fnames) if f == feature]
                        d = (fv.values[rows].astype(np.float64)
                             - fr.values[rows].astype(np.float64))
                        g = got.sel(metric=metric, feature=feature)
                        assert g["feature_n"].item() == n
                        assert g["feature_delta"].item() == pytest.approx(d.mean(), abs=1e-12)
                        assert (g["feature_ci_low"].item(), g["feature_ci_high"].item()) == \
                            stats.bootstrap_ci(d)
    assert table.attrs["feature_metrics"] == {"iou": None, "coverage": "feature_coverage",
                                              "kl": None}


def test_a_variant_equal_to_frozen_is_preserved_with_zero_delta(scores):
    same = scores.sel(variant=["frozen", "full"]).copy(deep=True)
    for name in ("coverage", "iou", "kl", "feature_coverage"):
        same[name].loc[{"variant": "full"}] = same[name].sel(variant="frozen").values
    ds = shift_table(same, metrics=("coverage", "kl"))
    assert ds["variant"].values.tolist() == ["full"]
    assert (ds["delta"] == 0).all() and (ds["n"] == 6).all()
    assert ds["p_value"].isnull().all() and (ds["effect"] == 0).all()
    assert (ds["best_effect"] == 0).all() and (ds["best_delta"] == 0).all()


# ------------------------------------------------------------------ accuracy, I/O, CLI
def test_accuracy_from_argument_and_missing_is_nan(scores):
    ds = shift_table(scores, metrics=("coverage",), accuracy={"vitA": {"full": 0.9}})
    assert ds["accuracy"].sel(model="vitA", variant="full").item() == 0.9
    assert np.isnan(ds["accuracy"].sel(model="vitB", variant="full").item())
    ds = shift_table(scores, metrics=("coverage",), accuracy={("vitB", "full_shuffled"): 0.3})
    assert ds["accuracy"].sel(model="vitB", variant="full_shuffled").item() == 0.3


def test_write_open_round_trip_and_refusals(tmp_path, table):
    path = write_shift(table, tmp_path / "t.shift.zarr")
    back = open_shift(path)
    xr.testing.assert_equal(back.drop_attrs(), table.drop_attrs())
    assert back["effect"].dtype == np.int8 and back["n"].dtype == np.int64
    assert back.attrs["holm_family"] == ["layer"]
    assert back.attrs["controls"] == {"full": "full_shuffled"}
    assert back.attrs["stats_n_boot"] == stats.N_BOOT and back.attrs["ci"] == stats.CI
    assert json.loads(json.dumps(table.attrs, default=list)) == back.attrs
    write_shift(table.isel(layer=[0]), path)  # replaces the old table
    assert open_shift(path)["layer"].values.tolist() == [0]
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))
    other = tmp_path / "not_a_table"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(ShiftError, match="not a shift table"):
        write_shift(table, other)
    assert (other / "keep.txt").exists()
    with pytest.raises(FileNotFoundError, match="ssl-attn shift"):
        open_shift(tmp_path / "absent.zarr")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"metrics": ("box_coverage",)}, "not an image-level metric"),
    ({"metrics": ("roc_auc",)}, "no variable 'roc_auc'"),
    ({"percentile": 75}, "no percentile 75"),
    ({"holm_family": ("head",)}, "holm_family"),
    ({"reference": "lora"}, "no variant 'lora'"),
])
def test_bad_arguments_are_clear_errors(scores, kwargs, match):
    with pytest.raises(ShiftError, match=match):
        shift_table(scores, **kwargs)


def test_scores_without_a_fine_tuned_variant_say_what_to_do(scores):
    with pytest.raises(ShiftError, match="extract a fine-tuned variant"):
        shift_table(scores.sel(variant=["frozen"]))


@pytest.fixture
def scored_store(tmp_path, scores):
    layouts = [ModelLayout(m, METHODS, LAYERS, (0,), (2, 2), variants=SHIFT_VARIANTS)
               for m in MODELS]
    provenance = {"vitA": {"frozen": {"weights": "random-init"},
                           "full": {"best_val_acc": 0.875, "strategy": "full",
                                    "labels_kind": "style", "best_epoch": 3},
                           "full_shuffled": {"best_val_acc": 0.25}},
                  "vitB": {"full": {"finetune": json.dumps({"best_val_acc": 0.5})}}}
    store = build_store(tmp_path / "s.zarr", layouts, SHIFT_IMAGES, styles=SHIFT_STYLES,
                        variant_provenance=provenance)
    return store


def test_cli_writes_and_prints_the_shift_table(scored_store, scores, capsys):
    scores.to_zarr(scores_path(scored_store), mode="w")
    assert main(["shift", "--store", str(scored_store), "--metric", "coverage", "kl"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    first = {k: next(i for i, ln in enumerate(lines) if ln.startswith(k))
             for k in ("best layers", "beyond control", "per layer")}
    assert first["best layers"] < first["beyond control"] < first["per layer"]
    assert "enhance" in out and "destroy" in out and str(shift_path(scored_store)) in out
    written = open_shift(shift_path(scored_store))
    assert written["metric"].values.tolist() == ["coverage", "kl"]
    assert written["style"].values.tolist() == ["Q176483", "Q46261"]  # from the store
    acc = written["accuracy"]
    assert acc.sel(model="vitA", variant="full").item() == 0.875
    assert acc.sel(model="vitA", variant="full_shuffled").item() == 0.25
    assert acc.sel(model="vitB", variant="full").item() == 0.5
    assert np.isnan(acc.sel(model="vitB", variant="full_shuffled").item())
    direct = shift_table(open_scores(scores_path(scored_store)), metrics=("coverage", "kl"),
                         styles=SHIFT_STYLES)
    np.testing.assert_array_equal(written["p_holm"].values, direct["p_holm"].values)
    np.testing.assert_array_equal(written["style_delta"].values, direct["style_delta"].values)
    # a wider family, from the command line, is recorded
    assert main(["shift", "--store", str(scored_store), "--family", "variant", "layer",
                 "--all", "-o", str(scored_store.parent / "wide.zarr")]) == 0
    assert "per layer (all: 48 of 48 cells)" in capsys.readouterr().out  # 2·2·2·2·3
    assert open_shift(scored_store.parent / "wide.zarr").attrs["holm_family"] == [
        "variant", "layer"]


def test_cli_without_scores_is_a_one_line_error(scored_store, capsys):
    assert main(["shift", "--store", str(scored_store)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ssl-attn shift: error:" in err and "ssl-attn score --store" in err
    assert str(scores_path(scored_store)) in err
    assert not shift_path(scored_store).exists()


def test_shift_module_imports_no_torch():
    code = ("import sys, ssl_attn.finetune.shift, ssl_attn.finetune as f; f.shift_table; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shift_reads_what_score_writes_and_agrees_with_stats_paired_differences(tmp_path):
    """End to end on a real scoring run: the per-layer table equals
    ``stats.paired_differences(..., layers="shared")`` (whose Holm family is the layers)."""
    from ssl_attn.metrics import score

    try:
        from _store_builder import TEST_MODELS, build_dataset
    except ModuleNotFoundError:
        from tests._store_builder import TEST_MODELS, build_dataset
    data = build_dataset(tmp_path / "data")
    store = build_store(tmp_path / "s.zarr", TEST_MODELS[:1], dataset=data)
    scores = score(store, data=data, baselines=False)
    ds = shift_table(scores, store=store)
    assert np.isnan(ds["uniform_mean"]).all()  # not scored: no gain over uniform
    assert ds["model"].values.tolist() == ["vit"] and ds["variant"].values.tolist() == ["full"]
    assert ds["feature"].size > 0 and ds["style"].values.tolist() == ["Q46261"]
    for method in TEST_MODELS[0].methods:
        for metric in ("iou", "coverage"):
            ref = stats.paired_differences(scores, metric, "vit", "vit", variant_a="full",
                                           variant_b="frozen", method_a=method,
                                           method_b=method, layers="shared")
            got = ds.sel(model="vit", variant="full", metric=metric).sel({"method": method})
            np.testing.assert_allclose(got["delta"].values, ref["mean_diff"], atol=1e-12)
            np.testing.assert_array_equal(got["ci_low"].values, ref["ci_lo"])
            np.testing.assert_array_equal(got["ci_high"].values, ref["ci_hi"])
            np.testing.assert_allclose(got["p_value"].values, ref["p_t"], rtol=1e-9)
            np.testing.assert_allclose(got["p_holm"].values, ref["p_holm"], rtol=1e-9)
            np.testing.assert_allclose(got["dz"].values, ref["d_z"], rtol=1e-9)
