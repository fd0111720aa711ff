"""Ranking kernels: the one sort per map that IoU@p, precision, ROC-AUC and per-region IoU share.

The tie rule of every top-k: higher value first, ties by lower flat index. :func:`order_keys`
gives the full pixel order under that rule (one uint64 sort of packed (value, index) keys; the
reference). The metrics use :class:`Ranking` instead: one uint32 sort of (value, mask bit)
keys (:func:`mask_keys`), about 5x faster, from which counts above any cut and the AUC's
rank sum follow exactly; the flat index is consulted only where a cut splits a run of equal
values that mixes mask and non-mask pixels (rare).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["Ranking", "key_values", "mask_keys", "order_keys"]


def order_keys(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort pixels by (value descending, flat index ascending) in one uint64 sort.

    Why hand-written: ``argsort(kind="stable")`` on floats is ~8x slower here than sorting
    packed integer keys, and an unstable argsort would break the tie rule. The float32 value
    is mapped to an order-preserving uint32, complemented (so ascending = descending value)
    and packed above the pixel index; keys are unique, so the order is fully determined.
    Returns ``order`` (intp, pixel index at each sorted position) and the sorted keys (equal
    ``key >> shift`` = tied values).
    """
    npix = flat.shape[1]
    shift = max(1, int(npix - 1).bit_length())
    if 32 + shift > 64:
        raise ValueError(f"frame of {npix} pixels is too large for 64-bit sort keys")
    bits = (flat + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into +0.0
    # Order-preserving map of IEEE bits, complemented: non-negative x -> bits ^ 0x7FFFFFFF,
    # negative x -> bits (their bit patterns already descend as the value ascends).
    desc = np.where(bits < np.uint32(0x80000000), bits ^ np.uint32(0x7FFFFFFF), bits)
    key = np.left_shift(desc, np.uint64(shift), dtype=np.uint64)
    key |= np.arange(npix, dtype=np.uint64)
    key.sort(axis=1)
    order = (key & np.uint64((1 << shift) - 1)).view(np.intp)
    key >>= np.uint64(shift)
    return order, key


_SIGN = np.uint32(0x80000000)


def mask_keys(flat: np.ndarray, mask: np.ndarray, nonneg: bool) -> np.ndarray:
    """Per map, the pixels' (value, mask bit) keys sorted ascending: ``(n, N)`` uint32 or uint64.

    Why hand-written: a stable float argsort is ~15x slower than numpy's SIMD integer sort,
    and only the order of values and the mask bit at each position are needed. The float32
    value (−0.0 made +0.0) becomes an order-preserving integer with the pixel's mask bit
    appended as the lowest bit, so an ascending sort orders pixels by value and, within a run
    of equal values, puts non-mask pixels first. ``nonneg`` (no negative value in the batch):
    the IEEE bits of non-negative floats already ascend with the value and use 31 bits, so
    the key fits uint32; otherwise the sign is folded in and the key needs uint64.
    """
    if nonneg:  # the shift drops the sign bit, so -0.0 gets +0.0's key
        key = np.left_shift(flat.view(np.uint32), np.uint32(1))
    else:  # negative x: ~bits ascends with x, below every non-negative x (bits | sign bit)
        bits = (flat + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into +0.0
        key = np.left_shift(np.where(bits < _SIGN, bits | _SIGN, ~bits), np.uint64(1),
                            dtype=np.uint64)
    key |= mask.view(np.uint8)
    key.sort(axis=1)
    return key


def key_values(v: np.ndarray, wide: bool) -> np.ndarray:
    """float32 values of keys shifted right by one (``v = key >> 1``); any shape."""
    u = np.asarray(v).astype(np.uint32)
    if wide:
        u = np.where(u >= _SIGN, u ^ _SIGN, ~u)
    return u.view(np.float32)


_ONE_F32 = np.uint32(0x3F800000)  # the IEEE bits of 1.0f


@functools.lru_cache(maxsize=8)
def _positions(npix: int) -> np.ndarray:
    """float32 ``(N, 2)``: sorted positions split as ``q = 256·hi + lo``. A float32 product
    of the 0/1 mask bits with either column sums integers below 2^24 (``N <= 65536``), so
    every partial sum, in any order, is exact."""
    q = np.arange(npix)
    pos = np.asfortranarray(np.stack([q // 256, q % 256], axis=1).astype(np.float32))
    pos.setflags(write=False)
    return pos


class Ranking:
    """Maps ``flat`` float32 ``(n, N)`` (no NaN) ranked against one flat bool ``mask``
    ``(N,)`` (the image's union); ``nonneg``: no value is negative (see :func:`mask_keys`).

    ``key``: sorted keys (:func:`mask_keys`); ``bit``: float32 0/1, the mask bit at each
    sorted position (float32 so that sums of it run in SIMD and BLAS, exactly: < 2^24).
    Runs of equal values are found in ``key`` by binary search: value ``v`` owns the keys
    ``2v`` (its non-mask pixels) and ``2v + 1`` (its mask pixels).
    """

    def __init__(self, flat: np.ndarray, mask: np.ndarray, nonneg: bool) -> None:
        # Holds the maps, never the EvalBatch that caches this object: a reference cycle
        # would keep these large arrays alive until the cyclic garbage collector runs.
        self.flat, self.mask = flat, np.ascontiguousarray(mask, dtype=bool)
        self.area = int(np.count_nonzero(self.mask))
        self.key = mask_keys(flat, self.mask, nonneg)
        self.wide = self.key.dtype == np.uint64
        bit = (self.key & 1).astype(np.uint32, copy=False)
        bit *= _ONE_F32  # 0 or the bits of 1.0f: the float32 0/1 array without a cast pass
        self.bit = bit.view(np.float32)

    def run(self, row: int, v: int) -> tuple[int, int, int]:
        """Sorted positions ``(start, first mask, end)`` of value ``v``'s run in map ``row``."""
        k = self.key[row]
        lo = 2 * int(v)
        s, ms, e = np.searchsorted(k, np.array([lo, lo + 1, lo + 2], dtype=k.dtype))
        return int(s), int(ms), int(e)

    def first_by_index(self, row: int, v: int, r: int, mask: np.ndarray) -> int:
        """How many of the ``r`` lowest-index pixels of value ``v`` (map ``row``) are in
        ``mask``: the tie rule of every top-k (an O(N) scan, needed only at a cut inside a
        run of equal values that mixes pixels in and out of ``mask``)."""
        value = key_values(np.uint64(v), self.wide)
        idx = np.flatnonzero(self.flat[row] == value)
        return int(np.count_nonzero(mask[idx[:r]]))

    def topk_hits(self, ks: np.ndarray) -> np.ndarray:
        """int64 ``(n, len(ks))``: mask pixels among each map's top-``k`` (higher value
        first, ties by lower flat index)."""
        n, npix = self.key.shape
        ks = np.asarray(ks, dtype=np.int64)
        hits = np.zeros((n, ks.size), dtype=np.int64)
        some = np.flatnonzero(ks > 0)
        if some.size == 0:
            return hits
        c = npix - ks[some]  # the top-k holds the sorted positions c .. N-1
        cuts = np.unique(c)
        # Mask bits in [cuts[i], cuts[i+1]) (contiguous slice sums are much faster than
        # np.add.reduceat along axis 1), then suffix sums: mask bits in [cuts[i], N).
        seg = np.stack([self.bit[:, a:z].sum(axis=1)
                        for a, z in zip(cuts.tolist(), [*cuts[1:].tolist(), npix])], axis=1)
        suffix = np.cumsum(seg[:, ::-1], axis=1)[:, ::-1].astype(np.int64)
        hits[:, some] = suffix[:, np.searchsorted(cuts, c)]
        # Within a run the keys put mask pixels last (first in the top-k); where the cut
        # falls inside a run, count the run's share by flat index instead.
        inner = np.flatnonzero(c > 0)
        if inner.size:
            cc = c[inner]
            v = self.key[:, cc] >> 1
            rows, cols = np.nonzero(v == (self.key[:, cc - 1] >> 1))
            for r, j in zip(rows.tolist(), cols.tolist()):
                s, ms, e = self.run(r, v[r, j])
                in_top, n_mask = e - int(cc[j]), e - ms
                if 0 < n_mask < e - s:  # a mixed run: the key order is not the tie rule
                    hits[r, some[inner[j]]] += (
                        self.first_by_index(r, v[r, j], in_top, self.mask)
                        - min(n_mask, in_top))
        return hits

    def auc_u(self) -> np.ndarray:
        """float64 ``(n,)`` Mann–Whitney U of mask vs non-mask pixels, ties counted half."""
        n, npix = self.key.shape
        p = self.area
        # Σ of the mask pixels' ascending positions minus P(P−1)/2 counts, per mask pixel,
        # the non-mask pixels sorted before it: every lower one and, since keys put non-mask
        # first within a run, every equal one too. Integers < 2^53: exact in float64.
        if npix > 65536:  # pragma: no cover - beyond 256x256 frames: exact in float64
            u = self.bit.astype(np.float64) @ np.arange(npix, dtype=np.float64)
        else:
            hi_lo = (self.bit @ _positions(npix)).astype(np.float64)
            u = 256.0 * hi_lo[:, 0] + hi_lo[:, 1]
        u -= p * (p - 1) // 2
        # Equal values count half: take 0.5 per (non-mask, mask) pair of each mixed run,
        # whose boundary is a key 2v followed by 2v + 1.
        key = self.key
        step = np.flatnonzero(key[:, 1:] - key[:, :-1] == 1)
        if step.size:
            rows, pos = np.divmod(step, npix - 1)
            keep = (key[rows, pos] & 1) == 0
            rows, pos = rows[keep], pos[keep] + 1
        if step.size and rows.size:
            lo = key[rows, pos - 1]
            start = np.empty(rows.size, dtype=np.int64)
            end = np.empty(rows.size, dtype=np.int64)
            for r in np.unique(rows).tolist():
                sel = rows == r
                start[sel] = np.searchsorted(key[r], lo[sel], side="left")
                end[sel] = np.searchsorted(key[r], lo[sel] + 2, side="left")
            pairs = (pos - start) * (end - pos)
            u -= 0.5 * np.bincount(rows, weights=pairs, minlength=n)
        return u
