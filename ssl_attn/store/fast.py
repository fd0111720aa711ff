"""Fast reads: direct Zarr reads of store and score variables, positioned by xarray's own
coordinates.

The explorer (and anything else that reads many small slices) reads one cube or one score
block per click. Through xarray each such read pays its indexing machinery (several ms) and,
the first time any variable is indexed, an import of ``dask.array`` (~0.5 s of cold start
here) even though nothing is chunked with dask. The arrays are plain Zarr arrays under the
opened tree, so :func:`read_slice` indexes them with zarr itself after checking that xarray would decode nothing: a float array whose fill value is NaN (or
unset) and no ``scale_factor`` / ``add_offset``. Anything else goes through xarray unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["direct_array", "open_root", "read_slice"]


def open_root(path: str | os.PathLike):
    """The Zarr root group of a store or scores folder, read-only."""
    import zarr

    return zarr.open_group(zarr.storage.LocalStore(str(path), read_only=True), mode="r")


def direct_array(root, group: str | None, name: str, variable) -> Any | None:
    """The Zarr array behind ``variable`` (an ``xarray.Variable`` named ``name`` in ``group`` of
    the tree at ``root``), or None when reading it raw would differ from xarray's decoding."""
    enc = variable.encoding
    if any(k in enc for k in ("scale_factor", "add_offset")) or variable.dtype.kind != "f":
        return None
    fill = enc.get("_FillValue", enc.get("fill_value"))
    if fill is not None and not np.isnan(fill):
        return None
    try:
        arr = (root[group] if group else root)[name]
    except KeyError:
        return None
    if tuple(arr.shape) != tuple(variable.shape) or arr.dtype != variable.dtype:
        return None
    return arr


def read_slice(variable, array, positions: Mapping[str, int | slice],
         dims_out: Sequence[str]) -> np.ndarray:
    """``variable`` at integer ``positions`` (dim → index or slice; other dims whole), as a
    numpy array with dims ``dims_out`` (the remaining dims, in that order).

    ``array``: from :func:`direct_array`, or None to go through xarray.
    """
    if array is None:  # xarray decodes something here: let it
        return np.asarray(variable.isel(dict(positions)).transpose(*dims_out).values)
    key = tuple(positions.get(d, slice(None)) for d in variable.dims)
    out = np.asarray(array[key])
    kept = [d for d in variable.dims if not isinstance(positions.get(d, slice(None)), int)]
    return out.transpose([kept.index(d) for d in dims_out]) if kept != list(dims_out) else out
