"""A drawing surface that knows which pixels belong to which annotated part.

:class:`Canvas` draws every primitive twice, in lockstep: once in colour onto the RGB image and
once onto an *owner map* (one byte per pixel: 0 for unannotated structure, ``k`` for the k-th
annotated part). Whatever is drawn later overwrites both, so at the end the owner map says
exactly which visible pixels each part covers, and a part's box is the tight bounding box of
those pixels (occlusion by later drawing, e.g. a tree, is accounted for).

Drawing happens at ``SUPERSAMPLE`` times the output size and is reduced by box averaging
(``Image.reduce``), which anti-aliases the edges. An output pixel is touched by a part exactly
when one of its ``SUPERSAMPLE²`` source pixels is, so boxes convert exactly.

PIL's ``ImageDraw`` has no notion of object ids or occlusion, hence this small hand-written layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

#: Drawing resolution multiplier (anti-aliasing by 2×2 box averaging).
SUPERSAMPLE = 2

Color = tuple[int, int, int]
Point = tuple[float, float]


@dataclass
class Part:
    """One annotated element: a feature name and the search window of its primitives.

    ``extent`` is ``[x0, y0, x1, y1]`` in supersampled pixels (x1, y1 exclusive), a superset of
    the pixels the part's primitives can have touched.
    """

    feature: str
    extent: list[int] = field(default_factory=lambda: [1 << 30, 1 << 30, -1, -1])


@dataclass
class Group:
    """A group of related elements (``label`` = the group's feature name)."""

    label: str
    part_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Box:
    """A tight box in output pixels: ``x0, y0`` inclusive, ``x1, y1`` exclusive."""

    feature: str
    x0: int
    y0: int
    x1: int
    y1: int

    def fractions(self, width: int, height: int, ndigits: int = 6) -> dict[str, float]:
        """WikiChurches box dict ``{left, top, width, height}`` as fractions of the image size."""
        return {
            "left": round(self.x0 / width, ndigits),
            "top": round(self.y0 / height, ndigits),
            "width": round((self.x1 - self.x0) / width, ndigits),
            "height": round((self.y1 - self.y0) / height, ndigits),
        }


class Canvas:
    """RGB image plus owner map, drawn together; coordinates are output pixels (floats).

    Args:
        width, height: output size in pixels.
        background: RGB fill, or an ``(height*SUPERSAMPLE, width*SUPERSAMPLE, 3)`` uint8 array.
    """

    def __init__(self, width: int, height: int, background: Color | np.ndarray = (0, 0, 0)):
        self.width, self.height = int(width), int(height)
        size = (self.width * SUPERSAMPLE, self.height * SUPERSAMPLE)
        if isinstance(background, np.ndarray):
            self._img = Image.fromarray(background, "RGB")
            if self._img.size != size:
                raise ValueError(f"background array is {self._img.size}, canvas needs {size}")
        else:
            self._img = Image.new("RGB", size, tuple(background))
        self._ids = Image.new("L", size, 0)
        self._draw = ImageDraw.Draw(self._img)
        self._mask = ImageDraw.Draw(self._ids)
        self.parts: list[Part] = []
        self.groups: list[Group] = []
        self._group: Group | None = None
        self._current = 0  # owner id written by primitives; 0 = not an annotated part

    # -- annotation contexts -------------------------------------------------------------------
    @contextmanager
    def group(self, label: str) -> Iterator[Group]:
        """Collect the parts drawn inside into one group labelled ``label``."""
        if self._group is not None:
            raise RuntimeError("groups do not nest")
        self._group = Group(label)
        try:
            yield self._group
        finally:
            if self._group.part_ids:
                self.groups.append(self._group)
            self._group = None

    @contextmanager
    def part(self, feature: str) -> Iterator[None]:
        """Attribute everything drawn inside to a new annotated part of type ``feature``.

        Outside any :meth:`group`, the part gets a group of its own labelled ``feature``.
        """
        if self._current:
            raise RuntimeError("parts do not nest")
        if len(self.parts) >= 255:
            raise RuntimeError("at most 255 annotated parts per image")
        self.parts.append(Part(feature))
        pid = len(self.parts)
        own = self._group is None
        if own:
            self._group = Group(feature)
        self._group.part_ids.append(pid)
        self._current = pid
        try:
            yield
        finally:
            self._current = 0
            if own:
                self.groups.append(self._group)
                self._group = None

    @contextmanager
    def unannotated(self) -> Iterator[None]:
        """Draw plain structure inside a part's context (e.g. a door inside a portal group)."""
        saved, self._current = self._current, 0
        try:
            yield
        finally:
            self._current = saved

    # -- primitives ----------------------------------------------------------------------------
    def _grow(self, xs: Sequence[float], ys: Sequence[float], width: float) -> None:
        if not self._current:
            return
        pad = width * SUPERSAMPLE + 2
        e = self.parts[self._current - 1].extent
        e[0] = min(e[0], math.floor(min(xs) * SUPERSAMPLE - pad))
        e[1] = min(e[1], math.floor(min(ys) * SUPERSAMPLE - pad))
        e[2] = max(e[2], math.ceil(max(xs) * SUPERSAMPLE + pad) + 1)
        e[3] = max(e[3], math.ceil(max(ys) * SUPERSAMPLE + pad) + 1)

    @staticmethod
    def _scaled(points: Sequence[Point]) -> list[tuple[float, float]]:
        return [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in points]

    def polygon(
        self, points: Sequence[Point], fill: Color | None, outline: Color | None = None,
        width: float = 1.0,
    ) -> None:
        """Filled polygon; ``outline`` drawn ``width`` output pixels wide."""
        pts = self._scaled(points)
        w = max(1, round(width * SUPERSAMPLE)) if outline is not None else 0
        self._draw.polygon(pts, fill=fill, outline=outline, width=w)
        self._mask.polygon(pts, fill=self._current if fill is not None else None,
                           outline=self._current if outline is not None else None, width=w)
        self._grow([p[0] for p in points], [p[1] for p in points], width)

    def rectangle(
        self, box: Sequence[float], fill: Color | None, outline: Color | None = None,
        width: float = 1.0,
    ) -> None:
        """Axis-aligned rectangle ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = box
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill, outline, width)

    def ellipse(
        self, box: Sequence[float], fill: Color | None, outline: Color | None = None,
        width: float = 1.0,
    ) -> None:
        """Ellipse inscribed in ``(x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = (v * SUPERSAMPLE for v in box)
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        w = max(1, round(width * SUPERSAMPLE)) if outline is not None else 0
        self._draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=w)
        self._mask.ellipse((x0, y0, x1, y1), fill=self._current if fill is not None else None,
                           outline=self._current if outline is not None else None, width=w)
        self._grow([box[0], box[2]], [box[1], box[3]], width)

    def circle(self, cx: float, cy: float, r: float, fill: Color | None,
               outline: Color | None = None, width: float = 1.0) -> None:
        """Circle of radius ``r`` centred on ``(cx, cy)``."""
        self.ellipse((cx - r, cy - r, cx + r, cy + r), fill, outline, width)

    def line(self, points: Sequence[Point], fill: Color, width: float = 1.0) -> None:
        """Polyline ``width`` output pixels wide."""
        w = max(1, round(width * SUPERSAMPLE))
        pts = self._scaled(points)
        self._draw.line(pts, fill=fill, width=w)
        self._mask.line(pts, fill=self._current, width=w)
        self._grow([p[0] for p in points], [p[1] for p in points], width)

    # -- result --------------------------------------------------------------------------------
    def boxes(self) -> list[tuple[str, list[Box]]]:
        """Tight output-pixel boxes of the visible pixels of every part, grouped.

        Returns ``(group label, [Box, ...])`` per group, in drawing order; parts left with no
        visible pixel are dropped, and so are groups left empty.
        """
        ids = np.asarray(self._ids)
        H, W = ids.shape
        found: dict[int, Box] = {}
        for pid, part in enumerate(self.parts, start=1):
            x0, y0, x1, y1 = part.extent
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
            if x1 <= x0 or y1 <= y0:
                continue
            hit = ids[y0:y1, x0:x1] == pid
            rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
            if rows.size == 0:
                continue
            s = SUPERSAMPLE
            found[pid] = Box(
                part.feature,
                (x0 + int(cols[0])) // s, (y0 + int(rows[0])) // s,
                -(-(x0 + int(cols[-1]) + 1) // s), -(-(y0 + int(rows[-1]) + 1) // s),
            )
        out = []
        for g in self.groups:
            members = [found[p] for p in g.part_ids if p in found]
            if members:
                out.append((g.label, members))
        return out

    def image(self) -> Image.Image:
        """The RGB image at output size (box-averaged from the supersampled drawing)."""
        return self._img.reduce(SUPERSAMPLE)

    def owner_map(self) -> np.ndarray:
        """The supersampled owner map, ``(H*SUPERSAMPLE, W*SUPERSAMPLE)`` uint8 (0 = none)."""
        return np.asarray(self._ids).copy()
