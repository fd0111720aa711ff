"""Facts a shift table reads from the attention store beside the scores: the images' styles
(:func:`store_styles`) and the fine-tunes' validation accuracy (:func:`store_accuracy`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ssl_attn.store import decode_attr, open_store

from .base import ShiftError

__all__ = ["accuracy_lookup", "store_accuracy", "store_styles"]


# ------------------------------------------------------------------ store facts
def _tree(store: Any) -> xr.DataTree:
    return store if isinstance(store, xr.DataTree) else open_store(store)


def _group_datasets(tree: xr.DataTree) -> dict[str, xr.Dataset]:
    return {name: tree[name].dataset for name in sorted(tree.children)}


def store_styles(store: str | os.PathLike | xr.DataTree) -> dict[str, str]:
    """``image_id → style`` (a style QID) from a store's per-image ``style`` coordinate, over
    all model groups (images without a style — stored as ``""`` — are left out)."""
    out: dict[str, str] = {}
    for ds in _group_datasets(_tree(store)).values():
        if "style" not in ds.coords or "image_id" not in ds.coords:
            continue
        for iid, style in zip(ds["image_id"].values.tolist(), ds["style"].values.tolist(),
                              strict=True):
            if style and str(style) != "nan":
                out.setdefault(str(iid), str(style))
    return out


def _find(attrs: Mapping[str, Any], key: str) -> Any:
    """``attrs[key]``, or the first ``key`` inside a (JSON-encoded) mapping among the values."""
    if key in attrs:
        return decode_attr(attrs[key])
    for value in attrs.values():
        value = decode_attr(value)
        if isinstance(value, Mapping) and key in value:
            return value[key]
    return None


def store_accuracy(store: str | os.PathLike | xr.DataTree) -> dict[tuple[str, str], float]:
    """``(model, variant) → best validation accuracy`` from each store group's
    ``variant_provenance`` (JSON ``{variant: attrs}``; the key ``best_val_acc``, at the top of a
    variant's attrs or inside one JSON mapping among them). Variants without it are left out."""
    out: dict[tuple[str, str], float] = {}
    for model, ds in _group_datasets(_tree(store)).items():
        per_variant = decode_attr(ds.attrs.get("variant_provenance", "{}"))
        if not isinstance(per_variant, Mapping):
            continue
        for variant, attrs in per_variant.items():
            attrs = decode_attr(attrs)
            acc = _find(attrs, "best_val_acc") if isinstance(attrs, Mapping) else None
            try:
                acc = float(acc)
            except (TypeError, ValueError):
                continue
            if np.isfinite(acc):
                out[(str(model), str(variant))] = acc
    return out


def accuracy_lookup(accuracy: Any) -> dict[tuple[str, str], float]:
    """``shift_table``'s ``accuracy`` argument as ``{(model, variant): accuracy}``: from a
    mapping (``{(model, variant): acc}`` or ``{model: {variant: acc}}``), a store (path or
    DataTree: :func:`store_accuracy`) or None (empty)."""
    if accuracy is None:
        return {}
    if isinstance(accuracy, xr.DataTree | str | os.PathLike):
        return store_accuracy(accuracy)
    if not isinstance(accuracy, Mapping):
        raise ShiftError(f"accuracy must be a mapping {{(model, variant): value}} or "
                         f"{{model: {{variant: value}}}}, a store path or a DataTree; got "
                         f"{type(accuracy).__name__}")
    out = {}
    for key, value in accuracy.items():
        if isinstance(value, Mapping):
            out.update({(str(key), str(v)): float(a) for v, a in value.items()})
        elif isinstance(key, tuple) and len(key) == 2:
            out[(str(key[0]), str(key[1]))] = float(value)
        else:
            raise ShiftError(f"accuracy: key {key!r} is not a (model, variant) pair and its "
                             "value is not a {variant: accuracy} mapping")
    return out
