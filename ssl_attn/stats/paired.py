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


# ------------------------------------------------------------------ many rows at once (fast path)
def _paired_groups(a: np.ndarray, b: np.ndarray) -> tuple[int, dict[int, tuple]]:
    """``a``, ``b`` as paired rows: the number of rows and, per count ``n ≥ 2`` of finite
    pairs, ``(rows, x, y)``: the rows with that count and their finite pairs ``(len(rows), n)``
    in order — each row exactly the arrays the scalar functions test (:func:`_paired`)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired rows need equal shapes; got {a.shape} and {b.shape}")
    a = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(a.shape[0], int(np.prod(a.shape[1:])))
    b = b.reshape(a.shape)
    ok = np.isfinite(a) & np.isfinite(b)
    count = ok.sum(axis=1)
    groups = {}
    for n in np.unique(count).tolist():
        if n >= 2:
            rows = np.flatnonzero(count == n)
            sel = ok[rows]
            groups[n] = (rows, a[rows][sel].reshape(rows.size, n),
                         b[rows][sel].reshape(rows.size, n))
    return a.shape[0], groups


def paired_ttest_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`paired_ttest` of every row of ``a − b`` at once: float64 ``(t, p)``, each
    ``(rows,)``.

    ``a``, ``b``: equal shapes ``(rows, ...)`` (trailing dims flattened per row; 1-D is one
    row), NaN allowed: each row keeps its own pairs where both sides are finite, and rows with
    fewer than 2 give NaN, as the scalar function. Rows with equal numbers of pairs go through
    one ``scipy.stats.ttest_rel(axis=-1)`` call on their compacted pairs, which computes per
    row what the scalar call does (equal bit for bit; tests/test_stats.py checks it).
    """
    from scipy import stats

    rows, groups = _paired_groups(a, b)
    t, p = np.full(rows, np.nan), np.full(rows, np.nan)
    for idx, x, y in groups.values():
        res = stats.ttest_rel(x, y, axis=-1)
        t[idx], p[idx] = res.statistic, res.pvalue
    return t, p


def wilcoxon_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`wilcoxon` of every row of ``a − b`` at once: float64 ``(statistic, p)``, each
    ``(rows,)``.

    ``a``, ``b`` as in :func:`paired_ttest_rows`; rows with fewer than 2 pairs or only zero
    differences give NaN, as the scalar function. ``scipy.stats.wilcoxon`` (``method="auto"``)
    picks its method from the whole array it is given — exact when ``n ≤ 50`` and no
    difference is zero or tied in absolute value, else a permutation test when ``n ≤ 13``,
    else the normal approximation — so rows are batched by their number of pairs and, for
    ``n ≤ 50``, by whether they have zeros or ties: each batch makes the choice each of its rows
    makes alone, and the results equal the scalar calls bit for bit (tests/test_stats.py).
    """
    from scipy import stats

    rows, groups = _paired_groups(a, b)
    w, p = np.full(rows, np.nan), np.full(rows, np.nan)
    for n, (idx, x, y) in groups.items():
        d = x - y
        testable = np.any(d != 0, axis=1)
        if n <= 50:  # the exact test only for rows without zeros or ties (scipy's rule)
            ad = np.sort(np.abs(d), axis=1)
            plain = np.all(d != 0, axis=1) & np.all(ad[:, 1:] != ad[:, :-1], axis=1)
            batches = (testable & plain, testable & ~plain)
        else:
            batches = (testable,)
        for sel in batches:
            if sel.any():
                res = stats.wilcoxon(x[sel], y[sel], axis=-1)
                w[idx[sel]], p[idx[sel]] = res.statistic, res.pvalue
    return w, p


def cohens_dz_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`cohens_dz` of every row of ``a − b`` at once: float64 ``(rows,)``.

    ``a``, ``b`` as in :func:`paired_ttest_rows`; NaN for rows with fewer than 2 pairs or
    zero spread, as the scalar function (equal bit for bit)."""
    rows, groups = _paired_groups(a, b)
    out = np.full(rows, np.nan)
    for idx, x, y in groups.values():
        d = x - y
        sd = d.std(axis=1, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[idx] = np.where(sd > 0, d.mean(axis=1) / sd, np.nan)
    return out
