"""The head-mean rule and the scores and shift paths: store conventions every reader shares.

:func:`head_mean` is the one definition of the "fused" map (``head = -1`` in the scores and
the dashboard): scoring, :func:`~ssl_attn.store.select_map` and the explorer all call it, so
the map a score was computed from is the map the dashboard draws.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HEAD_DIM", "head_mean", "scores_path", "shift_path"]

HEAD_DIM = "head"


def head_mean(maps: Any, axis: int = 0) -> Any:
    """The mean over heads, NaN-propagating: a map missing any head is missing.

    ``maps``: an ``xarray.DataArray`` with a ``head`` dim (numpy- or dask-backed; the mean is
    taken over ``head`` and ``axis`` is ignored), or a numpy array whose ``axis`` is the head
    axis (e.g. ``(head, y, x)`` with ``axis=0``). The mean is computed in the input's float
    dtype (float32 maps give float32; numpy's ``mean``), so every caller gets the same bits.

    Why NaN propagates (``skipna=False``): the store writes all heads of an image at once, so
    a NaN head means the image is not complete; averaging the heads that happen to be present
    would silently score a different map.
    """
    if hasattr(maps, "dims"):
        if HEAD_DIM not in maps.dims:
            raise ValueError(f"head_mean: no {HEAD_DIM!r} dim in {tuple(maps.dims)}")
        return maps.mean(HEAD_DIM, skipna=False, keep_attrs=True)
    return np.mean(np.asarray(maps), axis=axis)


def _beside(store: str | os.PathLike, suffix: str) -> Path:
    p = Path(store)
    stem = p.name[:-5] if p.name.endswith(".zarr") else p.name
    return p.with_name(f"{stem}.{suffix}.zarr")


def scores_path(store: str | os.PathLike) -> Path:
    """Where the scores of an attention store live: ``X.zarr`` → ``X.scores.zarr`` (any other
    name gets ``.scores.zarr`` appended), in the same folder."""
    return _beside(store, "scores")


def shift_path(store: str | os.PathLike) -> Path:
    """Where the fine-tuning shift table of an attention store lives (written by
    :func:`ssl_attn.finetune.shift.write_shift`): ``X.zarr`` → ``X.shift.zarr`` (any other name
    gets ``.shift.zarr`` appended), in the same folder, beside :func:`scores_path`."""
    return _beside(store, "shift")
