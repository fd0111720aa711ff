"""Resampling matrices: bilinear upsampling to the evaluation frame, block sums to a coarse grid.

Both operations are linear and separable, so each is a pair of small matrices applied with
``matmul`` (``out = Wy @ map @ Wx.T``). numpy's stacked ``matmul`` calls one GEMM per map with
the same shapes whatever the batch size, so a map's upsampled values do not depend on how many
maps share the call (the tests check this bit for bit).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["bin_matrix", "interpolation_matrix", "upsample"]


@functools.lru_cache(maxsize=64)
def _interp(n_in: int, n_out: int) -> np.ndarray:
    out = np.arange(n_out, dtype=np.float64)
    # align_corners=False: output pixel centre (i + 0.5) maps to input coordinate
    # (i + 0.5) * n_in / n_out - 0.5 (pixel-centre aligned), clamped at the borders exactly as
    # torch.nn.functional.interpolate(mode="bilinear", align_corners=False) does.
    src = np.clip((out + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    w = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(w, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(w, (np.arange(n_out), i1), lam)
    w.setflags(write=False)
    return w


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear-interpolation weights ``float64 (n_out, n_in)``; each row sums to 1.

    Row ``i`` holds the weights of output pixel ``i`` (centre at ``(i + 0.5) / n_out`` in
    relative units) over the input pixels (centres at ``(j + 0.5) / n_in``): the
    ``align_corners=False`` convention, with the coordinate clamped to the first/last input
    centre at the borders. ``n_in == n_out`` gives the identity.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interpolation sizes must be >= 1; got n_in={n_in}, n_out={n_out}")
    return _interp(int(n_in), int(n_out))


def upsample(maps: np.ndarray, frame: int | tuple[int, int] = 224) -> np.ndarray:
    """Bilinear upsampling of native-grid maps over the full image: ``float32 (n, FH, FW)``.

    ``maps``: ``(n, gh, gw)`` or ``(gh, gw)`` (any float dtype), the map's pixels covering the
    whole image. ``frame``: ``R`` (square ``R × R``, default 224) or ``(FH, FW)``.
    Pixel-centre aligned (``align_corners=False``); a map already at the frame size is
    returned unchanged (as float32). NaN propagates to the output pixels it touches.
    """
    a = np.asarray(maps)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must have shape (n, gh, gw) or (gh, gw); got {a.shape}")
    fh, fw = (frame, frame) if np.isscalar(frame) else tuple(frame)
    a = a.astype(np.float32, copy=False)
    if a.shape[1:] == (fh, fw):
        return a
    wy = interpolation_matrix(a.shape[1], fh).astype(np.float32)
    wxt = np.ascontiguousarray(interpolation_matrix(a.shape[2], fw).T.astype(np.float32))
    return np.matmul(wy, np.matmul(a, wxt))


@functools.lru_cache(maxsize=64)
def _bins(n_in: int, n_out: int) -> np.ndarray:
    # A pixel belongs to the coarse cell that holds its centre.
    cell = np.floor((np.arange(n_in) + 0.5) * n_out / n_in).astype(np.int64)
    b = np.zeros((n_out, n_in), dtype=np.float64)
    b[cell, np.arange(n_in)] = 1.0
    b.setflags(write=False)
    return b


def bin_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Block-sum matrix ``float64 (n_out, n_in)`` of 0/1: pixel ``j`` goes to the coarse cell
    holding its centre, ``floor((j + 0.5) * n_out / n_in)``."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"bin sizes must be >= 1; got n_in={n_in}, n_out={n_out}")
    return _bins(int(n_in), int(n_out))
