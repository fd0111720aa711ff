"""The table helpers on a scores Dataset (:func:`ssl_attn.metrics.score`): per-layer curves,
best layers and paired comparisons, computed by :mod:`.curves` and :mod:`.paired`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import CI, N_BOOT, SEED, _layer_means, bootstrap_ci, bootstrap_settings
from .curves import CURVE_COLUMNS, best_from_values, curve_from_values, direction
from .paired import _paired, cohens_dz, holm, paired_ttest, wilcoxon


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
