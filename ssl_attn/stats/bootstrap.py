"""Bootstrap: the one documented choice of resamples, seed and level, the percentile CI of
one sample (:func:`bootstrap_ci`) and of many rows at once (:func:`mean_ci`, equal bit for bit).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

N_BOOT = 10_000
#: Seed of ``numpy.random.default_rng`` for every CI's resampling indices.
SEED = 0
#: Two-sided confidence level of every CI.
CI = 0.95

def bootstrap_settings(*, n_boot: int = N_BOOT, seed: int = SEED,
                       ci: float = CI) -> dict[str, Any]:
    """The bootstrap settings as recorded in a result's ``DataFrame.attrs``:
    ``{"n_boot", "seed", "ci", "bootstrap": "percentile"}`` (defaults: the module constants)."""
    return {"n_boot": int(n_boot), "seed": int(seed), "ci": float(ci), "bootstrap": "percentile"}


def _check_ci(ci: float) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci}")


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (default the mean) of 1-D ``values``.

    Resamples with replacement ``n_boot`` times (one ``(n_boot, n)`` index draw from
    ``numpy.random.default_rng(seed)``, vectorised: ``statistic`` is called once with
    ``axis=1``). NaN are dropped; fewer than 2 values give ``(nan, nan)``. Returns
    ``(lo, hi)`` at quantiles ``(1 − ci)/2`` and ``(1 + ci)/2`` (``np.quantile``, linear).
    This is the definition; :func:`mean_ci` computes the same numbers for many rows at once.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (np.nan, np.nan)
    _check_ci(ci)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    stats = statistic(x[idx], axis=1)
    lo, hi = np.quantile(stats, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------ many CIs at once (fast path)
@functools.lru_cache(maxsize=8)
def _resampling(seed: int, n: int, n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """The draw of :func:`bootstrap_ci` for ``n`` values — indices ``(n_boot, n)`` int64 — and
    how often each value is drawn per resample, ``counts (n_boot, n)`` float64 (read-only,
    cached: every sample of size ``n`` shares them)."""
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    flat = (idx + (np.arange(n_boot) * n)[:, None]).reshape(-1)
    counts = np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)
    idx.setflags(write=False)
    counts.setflags(write=False)
    return idx, counts


_EPS = float(np.finfo(np.float64).eps)


def _quantile_ranks(q: np.ndarray, n_boot: int) -> list[np.ndarray]:
    """Per quantile, the sorted ranks ``np.quantile`` (linear) may read among ``n_boot``
    values: ``floor(q·(n_boot − 1)) − 1 … + 2`` (a rank of slack each side of the two it
    interpolates), clipped; groups that overlap are merged."""
    groups: list[np.ndarray] = []
    for base in np.floor(np.asarray(q) * (n_boot - 1)).astype(np.int64).tolist():
        r = np.unique(np.clip(np.arange(base - 1, base + 3), 0, n_boot - 1))
        if groups and r[0] <= groups[-1][-1] + 1:
            groups[-1] = np.union1d(groups[-1], r)
        else:
            groups.append(r)
    return groups


def _exact_quantiles(xs: np.ndarray, approx: np.ndarray, idx: np.ndarray, q: np.ndarray,
                     groups: list[np.ndarray]) -> np.ndarray:
    """Per row ``k``: ``np.quantile(xs[k][idx].mean(axis=1), q)`` — bit for bit — from
    ``approx[k]``, the resampled means up to a bounded rounding error, summing exactly only the
    few resamples whose rank can matter. ``xs (R, n)``, ``approx (R, n_boot)``; returns
    ``(len(q), R)``.

    Why exact: ``approx[k, i] = (counts[i] · xs[k]) / n`` (a BLAS product) and the exact
    ``e[i] = xs[k][idx[i]].mean()`` sum the same ``n`` terms in different orders; each sum is
    within ``γ_n Σ|terms| ≤ n·u·n·max|x|`` of the true one, so ``|approx − e| ≤ δ = 4 (n + 2)
    · eps · max|x|`` (eps = 2u: a 4× margin, the divisions' rounding included). For the ranks
    ``r`` of a group (:func:`_quantile_ranks`) whose approximate order statistics lie in
    ``[a_lo, a_hi]``: resamples with ``approx < a_lo − 2δ`` have ``e < a_(r) − δ ≤ e_(r)``,
    those with ``approx > a_hi + 2δ`` have ``e > e_(r)``, so ``e_(r)`` is the ``(r − L)``-th
    smallest exact mean inside the window ``[a_lo − 2δ, a_hi + 2δ]`` (``L`` resamples lie
    below it). ``np.quantile`` (linear) reads only these ranks: they are filled exactly into a
    sorted stand-in of length ``n_boot``, which it reads identically. Constant rows need one
    exact mean (all are equal); rows whose window holds over a quarter of the resamples (many
    ties, a huge offset) take the definition directly.
    """
    n_rows = xs.shape[0]
    n_boot, n = idx.shape
    ranks = np.concatenate(groups)
    values = np.zeros((n_rows, ranks.size))
    delta = 4.0 * (n + 2) * _EPS * np.max(np.abs(xs), axis=1)
    # A constant row: every resample sums the same n equal terms by the same pairwise tree, so
    # every resampled mean is bit-identical to the first one (and so is every quantile).
    const = np.all(xs == xs[:, :1], axis=1)
    direct = ~(np.isfinite(delta) & np.all(np.isfinite(approx), axis=1)) & ~const
    part = np.sort(approx, axis=1)  # a full sort beats np.partition at these two edges
    pos = 0
    for g in groups:
        w0 = (part[:, g[0]] - 2 * delta)[:, None]
        w1 = (part[:, g[-1]] + 2 * delta)[:, None]
        inside = (approx >= w0) & (approx <= w1)
        n_in = inside.sum(axis=1)
        below = n_boot - n_in - (approx > w1).sum(axis=1)
        direct |= (n_in > n_boot // 4) & ~const
        inside[direct | const] = False
        rows, cols = np.nonzero(inside)  # row-major: grouped by row
        exact = xs[rows[:, None], idx[cols]].mean(axis=1)  # row-wise, as bootstrap_ci sums
        order = np.lexsort((exact, rows))
        start = np.concatenate([[0], np.cumsum(n_in * ~(direct | const))[:-1]])
        ok = np.flatnonzero(~(direct | const))
        take = start[ok, None] + (g[None, :] - below[ok, None])
        values[ok, pos:pos + g.size] = exact[order][take]
        pos += g.size
    for k in np.flatnonzero(const).tolist():
        values[k] = xs[k][idx[:1]].mean(axis=1)[0]
    lengths = np.diff(np.concatenate([[0], ranks[1:], [n_boot]]))
    out = np.quantile(np.repeat(values, lengths, axis=1), q, axis=1)
    for k in np.flatnonzero(direct).tolist():  # the definition, for the rare fallback rows
        out[:, k] = np.quantile(xs[k][idx].mean(axis=1), q)
    return out


def _finite_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, tuple]]:
    """``values`` as float64 rows ``(rows, m)``; per row the finite count; and per count
    ``n > 0`` the rows with it and their finite values ``(len(rows), n)`` in order."""
    x = np.asarray(values, dtype=np.float64)
    x = x.reshape(1, -1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)
    ok = np.isfinite(x)
    count = ok.sum(axis=1)
    by_n = {}
    for n in np.unique(count).tolist():
        if n > 0:
            rows = np.flatnonzero(count == n)
            by_n[n] = (rows, x[rows][ok[rows]].reshape(rows.size, n))
    return x, count, by_n


def _layer_means(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values (rows, ...)``: the float64 mean of the finite values (NaN when
    none) and their count — the means of :func:`mean_ci`, without the bootstrap."""
    x, count, by_n = _finite_rows(values)
    mean = np.full(x.shape[0], np.nan)
    for rows, xs in by_n.values():
        mean[rows] = xs.mean(axis=1)
    return mean, count


def mean_ci(
    values: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and bootstrap CI of every row of ``values`` at once (the dashboard's fast path).

    ``values``: ``(rows, ...)`` (trailing dims flattened per row; 1-D is one row), NaN allowed.
    Returns float64 ``mean, lo, hi`` and int ``n`` (finite values), each ``(rows,)``: per row
    ``mean`` is the float64 mean of the finite values (NaN when none) and ``(lo, hi)`` equals
    ``bootstrap_ci(row, n_boot=n_boot, ci=ci, seed=seed)`` exactly (NaN when ``n < 2``).
    Rows of equal ``n`` share one cached index draw; their resampled means come from one matrix
    product, and only the few resamples whose rank can matter are summed exactly
    (:func:`_exact_quantiles`), which makes it ~30× faster than the row-by-row loop.
    """
    _check_ci(ci)
    x, count, by_n = _finite_rows(values)
    mean, lo, hi = (np.full(x.shape[0], np.nan) for _ in range(3))
    q = np.array([(1 - ci) / 2, (1 + ci) / 2])
    groups = _quantile_ranks(q, int(n_boot))
    for n, (rows, xs) in by_n.items():  # xs: the rows' finite values, in order
        mean[rows] = xs.mean(axis=1)  # as _layer_means
        if n < 2:
            continue
        idx, counts = _resampling(int(seed), n, int(n_boot))
        approx = (xs @ counts.T) / n  # (rows, n_boot) resampled means up to rounding
        lo[rows], hi[rows] = _exact_quantiles(xs, approx, idx, q, groups)
    return mean, lo, hi, count


# ------------------------------------------------------------------ tables: numpy core
