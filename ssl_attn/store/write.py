"""Writing maps by region, completion marking last, and reading which images are complete."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

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


def _write_region(path: Path, model_key: str, data: Mapping[str, tuple[tuple[str, ...], Any]],
                  v: int, start: int, stop: int,
                  arrays: Mapping[str, zarr.Array] | None = None) -> None:  # fmt: skip
    """Write ``data`` (``{name: (dims, values (1, stop - start, ...))}``) at variant ``v``,
    images ``start:stop``, into the group's Zarr ``arrays`` (opened here when not given)."""
    if arrays is None:
        group = zarr.open_group(str(path), path=model_key, mode="r+")
        arrays = {name: group[name] for name in data}
    for name, (_dims, values) in data.items():
        arrays[name][v : v + 1, start:stop] = values


def _mark_complete(path: Path, model_key: str, v: int, runs: list[tuple[int, int, int]],
                   arrays: Mapping[str, zarr.Array] | None = None) -> None:  # fmt: skip
    """Flip ``complete`` to True for the given runs (the last step of a batch write)."""
    for start, stop, _ in runs:
        flags = np.ones((1, stop - start), dtype=bool)
        _write_region(path, model_key, {COMPLETE: ((VARIANT_DIM, IMAGE_DIM), flags)}, v, start,
                      stop, arrays)  # fmt: skip


class GroupWriter:
    """Writes batches of maps into one ``(model group, variant)`` of a store.

    The group is read once, at construction: its variant index, image index and every
    variable's dims, dtype and per-image shape; its Zarr arrays are opened once. Each
    :meth:`write` then only checks the batch and writes it by region.

    The group must exist (:func:`init_model_group`). Several writers (processes, shards) may
    write disjoint images of one group at once: chunks hold one image, and writing data
    changes no metadata.
    """

    def __init__(self, path: str | os.PathLike, model_key: str, variant: str) -> None:
        self.path, self.model_key, self.variant = Path(path), model_key, variant
        ds, self._v, _ = _locate(self.path, model_key, variant, [])
        self._index = {str(v): i for i, v in enumerate(ds[IMAGE_DIM].values)}
        #: ``{variable: (dims, dtype, per-image shape)}`` of every map variable of the group
        self.variables: dict[str, tuple[tuple[str, ...], np.dtype, tuple[int, ...]]] = {
            name: (tuple(var.dims), var.dtype, tuple(var.shape[2:]))
            for name, var in ds.data_vars.items() if name != COMPLETE
        }  # fmt: skip
        group = zarr.open_group(str(self.path), path=model_key, mode="r+")
        self._arrays = {name: group[name] for name in [*self.variables, COMPLETE]}

    def write(self, image_ids: Sequence[str], maps: Mapping[str, np.ndarray]) -> None:
        """Write one batch of maps, then mark those images complete.

        Args:
            image_ids: the ``B`` images of the batch (any order, no duplicates).
            maps: ``{variable: array (B, *per-image shape)}`` for **every** variable of the
                group (e.g. ``cls`` ``(B, L, H, gh, gw)``); cast to the stored dtype.

        Maps are written by region (one write per contiguous run of store indices);
        ``complete`` is set True only afterwards, so a crash leaves the images incomplete (and
        a rerun rewrites them).
        """
        path, key = self.path, self.model_key
        image_ids = [str(i) for i in image_ids]
        if len(set(image_ids)) != len(image_ids):
            raise StoreError(f"write_maps({key!r}): duplicate image_ids in one batch.")
        missing = [i for i in image_ids if i not in self._index]
        if missing:
            raise StoreError(
                f"{path}: group {key!r} has no image_id(s) {missing[:5]}; the group was "
                "allocated for another image list."
            )
        expected = list(self.variables)
        if sorted(maps) != sorted(expected):
            raise StoreError(
                f"{path}: group {key!r} stores {sorted(expected)} but write_maps got "
                f"{sorted(maps)}; pass every variable (missing: "
                f"{sorted(set(expected) - set(maps))}, unknown: "
                f"{sorted(set(maps) - set(expected))})."
            )
        indices = np.array([self._index[i] for i in image_ids])
        order = np.argsort(indices, kind="stable")
        indices = indices[order]
        arrays: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        for name, (dims, dtype, shape) in self.variables.items():
            array = np.asarray(maps[name])
            want_shape = (len(image_ids), *shape)
            if array.shape != want_shape:
                raise StoreError(
                    f"{path}: group {key!r}, variable {name!r}: got shape {array.shape}, the "
                    f"store needs {want_shape} (B, {', '.join(dims[2:])})."
                )
            arrays[name] = (dims, array[order].astype(dtype, copy=False))
        runs = _runs(indices)
        for start, stop, offset in runs:
            sl = slice(offset, offset + stop - start)
            data = {name: (dims, a[sl][None]) for name, (dims, a) in arrays.items()}
            _write_region(path, key, data, self._v, start, stop, self._arrays)
        _mark_complete(path, key, self._v, runs, self._arrays)


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

    Maps are written by region (one write per contiguous run of store indices); ``complete``
    is set True only afterwards, in a separate write, so a crash leaves the images incomplete
    (and a rerun rewrites them). Needs no lock: chunks hold one image. Writing many batches of
    one group: open a :class:`GroupWriter` once instead.
    """
    GroupWriter(path, model_key, variant).write(image_ids, maps)


def completed(path: str | os.PathLike, model_key: str, variant: str = "frozen") -> set[str]:
    """The image_ids whose maps are complete for ``(model_key, variant)``; empty if absent, or
    if the group is half-created (a run killed while creating it: no ``variant``, ``image_id``
    or ``complete`` yet), which :func:`init_model_group` then rebuilds."""
    path = Path(path)
    ds = _open_group_ds(path, model_key) if _has_zarr_root(path) else None
    if ds is None or any(k not in ds.variables for k in (VARIANT_DIM, IMAGE_DIM, COMPLETE)):
        return set()
    variants = [str(v) for v in ds[VARIANT_DIM].values]
    if variant not in variants:
        return set()
    flags = ds[COMPLETE].isel({VARIANT_DIM: variants.index(variant)}).values
    return {str(i) for i, done in zip(ds[IMAGE_DIM].values, flags, strict=True) if done}
