"""The scores a shift table reads, as float64 arrays: the arguments' checks against the scores,
the head-mean selection, the variants × reference cube (:class:`Cube`), the feature-level
values at the best layers and the uniform baseline's means."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ssl_attn import stats
from ssl_attn.metrics.registry import METRICS
from ssl_attn.metrics.scoring import BASELINE_METHOD

from .base import BEST_DIMS, UNIFORM_MODEL, ShiftError

__all__ = ["Cube", "check_metrics", "feature_rows", "load_cube", "select", "uniform_means"]


def check_metrics(scores: xr.Dataset, metrics: Sequence[str]) -> list[str]:
    """``metrics`` (a name or names) as a list without repeats, each an image-level metric the
    scores hold; else :class:`ShiftError` saying which and what to do."""
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ShiftError("metrics: name at least one metric, e.g. ('iou', 'coverage')")
    image_level = [k for k, m in METRICS.items() if m.level == "image"]
    for m in metrics:
        if m not in image_level:
            raise ShiftError(f"metric {m!r} is not an image-level metric; choose from "
                             f"{image_level}")
        if m not in scores.data_vars:
            raise ShiftError(f"the scores hold no variable {m!r} (they have "
                             f"{sorted(scores.data_vars)}); rescore with `ssl-attn score`")
    return list(dict.fromkeys(metrics))


def select(scores: xr.Dataset, name: str, percentile: float, **sel: Any) -> xr.DataArray:
    """``scores[name]`` at ``head = -1`` (and ``percentile``), then ``sel`` (lists), loaded."""
    da = scores[name]
    if "head" in da.dims:
        if -1 not in da["head"].values.tolist():
            raise ShiftError(f"scores variable {name!r} has no head -1 (the head-mean); rescore "
                             "with `ssl-attn score`")
        da = da.sel(head=-1)
    if "percentile" in da.dims:
        have = [float(p) for p in da["percentile"].values]
        if float(percentile) not in have:
            raise ShiftError(f"scores variable {name!r} has no percentile {percentile} (has "
                             f"{have}); pass one of them")
        da = da.sel(percentile=float(percentile))
    return da.sel(sel).astype(np.float64).load()


@dataclass
class Cube:
    """The scores a shift table reads, as float64 arrays over kept coordinates.

    ``a``: the variants ``(model, variant, method, metric, layer, image)``; ``ref``: the
    reference ``(model, method, metric, layer, image)``; ``b``: ``ref`` broadcast like ``a``."""

    models: list[str]
    variants: list[str]
    methods: list[str]
    metrics: list[str]
    layers: list[int]
    image_ids: list[str]
    a: np.ndarray
    ref: np.ndarray
    directions: dict[str, str]

    @property
    def b(self) -> np.ndarray:
        return np.broadcast_to(self.ref[:, None], self.a.shape)

    @property
    def sign(self) -> np.ndarray:
        """+1 for higher-is-better metrics, −1 for lower, along ``metric``."""
        return np.array([1.0 if self.directions[m] == "higher" else -1.0 for m in self.metrics])

    def shape(self, dims: Sequence[str]) -> tuple[int, ...]:
        sizes = {"model": len(self.models), "variant": len(self.variants),
                 "method": len(self.methods), "metric": len(self.metrics),
                 "layer": len(self.layers)}
        return tuple(sizes[d] for d in dims)

    def at_layer(self, values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """``values (..., layer, sample)`` at the ``chosen`` layer value of each leading cell
        (``chosen (...)``; NaN chooses nothing and gives NaN)."""
        pos = {la: i for i, la in enumerate(self.layers)}
        idx = np.array([pos.get(int(x), 0) if np.isfinite(x) else 0 for x in chosen.ravel()],
                       dtype=np.int64).reshape(chosen.shape)
        out = np.take_along_axis(values, idx[..., None, None], axis=-2)[..., 0, :]
        return np.where(np.isfinite(chosen)[..., None], out, np.nan)


def _present(arr: np.ndarray, axis: int) -> np.ndarray:
    other = tuple(i for i in range(arr.ndim) if i != axis)
    return np.isfinite(arr).any(axis=other)


def load_cube(scores: xr.Dataset, metrics: list[str], percentile: float, reference: str) -> Cube:
    """Read the head-mean scores of every non-baseline model, keeping the models with values
    for ``reference`` and another variant, and the variants, methods and layers with values."""
    all_variants = [str(v) for v in scores["variant"].values.tolist()]
    if reference not in all_variants:
        raise ShiftError(f"the scores have no variant {reference!r} (have {all_variants}); "
                         "pass reference= one of them")
    models = [str(m) for m in scores["model"].values.tolist()
              if not str(m).startswith("baseline:")]
    methods = [str(m) for m in scores["method"].values.tolist() if str(m) != BASELINE_METHOD]
    layers = [int(la) for la in scores["layer"].values.tolist()]
    if not models or not methods:
        raise ShiftError("the scores hold no model maps (only baselines); score a store with "
                         "extracted models")
    # (metric, model, variant, method, layer, image)
    raw = np.stack([select(scores, m, percentile, model=models, variant=all_variants,
                            method=methods, layer=layers)
                    .transpose("model", "variant", "method", "layer", "image_id").values
                    for m in metrics])
    ri = all_variants.index(reference)
    others = [i for i in range(len(all_variants)) if i != ri]
    keep_m = np.flatnonzero(_present(raw[:, :, ri], 1) & _present(raw[:, :, others], 1)) \
        if others else np.array([], np.int64)
    if keep_m.size == 0:
        raise ShiftError(f"no model has scores for {reference!r} and for another variant "
                         f"(variants in the scores: {all_variants}); extract a fine-tuned "
                         "variant (`ssl-attn extract --variant lora --finetuned RUN`) and "
                         "rescore")
    raw = raw[:, keep_m]
    keep_v = [i for i in others if _present(raw, 2)[i]]
    keep_me = np.flatnonzero(_present(raw, 3))
    keep_l = np.flatnonzero(_present(raw, 4))
    raw = raw[:, :, :, keep_me][:, :, :, :, keep_l]
    return Cube(
        models=[models[i] for i in keep_m], variants=[all_variants[i] for i in keep_v],
        methods=[methods[i] for i in keep_me], metrics=metrics,
        layers=[layers[i] for i in keep_l],
        image_ids=[str(i) for i in scores["image_id"].values.tolist()],
        a=raw[:, :, keep_v].transpose(1, 2, 3, 0, 4, 5),
        ref=raw[:, :, ri].transpose(1, 2, 0, 3, 4),
        directions={m: stats.direction(m) for m in metrics})


def feature_rows(scores: xr.Dataset, cube: Cube, reference: str, percentile: float,
                  best_layer: np.ndarray, ref_layer: np.ndarray
                  ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """Feature-level values at the best layers: ``(feature names, masks (F, rows), a, b,
    {metric: feature variable})`` with ``a``, ``b`` over ``(model, variant, method, metric,
    image_feature)`` (NaN for metrics without a ``feature_<metric>`` variable)."""
    variables = {m: f"feature_{m}" for m in cube.metrics
                 if f"feature_{m}" in METRICS and f"feature_{m}" in scores.data_vars}
    if not variables or "image_feature_name" not in scores.coords:
        empty = np.zeros((*cube.shape(BEST_DIMS), 0))
        return [], np.zeros((0, 0), bool), empty, empty, variables
    names = [str(x) for x in scores["image_feature_name"].values.tolist()]
    labels = (scores["image_feature_label"].values.tolist()
              if "image_feature_label" in scores.coords else [0] * len(names))
    features = list(dict.fromkeys(n for _, n in sorted(zip(map(int, labels), names,
                                                           strict=True))))
    a = np.full((*cube.shape(BEST_DIMS), len(names)), np.nan)
    b = np.full_like(a, np.nan)
    for k, m in enumerate(cube.metrics):
        if m not in variables:
            continue
        fv = select(scores, variables[m], percentile, model=cube.models,
                     variant=[reference, *cube.variants], method=cube.methods,
                     layer=cube.layers) \
            .transpose("model", "variant", "method", "layer", "image_feature").values
        a[:, :, :, k] = cube.at_layer(fv[:, 1:], best_layer[:, :, :, k])
        b[:, :, :, k] = cube.at_layer(fv[:, 0], ref_layer[:, :, k])[:, None]
    masks = np.array([[n == f for n in names] for f in features], bool).reshape(-1, len(names))
    return features, masks, a, b, variables


def uniform_means(scores: xr.Dataset, metrics: list[str], percentile: float,
                   reference: str) -> np.ndarray:
    """Mean of the uniform baseline per metric over its images (NaN when not scored)."""
    out = np.full(len(metrics), np.nan)
    if UNIFORM_MODEL not in scores["model"].values.tolist():
        return out
    for k, m in enumerate(metrics):
        u = select(scores, m, percentile, model=UNIFORM_MODEL, variant=reference,
                    method=BASELINE_METHOD, layer=-1).values
        if np.isfinite(u).any():
            out[k] = float(np.nanmean(u))
    return out
