"""Storage of a shift table: :func:`write_shift` (atomic, Zarr v3 beside the scores) and
:func:`open_shift`."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ssl_attn.store import decode_attrs, encode_attrs

from .base import TITLE, ShiftError

__all__ = ["open_shift", "write_shift"]


# ------------------------------------------------------------------ storage
_STR_COORDS = ("model", "variant", "control", "method", "metric", "direction", "style",
               "feature")


def write_shift(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a shift Dataset to Zarr at ``path`` (default place: :func:`ssl_attn.store.shift_path`)
    atomically: into ``<path>.tmp-<pid>``, then swapped in by renames, so a reader sees the old
    table or the new one, never half of one. An existing ``path`` that is not a shift table is
    refused (nothing is deleted). Root attrs are JSON-encoded (:func:`ssl_attn.store.encode_attrs`);
    :func:`open_shift` decodes them. Returns ``path``."""
    path = Path(path)
    if path.exists() and not _is_shift(path):
        raise ShiftError(f"{path}: exists and is not a shift table (no {TITLE!r} zarr.json); "
                         "pass another output path or remove it")
    if not path.parent.is_dir():
        raise ShiftError(f"{path.parent}: no such folder; cannot write the shift table {path}")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    out = ds.copy()
    out.attrs = encode_attrs(ds.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # consolidated-v3 notice
        out.to_zarr(str(tmp), mode="w", consolidated=True, zarr_format=3)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)
    return path


def _is_shift(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("attributes", {}).get("title") == TITLE


def open_shift(path: str | os.PathLike) -> xr.Dataset:
    """Read a shift Dataset written by :func:`write_shift` (loaded; root attrs decoded, e.g.
    ``attrs["holm_family"]`` a list). Raises FileNotFoundError when ``path`` holds none."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path}: no shift table here (no zarr.json); run `ssl-attn "
                                "shift --store STORE` after `ssl-attn score`")
    if not _is_shift(path):
        raise ShiftError(f"{path}: a Zarr group but not a shift table (root attr title is not "
                         f"{TITLE!r})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with xr.open_dataset(str(path), engine="zarr", consolidated=None) as raw:
            ds = raw.load()
    ds.attrs = decode_attrs(ds.attrs)
    fix = {c: (ds[c].dims, np.array([str(x) for x in ds[c].values.tolist()], dtype=object))
           for c in _STR_COORDS if c in ds.coords}
    return ds.assign_coords(fix)
