"""Fast reads: direct Zarr reads of store and score variables, positioned by xarray's own
coordinates.

The explorer (and anything else that reads many small slices) reads one cube or one score
block per click. Through xarray each such read pays its indexing machinery (several ms) and,
the first time any variable is indexed, an import of ``dask.array`` (~0.5 s of cold start
here) even though nothing is chunked with dask. The arrays are plain Zarr arrays under the
opened tree, so :func:`read_slice` indexes them with zarr itself after checking that xarray
would decode nothing: a float array whose fill value is NaN (or unset) and no
``scale_factor`` / ``add_offset``. Anything else goes through xarray unchanged.

The store's fast read API, on top of those (same values as :func:`~ssl_attn.store.select_map`,
tested for every model, method, variant, layer, head and image):

* :func:`read_cube`: every map of one ``(variant, image_id)``: float32 ``([layer,] [head,] y,
  x)``, one Zarr chunk (the store is chunked one image per chunk);
* :func:`pick_map`: one ``(y, x)`` map out of such a cube, with :func:`select_map`'s rules
  (``layer=None``: last layer; ``head=-1``/``None``: :func:`~ssl_attn.store.head_mean`);
* :func:`read_map`: the two together;
* :func:`read_embedding`: the final-layer patch embeddings ``(y, x, channel)`` as float32.

Each takes ``root`` (:func:`open_root` of the store) and ``ds`` (the group's Dataset from
:func:`~ssl_attn.store.open_store`, for its coordinates and encodings): open both once, read
many times.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .maps import HEAD_DIM, head_mean
from .schema import COMPLETE, IMAGE_DIM, VARIANT_DIM

__all__ = [
    "direct_array",
    "open_root",
    "pick_map",
    "read_cube",
    "read_embedding",
    "read_map",
    "read_slice",
]

LAYER_DIM = "layer"
#: Dims of a cube, in the order :func:`read_cube` returns them (those the variable has).
CUBE_DIMS = (LAYER_DIM, HEAD_DIM, "y", "x")


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


def _image_positions(ds, group: str, name: str, variant: str, image_id: str) -> dict[str, int]:
    """Integer positions of ``variant`` and ``image_id`` in the group's indexes; KeyError
    naming the missing one."""
    pos = {}
    for dim, value in ((VARIANT_DIM, variant), (IMAGE_DIM, image_id)):
        index = ds.indexes[dim]
        if value not in index:
            raise KeyError(f"model {group!r} has no {dim} {value!r} (for {name!r}).")
        pos[dim] = int(index.get_loc(value))
    return pos


def _variable(ds, group: str, name: str):
    if name not in ds.data_vars or name == COMPLETE:
        have = [k for k in ds.data_vars if k != COMPLETE]
        raise KeyError(f"model {group!r} has no method {name!r} (has {have}).")
    return ds.variables[name]


def read_cube(root, ds, group: str, method: str, variant: str, image_id: str) -> np.ndarray:
    """Every map of one image: float32 ``([layer,] [head,] y, x)``, values as stored (NaN where
    not computed yet).

    Args:
        root: :func:`open_root` of the store.
        ds: the group's Dataset (``open_store(path)[group].dataset``).
        group: the model group name; method: a map variable (``cls``, ``rollout``, ...).
        variant, image_id: coordinate values.

    The axes are those of :data:`CUBE_DIMS` the variable has, in that order. Raises KeyError
    naming the missing method/variant/image. A new array each call (callers may cache it).
    """
    var = _variable(ds, group, method)
    pos = _image_positions(ds, group, method, variant, image_id)
    dims = [d for d in CUBE_DIMS if d in var.dims]
    out = read_slice(var, direct_array(root, group, method, var), pos, dims)
    return np.asarray(out, dtype=np.float32)


def pick_map(
    cube: np.ndarray,
    layers: Sequence[int],
    heads: Sequence[int],
    layer: int | None = None,
    head: int | None = None,
    *,
    name: str = "map",
) -> np.ndarray:
    """One ``(y, x)`` map out of a :func:`read_cube` cube, by :func:`select_map`'s rules.

    Args:
        cube: ``([layer,] [head,] y, x)``.
        layers, heads: the variable's layer / head coordinate values (empty when it has no
            such dim).
        layer: a layer value; ``None`` picks the last layer. Without layers: ``None`` or ``-1``.
        head: a head value; ``-1`` or ``None`` is :func:`~ssl_attn.store.head_mean` (NaN when
            any head is NaN). Without heads: ``None`` or ``-1``.
        name: ``"model/method"``, for the error messages.

    Returns a view into ``cube`` for a single head (or a new array for the head-mean); same
    dtype as ``cube``. Raises KeyError naming the missing layer or head.
    """
    layers, heads = list(layers), list(heads)
    if layers:
        layer = layers[-1] if layer is None else layer
        if layer not in layers:
            raise KeyError(f"{name}: no layer {layer} (has {layers}).")
        cube = cube[layers.index(layer)]
    elif layer not in (None, -1):
        raise KeyError(f"{name} has no layers; pass layer=None or -1.")
    if heads:
        if head is None or head == -1:
            return head_mean(cube, axis=0)
        if head not in heads:
            raise KeyError(f"{name}: no head {head} (has {heads}).")
        cube = cube[heads.index(head)]
    elif head not in (None, -1):
        raise KeyError(f"{name} has no heads; pass head=None or -1.")
    return cube


def _coord_values(ds, variable, dim: str) -> list[int]:
    return [int(v) for v in ds[dim].values] if dim in variable.dims else []


def read_map(
    root,
    ds,
    group: str,
    method: str,
    variant: str,
    image_id: str,
    layer: int | None = None,
    head: int | None = None,
) -> np.ndarray:
    """One float32 ``(y, x)`` map: :func:`read_cube` then :func:`pick_map` (``layer=None``:
    last layer; ``head=-1``/``None``: head-mean). Equal to
    ``select_map(tree, group, method, variant=..., layer=..., head=..., image_id=...).values``.
    """
    cube = read_cube(root, ds, group, method, variant, image_id)
    var = ds.variables[method]
    return pick_map(cube, _coord_values(ds, var, LAYER_DIM), _coord_values(ds, var, HEAD_DIM),
                    layer, head, name=f"{group}/{method}")


def read_embedding(root, ds, group: str, variant: str, image_id: str,
                   name: str = "embedding") -> np.ndarray:
    """The patch embeddings of one image as float32 ``(y, x, channel)`` (stored as float16).

    Raises KeyError when the group has no ``name`` variable or lacks the variant/image."""
    if name not in ds.data_vars:
        raise KeyError(f"model {group!r} has no {name!r} variable.")
    var = ds.variables[name]
    pos = _image_positions(ds, group, name, variant, image_id)
    out = read_slice(var, direct_array(root, group, name, var), pos, ["y", "x", "channel"])
    return np.asarray(out, dtype=np.float32)
