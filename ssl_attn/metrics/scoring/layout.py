"""The shapes scoring works with, all derived from the metric registry.

- :class:`Packing`: where each metric sits along the one packed axis a dask task returns
  (``pack`` and ``unpack`` use the same slices, so they cannot drift apart).
- :class:`Params`: the scoring parameters every task needs (frame, percentiles, ...).
- :class:`Layout`: the output Dataset's coords, variables (dims, dtype, attrs) and chunks.

Nothing here reads a store or computes a metric.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..registry import METRICS
from ..target import DEFAULT_EMD_GRID, DEFAULT_TOLERANCE_PX

#: Storage dtype per metric level: image-level scores are float64; per-box and per-feature
#: scores (the large variables) are float32.
LEVEL_DTYPES: dict[str, np.dtype] = {"image": np.dtype(np.float64),
                                     "box": np.dtype(np.float32),
                                     "feature": np.dtype(np.float32)}
#: Dims of every metric variable before the metric's own (``Metric.dims``).
BLOCK_DIMS = ("model", "variant", "method", "layer", "head")
DRAW_STD = "_draw_std"


class ScoreError(ValueError):
    """The store or dataset cannot be scored as asked (the message says what to fix)."""


def fingerprint(payload: dict[str, Any]) -> str:
    """SHA-256 of ``payload`` as sorted JSON (non-JSON values by ``str``)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ per-image facts
@dataclass(frozen=True)
class _ImageSpec:
    """One image's boxes (``left, top, width, height`` fractions), labels and photo size
    ``(height, width)`` in pixels (None when unknown).

    The class keeps its historical name: its repr is hashed into the resume fingerprints, so
    renaming it would force a full recompute of existing scores.
    """

    image_id: str
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    size: tuple[int, int] | None  # (height, width) of the photo in pixels


ImageSpec = _ImageSpec


# ------------------------------------------------------------------ the packed axis
@dataclass(frozen=True)
class Packing:
    """Layout of one map's metrics along a single float64 axis of length :attr:`n_out`.

    Every metric of ``METRICS`` gets a contiguous slice, in registry order, of width:
    ``n_percentiles`` for ``per_percentile`` metrics, ``max_boxes`` / ``max_features`` for box /
    feature metrics (slots beyond an image's own count stay NaN), else 1.
    """

    n_percentiles: int
    max_boxes: int
    max_features: int

    def width(self, name: str) -> int:
        """Slots of metric ``name`` on the packed axis."""
        m = METRICS[name]
        if m.per_percentile:
            return self.n_percentiles
        return {"box": self.max_boxes, "feature": self.max_features}.get(m.level, 1)

    @functools.cached_property
    def slices(self) -> dict[str, slice]:
        """Metric name → its slice of the packed axis (registry order)."""
        out, j = {}, 0
        for name in METRICS:
            w = self.width(name)
            out[name] = slice(j, j + w)
            j += w
        return out

    @property
    def n_out(self) -> int:
        """Length of the packed axis."""
        return sum(self.width(name) for name in METRICS)

    def pack(self, res: dict[str, np.ndarray]) -> np.ndarray:
        """:func:`~ssl_attn.metrics.evaluate`'s dict (``n`` maps) → float64 ``(n, n_out)``;
        a metric's values fill the start of its slice (an image's own boxes/features)."""
        n = next(iter(res.values())).shape[0]
        out = np.full((n, self.n_out), np.nan)
        for name, sl in self.slices.items():
            v = res[name]
            out[:, sl.start:sl.start + (v.shape[1] if v.ndim > 1 else 1)] = (
                v if v.ndim > 1 else v[:, None])
        return out

    def unpack(self, packed: np.ndarray) -> dict[str, np.ndarray]:
        """Packed ``(..., n_out)`` → views ``{name: (..., width)}``; metrics of width 1 that are
        not per box/feature/percentile come back as ``(...)``."""
        out = {}
        for name, sl in self.slices.items():
            m = METRICS[name]
            scalar = m.level == "image" and not m.per_percentile
            out[name] = packed[..., sl.start] if scalar else packed[..., sl]
        return out


@dataclass(frozen=True)
class Params:
    """What every scoring task needs besides the maps (hashable: it keys the target cache).

    ``frame``: evaluation frame ``R`` in pixels; ``percentiles``: IoU percentiles;
    ``max_boxes`` / ``max_features``: most boxes / feature types of any scored image.
    """

    frame: int
    percentiles: tuple[float, ...]
    max_boxes: int
    max_features: int
    tolerance_px: float = DEFAULT_TOLERANCE_PX
    emd_grid: int = DEFAULT_EMD_GRID

    @functools.cached_property
    def packing(self) -> Packing:
        """The packed layout of one map's results for these parameters."""
        return Packing(len(self.percentiles), self.max_boxes, self.max_features)


# ------------------------------------------------------------------ the output Dataset
def variable_attrs(name: str) -> dict[str, Any]:
    """Attrs of an output variable: the metric's registry attrs; for ``<metric>_draw_std``
    the long name says it is the std over uniform-baseline draws and there is no direction."""
    base = name.removesuffix(DRAW_STD)
    attrs = dict(METRICS[base].attrs())
    if name.endswith(DRAW_STD):
        attrs["long_name"] = f"Std over uniform-baseline draws of: {attrs['long_name']}"
        attrs.pop("direction")
    return attrs


@dataclass
class Layout:
    """Coords and variables of the scores Dataset (docs/SCHEMA.md, "Scores").

    ``boxes``: one row per expert box (``image_id, box_index, feature, label``) in image order;
    ``features``: one row per (image, feature type) (``image_id, label, name, n_boxes``).
    """

    models: list[str]
    variants: list[str]
    methods: list[str]
    layers: list[int]
    heads: list[int]
    image_ids: list[str]
    percentiles: tuple[float, ...]
    boxes: pd.DataFrame  # image_id, box_index, feature, label
    features: pd.DataFrame  # image_id, label, name, n_boxes

    def coords(self) -> dict[str, Any]:
        """Every coord as ``(dim, values)``."""
        b, f = self.boxes, self.features
        return {
            "model": ("model", np.array(self.models, dtype=object)),
            "variant": ("variant", np.array(self.variants, dtype=object)),
            "method": ("method", np.array(self.methods, dtype=object)),
            "layer": ("layer", np.array(self.layers, dtype=np.int64)),
            "head": ("head", np.array(self.heads, dtype=np.int64)),
            "image_id": ("image_id", np.array(self.image_ids, dtype=object)),
            "percentile": ("percentile", np.array(self.percentiles, dtype=np.float64)),
            "box": ("box", np.arange(len(b), dtype=np.int64)),
            "box_image_id": ("box", b["image_id"].to_numpy(dtype=object)),
            "box_index": ("box", b["box_index"].to_numpy(dtype=np.int64)),
            "box_feature": ("box", b["feature"].astype(str).to_numpy(dtype=object)),
            "box_label": ("box", b["label"].to_numpy(dtype=np.int64)),
            "image_feature": ("image_feature", np.arange(len(f), dtype=np.int64)),
            "image_feature_image_id": ("image_feature", f["image_id"].to_numpy(dtype=object)),
            "image_feature_label": ("image_feature", f["label"].to_numpy(dtype=np.int64)),
            "image_feature_name": ("image_feature", f["name"].astype(str).to_numpy(dtype=object)),
            "image_feature_n_boxes": ("image_feature", f["n_boxes"].to_numpy(dtype=np.int64)),
        }

    def key(self) -> str:
        """Identity of the layout: equal keys mean blocks can be written in place."""
        return fingerprint({k: np.asarray(v[1]).tolist() for k, v in self.coords().items()})

    def variables(self) -> dict[str, tuple[tuple[str, ...], np.dtype]]:
        """Variable name → ``(dims, dtype)``: per metric of ``METRICS`` (registry order) the
        metric itself ``(model, variant, method, layer, head, *Metric.dims)`` and its
        ``_draw_std`` ``(model, *Metric.dims)``."""
        out: dict[str, tuple[tuple[str, ...], np.dtype]] = {}
        for name, m in METRICS.items():
            dtype = LEVEL_DTYPES[m.level]
            out[name] = ((*BLOCK_DIMS, *m.dims), dtype)
            out[name + DRAW_STD] = (("model", *m.dims), dtype)
        return out

    def sizes(self) -> dict[str, int]:
        """Length of every dim."""
        return {"model": len(self.models), "variant": len(self.variants),
                "method": len(self.methods), "layer": len(self.layers),
                "head": len(self.heads), "image_id": len(self.image_ids),
                "percentile": len(self.percentiles), "box": len(self.boxes),
                "image_feature": len(self.features)}

    def chunks(self, dims: tuple[str, ...]) -> tuple[int, ...]:
        """Storage chunks: one ``(model, variant, method)`` block per chunk."""
        one = {"model", "variant", "method"}
        sizes = self.sizes()
        return tuple(1 if d in one else max(1, sizes[d]) for d in dims)

    def region_rows(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        """For ``box`` / ``feature`` level: int64 ``(image position, slot)`` of each output
        row, the slot being its index among its image's boxes / feature types (the position
        on the packed axis within the metric's slice)."""
        if level == "box":
            table = self.boxes
            slot = table["box_index"].to_numpy(dtype=np.int64)
        else:
            table = self.features
            slot = table.groupby("image_id", sort=False).cumcount().to_numpy(dtype=np.int64)
        where = {iid: i for i, iid in enumerate(self.image_ids)}
        rows = np.array([where[i] for i in table["image_id"]], dtype=np.int64)
        return rows, slot
