"""Drawing functions for the diagnostic parts and the plain structure of a facade.

Every ``draw_<part>`` function opens its own annotated part on the :class:`~.canvas.Canvas`
(``with cv.part(feature)``), so what it draws is exactly what the part's box is computed from.
The ``plain_*`` functions draw unannotated structure (plain windows, doors, plinths).
Coordinates are output pixels, ``y`` down; ``y_bottom`` is where a part stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, Color, Point


def shade(c: Color, f: float) -> Color:
    """Scale an RGB colour by ``f`` (clipped to 0..255)."""
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)  # type: ignore[return-value]


def mix(a: Color, b: Color, t: float) -> Color:
    """Linear blend ``(1 - t) * a + t * b``."""
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


@dataclass(frozen=True)
class Palette:
    """The colours of one church."""

    wall: Color
    trim: Color  # mouldings, frames, columns (stone)
    roof: Color
    glass: Color
    stained: tuple[Color, ...]
    door: Color
    dome: Color

    @property
    def wall_dark(self) -> Color:
        return shade(self.wall, 0.78)

    @property
    def wall_light(self) -> Color:
        return mix(self.wall, (255, 255, 255), 0.18)

    @property
    def trim_dark(self) -> Color:
        return shade(self.trim, 0.7)


# -- geometry ----------------------------------------------------------------------------------
def arch_rise(width: float, pointed: bool, k: float = 1.0) -> float:
    """Height of an arch of span ``width`` above its springing line (pointed: radius k·span)."""
    if not pointed:
        return width / 2
    r = k * width
    return math.sqrt(r * r - (r - width / 2) ** 2)


def arch_points(x0: float, x1: float, y_spring: float, y_bottom: float, pointed: bool = False,
                k: float = 1.0, n: int = 16) -> list[Point]:
    """Outline of an arched opening: up the left jamb, over the arch, down the right jamb.

    Round: a semicircle on the springing line. Pointed: two arcs of radius ``k·span`` (k = 1 is
    the equilateral arch; k must be >= 0.5) meeting at the apex.
    """
    s = x1 - x0
    pts: list[Point] = [(x0, y_bottom), (x0, y_spring)]
    if not pointed:
        r, cx = s / 2, (x0 + x1) / 2
        for t in np.linspace(math.pi, 0, 2 * n + 1)[1:-1]:
            pts.append((cx + r * math.cos(t), y_spring - r * math.sin(t)))
    else:
        r = max(k, 0.5) * s
        ta = math.acos(min(1.0, (s / 2 - r) / r))
        for t in np.linspace(math.pi, ta, n + 1)[1:]:  # left arc, centre (x0 + r, y_spring)
            pts.append((x0 + r + r * math.cos(t), y_spring - r * math.sin(t)))
        for t in np.linspace(math.pi - ta, 0, n + 1)[1:-1]:  # right arc, centre (x1 - r, ...)
            pts.append((x1 - r + r * math.cos(t), y_spring - r * math.sin(t)))
    pts += [(x1, y_spring), (x1, y_bottom)]
    return pts


def _segment_points(cx: float, y_base: float, w: float, h: float, n: int = 24) -> list[Point]:
    """Arc of a circle segment of chord ``w`` and rise ``h`` above ``y_base`` (left to right)."""
    R = (w * w / 4 + h * h) / (2 * h)
    cy = y_base - h + R
    a = math.asin(min(1.0, (w / 2) / R))
    return [(cx + R * math.sin(t), cy - R * math.cos(t)) for t in np.linspace(-a, a, n)]


# -- Romanesque / Gothic -----------------------------------------------------------------------
def draw_arch_window(cv: Canvas, cx: float, y_bottom: float, w: float, h: float, pal: Palette,
                     pointed: bool, k: float = 1.0) -> None:
    """Round or pointed arch window of glass width ``w`` and total height ``h``, with a frame
    and a sill (pointed: with a mullion and a foiled circle in the head)."""
    feature = "Pointed Arch Window" if pointed else "Round Arch Window"
    f = max(1.0, 0.14 * w)
    rise = arch_rise(w, pointed, k)
    ys = y_bottom - max(h - rise, w * 0.5)
    with cv.part(feature):
        outer = arch_points(cx - w / 2 - f, cx + w / 2 + f, ys, y_bottom, pointed, k)
        cv.polygon(outer, pal.trim, pal.trim_dark, 0.6)
        cv.polygon(arch_points(cx - w / 2, cx + w / 2, ys, y_bottom, pointed, k), pal.glass)
        cv.rectangle((cx - w / 2 - 1.6 * f, y_bottom, cx + w / 2 + 1.6 * f, y_bottom + f),
                     pal.trim, pal.trim_dark, 0.5)
        if pointed and w >= 8:
            cv.line([(cx, y_bottom), (cx, ys - 0.1 * rise)], pal.trim, max(1.0, 0.5 * f))
            r = 0.22 * w
            cv.circle(cx, ys - 0.45 * rise, r, None, pal.trim, max(0.8, 0.4 * f))


def draw_rose_window(cv: Canvas, cx: float, cy: float, r: float, pal: Palette,
                     rng: np.random.Generator) -> None:
    """Rose window of outer radius ``r``: moulded ring, stained glass, spokes, foils, hub."""
    n = int(rng.choice([6, 8, 10, 12, 16]))
    with cv.part("Rose Window"):
        cv.circle(cx, cy, r, pal.trim, pal.trim_dark, max(1.0, 0.03 * r))
        g = 0.84 * r
        cv.circle(cx, cy, g, pal.stained[0])
        cv.circle(cx, cy, 0.62 * g, pal.stained[1 % len(pal.stained)])
        lw = max(1.0, 0.05 * r)
        for i in range(n):
            t = 2 * math.pi * i / n
            cv.line([(cx + 0.2 * r * math.cos(t), cy + 0.2 * r * math.sin(t)),
                     (cx + g * math.cos(t), cy + g * math.sin(t))], pal.trim, lw)
            tm = t + math.pi / n
            fx, fy = cx + 0.62 * r * math.cos(tm), cy + 0.62 * r * math.sin(tm)
            cv.circle(fx, fy, 0.17 * r, None, pal.trim, max(0.8, 0.6 * lw))
        cv.circle(cx, cy, 0.22 * r, pal.trim, pal.trim_dark, max(0.8, 0.5 * lw))


def draw_arch_portal(cv: Canvas, cx: float, y_bottom: float, w: float, h: float, pal: Palette,
                     pointed: bool, orders: int = 3, k: float = 1.0) -> None:
    """Round or pointed arch portal: ``orders`` receding archivolts, tympanum and door leaves.

    ``w`` is the outer width, ``h`` the outer height.
    """
    feature = "Pointed Arch Portal" if pointed else "Round Arch Portal"
    step = 0.22 * w / (orders + 1)
    with cv.part(feature):
        for i in range(orders + 1):
            x0, x1 = cx - w / 2 + i * step, cx + w / 2 - i * step
            ys = y_bottom - (h - i * step * 0.4) + arch_rise(x1 - x0, pointed, k)
            color = pal.trim if i % 2 == 0 else shade(pal.trim, 0.86)
            if i == orders:  # innermost opening: tympanum above the lintel
                color = pal.wall_light
            cv.polygon(arch_points(x0, x1, ys, y_bottom, pointed, k), color, pal.trim_dark, 0.6)
        dx0, dx1 = cx - w / 2 + orders * step, cx + w / 2 - orders * step
        lintel = ys
        cv.rectangle((dx0, lintel - 0.04 * h, dx1, lintel), pal.trim, pal.trim_dark, 0.5)
        cv.rectangle((dx0 + 0.06 * w / 2, lintel, dx1 - 0.06 * w / 2, y_bottom), pal.door,
                     shade(pal.door, 0.6), 0.8)
        cv.line([(cx, lintel), (cx, y_bottom)], shade(pal.door, 0.55), max(1.0, 0.015 * w))


def draw_blind_arcade(cv: Canvas, x0: float, x1: float, y_top: float, y_bottom: float, n: int,
                      pal: Palette) -> None:
    """Band of ``n`` blind round arches on colonnettes between ``x0..x1`` and ``y_top..y_bottom``,
    under a small cornice."""
    hb = y_bottom - y_top
    c = max(1.0, 0.12 * hb)
    cell = (x1 - x0) / n
    col = max(1.0, 0.14 * cell)
    with cv.part("Blind Arcade"):
        cv.rectangle((x0, y_top, x1, y_top + c), pal.trim, pal.trim_dark, 0.5)
        for i in range(n):
            a0, a1 = x0 + i * cell + col / 2, x0 + (i + 1) * cell - col / 2
            ys = min(y_top + c + 0.15 * hb + (a1 - a0) / 2, y_bottom - 1)
            cv.polygon(arch_points(a0, a1, ys, y_bottom), pal.wall_dark, pal.trim,
                       max(0.8, col / 3))
        for i in range(n + 1):
            xc = x0 + i * cell
            cv.rectangle((xc - col / 2, y_top + c, xc + col / 2, y_bottom), pal.trim)


def draw_buttress(cv: Canvas, xc: float, y_top: float, y_bottom: float, bw: float,
                  pal: Palette, steps: int = 3) -> None:
    """Stepped buttress centred on ``xc``, ``bw`` wide at the foot, narrowing in ``steps``
    set-offs with sloped weatherings up to ``y_top``."""
    seg = (y_bottom - y_top) / steps
    face, edge = pal.wall_light, pal.wall_dark
    with cv.part("Buttress"):
        for i in range(steps):
            w = bw * (1 - 0.16 * i)
            yb, yt = y_bottom - i * seg, y_bottom - (i + 1) * seg
            slope = min(0.35 * seg, 0.5 * w)
            cv.rectangle((xc - w / 2, yt + slope, xc + w / 2, yb), face, edge, 0.7)
            w2 = bw * (1 - 0.16 * (i + 1))
            cv.polygon([(xc - w / 2, yt + slope), (xc - w2 / 2, yt), (xc + w2 / 2, yt),
                        (xc + w / 2, yt + slope)], pal.trim, edge, 0.6)


def draw_pinnacle(cv: Canvas, xc: float, y_base: float, pw: float, ph: float,
                  pal: Palette) -> None:
    """Pinnacle of width ``pw`` and height ``ph`` standing on ``y_base``: shaft with a blind
    lancet, crocketed spire and finial."""
    shaft = 0.38 * ph
    with cv.part("Pinnacle"):
        cv.rectangle((xc - pw / 2, y_base - shaft, xc + pw / 2, y_base), pal.trim,
                     pal.trim_dark, 0.6)
        if pw >= 5:
            cv.polygon(arch_points(xc - pw / 5, xc + pw / 5, y_base - shaft * 0.6,
                                   y_base - shaft * 0.15, pointed=True, n=6), pal.trim_dark)
        top = y_base - ph + 0.06 * ph
        cv.polygon([(xc - 0.55 * pw, y_base - shaft), (xc, top), (xc + 0.55 * pw, y_base - shaft)],
                   pal.trim, pal.trim_dark, 0.6)
        for j in (0.3, 0.55):  # crockets
            yj = y_base - shaft - j * (ph * 0.56)
            half = 0.55 * pw * (1 - j)
            cv.line([(xc - half, yj), (xc - half - 0.18 * pw, yj - 0.05 * ph)], pal.trim_dark, 0.8)
            cv.line([(xc + half, yj), (xc + half + 0.18 * pw, yj - 0.05 * ph)], pal.trim_dark, 0.8)
        cv.circle(xc, top, max(0.8, 0.1 * pw + 0.4), pal.trim, pal.trim_dark, 0.5)


# -- Renaissance / Baroque ---------------------------------------------------------------------
def draw_pilaster(cv: Canvas, xc: float, y_top: float, y_bottom: float, pw: float,
                  pal: Palette, fluted: bool = True) -> None:
    """Flat pilaster of width ``pw`` from ``y_bottom`` up to ``y_top``: base, shaft, capital."""
    bh, ch = 0.5 * pw, 0.55 * pw
    with cv.part("Pilaster"):
        cv.rectangle((xc - 0.66 * pw, y_bottom - bh, xc + 0.66 * pw, y_bottom), pal.trim,
                     pal.trim_dark, 0.6)
        cv.rectangle((xc - pw / 2, y_top + ch, xc + pw / 2, y_bottom - bh), pal.wall_light,
                     pal.trim_dark, 0.6)
        if fluted and pw >= 6:
            for f in (-0.22, 0.0, 0.22):
                cv.line([(xc + f * pw, y_top + ch + 2), (xc + f * pw, y_bottom - bh - 2)],
                        shade(pal.wall_light, 0.85), 0.7)
        cv.rectangle((xc - 0.7 * pw, y_top, xc + 0.7 * pw, y_top + 0.35 * ch), pal.trim,
                     pal.trim_dark, 0.6)
        cv.polygon([(xc - 0.6 * pw, y_top + 0.35 * ch), (xc + 0.6 * pw, y_top + 0.35 * ch),
                    (xc + 0.5 * pw, y_top + ch), (xc - 0.5 * pw, y_top + ch)], pal.trim,
                   pal.trim_dark, 0.5)


def draw_triangular_pediment(cv: Canvas, cx: float, y_base: float, w: float, h: float,
                             pal: Palette) -> None:
    """Triangular pediment of width ``w`` and height ``h`` on ``y_base``: cornice and tympanum."""
    c = max(1.5, 0.16 * h)
    with cv.part("Triangular Pediment"):
        cv.polygon([(cx - w / 2, y_base), (cx, y_base - h), (cx + w / 2, y_base)], pal.trim,
                   pal.trim_dark, 0.7)
        s = (h - 2 * c) / h if h > 2 * c else 0.0
        if s > 0:
            ib = y_base - c * 0.9
            cv.polygon([(cx - s * w / 2, ib), (cx, ib - s * (h - c)), (cx + s * w / 2, ib)],
                       pal.wall_light)
        cv.rectangle((cx - w / 2 - 0.02 * w, y_base - c * 0.9, cx + w / 2 + 0.02 * w, y_base),
                     pal.trim, pal.trim_dark, 0.6)


def draw_segmental_pediment(cv: Canvas, cx: float, y_base: float, w: float, h: float,
                            pal: Palette) -> None:
    """Segmental (curved) pediment: an arc of chord ``w`` and rise ``h`` over a cornice."""
    c = max(1.5, 0.2 * h)
    with cv.part("Segmental Pediment"):
        cv.polygon(_segment_points(cx, y_base, w, h), pal.trim, pal.trim_dark, 0.7)
        if h > 2 * c:
            cv.polygon(_segment_points(cx, y_base - 0.8 * c, w - 2.6 * c, h - 1.8 * c),
                       pal.wall_light)
        cv.rectangle((cx - w / 2 - 0.02 * w, y_base - 0.8 * c, cx + w / 2 + 0.02 * w, y_base),
                     pal.trim, pal.trim_dark, 0.6)


def draw_broken_pediment(cv: Canvas, cx: float, y_base: float, w: float, h: float,
                         pal: Palette, curved: bool = False) -> None:
    """Broken pediment: the raking cornices (straight or ``curved``) stop short of the apex,
    leaving a gap that holds an urn."""
    c = max(1.5, 0.2 * h)
    gap = 0.28 * w
    with cv.part("Broken Pediment"):
        if curved:
            arc = _segment_points(cx, y_base, w, h, 32)
            left = [p for p in arc if p[0] <= cx - gap / 2]
            right = [p for p in arc if p[0] >= cx + gap / 2]
        else:
            def y_at(x: float) -> float:
                return y_base - h * (1 - abs(x - cx) / (w / 2))
            left = [(cx - w / 2, y_base), (cx - gap / 2, y_at(cx - gap / 2))]
            right = [(cx + gap / 2, y_at(cx + gap / 2)), (cx + w / 2, y_base)]
        # Each half: the raking cornice down to the base line, closed along its inner edge.
        for half, inner_x in ((left, left[-1][0]), (right, right[0][0])):
            cv.polygon([*half, (inner_x, y_base)], pal.trim, pal.trim_dark, 0.7)
            inset = [(x, min(y + c, y_base)) for x, y in half]
            cv.polygon([*inset, (inner_x, y_base)], pal.wall_light)
        cv.rectangle((cx - w / 2 - 0.02 * w, y_base - 0.8 * c, cx + w / 2 + 0.02 * w, y_base),
                     pal.trim, pal.trim_dark, 0.6)
        u = 0.36 * gap  # urn in the gap
        cv.rectangle((cx - u * 0.35, y_base - 0.8 * c - 0.35 * u, cx + u * 0.35, y_base - 0.8 * c),
                     pal.trim, pal.trim_dark, 0.5)
        yu = y_base - 0.8 * c
        cv.ellipse((cx - u / 2, yu - 1.35 * u, cx + u / 2, yu - 0.3 * u), pal.trim, pal.trim_dark,
                   0.6)
        cv.circle(cx, y_base - 0.8 * c - 1.45 * u, max(0.8, 0.15 * u), pal.trim)


def draw_column_portal(cv: Canvas, cx: float, y_bottom: float, w: float, h: float,
                       pal: Palette) -> None:
    """Portal framed by two free-standing columns carrying an entablature; ``w`` × ``h`` outer."""
    cw = 0.14 * w
    ent = 0.13 * h
    with cv.part("Column Portal"):
        cv.rectangle((cx - w / 2 + cw, y_bottom - 0.82 * h, cx + w / 2 - cw, y_bottom), pal.trim,
                     pal.trim_dark, 0.6)
        dw = w / 2 - 1.7 * cw
        cv.rectangle((cx - dw, y_bottom - 0.74 * h, cx + dw, y_bottom), pal.door,
                     shade(pal.door, 0.6), 0.8)
        cv.line([(cx, y_bottom - 0.74 * h), (cx, y_bottom)], shade(pal.door, 0.55), 1.0)
        for xc in (cx - w / 2 + cw / 2, cx + w / 2 - cw / 2):
            top, base = y_bottom - h + ent, y_bottom
            cv.rectangle((xc - 0.62 * cw, base - 0.06 * h, xc + 0.62 * cw, base), pal.trim,
                         pal.trim_dark, 0.5)
            cv.rectangle((xc - cw / 2, top + 0.07 * h, xc + cw / 2, base - 0.06 * h),
                         pal.wall_light, pal.trim_dark, 0.5)
            cv.rectangle((xc - cw / 2, top + 0.07 * h, xc - cw / 6, base - 0.06 * h),
                         mix(pal.wall_light, (255, 255, 255), 0.3))
            cv.rectangle((xc + cw / 6, top + 0.07 * h, xc + cw / 2, base - 0.06 * h),
                         shade(pal.wall_light, 0.8))
            cv.rectangle((xc - 0.68 * cw, top, xc + 0.68 * cw, top + 0.07 * h), pal.trim,
                         pal.trim_dark, 0.5)
        cv.rectangle((cx - w / 2 - 0.03 * w, y_bottom - h, cx + w / 2 + 0.03 * w,
                      y_bottom - h + ent), pal.trim, pal.trim_dark, 0.7)
        cv.line([(cx - w / 2, y_bottom - h + 0.55 * ent), (cx + w / 2, y_bottom - h + 0.55 * ent)],
                pal.trim_dark, 0.6)


def draw_volute(cv: Canvas, x_inner: float, y_top: float, x_outer: float, y_bottom: float,
                pal: Palette) -> None:
    """S-shaped scroll from the side of an upper storey (``x_inner``, ``y_top``) down to the
    lower cornice (``x_outer``, ``y_bottom``), with curled ends; works on either side."""
    dx, dy = x_outer - x_inner, y_bottom - y_top
    sgn = 1.0 if dx >= 0 else -1.0
    t = np.linspace(0.0, 1.0, 25)
    curve = [(x_inner + dx * (0.5 - 0.5 * math.cos(math.pi * v)), y_top + dy * v) for v in t]
    band = max(1.5, 0.12 * abs(dx))
    rs = max(1.5, 0.14 * min(abs(dx), dy))
    with cv.part("Volute"):
        cv.polygon([*curve, (x_inner, y_bottom)], pal.trim, pal.trim_dark, 0.8)
        cv.line(curve, pal.trim_dark, max(1.0, 0.35 * band))
        for (sx, sy), r in (((x_outer - sgn * rs, y_bottom - rs), rs),
                            ((x_inner + sgn * 0.7 * rs, y_top + 0.7 * rs), 0.7 * rs)):
            cv.circle(sx, sy, r, pal.wall_light, pal.trim_dark, 0.8)
            cv.circle(sx, sy, 0.45 * r, pal.trim, pal.trim_dark, 0.6)


def draw_dome(cv: Canvas, cx: float, y_base: float, w: float, h: float, pal: Palette,
              rng: np.random.Generator) -> None:
    """Dome of width ``w`` standing on ``y_base``: drum with plain windows, ribbed cupola and a
    lantern; total height about ``h``."""
    drum = 0.3 * h
    cup = 0.5 * h
    lan_w, lan_h = 0.16 * w, 0.2 * h * 0.8
    with cv.part("Dome"):
        cv.rectangle((cx - w / 2, y_base - drum, cx + w / 2, y_base), pal.wall, pal.wall_dark, 0.6)
        nwin = int(rng.integers(3, 6))
        for i in range(nwin):
            xw = cx - w / 2 + (i + 0.5) * w / nwin
            cv.rectangle((xw - 0.03 * w, y_base - 0.78 * drum, xw + 0.03 * w, y_base - 0.25 * drum),
                         pal.glass)
        cv.rectangle((cx - 0.53 * w, y_base - drum - 0.05 * drum, cx + 0.53 * w, y_base - drum),
                     pal.trim, pal.trim_dark, 0.5)
        yb = y_base - drum - 0.05 * drum
        arc = [(cx - 0.5 * w * math.cos(a), yb - cup * math.sin(a))
               for a in np.linspace(0, math.pi, 33)]
        cv.polygon(arc, pal.dome, shade(pal.dome, 0.7), 0.7)
        for f in (-0.6, -0.25, 0.25, 0.6):
            a = math.acos(f)
            cv.line([(cx + 0.5 * w * f, yb), (cx + 0.125 * w * f, yb - 0.97 * cup * math.sin(a))],
                    shade(pal.dome, 0.75), max(0.8, 0.012 * w))
        lt = yb - cup + 0.04 * cup
        cv.rectangle((cx - lan_w / 2, lt - lan_h, cx + lan_w / 2, lt), pal.wall_light,
                     pal.trim_dark, 0.5)
        cv.polygon(arch_points(cx - lan_w / 2, cx + lan_w / 2, lt - lan_h, lt - lan_h, n=8),
                   pal.dome, shade(pal.dome, 0.7), 0.5)
        cv.line([(cx, lt - lan_h - lan_w / 2), (cx, lt - lan_h - lan_w / 2 - 0.08 * h)],
                pal.trim_dark, max(0.8, 0.01 * w))


# -- plain (unannotated) structure -------------------------------------------------------------
def plain_window(cv: Canvas, cx: float, y_bottom: float, w: float, h: float, pal: Palette,
                 bars: bool = True) -> None:
    """Plain rectangular window with frame and glazing bars (not a diagnostic part)."""
    f = max(1.0, 0.1 * w)
    cv.rectangle((cx - w / 2 - f, y_bottom - h - f, cx + w / 2 + f, y_bottom + f), pal.trim,
                 pal.trim_dark, 0.5)
    cv.rectangle((cx - w / 2, y_bottom - h, cx + w / 2, y_bottom), pal.glass)
    if bars and w >= 6:
        cv.line([(cx, y_bottom - h), (cx, y_bottom)], pal.trim, max(0.8, 0.35 * f))
        cv.line([(cx - w / 2, y_bottom - 0.6 * h), (cx + w / 2, y_bottom - 0.6 * h)], pal.trim,
                max(0.8, 0.35 * f))


def plain_door(cv: Canvas, cx: float, y_bottom: float, w: float, h: float, pal: Palette) -> None:
    """Plain rectangular door with a frame (not a diagnostic part)."""
    f = max(1.0, 0.08 * w)
    cv.rectangle((cx - w / 2 - f, y_bottom - h - f, cx + w / 2 + f, y_bottom), pal.trim,
                 pal.trim_dark, 0.5)
    cv.rectangle((cx - w / 2, y_bottom - h, cx + w / 2, y_bottom), pal.door, shade(pal.door, 0.6),
                 0.7)
    cv.line([(cx, y_bottom - h), (cx, y_bottom)], shade(pal.door, 0.55), 1.0)
