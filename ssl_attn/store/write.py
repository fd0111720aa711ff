"""Writing maps by region, completion marking last, and reading which images are complete."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .layout import _has_zarr_root, _open_group_ds
from .schema import COMPLETE, IMAGE_DIM, VARIANT_DIM, StoreError


def _runs(indices: np.ndarray) -> list[tuple[int, int, int]]:
    """Split sorted store indices into contiguous runs ``(start, stop, offset into indices)``."""
    runs = []
    start = 0
    for i in range(1, len(indices) + 1):
        if i == len(indices) or indices[i] != indices[i - 1] + 1:
            runs.append((int(indices[start]), int(indices[i - 1]) + 1, start))
            start = i
    return runs


def _locate(path: Path, model_key: str, variant: str,
            image_ids: Sequence[str]) -> tuple[xr.Dataset, int, np.ndarray]:  # fmt: skip
    ds = _open_group_ds(path, model_key)
    if ds is None:
        raise StoreError(
            f"{path}: no group {model_key!r}; call init_model_group(...) before write_maps."
        )
    variants = [str(v) for v in ds[VARIANT_DIM].values]
    if variant not in variants:
        raise StoreError(
            f"{path}: group {model_key!r} has no variant {variant!r} (has {variants}); "
            "call init_model_group(..., variant=...) first."
        )
    index = {str(v): i for i, v in enumerate(ds[IMAGE_DIM].values)}
    missing = [i for i in image_ids if str(i) not in index]
    if missing:
        raise StoreError(
            f"{path}: group {model_key!r} has no image_id(s) {missing[:5]}; the group was "
            "allocated for another image list."
        )
    return ds, variants.index(variant), np.array([index[str(i)] for i in image_ids])


def _write_region(path: Path, model_key: str, data: dict[str, tuple[tuple[str, ...], Any]],
                  v: int, start: int, stop: int) -> None:  # fmt: skip
    region = {VARIANT_DIM: slice(v, v + 1), IMAGE_DIM: slice(start, stop)}
    xr.Dataset(data).to_zarr(str(path), group=model_key, mode="r+", region=region,
                             consolidated=False)  # fmt: skip


def _mark_complete(path: Path, model_key: str, v: int, runs: list[tuple[int, int, int]]) -> None:
    """Flip ``complete`` to True for the given runs (the last step of :func:`write_maps`)."""
    for start, stop, _ in runs:
        flags = np.ones((1, stop - start), dtype=bool)
        _write_region(path, model_key, {COMPLETE: ((VARIANT_DIM, IMAGE_DIM), flags)}, v, start,
                      stop)  # fmt: skip


def write_maps(
    path: str | os.PathLike,
    model_key: str,
    variant: str,
    image_ids: Sequence[str],
    maps: Mapping[str, np.ndarray],
) -> None:
    """Write one batch of maps, then mark those images complete.

    Args:
        path, model_key, variant: where (the group and variant must exist: see
            :func:`init_model_group`).
        image_ids: the ``B`` images of the batch (any order, no duplicates).
        maps: ``{variable: array (B, *per-image shape)}`` for **every** variable of the group
            (e.g. ``cls`` ``(B, L, H, gh, gw)``); cast to the stored dtype.

    Maps are written by region (one ``to_zarr(region=...)`` per contiguous run of store
    indices); ``complete`` is set True only afterwards, in a separate write, so a crash leaves
    the images incomplete (and a rerun rewrites them). Needs no lock: chunks hold one image.
    """
    path = Path(path)
    image_ids = [str(i) for i in image_ids]
    if len(set(image_ids)) != len(image_ids):
        raise StoreError(f"write_maps({model_key!r}): duplicate image_ids in one batch.")
    ds, v, indices = _locate(path, model_key, variant, image_ids)
    expected = [k for k in ds.data_vars if k != COMPLETE]
    if sorted(maps) != sorted(expected):
        raise StoreError(
            f"{path}: group {model_key!r} stores {sorted(expected)} but write_maps got "
            f"{sorted(maps)}; pass every variable (missing: "
            f"{sorted(set(expected) - set(maps))}, unknown: {sorted(set(maps) - set(expected))})."
        )
    order = np.argsort(indices, kind="stable")
    indices = indices[order]
    arrays = {}
    for name in expected:
        var = ds[name]
        array = np.asarray(maps[name])
        want_shape = (len(image_ids), *var.shape[2:])
        if array.shape != want_shape:
            raise StoreError(
                f"{path}: group {model_key!r}, variable {name!r}: got shape {array.shape}, the "
                f"store needs {want_shape} (B, {', '.join(var.dims[2:])})."
            )
        arrays[name] = (var.dims, array[order].astype(var.dtype, copy=False))
    runs = _runs(indices)
    for start, stop, offset in runs:
        sl = slice(offset, offset + stop - start)
        data = {name: (dims, a[sl][None]) for name, (dims, a) in arrays.items()}
        _write_region(path, model_key, data, v, start, stop)
    _mark_complete(path, model_key, v, runs)


def completed(path: str | os.PathLike, model_key: str, variant: str = "frozen") -> set[str]:
    """The image_ids whose maps are complete for ``(model_key, variant)``; empty if absent."""
    path = Path(path)
    ds = _open_group_ds(path, model_key) if _has_zarr_root(path) else None
    if ds is None:
        return set()
    variants = [str(v) for v in ds[VARIANT_DIM].values]
    if variant not in variants:
        return set()
    flags = ds[COMPLETE].isel({VARIANT_DIM: variants.index(variant)}).values
    return {str(i) for i, done in zip(ds[IMAGE_DIM].values, flags, strict=True) if done}
