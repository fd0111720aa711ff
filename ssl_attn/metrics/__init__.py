"""Map-vs-box alignment metrics, baselines and scoring of attention stores (DESIGN.md §7).

- :mod:`.core`: the metric functions on numpy arrays (``iou``, ``coverage``, ``pointing``,
  ``area_precision``, ``roc_auc``, ``soft_mse``, ``kl_divergence``, ``emd``),
  :func:`evaluate` (all of them at once, sharing the upsample and sort) and
  :func:`top_region` (the exact pixel set IoU@p counts, which the dashboard outlines).
- :mod:`.ranking`: the one sort per map that the rank metrics share (:class:`Ranking`).
- :mod:`.wasserstein`: exact W1 on a coarse grid (the EMD metric).
- :mod:`.target`: :func:`make_target` (an image's boxes in the evaluation frame).
- :mod:`.resample`: the one bilinear upsample (metrics and dashboard) and block sums.
- :mod:`.registry`: ``METRICS`` metadata (name, long_name, direction, range, needs, level):
  the one list of metrics; :func:`evaluate`'s keys and the scores' variables follow it.
- :mod:`.baselines`: uniform / center / saliency / sobel baseline maps.
- :mod:`.scoring`: :func:`score` (store → scores Dataset, dask-parallel, resumable), in
  three steps: ``scoring.plan`` → ``scoring.compute`` → ``scoring.write``.

Import-light: numpy only at import; xarray, dask and POT load when used.
"""

from __future__ import annotations

from typing import Any

from .core import (
    KL_EPS,
    PERCENTILES,
    EvalBatch,
    Timings,
    area_precision,
    coverage,
    emd,
    evaluate,
    iou,
    kl_divergence,
    pointing,
    profile,
    roc_auc,
    soft_mse,
    top_region,
    topk_size,
)
from .registry import METRICS, Metric
from .resample import interpolation_matrix, upsample
from .target import Target, make_target

__all__ = [
    "KL_EPS",
    "METRICS",
    "PERCENTILES",
    "EvalBatch",
    "Metric",
    "Target",
    "Timings",
    "area_precision",
    "coverage",
    "default_scores_path",
    "emd",
    "evaluate",
    "interpolation_matrix",
    "iou",
    "kl_divergence",
    "make_target",
    "pointing",
    "profile",
    "roc_auc",
    "score",
    "soft_mse",
    "top_region",
    "topk_size",
    "upsample",
]


def __getattr__(name: str) -> Any:
    if name in ("score", "default_scores_path"):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.scoring"), name)
    raise AttributeError(f"module 'ssl_attn.metrics' has no attribute {name!r}")
