"""Paired tests, effect size and Holm correction on plain arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths; got {a.size} and {b.size}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def paired_ttest(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired t-test of ``a − b`` (two-sided): ``(t, p)`` from ``scipy.stats.ttest_rel``."""
    from scipy import stats

    a, b = _paired(a, b)
    if a.size < 2:
        return (np.nan, np.nan)
    res = stats.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank test of ``a − b`` (two-sided, zero differences dropped —
    scipy's default ``zero_method="wilcox"``): ``(statistic, p)``; NaN when all differences
    are zero or fewer than 2 pairs remain."""
    from scipy import stats

    a, b = _paired(a, b)
    if a.size < 2 or np.all(a == b):
        return (np.nan, np.nan)
    res = stats.wilcoxon(a, b)
    return float(res.statistic), float(res.pvalue)


def cohens_dz(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d_z for paired samples: ``mean(a − b) / std(a − b, ddof=1)``."""
    a, b = _paired(a, b)
    if a.size < 2:
        return np.nan
    d = a - b
    sd = d.std(ddof=1)
    return float(d.mean() / sd) if sd > 0 else np.nan


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order.

    Hand-written (statsmodels is not a dependency): with the ``m`` p-values sorted ascending,
    ``adj_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j))``. NaN entries are left out of the
    family and stay NaN.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# ------------------------------------------------------------------ tables on a scores Dataset
