"""Map-vs-box metrics on plain numpy arrays, vectorised over a leading batch of maps.

Every metric works in one evaluation frame: a native-grid map ``(gh, gw)`` covering the whole
image is upsampled bilinearly (pixel-centre aligned) to ``FH × FW`` (``R × R``, default 224)
and compared there with the boxes rasterised into the same frame (:mod:`.target`).

Shared work is done once per batch by :class:`EvalBatch`: the upsample, the float64 copy
of ``a⁺`` that every sum uses, and one integer sort per map of (value, union-mask bit) keys
(:class:`.ranking.Ranking`: numpy's SIMD sort of uint32, ~5x faster than sorting pixel
indices).
Every top-k and argmax follows one deterministic tie rule: higher value first, ties by lower
flat index. From the sorted keys, IoU@p and area-matched precision are counts of mask bits
above a cut, ROC-AUC is a sum of the mask bits' positions, and per-region IoU reads each
region's cut value and counts the region's pixels against it. Only where a cut falls inside
a run of equal values that mixes pixels in and out of the mask does the tie rule need the
flat indices (an O(N) scan of that map, rare); ties in the AUC count half and are settled
from the runs' sizes. Results equal a full sort by (value, index) exactly (the tests check
this against a brute-force lexsort).

Definitions (DESIGN.md §7), for a map ``a`` and target mask ``m`` with ``N`` frame pixels:

- ``iou`` IoU@p: top-k set with ``k = round_half_up(N·(100−p)/100)``; ``|T∩m| / |T∪m|``.
- ``coverage``: ``Σ(a⁺·m) / Σa⁺`` with ``a⁺ = max(a, 0)``; an all-zero ``a⁺`` gives NaN.
- ``pointing``: 1 if the argmax pixel lies in ``m`` else 0; ``pointing_tol``: 1 if any mask
  pixel centre lies within the ellipse of semi-axes ``15·FH/H`` rows and ``15·FW/W`` columns
  around the argmax centre (15 px at the image's own ``H × W`` resolution).
- ``area_precision``: fraction of the top-``|m|`` pixels inside ``m``.
- ``roc_auc``: Mann–Whitney AUC of the map as a score for mask pixels, ties counted half
  (mid-ranks); a constant map gives 0.5; NaN when ``m`` is empty or the whole frame.
- ``mse``: mean over pixels of ``(â − t̂)²`` where ``â`` and ``t̂`` are the map and the soft
  target each min-max scaled to [0, 1]; a constant map gives NaN.
- ``kl``: ``KL(t‖q) = Σ p·log(p/q)`` (natural log, nats) with ``p = (t + ε)/(1 + Nε)`` and
  ``q = (a⁺/Σa⁺ + ε)/(1 + Nε)``, ``ε = 1e-8`` (:data:`KL_EPS`).
- ``emd``: exact Wasserstein-1 between ``a⁺`` and ``t`` block-summed onto a ``G × G`` grid
  (default 8) and normalised to mass 1; ground cost = Euclidean distance between cell centres
  in relative image units (a one-cell shift on 8×8 costs 1/8); solved exactly by POT's
  network simplex, on the cells where the two histograms differ (:func:`.wasserstein.w1`; equal to
  ``ot.emd2`` on the full problem to ~1e-15 relative).

Rows of ``maps`` that contain NaN give NaN for every metric.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from .ranking import Ranking, key_values, order_keys
from .registry import METRICS, names
from .registry import REGION_METRICS as _REGION_METRICS
from .resample import bin_matrix, upsample
from .target import DEFAULT_EMD_GRID, DEFAULT_TOLERANCE_PX, Target, make_target
from .wasserstein import block_sums, ground_cost, w1

__all__ = [
    "KL_EPS",
    "PERCENTILES",
    "EvalBatch",
    "Timings",
    "area_precision",
    "coverage",
    "emd",
    "evaluate",
    "iou",
    "kl_divergence",
    "pointing",
    "profile",
    "roc_auc",
    "soft_mse",
    "top_region",
    "topk_size",
]

#: IoU percentiles; IoU@90 is the headline.
PERCENTILES: tuple[int, ...] = (50, 60, 70, 75, 80, 85, 90)
#: Epsilon added to both distributions (after normalising to mass 1) in KL.
KL_EPS = 1e-8
#: Maps per internal sub-batch (bounds memory: about 40 bytes per frame pixel per map).
BATCH = 16

# ------------------------------------------------------------------ optional timing per family
class Timings(dict):
    """Seconds per metric family, summed over threads: wall-clock time spent in each family's
    blocks (the dict itself; it includes waiting for a core or the GIL on a busy machine)
    and ``cpu``, the CPU time of the thread in those blocks (``time.thread_time``)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: dict[str, float] = {}


_PROFILE: Timings | None = None
_PROFILE_LOCK = threading.Lock()


@contextmanager
def profile() -> Iterator[Timings]:
    """Collect seconds spent per metric family (summed over threads) while the block runs.

    >>> with profile() as t:      # doctest: +SKIP
    ...     evaluate(maps, target)
    >>> t["rank"], t.cpu["rank"]  # doctest: +SKIP
    """
    global _PROFILE
    _PROFILE = Timings()
    try:
        yield _PROFILE
    finally:
        _PROFILE = None


@contextmanager
def _timed(family: str) -> Iterator[None]:
    if _PROFILE is None:
        yield
        return
    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        with _PROFILE_LOCK:
            if _PROFILE is not None:
                _PROFILE[family] = _PROFILE.get(family, 0.0) + dt
                _PROFILE.cpu[family] = _PROFILE.cpu.get(family, 0.0) + dc


# ------------------------------------------------------------------ the shared per-batch work
def topk_size(n_pixels: int, percentile: float) -> int:
    """``k = round(N·(100 − p)/100)`` with halves rounded up (exact for integer ``p``)."""
    if float(percentile).is_integer():
        return (int(n_pixels) * (100 - int(percentile)) * 2 + 100) // 200
    return int(np.floor(n_pixels * (100.0 - percentile) / 100.0 + 0.5))


class EvalBatch:
    """A batch of maps in the evaluation frame with the intermediates all metrics share.

    ``maps``: ``(n, gh, gw)`` or ``(gh, gw)`` native-grid maps; ``frame``: ``R`` or
    ``(FH, FW)``. Attributes are computed lazily and once: ``flat`` float32 ``(n, N)``,
    ``valid`` bool ``(n,)`` (no NaN), ``top`` (argmax, lowest index among equal maxima),
    ``vmax``/``vmin``, ``nonneg`` float64 ``(n, N)`` = ``max(a, 0)``, ``mass`` = ``Σa⁺``,
    ``ranking(mask)`` (the sort shared by IoU, precision, AUC and per-region IoU) and
    ``order`` (the full pixel order, higher value first, ties by lower index; not needed by
    any metric, kept for callers and as the reference of the tie rule).
    """

    def __init__(self, maps: np.ndarray, frame: int | tuple[int, int] = 224) -> None:
        with _timed("upsample"):
            up = upsample(maps, frame)
        self.frame: tuple[int, int] = tuple(int(v) for v in up.shape[1:])  # type: ignore
        self.n, self.n_pixels = up.shape[0], self.frame[0] * self.frame[1]
        flat = up.reshape(self.n, self.n_pixels)
        self.valid = np.isfinite(flat).all(axis=1)
        if not self.valid.all():
            flat = np.where(self.valid[:, None], flat, np.float32(0.0))
        self.flat = flat
        self._rankings: dict[int, tuple[np.ndarray, Ranking]] = {}

    @functools.cached_property
    def all_nonneg(self) -> bool:
        """True when no value of the batch is negative (then ``nonneg`` is ``flat``)."""
        return bool(self.flat.size == 0 or self.flat.min() >= 0)

    def ranking(self, mask: np.ndarray) -> Ranking:
        """The maps ranked against flat bool ``mask`` ``(N,)``; computed once per mask."""
        hit = self._rankings.get(id(mask))
        if hit is not None and hit[0] is mask:
            return hit[1]
        with _timed("rank"):
            r = Ranking(self.flat, mask, self.all_nonneg)
        self._rankings[id(mask)] = (mask, r)
        return r

    @functools.cached_property
    def order(self) -> np.ndarray:
        """intp ``(n, N)``: pixel index at each position, highest value first."""
        return order_keys(self.flat)[0]

    @functools.cached_property
    def top(self) -> np.ndarray:
        """intp ``(n,)``: flat index of the maximum (lowest index among equal maxima)."""
        return np.argmax(self.flat, axis=1)

    @functools.cached_property
    def vmax(self) -> np.ndarray:
        """float64 ``(n,)`` maximum of each map."""
        return self.flat.max(axis=1).astype(np.float64)

    @functools.cached_property
    def vmin(self) -> np.ndarray:
        """float64 ``(n,)`` minimum of each map."""
        return self.flat.min(axis=1).astype(np.float64)

    @functools.cached_property
    def nonneg(self) -> np.ndarray:
        """float64 ``(n, N)``: ``max(a, 0)``."""
        x = self.flat.astype(np.float64)
        if not self.all_nonneg:
            np.maximum(x, 0.0, out=x)
        return x

    @functools.cached_property
    def mass(self) -> np.ndarray:
        """float64 ``(n,)``: ``Σa⁺``."""
        return self.nonneg.sum(axis=1)

    def finish(self, values: np.ndarray) -> np.ndarray:
        """Set rows of invalid (NaN-containing) maps to NaN; returns float64."""
        out = np.asarray(values, dtype=np.float64)
        if not self.valid.all():
            out = out.copy()
            out[~self.valid] = np.nan
        return out


# ------------------------------------------------------------------ kernels on an EvalBatch
def _ranked_union(b: EvalBatch, mask: np.ndarray, percentiles: Sequence[float]
                  ) -> dict[str, np.ndarray]:
    """IoU@p, area-matched precision and ROC-AUC of each map against one flat bool mask."""
    rk = b.ranking(mask)
    area, npix = rk.area, b.n_pixels
    ks = np.array([topk_size(npix, p) for p in percentiles] + [area], dtype=np.int64)
    with _timed("iou+precision+auc"):
        hits = rk.topk_hits(ks)
        union = ks[None, :-1] + area - hits[:, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "iou": np.where(union > 0, hits[:, :-1] / np.maximum(union, 1), np.nan),
                "area_precision": (hits[:, -1] / area if area else np.full(b.n, np.nan)),
            }
        n_neg = npix - area
        if area == 0 or n_neg == 0:
            out["roc_auc"] = np.full(b.n, np.nan)
        else:  # U is a multiple of 1/2 computed exactly, so the AUC is exact to one rounding
            out["roc_auc"] = rk.auc_u() / (area * n_neg)
    return out


def _region_hits(b: EvalBatch, rk: Ranking, target: Target) -> np.ndarray:
    """int64 ``(n, n_regions)``: pixels of region ``j`` among each map's top-``|region j|``.

    The cut value is read off the union's sorted keys (a gather); the region's pixels are
    then counted against it (ties at the cut by flat index, as in :meth:`.Ranking.topk_hits`).
    """
    npix = b.n_pixels
    areas = np.array([ix.size for ix in target.region_index], dtype=np.int64)
    c = npix - areas  # region area >= 1, so c <= N - 1
    v = rk.key[:, c] >> 1  # (n, n_regions) value at the cut
    t = key_values(v, rk.wide)
    at_start = (rk.key[:, np.maximum(c - 1, 0)] >> 1) != v
    at_start[:, c == 0] = True
    hits = np.empty((b.n, areas.size), dtype=np.int64)
    frame = b.flat.reshape(b.n, *b.frame)
    nb = target.n_boxes
    for j, idx in enumerate(target.region_index):
        members = np.flatnonzero(target.region_members[j])
        if j >= nb and members.size == 1:  # a feature type with one box: that box's region
            hits[:, j] = hits[:, members[0]]
            continue
        if j < nb:  # a box: a rectangle of the frame, read as a view (no gather)
            r0, r1, c0, c1 = target.rects[j]
            vals = frame[:, r0:r1, c0:c1]
        else:
            vals = b.flat[:, idx]
        axes = tuple(range(1, vals.ndim))
        tj = t[:, j].reshape((-1,) + (1,) * (vals.ndim - 1))
        hits[:, j] = np.count_nonzero(vals >= tj, axis=axes)
        for r in np.flatnonzero(~at_start[:, j]).tolist():  # the cut splits a run of ties
            gt = int(np.count_nonzero(vals[r] > t[r, j]))
            n_eq = int(hits[r, j]) - gt
            s, _, e = rk.run(r, v[r, j])
            in_top = e - int(c[j])
            if n_eq == 0 or n_eq == e - s:  # the run lies wholly outside / inside the region
                hits[r, j] = gt + (in_top if n_eq else 0)
            else:
                hits[r, j] = gt + rk.first_by_index(r, v[r, j], in_top, target.regions[j])
    return hits


def _tolerance_hits(b: EvalBatch, rects: np.ndarray, tolerance: tuple[float, float]
                    ) -> np.ndarray:
    """bool ``(n, n_boxes)``: some pixel centre of box ``j`` lies within the tolerance ellipse
    around the map's argmax. Boxes are pixel rectangles, so the nearest pixel is found by
    clamping (exact, no dilation raster needed)."""
    r, c = np.divmod(b.top, b.frame[1])
    r, c = r[:, None], c[:, None]
    dy = np.maximum(np.maximum(rects[None, :, 0] - r, r - (rects[None, :, 1] - 1)), 0)
    dx = np.maximum(np.maximum(rects[None, :, 2] - c, c - (rects[None, :, 3] - 1)), 0)
    ry, rx = tolerance
    return (dy / ry) ** 2 + (dx / rx) ** 2 <= 1.0 + 1e-12


class _Soft:
    """A soft target prepared once per image: min-max scaled ``t̂`` (MSE), the ε-smoothed
    ``p`` and ``Σ p log p`` (KL)."""

    def __init__(self, target: np.ndarray) -> None:
        t = np.asarray(target, dtype=np.float64).reshape(-1)
        if not (np.isfinite(t).all() and (t >= 0).all() and t.sum() > 0):
            raise ValueError("soft target must be finite, non-negative and not all zero")
        t = t / t.sum()
        lo, hi = t.min(), t.max()
        self.scaled = (t - lo) / (hi - lo) if hi > lo else np.full_like(t, np.nan)
        self.p = (t + KL_EPS) / (1.0 + t.size * KL_EPS)
        self.plogp = float(np.sum(self.p * np.log(self.p)))


def _mse(b: EvalBatch, soft: _Soft) -> np.ndarray:
    """MSE of the min-max-scaled map vs the scaled target, computed directly in float64:
    ``mean((â − t̂)²)`` with ``â = (a − lo)/(hi − lo)`` over the frame's float32 values.

    NaN where ``hi == lo``: the frame values are all equal. That is the whole "at float noise"
    rule: :func:`.resample.upsample` keeps a constant map exactly constant, so a nonzero range,
    however small (even one ulp), is a real range of the values the metrics rank and is scaled
    like any other (no sufficient-statistics shortcut, which cancels catastrophically when
    ``hi − lo ≪ |lo|``).
    """
    with _timed("mse"):
        lo, hi = b.vmin, b.vmax
        # Raw values are min-max scaled: a⁺ (the float64 copy every sum shares) equals them
        # when no value is negative.
        x = b.nonneg if b.all_nonneg else b.flat
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(hi > lo, 1.0 / (hi - lo), np.nan)
        out = np.empty(b.n)
        d = np.empty(b.n_pixels)  # one map at a time: the buffer stays in cache
        for i in range(b.n):
            np.subtract(x[i], lo[i], out=d)
            d *= inv[i]
            d -= soft.scaled
            out[i] = d @ d
        return out / b.n_pixels


def _kl(b: EvalBatch, soft: _Soft) -> np.ndarray:
    with _timed("kl"):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(b.mass > 0, 1.0 / b.mass, np.nan)
        q = b.nonneg * inv[:, None]
        q += KL_EPS
        np.log(q, out=q)
        return soft.plogp - (q @ soft.p - np.log1p(b.n_pixels * KL_EPS))


def _emd(b: EvalBatch, coarse_target: np.ndarray, grid: int) -> np.ndarray:
    with _timed("emd"):
        coarse = block_sums(b.nonneg, b.frame, grid)
        out = np.full(b.n, np.nan)
        ok = np.flatnonzero(b.mass > 0)
        if ok.size:
            hists = coarse[ok] / coarse[ok].sum(axis=1, keepdims=True)
            out[ok] = w1(coarse_target, hists, ground_cost(grid))
        return out


# ------------------------------------------------------------------ public single metrics
def _mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D (FH, FW) array; got shape {m.shape}")
    return m.astype(bool, copy=False)


def iou(maps: np.ndarray, mask: np.ndarray, percentiles: Sequence[float] = PERCENTILES
        ) -> np.ndarray:
    """IoU@p of each map's top-k pixels with ``mask``: float64 ``(n, len(percentiles))``.

    ``maps`` ``(n, gh, gw)`` at native grid (upsampled to ``mask.shape``); ``mask`` bool
    ``(FH, FW)``. ``k = round_half_up(N·(100 − p)/100)``; ties: higher value, then lower flat
    index first.
    """
    m = _mask(mask)
    b = EvalBatch(maps, m.shape)
    return b.finish(_ranked_union(b, m.reshape(-1), percentiles)["iou"])


def top_region(values: np.ndarray, percentile: float, frame: int | tuple[int, int] = 224
               ) -> np.ndarray:
    """The pixel set IoU@p counts for one map: bool ``(FH, FW)`` with exactly
    ``k = topk_size(FH·FW, p)`` pixels set.

    ``values``: one native-grid map ``(gh, gw)``, upsampled exactly as :func:`evaluate` does
    (:class:`EvalBatch`, the same float32 frame values); ``frame``: ``R`` or ``(FH, FW)``.
    The top-``k`` follows the tie rule of every metric: higher value first, ties by lower
    flat (row-major) index. A map containing NaN (which every metric scores NaN) gives an
    empty set. ``|T ∩ m| / |T ∪ m|`` of this set ``T`` and a target's union ``m`` is
    ``evaluate(...)["iou"]`` at ``p``.
    """
    a = np.asarray(values)
    if a.ndim != 2:
        raise ValueError(f"top_region takes one (gh, gw) map; got shape {a.shape}")
    b = EvalBatch(a, frame)
    npix = b.n_pixels
    out = np.zeros(npix, dtype=bool)
    k = min(max(topk_size(npix, percentile), 0), npix)
    if b.valid[0] and k:
        flat = b.flat[0]
        cut = np.partition(flat, npix - k)[npix - k]  # the k-th highest value (O(N))
        np.greater(flat, cut, out=out)
        ties = np.flatnonzero(flat == cut)  # ascending flat index; -0.0 == +0.0 as in the keys
        out[ties[:k - int(np.count_nonzero(out))]] = True
    return out.reshape(b.frame)


def area_precision(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fraction of each map's top-``|mask|`` pixels inside ``mask``: float64 ``(n,)``."""
    m = _mask(mask)
    b = EvalBatch(maps, m.shape)
    return b.finish(_ranked_union(b, m.reshape(-1), ())["area_precision"])


def roc_auc(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ROC-AUC of each map as a score for ``mask`` pixels (ties count half): ``(n,)``."""
    m = _mask(mask)
    b = EvalBatch(maps, m.shape)
    return b.finish(_ranked_union(b, m.reshape(-1), ())["roc_auc"])


def coverage(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Energy inside: ``Σ(a⁺·m)/Σa⁺`` per map, float64 ``(n,)``; all-zero ``a⁺`` → NaN."""
    m = _mask(mask)
    b = EvalBatch(maps, m.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        val = (b.nonneg @ m.reshape(-1).astype(np.float64)) / b.mass
    return b.finish(np.where(b.mass > 0, val, np.nan))


def pointing(
    maps: np.ndarray,
    mask: np.ndarray,
    *,
    tolerance_px: float | None = None,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pointing game: 1.0 where the argmax pixel hits ``mask``, else 0.0; ``(n,)``.

    Strict by default. With ``tolerance_px`` (e.g. 15) a hit also counts when a mask pixel
    centre lies within the ellipse of semi-axes ``tolerance_px·FH/H`` (rows) and
    ``tolerance_px·FW/W`` (columns) around the argmax, ``(H, W) = image_size`` (default: the
    frame). Argmax ties go to the lowest flat index.
    """
    from scipy import ndimage

    m = _mask(mask)
    b = EvalBatch(maps, m.shape)
    hit_mask = m
    if tolerance_px is not None:
        h, w = image_size or m.shape
        ry, rx = tolerance_px * m.shape[0] / h, tolerance_px * m.shape[1] / w
        if m.any():
            # Distance (in ellipse units) from every pixel centre to the nearest mask pixel.
            dist = ndimage.distance_transform_edt(~m, sampling=(1.0 / ry, 1.0 / rx))
            hit_mask = dist <= 1.0 + 1e-12
    return b.finish(hit_mask.reshape(-1)[b.top].astype(np.float64))


def soft_mse(maps: np.ndarray, target: np.ndarray) -> np.ndarray:
    """MSE between the min-max-scaled map and the min-max-scaled soft ``target`` ``(FH, FW)``:
    float64 ``(n,)``; a constant map gives NaN."""
    soft = _Soft(target)
    b = EvalBatch(maps, np.shape(target))
    return b.finish(_mse(b, soft))


def kl_divergence(maps: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``KL(target‖map)`` in nats with ε = :data:`KL_EPS` (see module doc): ``(n,)``."""
    soft = _Soft(target)
    b = EvalBatch(maps, np.shape(target))
    return b.finish(_kl(b, soft))


def emd(maps: np.ndarray, target: np.ndarray, grid: int = DEFAULT_EMD_GRID) -> np.ndarray:
    """Exact 2-D Wasserstein-1 between map and ``target`` on a ``grid × grid`` block-summed
    version (relative units; POT ``ot.emd2``): float64 ``(n,)``; all-zero map → NaN."""
    t = np.asarray(target, dtype=np.float64)
    if t.ndim != 2:
        raise ValueError(f"target must be a 2-D (FH, FW) array; got shape {t.shape}")
    coarse = (bin_matrix(t.shape[0], grid) @ t @ bin_matrix(t.shape[1], grid).T).reshape(-1)
    b = EvalBatch(maps, t.shape)
    return b.finish(_emd(b, coarse / coarse.sum(), grid))


# ------------------------------------------------------------------ everything at once
#: Image-level metrics with one value per map (every image-level one but IoU), from ``METRICS``.
IMAGE_METRICS: tuple[str, ...] = names("image", per_percentile=False)
#: Region metrics, returned as ``box_<m>`` and ``feature_<m>`` (from the registry).
REGION_METRICS: tuple[str, ...] = _REGION_METRICS


def _evaluate_batch(b: EvalBatch, target: Target, percentiles: Sequence[float],
                    soft: _Soft, weights: np.ndarray) -> dict[str, np.ndarray]:
    out = _ranked_union(b, target.union, percentiles)
    nb = target.n_boxes
    with _timed("coverage"):
        # One matmul for the union and every region.
        sums = b.nonneg @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.where(b.mass[:, None] > 0, sums / b.mass[:, None], np.nan)
    out["coverage"] = cov[:, 0]
    with _timed("pointing"):
        top = b.top
        tol_box = _tolerance_hits(b, target.rects, target.tolerance)  # (n, n_boxes)
        out["pointing"] = target.union[top].astype(np.float64)
        out["pointing_tol"] = tol_box.any(axis=1).astype(np.float64)
        reg_point = target.regions[:, top].T.astype(np.float64)
        reg_tol = (tol_box.astype(np.float64) @ target.region_members.T.astype(np.float64)) > 0
    with _timed("regions"):
        # Pixels of region j among the top-|region j| of each map (k = the region's area).
        areas = np.array([ix.size for ix in target.region_index], dtype=np.int64)
        hits = _region_hits(b, b.ranking(target.union), target)
        reg_iou = hits / (2 * areas[None, :] - hits)
    out["mse"] = _mse(b, soft)
    out["kl"] = _kl(b, soft)
    out["emd"] = _emd(b, target.soft_coarse, target.emd_grid)
    for name, val in (("coverage", cov[:, 1:]), ("iou", reg_iou), ("pointing", reg_point),
                      ("pointing_tol", reg_tol.astype(np.float64))):
        out[f"box_{name}"] = val[:, :nb]
        out[f"feature_{name}"] = val[:, nb:]
    return {k: b.finish(v) for k, v in out.items()}


def evaluate(
    maps: np.ndarray,
    target: Target | np.ndarray,
    *,
    percentiles: Sequence[float] = PERCENTILES,
    frame: int | tuple[int, int] = 224,
    batch_size: int = BATCH,
) -> dict[str, np.ndarray]:
    """Every metric of every map against one image's target, sharing all intermediate work.

    ``maps``: ``(n, gh, gw)`` native-grid maps of one image. ``target``: a :class:`Target`
    (see :func:`make_target`), or an ``(n_boxes, 4)`` box array turned into one with
    ``frame``. Returns float64 arrays keyed by exactly the names of
    :data:`~ssl_attn.metrics.registry.METRICS`, shaped by each metric's ``level``: ``iou``
    (``per_percentile``) ``(n, len(percentiles))``; the other image-level metrics
    (``coverage, pointing, pointing_tol, area_precision, roc_auc, mse, kl, emd``) ``(n,)``;
    ``box_<m>`` ``(n, n_boxes)`` and ``feature_<m>`` ``(n, n_features)`` for ``m`` in
    ``coverage, iou, pointing, pointing_tol`` (box IoU uses ``k`` = the box's own area).
    An image without boxes gives NaN everywhere. Maps are processed ``batch_size`` at a time.
    """
    if not isinstance(target, Target):
        target = make_target(target, frame=frame)
    a = np.asarray(maps)
    if a.ndim == 2:
        a = a[None]
    n = a.shape[0]
    nb = target.n_boxes
    width = {"box": nb, "feature": target.n_features}
    res = {k: np.full((n, len(percentiles)) if m.per_percentile
                      else (n, width[m.level]) if m.level in width else (n,), np.nan)
           for k, m in METRICS.items()}
    if nb == 0 or n == 0:
        return res
    soft = _Soft(target.soft)
    weights = np.concatenate([target.union[None], target.regions], axis=0).T.astype(np.float64)
    for s in range(0, n, batch_size):
        b = EvalBatch(a[s:s + batch_size], target.frame)
        out = _evaluate_batch(b, target, percentiles, soft, weights)
        for k, v in res.items():  # a metric without a kernel fails here, by name
            v[s:s + batch_size] = out[k]
    return res


__all__ += ["DEFAULT_TOLERANCE_PX", "IMAGE_METRICS", "REGION_METRICS", "Target", "make_target"]
