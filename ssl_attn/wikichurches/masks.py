"""Rasterise WikiChurches boxes into pixel masks and soft targets (pure numpy).

All functions take boxes as an ``(n, 4)`` array of ``[left, top, width, height]`` *fractions*
of the image size (origin top-left, y down) or a boxes DataFrame with those columns, and a
raster size ``height × width`` in pixels.

Rasterisation rule (docs/SCHEMA.md): pixel ``(r, c)`` belongs to a box when its centre lies
inside the box, ``left*W <= c + 0.5 < (left + width)*W`` and likewise for rows. A box that
covers no pixel centre gets exactly the one pixel holding its centre (clipped into the frame),
so every box has at least one pixel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas is only needed for the type hint
    import pandas as pd

__all__ = ["as_box_array", "box_masks", "box_pixel_ranges", "soft_target", "union_mask"]

BOX_COLUMNS = ("left", "top", "width", "height")


def as_box_array(boxes: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Return boxes as a float64 ``(n, 4)`` array ``[left, top, width, height]`` (fractions).

    Accepts an array-like of shape ``(n, 4)`` (or ``(4,)`` for one box) or a DataFrame with
    the columns ``left, top, width, height``. Raises ``ValueError`` on a wrong shape, missing
    columns, non-finite values or negative width/height.
    """
    if hasattr(boxes, "columns"):
        missing = [c for c in BOX_COLUMNS if c not in boxes.columns]
        if missing:
            raise ValueError(
                f"boxes DataFrame lacks column(s) {missing}; it needs {list(BOX_COLUMNS)}"
            )
        arr = boxes.loc[:, list(BOX_COLUMNS)].to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.ndim == 1 and arr.shape[0] == 4:
            arr = arr[None, :]
        if arr.size == 0:
            arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"boxes must have shape (n, 4) as [left, top, width, height]; got {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("boxes contain non-finite values (NaN or inf)")
    if (arr[:, 2:] < 0).any():
        raise ValueError("boxes contain a negative width or height")
    return arr


def _check_size(height: int, width: int) -> tuple[int, int]:
    h, w = int(height), int(width)
    if h < 1 or w < 1 or h != height or w != width:
        raise ValueError(f"raster size must be positive integers; got height={height}, "
                         f"width={width}")
    return h, w


def box_pixel_ranges(
    boxes: np.ndarray | pd.DataFrame, height: int, width: int
) -> np.ndarray:
    """Half-open pixel ranges covered by each box: int64 ``(n, 4)`` = ``[r0, r1, c0, c1]``.

    Box ``i`` covers rows ``r0:r1`` and columns ``c0:c1`` of an ``height × width`` raster under
    the pixel-centre rule; boxes that cover no pixel centre get the single pixel holding their
    centre (clipped into the frame), so ``r1 - r0 >= 1`` and ``c1 - c0 >= 1`` always.
    """
    arr = as_box_array(boxes)
    h, w = _check_size(height, width)
    left, top, bw, bh = arr.T
    # Pixel c is inside when left*W <= c + 0.5 < right*W. The first such c is the number of
    # pixel centres strictly below left*W; searchsorted on the exact centres evaluates the
    # rule literally instead of via ceil/floor arithmetic that could round differently.
    col_centres = np.arange(w) + 0.5
    row_centres = np.arange(h) + 0.5
    c0 = np.searchsorted(col_centres, left * w, side="left")
    c1 = np.searchsorted(col_centres, (left + bw) * w, side="left")
    r0 = np.searchsorted(row_centres, top * h, side="left")
    r1 = np.searchsorted(row_centres, (top + bh) * h, side="left")
    empty = (c1 <= c0) | (r1 <= r0)
    if empty.any():
        cc = np.clip(np.floor((left + bw / 2) * w), 0, w - 1).astype(np.int64)
        rc = np.clip(np.floor((top + bh / 2) * h), 0, h - 1).astype(np.int64)
        c0 = np.where(empty, cc, c0)
        c1 = np.where(empty, cc + 1, c1)
        r0 = np.where(empty, rc, r0)
        r1 = np.where(empty, rc + 1, r1)
    return np.stack([r0, r1, c0, c1], axis=1).astype(np.int64)


def box_masks(boxes: np.ndarray | pd.DataFrame, height: int, width: int) -> np.ndarray:
    """One boolean mask per box: ``bool (n, height, width)``.

    Vectorised over boxes (broadcast comparisons of row/column indices against each box's
    pixel range). ``n = 0`` gives an empty ``(0, height, width)`` array.
    """
    h, w = _check_size(height, width)
    rng = box_pixel_ranges(boxes, h, w)
    rows = np.arange(h)
    cols = np.arange(w)
    in_rows = (rows[None, :] >= rng[:, 0:1]) & (rows[None, :] < rng[:, 1:2])  # (n, H)
    in_cols = (cols[None, :] >= rng[:, 2:3]) & (cols[None, :] < rng[:, 3:4])  # (n, W)
    return in_rows[:, :, None] & in_cols[:, None, :]


def union_mask(boxes: np.ndarray | pd.DataFrame, height: int, width: int) -> np.ndarray:
    """Union of all box masks: ``bool (height, width)``; all False when there are no boxes.

    Memory is ``O(H·W)`` regardless of the number of boxes (each box is a rectangle, so it is
    painted as one slice; the loop runs over boxes, never over pixels).
    """
    h, w = _check_size(height, width)
    out = np.zeros((h, w), dtype=bool)
    for r0, r1, c0, c1 in box_pixel_ranges(boxes, h, w):
        out[r0:r1, c0:c1] = True
    return out


def soft_target(boxes: np.ndarray | pd.DataFrame, height: int, width: int) -> np.ndarray:
    """Soft target map: ``float64 (height, width)``, non-negative, sums to 1.

    Per box an axis-aligned Gaussian centred on the box centre with ``σx = w_px / 4`` and
    ``σy = h_px / 4`` (box width/height in pixels of this raster; each at least 1 px),
    evaluated at pixel centres; the pixelwise maximum over boxes is normalised to sum 1.
    Raises ``ValueError`` when there are no boxes (the target would be undefined).
    """
    arr = as_box_array(boxes)
    h, w = _check_size(height, width)
    if arr.shape[0] == 0:
        raise ValueError(
            "soft_target needs at least one box; this image has none (skip it or use a "
            "baseline map instead)"
        )
    left, top, bw, bh = arr.T
    cx = (left + bw / 2) * w
    cy = (top + bh / 2) * h
    sx = np.maximum(bw * w / 4.0, 1.0)
    sy = np.maximum(bh * h / 4.0, 1.0)
    xs = np.arange(w) + 0.5
    ys = np.arange(h) + 0.5
    gx = np.exp(-0.5 * ((xs[None, :] - cx[:, None]) / sx[:, None]) ** 2)  # (n, W)
    gy = np.exp(-0.5 * ((ys[None, :] - cy[:, None]) / sy[:, None]) ** 2)  # (n, H)
    out = np.zeros((h, w), dtype=np.float64)
    # Loop over boxes (not pixels) so memory stays O(H·W) for full-resolution photos.
    for i in range(arr.shape[0]):
        np.maximum(out, np.outer(gy[i], gx[i]), out=out)
    total = out.sum()
    if not total > 0:  # every Gaussian underflowed: the boxes lie far outside the frame
        raise ValueError("soft_target: the boxes' Gaussians vanish inside the frame; check "
                         "that box coordinates are fractions in [0, 1]")
    return out / total
