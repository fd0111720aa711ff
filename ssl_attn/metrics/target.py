"""Per-image targets in the evaluation frame: box pixel sets, their union, feature-type unions,
the soft target and its coarse version.

Boxes are rasterised with :mod:`ssl_attn.wikichurches.masks` (the one shared pixel-centre rule
of docs/SCHEMA.md), so every module agrees on which pixel belongs to which box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..wikichurches.masks import box_pixel_ranges, soft_target, union_mask
from .resample import bin_matrix

__all__ = ["DEFAULT_EMD_GRID", "DEFAULT_TOLERANCE_PX", "Target", "make_target"]

#: Pointing-game tolerance in pixels of the image's own resolution (Zhang et al.).
DEFAULT_TOLERANCE_PX = 15.0
#: Coarse grid (cells per side) on which EMD is solved.
DEFAULT_EMD_GRID = 8


@dataclass(frozen=True, eq=False)
class Target:
    """Everything the metrics need about one image's boxes, in an ``FH × FW`` frame.

    Regions are the boxes (in input order) followed by one union per feature type (``labels``
    sorted ascending); ``region_members[j]`` says which boxes make region ``j``.
    """

    frame: tuple[int, int]
    image_size: tuple[int, int]  # (height, width) of the original image in pixels
    rects: np.ndarray  # int64 (n_boxes, 4): r0, r1, c0, c1 (half-open, frame pixels)
    box_labels: np.ndarray  # int64 (n_boxes,) feature id of each box (-1 if unknown)
    feature_labels: np.ndarray  # int64 (n_features,) sorted unique labels
    tolerance: tuple[float, float]  # ellipse semi-axes (ry, rx) in frame pixels
    emd_grid: int
    union: np.ndarray = field(repr=False)  # bool (N,)
    union_index: np.ndarray = field(repr=False)  # int64 pixel indices of the union
    region_members: np.ndarray = field(repr=False)  # bool (n_regions, n_boxes)
    region_index: tuple[np.ndarray, ...] = field(repr=False)  # pixel indices per region
    regions: np.ndarray = field(repr=False)  # bool (n_regions, N)
    soft: np.ndarray | None = field(repr=False)  # float64 (N,), sums to 1 (None: no boxes)
    soft_coarse: np.ndarray | None = field(repr=False)  # float64 (G*G,), sums to 1

    @property
    def n_boxes(self) -> int:
        """Number of boxes."""
        return int(self.rects.shape[0])

    @property
    def n_features(self) -> int:
        """Number of distinct feature types among the boxes."""
        return int(self.feature_labels.shape[0])

    @property
    def n_pixels(self) -> int:
        """Pixels in the frame, ``FH * FW``."""
        return self.frame[0] * self.frame[1]

    @property
    def region_masks(self) -> np.ndarray:
        """bool ``(n_regions, FH, FW)`` masks of the boxes then the feature-type unions."""
        return self.regions.reshape(-1, *self.frame)


def make_target(
    boxes: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    frame: int | tuple[int, int] = 224,
    image_size: tuple[int, int] | None = None,
    tolerance_px: float = DEFAULT_TOLERANCE_PX,
    emd_grid: int = DEFAULT_EMD_GRID,
) -> Target:
    """Build a :class:`Target` from an image's boxes.

    ``boxes``: ``(n, 4)`` ``[left, top, width, height]`` fractions (or a boxes DataFrame).
    ``labels``: ``(n,)`` feature ids (default: taken from a DataFrame's ``label`` column, else
    all -1). ``frame``: evaluation frame ``R`` or ``(FH, FW)``, default 224. ``image_size``:
    the original ``(height, width)`` in pixels, which scales the pointing tolerance
    (``tolerance_px`` image pixels → ``tolerance_px·FH/H`` rows and ``tolerance_px·FW/W``
    columns); default: the frame itself. ``emd_grid``: cells per side for EMD (default 8).
    An image without boxes gives an empty target (its metrics are NaN).
    """
    fh, fw = (int(frame), int(frame)) if np.isscalar(frame) else tuple(int(v) for v in frame)
    if labels is None and hasattr(boxes, "columns") and "label" in boxes.columns:
        labels = boxes["label"].to_numpy()
    rects = box_pixel_ranges(boxes, fh, fw)
    nb = rects.shape[0]
    box_labels = (np.full(nb, -1, np.int64) if labels is None
                  else np.asarray(labels, dtype=np.int64).reshape(-1))
    if box_labels.shape[0] != nb:
        raise ValueError(f"labels has {box_labels.shape[0]} entries for {nb} boxes")
    feats = np.unique(box_labels)
    members = np.concatenate([np.eye(nb, dtype=bool),
                              box_labels[None, :] == feats[:, None]], axis=0)
    n = fh * fw
    reg = np.zeros((members.shape[0], fh, fw), dtype=bool)
    for j, row in enumerate(members):
        for r0, r1, c0, c1 in rects[row]:  # rectangles: paint slices, never loop over pixels
            reg[j, r0:r1, c0:c1] = True
    reg = reg.reshape(-1, n)
    union = union_mask(boxes, fh, fw).reshape(n)
    h, w = (fh, fw) if image_size is None else (float(image_size[0]), float(image_size[1]))
    if not (h > 0 and w > 0):
        raise ValueError(f"image_size must be positive (height, width); got {image_size}")
    soft = coarse = None
    if nb:
        soft = soft_target(boxes, fh, fw).reshape(n)
        g = int(emd_grid)
        coarse = (bin_matrix(fh, g) @ soft.reshape(fh, fw) @ bin_matrix(fw, g).T).reshape(-1)
        coarse = coarse / coarse.sum()
    return Target(
        frame=(fh, fw), image_size=(int(h), int(w)), rects=rects, box_labels=box_labels,
        feature_labels=feats,
        tolerance=(float(tolerance_px) * fh / h, float(tolerance_px) * fw / w),
        emd_grid=int(emd_grid), union=union, union_index=np.flatnonzero(union),
        region_members=members, region_index=tuple(np.flatnonzero(r) for r in reg),
        regions=reg, soft=soft,
        soft_coarse=coarse,
    )
