"""Resampling: bilinear upsampling to the evaluation frame, block sums to a coarse grid.

:func:`upsample` is the one bilinear upsample of the project: the metrics (:class:`.core.EvalBatch`)
and the dashboard (the outline of :func:`.core.top_region`) both call it, so the dashboard
draws from the very float32 values the metrics rank. It is written as two separable two-tap
gathers in numpy, not as matrix products:

* **exact ties.** Each output is a linear interpolation ``a0 + f·(a1 − a0)`` in float64
  between the two nearest input pixels, cast to float32 once at the end. Where the two
  inputs are equal the result is exactly that value, so a constant map stays constant and
  plateaus stay tied (the lower-index tie rule of every top-k then decides, not rounding
  noise); elsewhere the float64 result is rounded once.
* **independent of the batch.** Every output is an element-wise expression of its own map,
  so a map's values do not depend on how many maps share the call or on the array's memory
  layout (BLAS may use different blocking or FMA for different shapes; the tests check this
  bit for bit).
* **one map is cheap.** No BLAS call: on a loaded machine multi-threaded BLAS stalls for
  10–20 ms, which the dashboard (one map per redraw) cannot afford; the gathers are also
  faster than the matrix products for whole batches.

:func:`interpolation_matrix` gives the same weights as a dense matrix (for callers that want
the linear map itself); the coordinate rule has one owner, :func:`taps`.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["bin_matrix", "interpolation_matrix", "taps", "upsample"]


@functools.lru_cache(maxsize=64)
def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.arange(n_out, dtype=np.float64)
    # align_corners=False: output pixel centre (i + 0.5) maps to input coordinate
    # (i + 0.5) * n_in / n_out - 0.5 (pixel-centre aligned), clamped at the borders exactly as
    # torch.nn.functional.interpolate(mode="bilinear", align_corners=False) does.
    src = np.clip((out + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.intp)
    frac = src - i0
    i0.setflags(write=False)
    frac.setflags(write=False)
    return i0, frac


def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The linear-interpolation taps from ``n_in`` to ``n_out`` samples: ``(i0, frac)``.

    Output ``i`` (centre at ``(i + 0.5) / n_out`` in relative units) samples the input
    (centres at ``(j + 0.5) / n_in``) at ``c = clip((i + 0.5)·n_in/n_out − 0.5, 0, n_in − 1)``
    (``align_corners=False``, edges held): ``i0 = floor(c)`` (intp ``(n_out,)``) and
    ``frac = c − i0`` (float64 ``(n_out,)``, in [0, 1)); the value is
    ``in[i0] + frac·(in[i0 + 1] − in[i0])`` (``frac`` is 0 where ``i0`` is the last input).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interpolation sizes must be >= 1; got n_in={n_in}, n_out={n_out}")
    return _taps(int(n_in), int(n_out))


@functools.lru_cache(maxsize=64)
def _interp(n_in: int, n_out: int) -> np.ndarray:
    i0, frac = _taps(n_in, n_out)
    rows = np.arange(n_out)
    w = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(w, (rows, i0), 1.0 - frac)
    np.add.at(w, (rows, np.minimum(i0 + 1, n_in - 1)), frac)
    w.setflags(write=False)
    return w


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear-interpolation weights ``float64 (n_out, n_in)``; each row sums to 1.

    Row ``i`` holds the weights of output pixel ``i`` over the input pixels: ``1 − frac`` at
    ``i0`` and ``frac`` at ``i0 + 1`` (:func:`taps`). ``n_in == n_out`` gives the identity.
    (A dense view of the rule; :func:`upsample` applies the taps directly.)
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"interpolation sizes must be >= 1; got n_in={n_in}, n_out={n_out}")
    return _interp(int(n_in), int(n_out))


@functools.lru_cache(maxsize=64)
def _runs(n_in: int, n_out: int) -> tuple[tuple[int, int, int], ...]:
    """``(start, end, i0)``: the runs of consecutive outputs that share the lower tap."""
    i0, _ = _taps(n_in, n_out)
    cut = np.flatnonzero(np.diff(i0)) + 1
    starts, ends = np.r_[0, cut], np.r_[cut, n_out]
    return tuple(zip(starts.tolist(), ends.tolist(), i0[starts].tolist()))


def _steps(a: np.ndarray, axis: int) -> np.ndarray:
    """``a[j + 1] − a[j]`` along ``axis`` (float64), 0 at the last entry."""
    step = np.zeros_like(a)
    hi, lo = [slice(None)] * a.ndim, [slice(None)] * a.ndim
    hi[axis], lo[axis] = slice(1, None), slice(None, -1)
    np.subtract(a[tuple(hi)], a[tuple(lo)], out=step[tuple(lo)])
    return step


def upsample(maps: np.ndarray, frame: int | tuple[int, int] = 224) -> np.ndarray:
    """Bilinear upsampling of native-grid maps over the full image: ``float32 (n, FH, FW)``.

    ``maps``: ``(n, gh, gw)`` or ``(gh, gw)`` (a single map gives ``n = 1``; any real dtype,
    first cast to float32 as the metrics see it), the map's pixels covering the whole image.
    ``frame``: ``R`` (square ``R × R``, default 224) or ``(FH, FW)``.
    Pixel-centre aligned (``align_corners=False``, edges held, as torch's ``interpolate``).
    Computed in float64 as two separable lerps (columns on the native rows, then rows; see the
    module doc), cast to float32 once: equal inputs give exactly their value. A map already at
    the frame size is returned unchanged (as float32). NaN (or ±inf) spreads to the output
    pixels whose taps reach it; the metrics treat such maps as invalid.
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
    n, gh, gw = a.shape
    # Native rows first, laid out (gh, n, ·) so that each output row of every map is one
    # contiguous line: columns r = a0 + fx·(a1 − a0), then per run of output rows sharing
    # the lower tap i, out = r[i] + fy·(r[i + 1] − r[i]) on a block that stays in cache.
    rows = a.transpose(1, 0, 2).astype(np.float64)  # (gh, n, gw)
    x0, fx = _taps(gw, fw)
    r = np.take(_steps(rows, 2), x0, axis=2)
    r *= fx
    r += np.take(rows, x0, axis=2)  # (gh, n, FW)
    dr = _steps(r, 0)
    fy = _taps(gh, fh)[1]
    out = np.empty((n, fh, fw), dtype=np.float32)
    out_rows = out.transpose(1, 0, 2)
    runs = _runs(gh, fh)
    block = np.empty((max(e - s for s, e, _ in runs), n, fw))
    for s, e, i in runs:
        t = block[:e - s]
        np.multiply(fy[s:e, None, None], dr[i], out=t)
        t += r[i]
        np.copyto(out_rows[s:e], t, casting="same_kind")  # the one float32 rounding
    return out


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
