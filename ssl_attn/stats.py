"""Statistics for alignment scores: bootstrap CIs, paired tests, effect sizes, Holm.

Plain functions work on numpy arrays; the table helpers (:func:`best_layer`,
:func:`layer_curve`, :func:`paired_differences`) take the scores Dataset of
:func:`ssl_attn.metrics.score` and return pandas DataFrames ready for plotting.

Conventions: ``n_boot`` = 10 000 resamples (percentile bootstrap; the CI's Monte-Carlo error is
then well under 1% of its width for typical n ≈ 139 images), ``ci`` = 0.95, ``seed`` = 0.
NaN values (images a model did not score) are dropped before any statistic; paired statistics
keep only images where both sides are finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "best_layer",
    "bootstrap_ci",
    "cohens_dz",
    "holm",
    "layer_curve",
    "paired_differences",
    "paired_ttest",
    "wilcoxon",
]

N_BOOT = 10_000


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    ci: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` (default the mean) of 1-D ``values``.

    Resamples with replacement ``n_boot`` times (one ``(n_boot, n)`` index draw from
    ``numpy.random.default_rng(seed)``, vectorised: ``statistic`` is called once with
    ``axis=1``). NaN are dropped; fewer than 2 values give ``(nan, nan)``. Returns
    ``(lo, hi)`` at quantiles ``(1 − ci)/2`` and ``(1 + ci)/2``.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (np.nan, np.nan)
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1); got {ci}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_boot), x.size))
    stats = statistic(x[idx], axis=1)
    lo, hi = np.quantile(stats, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


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
def _direction(metric: str) -> str:
    from .metrics.registry import METRICS

    base = metric.split("_draw_std")[0]
    return METRICS[base].direction if base in METRICS else "higher"


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
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and bootstrap CI band of ``metric`` per layer for one model.

    ``method`` defaults to the model's first method with values; ``head=-1`` is the head-mean
    map; ``percentile`` applies to ``iou``. Returns a DataFrame with columns ``model, method,
    variant, layer, mean, ci_lo, ci_hi, n`` (layers without values are left out).
    """
    da, method = _select(scores, metric, model, variant=variant, method=method, head=head,
                         percentile=percentile)
    rows = []
    for layer in da["layer"].values.tolist():
        v = da.sel(layer=layer).values.reshape(-1)
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        lo, hi = bootstrap_ci(v, n_boot=n_boot, ci=ci, seed=seed)
        rows.append({"model": model, "method": method, "variant": variant, "layer": layer,
                     "mean": float(v.mean()), "ci_lo": lo, "ci_hi": hi, "n": int(v.size)})
    return pd.DataFrame(rows, columns=["model", "method", "variant", "layer", "mean", "ci_lo",
                                       "ci_hi", "n"])


def best_layer(
    scores: Any,
    metric: str,
    *,
    models: Sequence[str] | None = None,
    variant: str = "frozen",
    head: int = -1,
    percentile: float = 90,
    n_boot: int = N_BOOT,
    ci: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per model, the layer with the best mean ``metric`` (by the metric's direction), with
    its bootstrap CI. Returns columns ``model, method, variant, layer, mean, ci_lo, ci_hi, n``
    (one row per model; ``models`` defaults to all, baselines included)."""
    models = list(models) if models is not None else scores["model"].values.tolist()
    lower = _direction(metric) == "lower"
    rows = []
    for model in models:
        try:
            curve = layer_curve(scores, metric, model, variant=variant, head=head,
                                percentile=percentile, n_boot=n_boot, ci=ci, seed=seed)
        except ValueError:
            continue
        if curve.empty:
            continue
        i = curve["mean"].idxmin() if lower else curve["mean"].idxmax()
        rows.append(curve.loc[i].to_dict())
    return pd.DataFrame(rows, columns=["model", "method", "variant", "layer", "mean", "ci_lo",
                                       "ci_hi", "n"])


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
    ci: float = 0.95,
    seed: int = 0,
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
        lower = _direction(metric) == "lower"

        def means(da: Any) -> pd.Series:
            m = da.mean([d for d in da.dims if d != "layer"], skipna=True).to_series()
            return m.dropna()

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
    return df
