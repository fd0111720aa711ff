"""Statistics for alignment scores: bootstrap CIs, paired tests, effect sizes, Holm.

Plain functions work on numpy arrays; the table helpers (:func:`best_layer`,
:func:`layer_curve`, :func:`paired_differences`) take the scores Dataset of
:func:`ssl_attn.metrics.score` and return pandas DataFrames ready for plotting. Their numpy
core — :func:`mean_ci` (mean and bootstrap CI of many rows at once), :func:`curve_from_values`
(a ``(layer, image)`` array → the per-layer table) and :func:`best_row` (the best layer of such
a table) — is what the explorer calls on the arrays it reads through the fast raw-Zarr path, so
the notebook and the dashboard show the same numbers from the same code.

Conventions — one documented choice, the default of every function here and recorded with the
results (``DataFrame.attrs``, see :func:`bootstrap_settings`; the scores' root attrs record
:data:`N_BOOT` and :data:`SEED`):

* :data:`N_BOOT` = 10 000 resamples (percentile bootstrap; the CI's Monte-Carlo error is then
  well under 1 % of its width for typical n ≈ 139 images),
* :data:`CI` = 0.95 (two-sided, quantiles 0.025 and 0.975 of the resampled means),
* :data:`SEED` = 0: every CI draws its ``(N_BOOT, n)`` resampling indices from
  ``numpy.random.default_rng(SEED)``, so two samples of the same size share one draw and a
  CI is reproducible from the values alone.

NaN values (images a model did not score) are dropped before any statistic; paired statistics
keep only images where both sides are finite. Means are taken in float64 whatever the stored
dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CI",
    "CURVE_COLUMNS",
    "N_BOOT",
    "SEED",
    "best_from_values",
    "best_layer",
    "best_row",
    "bests_from_values",
    "bootstrap_ci",
    "bootstrap_settings",
    "cohens_dz",
    "curve_from_values",
    "curves_from_values",
    "direction",
    "holm",
    "layer_curve",
    "mean_ci",
    "paired_differences",
    "paired_ttest",
    "wilcoxon",
]

#: Bootstrap resamples of every CI (percentile bootstrap).
N_BOOT = 10_000
#: Seed of ``numpy.random.default_rng`` for every CI's resampling indices.
SEED = 0
#: Two-sided confidence level of every CI.
CI = 0.95

#: Columns of :func:`layer_curve`, :func:`best_layer` (and :func:`curve_from_values` with
#: ``model, method, variant`` left out).
CURVE_COLUMNS = ["model", "method", "variant", "layer", "mean", "ci_lo", "ci_hi", "n"]


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
def _layer_block(values: np.ndarray, layers: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    v = np.asarray(values)
    layers = [int(la) for la in layers]
    if v.ndim < 1 or v.shape[0] != len(layers):
        raise ValueError(f"values have {v.shape[0] if v.ndim else 0} layers along axis 0; got "
                         f"{len(layers)} layer labels")
    return v.reshape(len(layers), -1), layers


def curves_from_values(
    values: Sequence[np.ndarray],
    layers: Sequence[Sequence[int]],
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> list[pd.DataFrame]:
    """:func:`curve_from_values` of many ``(layer, ...)`` arrays (``layers[k]`` labelling
    ``values[k]``) in one :func:`mean_ci` batch — one pass over the shared resampling counts
    instead of one per curve (what the dashboard calls for all its models at once). The
    numbers are those of :func:`curve_from_values` on each array alone."""
    blocks = [_layer_block(v, la) for v, la in zip(values, layers, strict=True)]
    if not blocks:
        return []
    width = max(b.shape[1] for b, _ in blocks)
    stacked = np.full((sum(b.shape[0] for b, _ in blocks), width), np.nan)
    start = 0
    for b, _ in blocks:  # NaN padding: mean_ci drops it, the finite values keep their order
        stacked[start:start + b.shape[0], : b.shape[1]] = b
        start += b.shape[0]
    mean, lo, hi, n = mean_ci(stacked, n_boot=n_boot, ci=ci, seed=seed)
    out, start = [], 0
    for b, la in blocks:
        sl = slice(start, start + b.shape[0])
        start += b.shape[0]
        keep = n[sl] > 0
        df = pd.DataFrame({"layer": np.asarray(la, dtype=np.int64)[keep],
                           "mean": mean[sl][keep], "ci_lo": lo[sl][keep],
                           "ci_hi": hi[sl][keep], "n": n[sl][keep].astype(np.int64)})
        df.attrs = bootstrap_settings(n_boot=n_boot, seed=seed, ci=ci)
        out.append(df)
    return out


def curve_from_values(
    values: np.ndarray,
    layers: Sequence[int],
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per-layer mean and bootstrap CI of a ``(layer, ...)`` array (one model/variant/method/
    head; the trailing dims — images, boxes — are the sample, NaN dropped).

    Returns columns ``layer, mean, ci_lo, ci_hi, n`` (layers without finite values left out;
    ``ci_lo``/``ci_hi`` NaN below 2 values), with :func:`bootstrap_settings` in ``.attrs``.
    The one per-layer table of :func:`layer_curve` and of the explorer's curves.
    """
    return curves_from_values([values], [layers], n_boot=n_boot, ci=ci, seed=seed)[0]


def best_row(curve: pd.DataFrame, direction: str = "higher") -> pd.Series | None:
    """The row of a per-layer table (:func:`curve_from_values`, :func:`layer_curve`) with the
    best ``mean``: the largest for ``direction="higher"``, the smallest for ``"lower"``; the
    first such layer on ties. None for an empty table."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower'; got {direction!r}")
    if curve.empty:
        return None
    means = curve["mean"]
    return curve.loc[means.idxmin() if direction == "lower" else means.idxmax()]


def bests_from_values(
    values: Sequence[np.ndarray],
    layers: Sequence[Sequence[int]],
    direction: str = "higher",
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> list[pd.Series | None]:
    """:func:`best_from_values` of many ``(layer, ...)`` arrays, bootstrapping their best
    layers in one :func:`curves_from_values` batch (same numbers as one by one)."""
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower'; got {direction!r}")
    picks: list[tuple[np.ndarray, list[int]] | None] = []
    for v, la in zip(values, layers, strict=True):
        v, la = _layer_block(v, la)
        mean, count = _layer_means(v)
        have = np.flatnonzero(count > 0)
        if have.size == 0:
            picks.append(None)
            continue
        k = int(have[np.argmin(mean[have]) if direction == "lower" else np.argmax(mean[have])])
        picks.append((v[k:k + 1], [la[k]]))
    chosen = [p for p in picks if p is not None]
    curves = iter(curves_from_values([v for v, _ in chosen], [la for _, la in chosen],
                                     n_boot=n_boot, ci=ci, seed=seed))
    return [None if p is None else next(curves).iloc[0] for p in picks]


def best_from_values(
    values: np.ndarray,
    layers: Sequence[int],
    direction: str = "higher",
    *,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> pd.Series | None:
    """The best layer of a ``(layer, ...)`` array: the row of :func:`curve_from_values` with
    the best mean (``direction`` as in :func:`best_row`; first layer on ties) — index ``layer,
    mean, ci_lo, ci_hi, n`` — bootstrapping only that layer. None when no layer has values.
    The one best-layer rule of :func:`best_layer` and of the explorer's leaderboard."""
    return bests_from_values([values], [layers], direction, n_boot=n_boot, ci=ci,
                             seed=seed)[0]


def direction(metric: str) -> str:
    """``"higher"`` or ``"lower"`` (is better) for a score variable, from
    :data:`ssl_attn.metrics.registry.METRICS` (``*_draw_std`` as its metric; unknown: higher)."""
    from .metrics.registry import METRICS

    base = metric.split("_draw_std")[0]
    return METRICS[base].direction if base in METRICS else "higher"


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
def _pick_method(scores: Any, metric: str, model: str, variant: str) -> str:
    da = scores[metric].sel({"model": model, "variant": variant})
    other = [d for d in da.dims if d != "method"]
    has = da.notnull().any(other).values
    methods = [m for m, h in zip(scores["method"].values.tolist(), has) if h]
    if not methods:
        raise ValueError(f"scores hold no {metric!r} values for model {model!r}, variant "
                         f"{variant!r}; check the model name and that it was scored")
    return methods[0]


def _select(scores: Any, metric: str, model: str, *, variant: str, method: str | None,
            head: int, percentile: float) -> Any:
    """``(layer, <image_id|box|image_feature>)`` values of one model/variant/method/head."""
    if metric not in scores:
        raise KeyError(f"scores have no variable {metric!r}; choose from "
                       f"{sorted(scores.data_vars)}")
    if model not in scores["model"].values:
        raise KeyError(f"scores have no model {model!r}; models: "
                       f"{scores['model'].values.tolist()}")
    method = method or _pick_method(scores, metric, model, variant)
    sel = {"model": model, "variant": variant, "method": method, "head": head}
    if "percentile" in scores[metric].dims:
        sel["percentile"] = float(percentile)
    return scores[metric].sel(sel).load(), method


def layer_curve(
    scores: Any,
    metric: str,
    model: str,
    *,
    variant: str = "frozen",
    method: str | None = None,
    head: int = -1,
    percentile: float = 90,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> pd.DataFrame:
    """Mean and bootstrap CI band of ``metric`` per layer for one model.

    ``method`` defaults to the model's first method with values; ``head=-1`` is the head-mean
    map; ``percentile`` applies to ``iou``. Returns a DataFrame with columns ``model, method,
    variant, layer, mean, ci_lo, ci_hi, n`` (layers without values are left out; the numbers
    are :func:`curve_from_values`'s), :func:`bootstrap_settings` in ``.attrs``.
    """
    da, method = _select(scores, metric, model, variant=variant, method=method, head=head,
                         percentile=percentile)
    da = da.transpose("layer", ...)
    curve = curve_from_values(da.values, da["layer"].values.tolist(), n_boot=n_boot, ci=ci,
                              seed=seed)
    curve.insert(0, "variant", variant)
    curve.insert(0, "method", method)
    curve.insert(0, "model", model)
    return curve[CURVE_COLUMNS]


def best_layer(
    scores: Any,
    metric: str,
    *,
    models: Sequence[str] | None = None,
    variant: str = "frozen",
    method: str | None = None,
    head: int = -1,
    percentile: float = 90,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> pd.DataFrame:
    """Per model, the layer with the best mean ``metric`` (by the metric's :func:`direction`),
    with its bootstrap CI. Returns columns ``model, method, variant, layer, mean, ci_lo, ci_hi,
    n`` (one row per model; ``models`` defaults to all, baselines included; ``method`` to each
    model's first method with values), :func:`bootstrap_settings` in ``.attrs``."""
    models = list(models) if models is not None else scores["model"].values.tolist()
    way = direction(metric)
    rows = []
    for model in models:
        try:
            da, use = _select(scores, metric, model, variant=variant, method=method, head=head,
                              percentile=percentile)
        except ValueError:
            continue
        da = da.transpose("layer", ...)
        best = best_from_values(da.values, da["layer"].values.tolist(), way, n_boot=n_boot,
                                ci=ci, seed=seed)
        if best is not None:
            rows.append({"model": model, "method": use, "variant": variant, **best.to_dict()})
    df = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    df.attrs = bootstrap_settings(n_boot=n_boot, seed=seed, ci=ci)
    return df


def paired_differences(
    scores: Any,
    metric: str,
    model_a: str,
    model_b: str,
    *,
    variant_a: str = "frozen",
    variant_b: str = "frozen",
    method_a: str | None = None,
    method_b: str | None = None,
    layers: Sequence[tuple[int, int]] | str = "best",
    head: int = -1,
    percentile: float = 90,
    family: str | None = None,
    n_boot: int = N_BOOT,
    ci: float = CI,
    seed: int = SEED,
) -> pd.DataFrame:
    """Paired comparison of two (model, variant) score sets over the same images.

    ``layers``: ``"best"`` (each side's best layer by mean, one row), ``"shared"`` (one row
    per layer both have) or an explicit list of ``(layer_a, layer_b)`` pairs. Per row: means,
    ``mean_diff`` (a − b) with a bootstrap CI, paired t-test, Wilcoxon signed-rank, Cohen's
    d_z, and ``p_holm``: Holm-adjusted t-test p-values across the rows of this table, which
    form the family (named in the ``family`` column; default ``"<metric>: a vs b"``).
    Frozen-vs-fine-tuned: pass the same model with ``variant_a``/``variant_b``.
    """
    a, method_a = _select(scores, metric, model_a, variant=variant_a, method=method_a,
                          head=head, percentile=percentile)
    b, method_b = _select(scores, metric, model_b, variant=variant_b, method=method_b,
                          head=head, percentile=percentile)
    if isinstance(layers, str):
        lower = direction(metric) == "lower"

        def means(da: Any) -> pd.Series:
            da = da.transpose("layer", ...)
            mean, count = _layer_means(da.values)
            keep = count > 0
            return pd.Series(mean[keep], index=np.asarray(da["layer"].values)[keep])

        ma, mb = means(a), means(b)
        if layers == "best":
            pick = (lambda s: s.idxmin()) if lower else (lambda s: s.idxmax())
            pairs = [(int(pick(ma)), int(pick(mb)))] if len(ma) and len(mb) else []
        elif layers == "shared":
            pairs = [(int(x), int(x)) for x in ma.index if x in mb.index]
        else:
            raise ValueError(f"layers must be 'best', 'shared' or a list of pairs; got "
                             f"{layers!r}")
    else:
        pairs = [(int(x), int(y)) for x, y in layers]
    family = family or f"{metric}: {model_a}/{variant_a} vs {model_b}/{variant_b}"
    rows = []
    for la, lb in pairs:
        va, vb = _paired(a.sel(layer=la).values, b.sel(layer=lb).values)
        d = va - vb
        lo, hi = bootstrap_ci(d, n_boot=n_boot, ci=ci, seed=seed)
        t, p_t = paired_ttest(va, vb)
        w, p_w = wilcoxon(va, vb)
        rows.append({"family": family, "model_a": model_a, "variant_a": variant_a,
                     "method_a": method_a, "layer_a": la, "model_b": model_b,
                     "variant_b": variant_b, "method_b": method_b, "layer_b": lb,
                     "n": int(d.size), "mean_a": float(va.mean()) if d.size else np.nan,
                     "mean_b": float(vb.mean()) if d.size else np.nan,
                     "mean_diff": float(d.mean()) if d.size else np.nan, "ci_lo": lo,
                     "ci_hi": hi, "t": t, "p_t": p_t, "wilcoxon": w, "p_wilcoxon": p_w,
                     "d_z": cohens_dz(va, vb)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["p_holm"] = holm(df["p_t"].to_numpy())
    df.attrs = bootstrap_settings(n_boot=n_boot, seed=seed, ci=ci)
    return df
