"""Reading a store: lazy, read-only opening of a store and its scores, and one-map selection.

The fast, per-click path (raw Zarr reads positioned by xarray's coordinates) is
:mod:`ssl_attn.store.fast`; both read the same schema.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from .layout import _has_zarr_root, _root_attrs
from .maps import head_mean
from .schema import COMPLETE, IMAGE_DIM, VARIANT_DIM, check_schema


def open_store(path: str | os.PathLike, *, chunks: Any = None) -> xr.DataTree:
    """Open a store lazily and read-only.

    Args:
        path: the store directory.
        chunks: ``None`` (default) reads through xarray's lazy zarr indexing (no dask needed:
            selecting one map reads one chunk); ``{}`` gives dask arrays on the stored chunks.

    Uses the consolidated metadata when present (one file read for the whole tree: opening a
    small store took ~20 ms here, one ``select_map`` ~10 ms). Values come back as
    stored: NaN where a map is not computed yet (check ``complete``). Attrs are as stored;
    decode JSON attrs with :func:`decode_attr`. Raises
    :class:`~ssl_attn.store.schema.SchemaVersionError` for a store of a newer schema version
    (root attr ``ssl_attn_schema``; absent means 1).
    """
    path = Path(path)
    if not _has_zarr_root(path):
        raise FileNotFoundError(
            f"{path}: not an attention store (no zarr.json); run `ssl-attn extract` or "
            "ssl_attn.extract.extract(...) to create it."
        )
    check_schema(path, _root_attrs(path))
    store = zarr.storage.LocalStore(str(path), read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # consolidated-v3 notice
        return xr.open_datatree(store, engine="zarr", chunks=chunks, consolidated=None)


def open_scores(path: str | os.PathLike, *, chunks: Any = None) -> xr.Dataset:
    """Open a scores Dataset (``X.scores.zarr``, written by :func:`ssl_attn.metrics.score`)
    lazily and read-only.

    ``chunks``: ``None`` (default) reads through xarray's lazy indexing without dask; ``{}``
    gives dask arrays on the stored chunks. Raises FileNotFoundError when ``path`` holds no
    Zarr group.
    """
    path = Path(path)
    if not _has_zarr_root(path):
        raise FileNotFoundError(
            f"{path}: no scores here (no zarr.json); run `ssl-attn score --store STORE`.")
    store = zarr.storage.LocalStore(str(path), read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # consolidated-v3 notice
        return xr.open_dataset(store, engine="zarr", chunks=chunks, consolidated=None)


def model_groups(tree: xr.DataTree) -> list[str]:
    """Names of the model groups in a store tree, sorted."""
    return sorted(tree.children)


def select_map(
    tree: xr.DataTree,
    model: str,
    method: str,
    *,
    variant: str = "frozen",
    layer: int | None = None,
    head: int | None = None,
    image_id: str,
) -> xr.DataArray:
    """One ``(y, x)`` map from a store tree, loaded.

    Args:
        tree: from :func:`open_store`.
        model: group name; method: variable (``cls``, ``rollout``, ``mean_received``,
            ``probe``, ``gradcam``).
        variant: default ``"frozen"``.
        layer: a ``layer`` coordinate value; ``None`` picks the last layer. For a variable
            without layers (``probe``) pass ``None`` or ``-1``.
        head: a ``head`` coordinate value; ``-1`` or ``None`` is the head-mean
            (:func:`~ssl_attn.store.head_mean`: NaN when any head is NaN). For a variable
            without heads pass ``None`` or ``-1``.
        image_id: e.g. ``"Q2034923_wd0"``.

    Raises KeyError naming the missing model/method/variant/layer/head/image.
    """
    if model not in tree.children:
        raise KeyError(f"no model group {model!r} in the store (has {model_groups(tree)}).")
    ds = tree[model].dataset
    if method not in ds.data_vars or method == COMPLETE:
        methods = [k for k in ds.data_vars if k != COMPLETE]
        raise KeyError(f"model {model!r} has no method {method!r} (has {methods}).")
    da = ds[method]
    for dim, value in ((VARIANT_DIM, variant), (IMAGE_DIM, image_id)):
        if value not in da.indexes[dim]:
            raise KeyError(f"model {model!r} has no {dim} {value!r}.")
    da = da.sel({VARIANT_DIM: variant, IMAGE_DIM: image_id})
    if "layer" in da.dims:
        layer = int(da["layer"].values[-1]) if layer is None else layer
        if layer not in da.indexes["layer"]:
            raise KeyError(f"{model}/{method}: no layer {layer} (has {list(da['layer'].values)}).")
        da = da.sel(layer=layer)
    elif layer not in (None, -1):
        raise KeyError(f"{model}/{method} has no layers; pass layer=None or -1.")
    if "head" in da.dims:
        if head is None or head == -1:
            da = head_mean(da.load())
        elif head not in da.indexes["head"]:
            raise KeyError(f"{model}/{method}: no head {head} (has {list(da['head'].values)}).")
        else:
            da = da.sel(head=head)
    elif head not in (None, -1):
        raise KeyError(f"{model}/{method} has no heads; pass head=None or -1.")
    extra = [d for d in da.dims if d not in ("y", "x")]
    if extra:
        raise KeyError(f"{model}/{method}: {extra} left after selection; not a (y, x) map.")
    return da.transpose("y", "x").load()
