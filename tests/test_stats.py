"""Statistics: hand-computed values and equality with scipy (ssl_attn.stats)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats as sps

from ssl_attn.stats import (
    best_layer,
    bootstrap_ci,
    cohens_dz,
    holm,
    layer_curve,
    paired_differences,
    paired_ttest,
    wilcoxon,
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
