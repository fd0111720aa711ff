"""Per-layer curves and best layers from plain arrays: the numpy core that both the scores-
Dataset helpers (:mod:`.tables`) and the explorer call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .bootstrap import CI, N_BOOT, SEED, _layer_means, bootstrap_settings, mean_ci

CURVE_COLUMNS = ["model", "method", "variant", "layer", "mean", "ci_lo", "ci_hi", "n"]

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
    from ssl_attn.metrics.registry import METRICS

    base = metric.split("_draw_std")[0]
    return METRICS[base].direction if base in METRICS else "higher"
