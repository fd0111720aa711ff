"""Map-vs-box metrics on plain numpy arrays, vectorised over a leading batch of maps.

Every metric works in one evaluation frame: a native-grid map ``(gh, gw)`` covering the whole
image is upsampled bilinearly (pixel-centre aligned) to ``FH × FW`` (``R × R``, default 224)
and compared there with the boxes rasterised into the same frame (:mod:`.target`).

Shared work is done once per batch by :class:`EvalBatch`: the upsample, and one sort of each
map that yields the pixel order (higher value first, ties by lower flat index — the single
deterministic tie rule of every top-k and argmax below) and each pixel's rank in it. From the
ranks, IoU@p, area-matched precision, ROC-AUC and per-region IoU need only gathers and counts
(no per-threshold partition, no loop over maps).

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
  ``ot.emd2`` (network simplex).

Rows of ``maps`` that contain NaN give NaN for every metric.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from .resample import bin_matrix, upsample
from .target import DEFAULT_EMD_GRID, DEFAULT_TOLERANCE_PX, Target, make_target

__all__ = [
    "KL_EPS",
    "PERCENTILES",
    "EvalBatch",
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
    "topk_size",
]

#: IoU percentiles; IoU@90 is the headline.
PERCENTILES: tuple[int, ...] = (50, 60, 70, 75, 80, 85, 90)
#: Epsilon added to both distributions (after normalising to mass 1) in KL.
KL_EPS = 1e-8
#: Maps per internal sub-batch (bounds memory: about 40 bytes per frame pixel per map).
BATCH = 48

# ------------------------------------------------------------------ optional timing per family
_PROFILE: dict[str, float] | None = None
_PROFILE_LOCK = threading.Lock()


@contextmanager
def profile() -> Iterator[dict[str, float]]:
    """Collect seconds spent per metric family (summed over threads) while the block runs.

    >>> with profile() as t:      # doctest: +SKIP
    ...     evaluate(maps, target)
    >>> t["rank"]                 # doctest: +SKIP
    """
    global _PROFILE
    _PROFILE = {}
    try:
        yield _PROFILE
    finally:
        _PROFILE = None


@contextmanager
def _timed(family: str) -> Iterator[None]:
    if _PROFILE is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        with _PROFILE_LOCK:
            if _PROFILE is not None:
                _PROFILE[family] = _PROFILE.get(family, 0.0) + dt


# ------------------------------------------------------------------ the shared per-batch work
def topk_size(n_pixels: int, percentile: float) -> int:
    """``k = round(N·(100 − p)/100)`` with halves rounded up (exact for integer ``p``)."""
    if float(percentile).is_integer():
        return (int(n_pixels) * (100 - int(percentile)) * 2 + 100) // 200
    return int(np.floor(n_pixels * (100.0 - percentile) / 100.0 + 0.5))


def _order_keys(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class EvalBatch:
    """A batch of maps in the evaluation frame with the intermediates all metrics share.

    ``maps``: ``(n, gh, gw)`` or ``(gh, gw)`` native-grid maps; ``frame``: ``R`` or
    ``(FH, FW)``. Attributes are computed lazily and once: ``flat`` float32 ``(n, N)``,
    ``valid`` bool ``(n,)`` (no NaN), ``order``/``rank`` (pixel order, higher value first,
    ties by lower index, and its inverse), ``nonneg`` float64 ``(n, N)`` = ``max(a, 0)``,
    ``mass`` = ``Σa⁺``.
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

    @functools.cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        with _timed("rank"):
            return _order_keys(self.flat)

    @property
    def order(self) -> np.ndarray:
        """intp ``(n, N)``: pixel index at each position, highest value first."""
        return self._sorted[0]

    def tie_groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Sorted positions that share their value with a neighbour, or None without ties.

        Returns ``(row, pos, group, mid)`` for each such position: its map row, its sorted
        position, a group id (one per run of equal values) and, per group, the run's mean
        position ``mid`` (the 0-based mid-rank in descending order). Works on flat indices of
        the tied positions only (ties are a small fraction of the pixels).
        """
        if not hasattr(self, "_ties"):
            s = self._sorted[1]
            same_prev = np.zeros(s.shape, dtype=bool)  # value equals the previous position's
            np.equal(s[:, 1:], s[:, :-1], out=same_prev[:, 1:])
            same_next = np.zeros(s.shape, dtype=bool)
            same_next[:, :-1] = same_prev[:, 1:]
            flat_idx = np.flatnonzero(same_prev | same_next)
            if flat_idx.size == 0:
                self._ties = None
            else:
                row, pos = np.divmod(flat_idx, s.shape[1])
                first = ~same_prev.reshape(-1)[flat_idx]
                group = np.cumsum(first) - 1
                size = np.bincount(group)
                mid = pos[first] + (size - 1) / 2.0
                self._ties = (row, pos, group, mid)
        return self._ties

    @property
    def top(self) -> np.ndarray:
        """intp ``(n,)``: flat index of the maximum (lowest index among equal maxima)."""
        return self.order[:, 0]

    @functools.cached_property
    def vmax(self) -> np.ndarray:
        """float64 ``(n,)`` maximum of each map."""
        return np.take_along_axis(self.flat, self.order[:, :1], 1)[:, 0].astype(np.float64)

    @functools.cached_property
    def vmin(self) -> np.ndarray:
        """float64 ``(n,)`` minimum of each map."""
        return np.take_along_axis(self.flat, self.order[:, -1:], 1)[:, 0].astype(np.float64)

    @functools.cached_property
    def nonneg(self) -> np.ndarray:
        """float64 ``(n, N)``: ``max(a, 0)``."""
        x = self.flat.astype(np.float64)
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
    area = int(mask.sum())
    npix = b.n_pixels
    ks = np.array([topk_size(npix, p) for p in percentiles] + [area], dtype=np.int64)
    with _timed("iou+precision+auc"):
        in_sorted = mask[b.order]  # (n, N): is the pixel at each sorted position in the mask
        cum = np.cumsum(in_sorted, axis=1, dtype=np.int32)
        hits = np.where(ks[None, :] > 0, cum[:, np.maximum(ks - 1, 0)], 0).astype(np.int64)
        union = ks[None, :-1] + area - hits[:, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "iou": np.where(union > 0, hits[:, :-1] / np.maximum(union, 1), np.nan),
                "area_precision": (hits[:, -1] / area if area else np.full(b.n, np.nan)),
            }
        n_neg = npix - area
        if area == 0 or n_neg == 0:
            out["roc_auc"] = np.full(b.n, np.nan)
        else:
            # Sum of the (descending, 0-based) positions of mask pixels: Σ_i i·m_i equals
            # N·P − Σ_i cum_i. Tied values get their run's mid-position (ties count half).
            s = npix * area - cum.sum(axis=1, dtype=np.float64)
            ties = b.tie_groups()
            if ties is not None:
                row, pos, group, mid = ties
                w = in_sorted.reshape(-1)[row * npix + pos] * (mid[group] - pos)
                s += np.bincount(row, weights=w, minlength=b.n)
            u = area * n_neg - s + area * (area - 1) / 2.0
            out["roc_auc"] = u / (area * n_neg)
    return out


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
    """A soft target prepared once per image: min-max scaled ``t̂`` and its sums (MSE), the
    ε-smoothed ``p`` and ``Σ p log p`` (KL)."""

    def __init__(self, target: np.ndarray) -> None:
        t = np.asarray(target, dtype=np.float64).reshape(-1)
        if not (np.isfinite(t).all() and (t >= 0).all() and t.sum() > 0):
            raise ValueError("soft target must be finite, non-negative and not all zero")
        t = t / t.sum()
        lo, hi = t.min(), t.max()
        self.scaled = (t - lo) / (hi - lo) if hi > lo else np.full_like(t, np.nan)
        self.sum_scaled = float(self.scaled.sum())
        self.sum_scaled2 = float(self.scaled @ self.scaled)
        self.p = (t + KL_EPS) / (1.0 + t.size * KL_EPS)
        self.plogp = float(np.sum(self.p * np.log(self.p)))


def _mse(b: EvalBatch, soft: _Soft, sum_at: np.ndarray | None = None) -> np.ndarray:
    """MSE of min-max-scaled map vs target from sufficient statistics (float64):
    ``Σ(â−t̂)² = Σâ² − 2Σât̂ + Σt̂²`` with ``â = (a − lo)/(hi − lo)``. ``sum_at`` = ``Σa·t̂``
    per map when the caller already has it from a shared matmul of non-negative maps."""
    with _timed("mse"):
        lo, hi = b.vmin, b.vmax
        if sum_at is not None and (lo >= 0).all():
            x, sa = b.nonneg, b.mass
        else:  # some map has negative values: its raw values, not a⁺, are min-max scaled
            x = b.flat.astype(np.float64)
            sa, sum_at = x.sum(axis=1), x @ soft.scaled
        sa2 = np.einsum("ij,ij->i", x, x)
        npix = b.n_pixels
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(hi > lo, 1.0 / (hi - lo), np.nan)
            s_aa = (sa2 - 2 * lo * sa + npix * lo * lo) * inv * inv
            s_at = (sum_at - lo * soft.sum_scaled) * inv
            return np.maximum(s_aa - 2 * s_at + soft.sum_scaled2, 0.0) / npix


def _kl(b: EvalBatch, soft: _Soft) -> np.ndarray:
    with _timed("kl"):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(b.mass > 0, 1.0 / b.mass, np.nan)
        q = b.nonneg * inv[:, None]
        q += KL_EPS
        np.log(q, out=q)
        return soft.plogp - (q @ soft.p - np.log1p(b.n_pixels * KL_EPS))


@functools.lru_cache(maxsize=8)
def _ground_cost(grid: int) -> np.ndarray:
    c = (np.arange(grid) + 0.5) / grid
    yy, xx = np.meshgrid(c, c, indexing="ij")
    pts = np.stack([yy.ravel(), xx.ravel()], axis=1)
    cost = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    cost.setflags(write=False)
    return cost


def _emd(b: EvalBatch, coarse_target: np.ndarray, grid: int) -> np.ndarray:
    import ot  # POT: imported here so that `import ssl_attn.metrics` stays light

    with _timed("emd"):
        fh, fw = b.frame
        by, bxt = bin_matrix(fh, grid), bin_matrix(fw, grid).T
        coarse = np.matmul(by, np.matmul(b.nonneg.reshape(b.n, fh, fw), bxt))
        coarse = coarse.reshape(b.n, grid * grid)
        out = np.full(b.n, np.nan)
        ok = np.flatnonzero(b.mass > 0)
        if ok.size:
            hists = (coarse[ok] / coarse[ok].sum(axis=1, keepdims=True)).T
            vals = ot.emd2(coarse_target, np.ascontiguousarray(hists), _ground_cost(grid))
            out[ok] = np.asarray(vals, dtype=np.float64).reshape(-1)
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
IMAGE_METRICS = ("coverage", "pointing", "pointing_tol", "area_precision", "roc_auc", "mse",
                 "kl", "emd")
REGION_METRICS = ("coverage", "iou", "pointing", "pointing_tol")


def _evaluate_batch(b: EvalBatch, target: Target, percentiles: Sequence[float],
                    soft: _Soft, weights: np.ndarray) -> dict[str, np.ndarray]:
    b.order  # noqa: B018 - sort now so that its time is not counted in another family
    out = _ranked_union(b, target.union, percentiles)
    nb = target.n_boxes
    with _timed("coverage"):
        # One matmul for: union, every region, and Σa⁺·t̂ (used by MSE).
        sums = b.nonneg @ weights
        with np.errstate(invalid="ignore", divide="ignore"):
            cov = np.where(b.mass[:, None] > 0, sums[:, :-1] / b.mass[:, None], np.nan)
    out["coverage"] = cov[:, 0]
    with _timed("pointing"):
        top = b.top
        tol_box = _tolerance_hits(b, target.rects, target.tolerance)  # (n, n_boxes)
        out["pointing"] = target.union[top].astype(np.float64)
        out["pointing_tol"] = tol_box.any(axis=1).astype(np.float64)
        reg_point = target.regions[:, top].T.astype(np.float64)
        reg_tol = (tol_box.astype(np.float64) @ target.region_members.T.astype(np.float64)) > 0
    with _timed("regions"):
        areas = np.array([ix.size for ix in target.region_index], dtype=np.int64)
        # Pixels of region j among the top-|region j| of each map (k = the region's area).
        order = b.order
        hits = np.stack([reg[order[:, :k]].sum(axis=1) for reg, k in zip(target.regions, areas)],
                        axis=1).astype(np.int64)
        reg_iou = hits / (2 * areas[None, :] - hits)
    out["mse"] = _mse(b, soft, sums[:, -1])
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
    ``frame``. Returns float64 arrays keyed by metric: ``iou`` ``(n, len(percentiles))``;
    ``coverage, pointing, pointing_tol, area_precision, roc_auc, mse, kl, emd`` ``(n,)``;
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
    nb, nf, npc = target.n_boxes, target.n_features, len(percentiles)
    shapes = {"iou": (n, npc), **{k: (n,) for k in IMAGE_METRICS}}
    for k in REGION_METRICS:
        shapes[f"box_{k}"], shapes[f"feature_{k}"] = (n, nb), (n, nf)
    res = {k: np.full(s, np.nan) for k, s in shapes.items()}
    if nb == 0 or n == 0:
        return res
    soft = _Soft(target.soft)
    weights = np.concatenate([target.union[None], target.regions, soft.scaled[None]],
                             axis=0).T.astype(np.float64)
    for s in range(0, n, batch_size):
        b = EvalBatch(a[s:s + batch_size], target.frame)
        for k, v in _evaluate_batch(b, target, percentiles, soft, weights).items():
            res[k][s:s + batch_size] = v
    return res


__all__ += ["DEFAULT_TOLERANCE_PX", "IMAGE_METRICS", "REGION_METRICS", "Target", "make_target"]
