"""Compose one synthetic church photo: sky, ground, distractors and a facade whose style is
carried by its diagnostic parts.

The facade has four *slots*; each is filled by one style's diagnostic parts or left plain:

- portal: Romanesque round arch portal; Gothic pointed arch portal; Renaissance column portal
  with a triangular pediment; Baroque door under a segmental or broken pediment.
- windows: round arch windows; pointed arch windows; windows under triangular pediments;
  windows under segmental (or broken) pediments.
- crown: round arch windows under a plain gable; rose window under a steep gable; a
  triangular pediment over the whole front; an upper storey flanked by volutes and crowned by a
  segmental or broken pediment.
- extra: blind arcade; buttresses topped by pinnacles; pilasters; a dome behind the front.

Everything else (wall, plinth, plain gable, plain windows and doors, towers, wings, roofs, trees,
clouds, hills, people) is unannotated structure, shared by all styles with the same
probabilities, so that only the diagnostic parts tell the styles apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import parts as P  # noqa: N812 (short alias for the many draw calls)
from .canvas import SUPERSAMPLE, Box, Canvas, Color
from .ontology import STYLE_FEATURES
from .parts import Palette, mix, shade

SLOTS = ("portal", "windows", "crown", "extra")
_SLOT_P = {"portal": 0.85, "windows": 0.8, "crown": 0.85, "extra": 0.8}

_WALLS: tuple[Color, ...] = ((214, 196, 160), (190, 186, 176), (222, 184, 118), (236, 230, 216),
                             (168, 86, 64), (128, 124, 118), (214, 172, 160), (228, 206, 132),
                             (200, 170, 130))
_ROOFS: tuple[Color, ...] = ((70, 74, 86), (158, 72, 52), (88, 146, 124), (112, 116, 122),
                             (104, 72, 54))
_DOMES: tuple[Color, ...] = ((88, 150, 128), (112, 118, 128), (150, 76, 56), (96, 104, 120))
_GLASS: tuple[Color, ...] = ((38, 42, 56), (52, 68, 104), (30, 34, 40), (60, 74, 88))
_STAINED: tuple[Color, ...] = ((46, 70, 140), (150, 40, 52), (60, 110, 150), (120, 60, 130),
                               (170, 130, 40))
_DOORS: tuple[Color, ...] = ((92, 56, 32), (60, 78, 58), (110, 40, 36), (70, 60, 56))
_SKIES: tuple[tuple[Color, Color], ...] = (((64, 122, 198), (176, 208, 236)),
                                           ((150, 154, 164), (206, 206, 210)),
                                           ((84, 104, 162), (238, 190, 150)),
                                           ((96, 150, 214), (214, 230, 244)))
_GROUNDS: tuple[Color, ...] = ((98, 138, 70), (150, 146, 136), (168, 158, 138), (120, 110, 84),
                               (84, 120, 64))


@dataclass(frozen=True)
class Rendered:
    """One rendered church: the RGB image and its annotated groups ``(label, [Box, ...])``."""

    image: Image.Image
    groups: list[tuple[str, list[Box]]]


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _jitter(rng: np.random.Generator, c: Color, amount: int = 12) -> Color:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def random_palette(rng: np.random.Generator) -> Palette:
    """Colours of one church, drawn independently of its style."""
    wall = _jitter(rng, _pick(rng, _WALLS))
    light = sum(wall) / 3 > 200 or rng.random() < 0.35
    trim = shade(wall, 0.78) if light else mix(wall, (255, 255, 255), 0.45)
    stained = tuple(_jitter(rng, _pick(rng, _STAINED), 10) for _ in range(2))
    return Palette(wall=wall, trim=trim, roof=_jitter(rng, _pick(rng, _ROOFS)),
                   glass=_jitter(rng, _pick(rng, _GLASS), 6), stained=stained,
                   door=_jitter(rng, _pick(rng, _DOORS), 8), dome=_jitter(rng, _pick(rng, _DOMES)))


def assign_slots(rng: np.random.Generator, styles: Sequence[str]) -> dict[str, str | None]:
    """Give each slot a style (or None = plain): at least two diagnostic slots, and every one
    of ``styles`` used at least once."""
    while True:
        out = {s: (str(_pick(rng, styles)) if rng.random() < _SLOT_P[s] else None) for s in SLOTS}
        used = [v for v in out.values() if v]
        if len(used) >= 2 and set(used) == set(styles):
            return out


# -- background and distractors ----------------------------------------------------------------
def _sky(rng: np.random.Generator, W: int, H: int, horizon: float, ground: Color) -> np.ndarray:
    top, bottom = (np.array(_jitter(rng, c, 10), float) for c in _pick(rng, _SKIES))
    h, w = H * SUPERSAMPLE, W * SUPERSAMPLE
    t = np.clip(np.arange(h) / max(horizon * SUPERSAMPLE, 1), 0, 1)[:, None]
    col = top * (1 - t) + bottom * t
    col[int(horizon * SUPERSAMPLE):] = ground
    return np.ascontiguousarray(np.broadcast_to(col[:, None, :], (h, w, 3)).astype(np.uint8))


def _clouds(cv: Canvas, rng: np.random.Generator, W: int, horizon: float) -> None:
    for _ in range(int(rng.integers(0, 5))):
        cx, cy = rng.uniform(0, W), rng.uniform(0.05, 0.6) * horizon
        s = rng.uniform(0.06, 0.16) * W
        c = _jitter(rng, (238, 240, 244), 10)
        for _ in range(int(rng.integers(3, 7))):
            dx, dy = rng.uniform(-s, s), rng.uniform(-0.25 * s, 0.15 * s)
            r = rng.uniform(0.3, 0.6) * s
            cv.ellipse((cx + dx - r, cy + dy - 0.55 * r, cx + dx + r, cy + dy + 0.55 * r), c)


def _hills(cv: Canvas, rng: np.random.Generator, W: int, horizon: float) -> None:
    if rng.random() < 0.4:
        return
    col = _jitter(rng, (120, 140, 150) if rng.random() < 0.5 else (96, 128, 96), 10)
    xs = np.linspace(-5, W + 5, 12)
    ys = horizon - rng.uniform(0.01, 0.07, size=xs.size) * W
    cv.polygon([(-5, horizon + 1), *zip(xs.tolist(), ys.tolist()), (W + 5, horizon + 1)], col)


def _tree(cv: Canvas, rng: np.random.Generator, x: float, base: float, h: float) -> None:
    green = _jitter(rng, (62, 104, 52) if rng.random() < 0.6 else (88, 120, 60), 14)
    if rng.random() < 0.35:  # conifer
        cv.rectangle((x - 0.03 * h, base - 0.15 * h, x + 0.03 * h, base), (84, 60, 40))
        for k in range(3):
            yb = base - 0.12 * h - k * 0.25 * h
            hw = 0.22 * h * (1 - 0.22 * k)
            cv.polygon([(x - hw, yb), (x, yb - 0.45 * h), (x + hw, yb)], shade(green, 1 - 0.07 * k))
        return
    cv.rectangle((x - 0.035 * h, base - 0.45 * h, x + 0.035 * h, base), (90, 66, 44))
    for _ in range(int(rng.integers(4, 8))):
        r = rng.uniform(0.14, 0.24) * h
        cx, cy = x + rng.uniform(-0.18, 0.18) * h, base - rng.uniform(0.5, 0.78) * h
        cv.circle(cx, cy, r, shade(green, rng.uniform(0.8, 1.15)))


def _person(cv: Canvas, rng: np.random.Generator, x: float, base: float, h: float) -> None:
    coat = _jitter(rng, _pick(rng, ((40, 40, 60), (140, 40, 40), (60, 90, 60), (200, 190, 170))))
    cv.rectangle((x - 0.12 * h, base - 0.45 * h, x + 0.12 * h, base), (50, 50, 60))
    cv.polygon([(x - 0.16 * h, base - 0.42 * h), (x - 0.12 * h, base - 0.8 * h),
                (x + 0.12 * h, base - 0.8 * h), (x + 0.16 * h, base - 0.42 * h)], coat)
    cv.circle(x, base - 0.9 * h, 0.1 * h, (214, 176, 150))


# -- structure ---------------------------------------------------------------------------------
def _tower(cv: Canvas, rng: np.random.Generator, pal: Palette, x0: float, x1: float,
           y_base: float, y_top: float, roof: str, roof_h: float) -> None:
    tw = x1 - x0
    body = shade(pal.wall, float(rng.uniform(0.9, 1.02)))
    cv.rectangle((x0, y_top, x1, y_base), body, shade(body, 0.75), 0.7)
    y = y_base - tw
    while y > y_top + 0.6 * tw:
        cv.line([(x0, y), (x1, y)], shade(body, 0.82), max(1.0, 0.02 * tw))
        y -= tw * float(rng.uniform(0.9, 1.3))
    n = 2 if tw > 30 and rng.random() < 0.5 else 1
    for i in range(n):
        cx = x0 + (i + 0.5) * tw / n
        P.plain_window(cv, cx, y_top + 0.45 * tw, 0.5 * tw / n, 0.3 * tw, pal, bars=False)
    if rng.random() < 0.4:  # clock face: a round distractor
        cx, cy, r = (x0 + x1) / 2, y_top + 0.85 * tw, 0.22 * tw
        cv.circle(cx, cy, r, (236, 232, 220), shade(pal.trim, 0.6), max(1.0, 0.1 * r))
        cv.line([(cx, cy), (cx, cy - 0.7 * r)], (30, 30, 30), max(0.8, 0.08 * r))
        cv.line([(cx, cy), (cx + 0.5 * r, cy + 0.2 * r)], (30, 30, 30), max(0.8, 0.08 * r))
    cx = (x0 + x1) / 2
    if roof == "flat":  # parapet with crenellations
        cv.rectangle((x0 - 0.04 * tw, y_top - 0.08 * tw, x1 + 0.04 * tw, y_top), pal.trim)
        for k in range(5):
            m0 = x0 + k * tw / 4.5
            cv.rectangle((m0, y_top - roof_h, m0 + tw / 9, y_top - 0.08 * tw), body)
    elif roof == "cap":
        cv.ellipse((x0 - 0.02 * tw, y_top - roof_h, x1 + 0.02 * tw, y_top + roof_h * 0.6),
                   pal.roof, shade(pal.roof, 0.7), 0.7)
        cv.rectangle((x0 - 0.03 * tw, y_top, x1 + 0.03 * tw, y_top + 0.08 * tw), pal.trim)
    else:  # pyramid or spire
        over = 0.06 * tw
        cv.polygon([(x0 - over, y_top), (cx, y_top - roof_h), (x1 + over, y_top)], pal.roof,
                   shade(pal.roof, 0.7), 0.7)
        cv.line([(cx, y_top - roof_h), (cx, y_top - roof_h - 0.25 * tw)], (60, 60, 60),
                max(0.8, 0.03 * tw))
        cv.line([(cx - 0.1 * tw, y_top - roof_h - 0.17 * tw),
                 (cx + 0.1 * tw, y_top - roof_h - 0.17 * tw)], (60, 60, 60), max(0.8, 0.03 * tw))


def _gable(cv: Canvas, pal: Palette, x0: float, x1: float, y: float, h: float,
           cross: bool) -> None:
    e = 0.03 * (x1 - x0)
    cx = (x0 + x1) / 2
    cv.polygon([(x0 - e, y), (cx, y - h), (x1 + e, y)], pal.wall, shade(pal.wall, 0.8), 0.6)
    cv.line([(x0 - e, y), (cx, y - h), (x1 + e, y)], pal.roof, max(1.5, 0.018 * (x1 - x0)))
    if cross:
        s = 0.06 * (x1 - x0)
        cv.line([(cx, y - h), (cx, y - h - 1.6 * s)], shade(pal.trim, 0.7), max(1.0, 0.25 * s))
        cv.line([(cx - 0.5 * s, y - h - s), (cx + 0.5 * s, y - h - s)], shade(pal.trim, 0.7),
                max(1.0, 0.25 * s))


def _window_slot(cv: Canvas, rng: np.random.Generator, pal: Palette, style: str | None,
                 cx: float, y_bottom: float, w: float, h_max: float) -> None:
    """A side-bay window of the slot's style (or a plain one)."""
    if h_max < 8 or w < 3:
        return
    if style == "Romanesque":
        h = min(h_max, w * rng.uniform(2.0, 2.8))
        with cv.group("Round Arch Window"):
            P.draw_arch_window(cv, cx, y_bottom, w, h, pal, pointed=False)
    elif style == "Gothic":
        h = min(h_max, w * rng.uniform(2.6, 3.6))
        with cv.group("Pointed Arch Window"):
            P.draw_arch_window(cv, cx, y_bottom, w, h, pal, pointed=True,
                               k=float(rng.uniform(0.8, 1.2)))
    elif style in ("Renaissance", "Baroque"):
        ped_h = 0.4 * w
        h = min(h_max - ped_h - 0.2 * w, w * rng.uniform(1.5, 2.1))
        if h < 4:
            return
        with cv.group("Window"):
            P.plain_window(cv, cx, y_bottom, w, h, pal)
            top = y_bottom - h - 0.12 * w
            if style == "Renaissance":
                P.draw_triangular_pediment(cv, cx, top, 1.45 * w, ped_h, pal)
            elif rng.random() < 0.75:
                P.draw_segmental_pediment(cv, cx, top, 1.45 * w, ped_h, pal)
            else:
                P.draw_broken_pediment(cv, cx, top, 1.5 * w, ped_h * 1.2, pal)
    elif rng.random() < 0.7:
        P.plain_window(cv, cx, y_bottom, w, min(h_max, w * rng.uniform(1.4, 2.2)), pal)


def _portal_slot(cv: Canvas, rng: np.random.Generator, pal: Palette, style: str | None,
                 cx: float, y_b: float, pw: float, ph: float) -> float:
    """Draw the portal; return the y of its top (including a pediment)."""
    if style in ("Romanesque", "Gothic"):
        pointed = style == "Gothic"
        with cv.group("Pointed Arch Portal" if pointed else "Round Arch Portal"):
            P.draw_arch_portal(cv, cx, y_b, pw, ph, pal, pointed=pointed,
                               orders=int(rng.integers(2, 5)), k=float(rng.uniform(0.75, 1.1)))
        return y_b - ph
    if style == "Renaissance":
        h = 0.8 * ph
        with cv.group("Column Portal"):
            P.draw_column_portal(cv, cx, y_b, pw, h, pal)
            P.draw_triangular_pediment(cv, cx, y_b - h, 1.12 * pw, 0.22 * pw, pal)
        return y_b - h - 0.22 * pw
    if style == "Baroque":
        dw, dh = 0.6 * pw, 0.7 * ph
        with cv.group("Portal"):
            with cv.unannotated():
                P.plain_door(cv, cx, y_b, dw, dh, pal)
            top = y_b - dh - 0.1 * dw
            if rng.random() < 0.6:
                P.draw_segmental_pediment(cv, cx, top, 1.5 * dw, 0.36 * dw, pal)
            else:
                P.draw_broken_pediment(cv, cx, top, 1.55 * dw, 0.42 * dw, pal,
                                       curved=bool(rng.random() < 0.4))
        return top - 0.5 * dw
    P.plain_door(cv, cx, y_b, 0.55 * pw, 0.6 * ph, pal)
    return y_b - 0.6 * ph


@dataclass
class _Geometry:
    x0: float
    x1: float
    y_b: float  # ground line of the building
    y_t: float  # top of the facade wall
    tw: float  # tower width
    towers: str  # none, left, right, both, behind
    wings: bool


def render_church(rng: np.random.Generator, styles: Sequence[str], width: int,
                  height: int) -> Rendered:
    """Draw one church of the given style name(s) on a ``width`` × ``height`` photo.

    Returns the image (before JPEG encoding) and its annotated groups with tight boxes. Every
    style in ``styles`` is guaranteed at least one visible diagnostic part: a drawing where a
    part found no room or was hidden is redrawn with the next random numbers.
    """
    for _ in range(20):
        out = _render_once(rng, styles, width, height)
        drawn = {b.feature for _, group in out.groups for b in group}
        if all(drawn & set(STYLE_FEATURES[s]) for s in styles):
            return out
    raise RuntimeError(f"could not draw every style of {list(styles)} on a {width}x{height} "
                       "image; use a larger image_size_range")


def _render_once(rng: np.random.Generator, styles: Sequence[str], width: int,
                 height: int) -> Rendered:
    W, H = int(width), int(height)
    pal = random_palette(rng)
    slot = assign_slots(rng, styles)
    horizon = H * float(rng.uniform(0.72, 0.88))
    ground = _jitter(rng, _pick(rng, _GROUNDS))
    cv = Canvas(W, H, _sky(rng, W, H, horizon, ground))
    _clouds(cv, rng, W, horizon)
    _hills(cv, rng, W, horizon)
    cv.rectangle((-2, horizon, W + 2, H + 2), ground)

    # -- proportions, in facade widths ---------------------------------------------------------
    baroque_crown = slot["crown"] == "Baroque"
    a_w = rng.uniform(0.6, 0.8) if baroque_crown else rng.uniform(0.75, 1.1)
    if slot["crown"] == "Renaissance":
        crown_u = 0.05 + rng.uniform(0.16, 0.24)
    elif baroque_crown:
        crown_u = 0.05 + rng.uniform(0.32, 0.45) + 0.2
    else:
        crown_u = rng.uniform(0.42, 0.6) if slot["crown"] == "Gothic" else rng.uniform(0.25, 0.38)
    towers = str(_pick(rng, ("none", "none", "left", "right", "both", "both", "behind")))
    if towers == "behind" and slot["extra"] == "Baroque":  # it would hide the dome
        towers = "none"
    t_u = rng.uniform(0.22, 0.32)
    roof = str(_pick(rng, ("pyramid", "spire", "spire", "flat", "cap")))
    roof_u = {"pyramid": rng.uniform(0.6, 1.0), "spire": rng.uniform(1.3, 2.2),
              "flat": 0.2, "cap": 0.45}[roof] * t_u
    tower_top_u = (a_w + crown_u) * rng.uniform(1.06, 1.3)
    wings = towers in ("none", "behind") and rng.random() < 0.6
    w_u = rng.uniform(0.2, 0.35)
    left_u = t_u if towers in ("left", "both") else (w_u if wings else 0.0)
    right_u = t_u if towers in ("right", "both") else (w_u if wings else 0.0)
    height_u = a_w + crown_u + 0.04
    if towers != "none":
        height_u = max(height_u, tower_top_u + roof_u + 0.3 * t_u)
    dome_top_u = a_w + crown_u + rng.uniform(0.25, 0.45)
    if slot["extra"] == "Baroque":
        height_u = max(height_u, dome_top_u + 0.12)

    y_b = min(horizon + H * float(rng.uniform(0.01, 0.06)), H * 0.95)
    top_margin = H * float(rng.uniform(0.03, 0.1))
    width_u = left_u + 1 + right_u
    fw = min(W * float(rng.uniform(0.6, 0.95)) / width_u, (y_b - top_margin) / height_u)
    bx0 = float(rng.uniform(0.03 * W, max(0.03 * W, W - 0.03 * W - width_u * fw)))
    x0 = bx0 + left_u * fw
    g = _Geometry(x0, x0 + fw, y_b, y_b - a_w * fw, t_u * fw, towers, wings)
    cx, Hw = (g.x0 + g.x1) / 2, g.y_b - g.y_t

    # -- behind the facade: dome, crossing tower, wings, side towers ---------------------------
    if slot["extra"] == "Baroque":
        dw = fw * float(rng.uniform(0.45, 0.7))
        dh = min(dw * float(rng.uniform(1.0, 1.3)), (dome_top_u - a_w + 0.1) * fw)
        with cv.group("Dome"):
            P.draw_dome(cv, cx, g.y_b - (dome_top_u * fw - dh), dw, dh, pal, rng)
    if towers == "behind":
        _tower(cv, rng, pal, cx - g.tw / 2, cx + g.tw / 2, g.y_t, g.y_b - tower_top_u * fw,
               roof, roof_u * fw)
    if wings:
        wh = Hw * float(rng.uniform(0.45, 0.65))
        for sx0, sx1, sgn in ((g.x0 - w_u * fw, g.x0, 1), (g.x1, g.x1 + w_u * fw, -1)):
            top = g.y_b - wh
            rise = 0.12 * fw
            hi, lo = (sx1, sx0) if sgn > 0 else (sx0, sx1)
            cv.rectangle((sx0, top, sx1, g.y_b), shade(pal.wall, 0.92), shade(pal.wall, 0.7), 0.6)
            cv.polygon([(lo, top), (hi, top - rise), (hi, top)], pal.roof)
            cv.line([(lo, top), (hi, top - rise)], shade(pal.roof, 0.7), 1.0)
            P.plain_window(cv, (sx0 + sx1) / 2, g.y_b - 0.35 * wh, 0.25 * (sx1 - sx0),
                           0.35 * wh, pal)
    for side in ("left", "right"):
        if towers in (side, "both"):
            tx0 = g.x0 - g.tw if side == "left" else g.x1
            _tower(cv, rng, pal, tx0, tx0 + g.tw, g.y_b, g.y_b - tower_top_u * fw, roof,
                   roof_u * fw)

    # -- facade wall and crown -----------------------------------------------------------------
    cv.rectangle((g.x0, g.y_t, g.x1, g.y_b), pal.wall, shade(pal.wall, 0.75), 0.7)
    for _ in range(int(rng.integers(0, 4))):  # faint stone courses
        yy = float(rng.uniform(g.y_t, g.y_b))
        cv.line([(g.x0, yy), (g.x1, yy)], shade(pal.wall, 0.93), 0.6)
    cv.rectangle((g.x0, g.y_b - 0.04 * Hw, g.x1, g.y_b), shade(pal.wall, 0.8))
    ent = 0.05 * fw
    if slot["crown"] in ("Renaissance", "Baroque"):
        cv.rectangle((g.x0 - 0.02 * fw, g.y_t - ent, g.x1 + 0.02 * fw, g.y_t), pal.trim,
                     pal.trim_dark, 0.7)
    if slot["crown"] == "Renaissance":
        with cv.group("Triangular Pediment"):
            P.draw_triangular_pediment(cv, cx, g.y_t - ent, 1.02 * fw, (crown_u - 0.05) * fw, pal)
    elif baroque_crown:
        _baroque_crown(cv, rng, pal, slot, cx, fw, g.y_t - ent, crown_u - 0.05 - 0.2)
    else:
        _gable(cv, pal, g.x0, g.x1, g.y_t, crown_u * fw, cross=bool(rng.random() < 0.5))

    # -- bays ----------------------------------------------------------------------------------
    sb = fw * float(rng.uniform(0.26, 0.32))
    cb = fw - 2 * sb
    lines = [g.x0, g.x0 + sb, g.x1 - sb, g.x1]
    band_bottom = g.y_t
    arcade_lower = False
    if slot["extra"] == "Romanesque":
        if rng.random() < 0.6:  # Lombard band under the eaves
            bh = max(4.0, 0.1 * Hw)
            with cv.group("Blind Arcade"):
                P.draw_blind_arcade(cv, g.x0 + 0.03 * fw, g.x1 - 0.03 * fw, g.y_t + 0.02 * Hw,
                                    g.y_t + 0.02 * Hw + bh, int(rng.integers(6, 12)), pal)
            band_bottom = g.y_t + 0.02 * Hw + bh
        else:  # tall blind arcades on the lower side bays
            arcade_lower = True
            for b0 in (lines[0], lines[2]):
                with cv.group("Blind Arcade"):
                    P.draw_blind_arcade(cv, b0 + 0.1 * sb, b0 + 0.9 * sb, g.y_b - 0.38 * Hw,
                                        g.y_b - 0.06 * Hw, int(rng.integers(2, 4)), pal)

    # centre bay: portal, then the crown's feature above it
    pw = cb * float(rng.uniform(0.55, 0.78))
    ph = min(Hw * float(rng.uniform(0.36, 0.46)), pw * float(rng.uniform(1.2, 1.7)))
    portal_top = _portal_slot(cv, rng, pal, slot["portal"], cx, g.y_b, pw, ph)
    space_top, space_bot = band_bottom + 0.04 * Hw, portal_top - 0.04 * Hw
    space = space_bot - space_top
    if slot["crown"] == "Gothic" and space > 12:
        r = min(0.42 * cb, 0.46 * space)
        P.draw_rose_window(cv, cx, (space_top + space_bot) / 2, r, pal, rng)
    elif slot["crown"] == "Romanesque" and space > 16:
        n = int(rng.integers(1, 4))
        ww = min(cb * 0.22, cb * 0.42 / n, space / 2.6)
        for i in range(n):
            wx = cx + (i - (n - 1) / 2) * ww * 1.6
            with cv.group("Round Arch Window"):
                P.draw_arch_window(cv, wx, space_bot - 0.1 * space, ww,
                                   min(0.8 * space, ww * 2.4), pal, pointed=False)
    elif space > 16 and rng.random() < 0.5:
        ww = min(0.3 * cb, space / 2.4)
        P.plain_window(cv, cx, space_bot - 0.15 * space, ww, min(0.7 * space, 1.6 * ww), pal)

    # side bays: upper windows (the windows slot) and optional plain lower windows
    for b0 in (lines[0], lines[2]):
        bcx = b0 + sb / 2
        wy = g.y_b - Hw * float(rng.uniform(0.44, 0.5))
        w = sb * float(rng.uniform(0.3, 0.42))
        _window_slot(cv, rng, pal, slot["windows"], bcx, wy, w, wy - band_bottom - 0.06 * Hw)
        if not arcade_lower and rng.random() < 0.35:
            P.plain_window(cv, bcx, g.y_b - 0.1 * Hw, 0.7 * w, 0.18 * Hw, pal)

    # verticals in front of the wall: buttresses with pinnacles, or pilasters
    if slot["extra"] == "Gothic":
        bw = fw * float(rng.uniform(0.05, 0.075))
        outer = rng.random() < 0.7
        top = g.y_t + Hw * float(rng.uniform(0.02, 0.15))
        for i, xl in enumerate(lines):
            if i in (0, 3) and not outer:
                continue
            xc = xl + (bw / 2 if i == 0 else -bw / 2 if i == 3 else 0)
            with cv.group("Buttress"):
                P.draw_buttress(cv, xc, top, g.y_b, bw, pal)
                pw_ = bw * 0.52
                P.draw_pinnacle(cv, xc, top, pw_, pw_ * float(rng.uniform(3.0, 5.0)), pal)
    elif slot["extra"] == "Renaissance":
        pw_ = fw * float(rng.uniform(0.04, 0.06))
        for i, xl in enumerate(lines):
            xc = xl + (0.7 * pw_ if i == 0 else -0.7 * pw_ if i == 3 else 0)
            with cv.group("Pilaster"):
                P.draw_pilaster(cv, xc, g.y_t + 0.01 * Hw, g.y_b, pw_, pal,
                                fluted=bool(rng.random() < 0.5))

    _foreground(cv, rng, g, W, H)
    return Rendered(_finish(cv.image(), rng), cv.boxes())


def _baroque_crown(cv: Canvas, rng: np.random.Generator, pal: Palette,
                   slot: dict[str, str | None], cx: float, fw: float, y: float,
                   storey_u: float) -> None:
    """Upper storey on the entablature at ``y``, volutes either side and a crowning pediment."""
    uw, uh = fw * float(rng.uniform(0.46, 0.6)), storey_u * fw
    cv.rectangle((cx - uw / 2, y - uh, cx + uw / 2, y), pal.wall, shade(pal.wall, 0.75), 0.7)
    if slot["windows"] == "Baroque":
        _window_slot(cv, rng, pal, "Baroque", cx, y - 0.2 * uh, 0.28 * uw, 0.75 * uh)
    elif rng.random() < 0.5:  # an oval window: a plain round-ish distractor
        cv.ellipse((cx - 0.14 * uw, y - 0.75 * uh, cx + 0.14 * uw, y - 0.3 * uh), pal.glass,
                   pal.trim, max(1.0, 0.02 * uw))
    ent = 0.06 * uh
    cv.rectangle((cx - uw / 2 - 0.03 * uw, y - uh - ent, cx + uw / 2 + 0.03 * uw, y - uh),
                 pal.trim, pal.trim_dark, 0.6)
    vw = min((fw - uw) / 2 * 0.85, uh * 0.9)
    for sgn in (-1, 1):
        with cv.group("Volute"):
            P.draw_volute(cv, cx + sgn * uw / 2, y - 0.85 * uh, cx + sgn * (uw / 2 + vw), y, pal)
    ph = 0.2 * fw * float(rng.uniform(0.6, 0.85))
    top = y - uh - ent
    if rng.random() < 0.55:
        with cv.group("Segmental Pediment"):
            P.draw_segmental_pediment(cv, cx, top, 1.06 * uw, ph, pal)
    else:
        with cv.group("Broken Pediment"):
            P.draw_broken_pediment(cv, cx, top, 1.06 * uw, ph * 1.1, pal,
                                   curved=bool(rng.random() < 0.4))


def _foreground(cv: Canvas, rng: np.random.Generator, g: _Geometry, W: int, H: int) -> None:
    """Trees, bushes and people; trees stay near the sides so the facade stays mostly visible."""
    fw = g.x1 - g.x0
    for _ in range(int(rng.integers(0, 5))):
        left = rng.random() < 0.5
        x = (rng.uniform(-0.05 * W, g.x0 + 0.1 * fw) if left
             else rng.uniform(g.x1 - 0.1 * fw, 1.05 * W))
        _tree(cv, rng, float(x), float(min(H - 1, g.y_b + rng.uniform(0, 0.05) * H)),
              float(rng.uniform(0.15, 0.45) * H))
    for _ in range(int(rng.integers(0, 4))):
        x = float(rng.uniform(0, W))
        _person(cv, rng, x, float(min(H - 1, g.y_b + rng.uniform(0.01, 0.08) * H)),
                float(rng.uniform(0.04, 0.08) * H))
    if rng.random() < 0.3:  # a lamp post
        x = float(rng.uniform(0.02, 0.98) * W)
        base = float(min(H - 1, g.y_b + 0.03 * H))
        cv.line([(x, base), (x, base - 0.3 * H)], (40, 40, 44), max(1.0, 0.006 * W))
        cv.rectangle((x - 0.012 * W, base - 0.33 * H, x + 0.012 * W, base - 0.3 * H), (60, 60, 50))
    for _ in range(int(rng.integers(0, 4))):  # birds
        bx, by, s = rng.uniform(0, W), rng.uniform(0.03, 0.3) * H, rng.uniform(0.006, 0.014) * W
        cv.line([(bx - s, by - 0.4 * s), (bx, by), (bx + s, by - 0.4 * s)], (40, 40, 50), 1.0)


def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Side lighting and sensor grain (after the boxes are fixed: they only change colours)."""
    a = np.asarray(img, dtype=np.float32)
    H, W = a.shape[:2]
    gain = 1 + float(rng.uniform(-0.12, 0.12)) * (np.arange(W, dtype=np.float32) / W - 0.5)
    a = a * gain[None, :, None]
    a += rng.integers(-5, 6, size=(H, W, 1)).astype(np.float32)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


#: Background colour of :func:`draw_single_part` (no part uses it).
BLANK = (255, 0, 255)


def draw_single_part(feature: str, size: tuple[int, int] = (96, 128),
                     seed: int = 0) -> tuple[Image.Image, list[Box]]:
    """Draw one diagnostic part of type ``feature`` on a blank ``size`` = (W, H) canvas of colour
    :data:`BLANK`, with no lighting or grain. Returns the image and the part's box(es).

    For tests: every pixel that differs from :data:`BLANK` lies inside the returned boxes, and
    the boxes touch such pixels on all four sides.
    """
    W, H = size
    rng = np.random.default_rng(seed)
    pal = random_palette(rng)
    cv = Canvas(W, H, BLANK)
    cx, yb = W / 2, H * 0.85
    draw = {
        "Round Arch Window": lambda: P.draw_arch_window(cv, cx, yb, 0.3 * W, 0.6 * H, pal, False),
        "Pointed Arch Window": lambda: P.draw_arch_window(cv, cx, yb, 0.3 * W, 0.6 * H, pal, True),
        "Rose Window": lambda: P.draw_rose_window(cv, cx, H / 2, 0.35 * min(W, H), pal, rng),
        "Round Arch Portal": lambda: P.draw_arch_portal(cv, cx, yb, 0.6 * W, 0.6 * H, pal, False),
        "Pointed Arch Portal": lambda: P.draw_arch_portal(cv, cx, yb, 0.6 * W, 0.6 * H, pal, True),
        "Blind Arcade": lambda: P.draw_blind_arcade(cv, 0.1 * W, 0.9 * W, 0.4 * H, 0.6 * H, 5, pal),
        "Buttress": lambda: P.draw_buttress(cv, cx, 0.2 * H, yb, 0.2 * W, pal),
        "Pinnacle": lambda: P.draw_pinnacle(cv, cx, yb, 0.2 * W, 0.7 * H, pal),
        "Pilaster": lambda: P.draw_pilaster(cv, cx, 0.1 * H, yb, 0.15 * W, pal),
        "Column Portal": lambda: P.draw_column_portal(cv, cx, yb, 0.7 * W, 0.6 * H, pal),
        "Triangular Pediment": lambda: P.draw_triangular_pediment(cv, cx, yb, 0.8 * W, 0.3 * H,
                                                                  pal),
        "Segmental Pediment": lambda: P.draw_segmental_pediment(cv, cx, yb, 0.8 * W, 0.25 * H,
                                                                pal),
        "Broken Pediment": lambda: P.draw_broken_pediment(cv, cx, yb, 0.8 * W, 0.3 * H, pal),
        "Volute": lambda: P.draw_volute(cv, 0.2 * W, 0.3 * H, 0.8 * W, yb, pal),
        "Dome": lambda: P.draw_dome(cv, cx, yb, 0.6 * W, 0.7 * H, pal, rng),
    }
    if feature not in draw:
        raise KeyError(f"no drawing function for feature {feature!r}; known: {sorted(draw)}")
    draw[feature]()
    return cv.image(), [b for _, group in cv.boxes() for b in group]
