"""Statistics: hand-computed values and equality with scipy (ssl_attn.stats)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sps

from ssl_attn import stats
from ssl_attn.stats import (
    best_from_values,
    best_layer,
    best_row,
    bootstrap_ci,
    bootstrap_settings,
    cohens_dz,
    cohens_dz_rows,
    curve_from_values,
    holm,
    layer_curve,
    mean_ci,
    paired_differences,
    paired_ttest,
    paired_ttest_rows,
    wilcoxon,
    wilcoxon_rows,
)

A = np.array([0.61, 0.42, 0.55, 0.73, 0.38, 0.66, 0.59, 0.47, 0.71, 0.52])
B = np.array([0.50, 0.40, 0.49, 0.60, 0.41, 0.52, 0.55, 0.40, 0.58, 0.50])


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    # 0.5*2 = 1.0; 0.9*1 = 0.9 is raised to the running max 1.0; NaN stays out of the family
    np.testing.assert_allclose(holm([0.5, np.nan, 0.9]), [1.0, np.nan, 1.0])
    np.testing.assert_allclose(holm([0.2, np.nan, 0.01]), [0.2, np.nan, 0.02])


def test_paired_tests_equal_scipy():
    t, p = paired_ttest(A, B)
    ref = sps.ttest_rel(A, B)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    w, pw = wilcoxon(A, B)
    ref = sps.wilcoxon(A, B)
    assert w == pytest.approx(ref.statistic) and pw == pytest.approx(ref.pvalue)
    # NaN pairs are dropped on both sides.
    t2, _ = paired_ttest(np.append(A, np.nan), np.append(B, 0.3))
    assert t2 == pytest.approx(t)


def test_cohens_dz_hand_computed():
    assert cohens_dz([3.0, 5.0, 7.0], [2.0, 3.0, 4.0]) == pytest.approx(2.0)  # d=[1,2,3]


def test_row_wise_paired_stats_hand_computed():
    # Row 0: d = [1, 2, 3]: t = 2 / (1/sqrt(3)); df 2: p = 1 - t/sqrt(2 + t^2) = 1 - sqrt(12/14);
    # Wilcoxon exact: W = min(R+, R-) = 0, p = 2 * P(W <= 0) = 2/8; d_z = 2 / 1.
    # Row 1: the same pairs among NaN holes (on either side). Row 2: one pair. Row 3: all d = 0.
    a = np.array([[3.0, 5.0, 7.0, 1.0], [np.nan, 3.0, 5.0, 7.0], [1.0, np.nan, np.nan, np.nan],
                  [0.5, 0.5, 0.5, 0.5]])
    b = np.array([[2.0, 3.0, 4.0, np.nan], [0.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0],
                  [0.5, 0.5, 0.5, 0.5]])
    t, p = paired_ttest_rows(a, b)
    np.testing.assert_allclose(t[:2], 2 * np.sqrt(3), rtol=1e-12)
    np.testing.assert_allclose(p[:2], 1 - np.sqrt(12 / 14), rtol=1e-12)
    w, pw = wilcoxon_rows(a, b)
    assert w[:2].tolist() == [0.0, 0.0] and pw[:2].tolist() == [0.25, 0.25]
    np.testing.assert_allclose(cohens_dz_rows(a, b)[:2], 2.0, rtol=1e-12)
    for out in (t, p, w, pw, cohens_dz_rows(a, b)):
        assert np.isnan(out[2:]).all()  # one pair; no spread / only zero differences
    # 1-D input is one row; unequal shapes are refused.
    assert paired_ttest_rows(a[0], b[0])[1].tolist() == [p[0]]
    with pytest.raises(ValueError, match="equal shapes"):
        wilcoxon_rows(a, b[:, :3])


def _paired_stress_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paired rows of 0–139 finite pairs scattered among NaN / inf holes (on either side),
    several kinds per size: plain, 2-decimal (ties), half zero differences, one zero, all zero,
    all-equal differences, tied |d| of both signs, a huge offset. Sizes cover every method
    scipy's Wilcoxon picks (exact n <= 50 without zeros/ties, permutation n <= 13, normal)."""
    width = 160
    rows_a, rows_b = [], []
    for n in (0, 1, 2, 3, 5, 9, 14, 20, 50, 51, 139):
        for kind in range(8):
            a = np.round(rng.uniform(0, 1, n), 2 if kind in (1, 2) else 12)
            b = np.round(rng.uniform(0, 1, n), 2 if kind in (1, 2) else 12)
            if kind == 2:
                b[: n // 2] = a[: n // 2]
            elif kind == 3:
                b = a.copy()
            elif kind == 4:
                b = a - 0.1
            elif kind == 5:
                b = a + rng.choice([-0.25, 0.25, 0.5], n)
            elif kind == 6 and n:
                b[0] = a[0]
            elif kind == 7:
                a, b = a * 1e6 + 1e9, b * 1e6 + 1e9
            ra, rb = np.full(width, np.nan), np.full(width, np.nan)
            at = np.sort(rng.choice(width, size=n, replace=False))
            ra[at], rb[at] = a, b
            holes = np.setdiff1d(np.arange(width), at)[:3]  # one side only: not a pair
            ra[holes[:1]], rb[holes[1:2]], ra[holes[2:]] = 0.3, 0.2, np.inf
            rows_a.append(ra)
            rows_b.append(rb)
    return np.array(rows_a), np.array(rows_b)


def test_row_wise_paired_stats_equal_the_scalar_functions_row_by_row():
    """All rows in one call (rows of equal size but different Wilcoxon methods side by side)
    give the scalar functions' numbers bit for bit."""
    a, b = _paired_stress_rows(np.random.default_rng(7))
    for rows_fn, scalar in ((paired_ttest_rows, paired_ttest), (wilcoxon_rows, wilcoxon),
                            (cohens_dz_rows, cohens_dz)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero spread: scipy's inf/NaN
            got = rows_fn(a, b)
            want = np.array([scalar(x, y) for x, y in zip(a, b, strict=True)])
        got = np.column_stack(got) if isinstance(got, tuple) else got
        assert got.shape == want.shape
        assert np.array_equal(got, want, equal_nan=True), rows_fn.__name__
        assert np.isfinite(want).reshape(len(a), -1).all(axis=1).sum() > 50  # not all NaN


def test_bootstrap_ci_seeded_and_sensible():
    lo, hi = bootstrap_ci(A, n_boot=4000, seed=1)
    assert (lo, hi) == bootstrap_ci(A, n_boot=4000, seed=1)
    assert lo < A.mean() < hi
    assert (lo, hi) != bootstrap_ci(A, n_boot=4000, seed=2)
    # Constant data: the CI collapses onto the value.
    assert bootstrap_ci(np.full(5, 0.3)) == pytest.approx((0.3, 0.3))
    assert np.isnan(bootstrap_ci([1.0])[0])


def _scores() -> xr.Dataset:
    """A hand-built scores Dataset: model m1 is best at layer 1, m2 at layer 0."""
    rng = np.random.default_rng(0)
    base = {"m1": [0.2, 0.6, 0.4], "m2": [0.5, 0.3, 0.1]}
    vals = np.full((2, 1, 1, 3, 1, 30), np.nan)
    for i, m in enumerate(base):
        for layer, mu in enumerate(base[m]):
            vals[i, 0, 0, layer, 0] = mu + 0.05 * rng.standard_normal(30)
    return xr.Dataset(
        {"iou": (("model", "variant", "method", "layer", "head", "image_id", "percentile"),
                 vals[..., None]),
         "kl": (("model", "variant", "method", "layer", "head", "image_id"), -vals)},
        coords={"model": ["m1", "m2"], "variant": ["frozen"], "method": ["cls"],
                "layer": [0, 1, 2], "head": [-1], "image_id": [f"i{k}" for k in range(30)],
                "percentile": [90.0]})


def test_layer_curve_and_best_layer():
    s = _scores()
    curve = layer_curve(s, "iou", "m1", n_boot=500)
    assert curve["layer"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(curve["mean"], s.iou.sel(model="m1").squeeze().mean("image_id"))
    assert (curve["ci_lo"] < curve["mean"]).all() and (curve["mean"] < curve["ci_hi"]).all()
    best = best_layer(s, "iou", n_boot=500).set_index("model")
    assert best.loc["m1", "layer"] == 1 and best.loc["m2", "layer"] == 0
    # KL is lower-is-better: the best layer is the smallest mean.
    best_kl = best_layer(s, "kl", n_boot=500).set_index("model")
    assert best_kl.loc["m1", "layer"] == 1


def test_paired_differences_family_and_holm():
    s = _scores()
    df = paired_differences(s, "iou", "m1", "m2", layers="shared", n_boot=500)
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    a = s.iou.sel(model="m1").squeeze()
    b = s.iou.sel(model="m2").squeeze()
    for _, row in df.iterrows():
        ref = sps.ttest_rel(a.sel(layer=row.layer_a), b.sel(layer=row.layer_b))
        assert row.p_t == pytest.approx(ref.pvalue)
    np.testing.assert_allclose(df["p_holm"], holm(df["p_t"]))
    best = paired_differences(s, "iou", "m1", "m2", n_boot=500)
    assert (best.layer_a.item(), best.layer_b.item()) == (1, 0)
    with pytest.raises(KeyError, match="no model 'nope'"):
        layer_curve(s, "iou", "nope")


def test_one_documented_bootstrap_choice():
    assert (stats.N_BOOT, stats.SEED, stats.CI) == (10_000, 0, 0.95)
    assert bootstrap_settings() == {"n_boot": 10_000, "seed": 0, "ci": 0.95,
                                    "bootstrap": "percentile"}
    # bootstrap_ci's defaults are the module constants.
    assert bootstrap_ci(A) == bootstrap_ci(A, n_boot=stats.N_BOOT, seed=stats.SEED, ci=stats.CI)
    s = _scores()
    for df in (layer_curve(s, "iou", "m1", n_boot=500), best_layer(s, "iou", n_boot=500),
               paired_differences(s, "iou", "m1", "m2", n_boot=500),
               curve_from_values(np.ones((2, 3)), [0, 1], n_boot=500)):
        assert df.attrs == bootstrap_settings(n_boot=500)
    assert layer_curve(s, "iou", "m1").attrs == bootstrap_settings()


def _rows(rng: np.random.Generator) -> list[np.ndarray]:
    """Rows that stress the exact fast path: sizes around numpy's pairwise-sum block (128),
    constants (all resampled means tie), few distinct values, a huge offset, tiny values,
    float32-rounded values with NaN holes."""
    out = []
    for n in (2, 3, 5, 8, 17, 128, 129, 139, 300):
        out += [rng.random(n), np.full(n, 1 / 196), rng.integers(0, 3, n).astype(float),
                1e6 + 1e-6 * rng.random(n), 1e-300 * rng.standard_normal(n),
                -50 + 100 * rng.random(n)]
        x = rng.random(n).astype(np.float32).astype(float)
        x[rng.random(n) < 0.2] = np.nan
        out.append(x)
    return [*out, np.array([np.nan, 0.4, np.nan]), np.full(4, np.nan)]


@pytest.mark.parametrize("n_boot,ci,seed", [(stats.N_BOOT, stats.CI, stats.SEED),
                                            (1000, 0.9, 5), (37, 0.5, 1), (3, 0.9, 2)])
def test_mean_ci_equals_bootstrap_ci_row_by_row(n_boot, ci, seed):
    """The fast path gives bootstrap_ci's numbers bit for bit, and the plain float64 mean."""
    rows = _rows(np.random.default_rng(n_boot))
    for x in rows:
        mean, lo, hi, n = mean_ci(x, n_boot=n_boot, ci=ci, seed=seed)
        finite = x[np.isfinite(x)]
        assert n.tolist() == [finite.size]
        assert np.array_equal(mean, [finite.mean() if finite.size else np.nan], equal_nan=True)
        want = bootstrap_ci(x, n_boot=n_boot, ci=ci, seed=seed)
        assert np.array_equal([lo[0], hi[0]], want, equal_nan=True), (x, n_boot, ci)
    # Many rows at once (equal and different finite counts) = row by row.
    block = np.full((len(rows), 300), np.nan)
    for i, x in enumerate(rows):
        block[i, : x.size] = x
    mean, lo, hi, n = mean_ci(block, n_boot=n_boot, ci=ci, seed=seed)
    want = np.array([bootstrap_ci(x, n_boot=n_boot, ci=ci, seed=seed) for x in rows])
    assert np.array_equal(np.c_[lo, hi], want, equal_nan=True)


def test_curve_from_values_and_best_row_are_layer_curve_and_best_layer():
    s = _scores()
    for model in ("m1", "m2"):
        values = s.iou.sel(model=model, percentile=90.0).squeeze(["variant", "method", "head"])
        core = curve_from_values(values.values, [0, 1, 2], n_boot=500)
        curve = layer_curve(s, "iou", model, n_boot=500)
        pd.testing.assert_frame_equal(core, curve[["layer", "mean", "ci_lo", "ci_hi", "n"]])
        for metric, way in (("iou", "higher"), ("kl", "lower")):
            v = s[metric].sel(model=model).squeeze(drop=True)
            v = v.sel(percentile=90.0) if "percentile" in v.dims else v
            best = best_from_values(v.transpose("layer", ...).values, [0, 1, 2], way, n_boot=500)
            row = best_row(curve_from_values(v.transpose("layer", ...).values, [0, 1, 2],
                                             n_boot=500), way)
            pd.testing.assert_series_equal(best, row, check_names=False)
            ref = best_layer(s, metric, models=[model], n_boot=500).iloc[0]
            assert best.to_dict() == {k: ref[k] for k in best.index}
    # Layers without values are left out; a lone value has a mean but no CI.
    vals = np.array([[np.nan, np.nan], [0.5, np.nan], [0.1, 0.3]])
    curve = curve_from_values(vals, [3, 4, 5])
    assert curve["layer"].tolist() == [4, 5] and curve["n"].tolist() == [1, 2]
    assert curve["mean"].iloc[0] == 0.5 and np.isnan(curve["ci_lo"].iloc[0])
    assert best_from_values(vals, [3, 4, 5])["layer"] == 4
    assert best_from_values(np.full((2, 3), np.nan), [0, 1]) is None
    with pytest.raises(ValueError, match="direction"):
        best_row(curve, "up")
