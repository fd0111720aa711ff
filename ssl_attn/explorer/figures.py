"""Bokeh figures of the explorer's always-visible views, updated in place.

The attention view, the layer × head grid and the layer curves are on screen at every moment
and change with every click, so they are drawn with Bokeh directly instead of through
HoloViews (measured on the full-size store: HoloViews' per-update range computation, element
construction and the document recompute cost 200–1300 ms per click). Each figure is built once;
an update only assigns new ``ColumnDataSource.data`` dicts and plain properties (colour-mapper
limits, palette, alpha, titles, factor lists). No model is ever added or replaced, so Bokeh never
recomputes the document's model graph and a change reaches the browser as a few small patches.

Renderers are built with ``Plot.add_glyph`` (one glyph model each; the ``figure`` glyph
methods add selection / non-selection / muted copies per renderer, which made building the
three figures ~2x slower).

Frames follow :mod:`ssl_attn.plots`: x in photo pixels to the right, y negated (the photo
spans ``(0, −H) … (W, 0)``). Bokeh draws row 0 of an image array at the *bottom* of its
extent, so y-down arrays (row 0 = top of the photo) are flipped on the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from bokeh.core.properties import field
from bokeh.events import Tap
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSTickFormatter,
    DataRange1d,
    FactorRange,
    HoverTool,
    Image,
    ImageRGBA,
    Legend,
    LegendItem,
    LinearColorMapper,
    MultiLine,
    Patches,
    Quad,
    Range1d,
    Rect,
    Scatter,
    Segment,
    Text,
)
from bokeh.palettes import Cividis256, Greys256, Inferno256, Magma256, Viridis256
from bokeh.plotting import figure

__all__ = [
    "PALETTES",
    "AttentionFigure",
    "CurvesFigure",
    "GridFigure",
    "fit_ranges",
    "rgba_image",
]

#: Colormap name (as in ``ExplorerState.cmap``) → 256-colour Bokeh palette, low values first.
PALETTES: dict[str, list[str]] = {
    "inferno": list(Inferno256), "viridis": list(Viridis256), "magma": list(Magma256),
    "cividis": list(Cividis256), "gray": list(Greys256), "viridis_r": list(Viridis256)[::-1],
}
TRANSPARENT = "rgba(0, 0, 0, 0)"
_QUAD = {"left": field("x0"), "right": field("x1"), "bottom": field("y0"), "top": field("y1")}
_EDGES = {"x0": field("x0"), "y0": field("y0"), "x1": field("x1"), "y1": field("y1")}
MARK = "#ff2d55"
TapCallback = Callable[[float, float], None]


def rgba_image(rgb: np.ndarray) -> np.ndarray:
    """uint8 ``(h, w, 3|4)`` (row 0 = top) → uint32 ``(h, w)`` RGBA for Bokeh (row 0 = bottom)."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"rgba_image: expected an (h, w, 3) RGB array, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    out = np.empty((h, w, 4), np.uint8)
    out[..., :3] = rgb[::-1, :, :3]
    out[..., 3] = 255 if rgb.shape[2] == 3 else rgb[::-1, :, 3]
    return out.view(np.uint32).reshape(h, w)


def fit_ranges(width: float, height: float, frame_width: int,
               frame_height: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y ranges that show the whole ``width × height`` px frame, centred, at one scale on
    both axes (aspect 1) in a ``frame_width × frame_height`` screen frame.

    Returns ``((x0, x1), (y0, y1))`` in plot coordinates (y negated: the photo is ``[−H, 0]``).
    """
    scale = min(frame_width / width, frame_height / height)  # screen px per photo px
    half_w, half_h = frame_width / scale / 2.0, frame_height / scale / 2.0
    return ((width / 2.0 - half_w, width / 2.0 + half_w),
            (-height / 2.0 - half_h, -height / 2.0 + half_h))


def _image_data(image: np.ndarray, width: float, height: float) -> dict:
    return {"image": [image], "x": [0.0], "y": [-float(height)], "dw": [float(width)],
            "dh": [float(height)]}


def _limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + max(abs(lo), 1.0) * 1e-6)


def _set(model, **props) -> None:
    """Assign only the properties that differ (an equal value would still send a patch)."""
    for k, v in props.items():
        if getattr(model, k) != v:
            setattr(model, k, v)


class AttentionFigure:
    """Photo, attention map (with colour bar), top-region outline, expert boxes (legend by
    feature, hover with per-box scores) and the selected box, in the y-negated pixel frame.

    Parameters
    ----------
    frame_width, frame_height : size of the plot frame in screen px (default 480 × 420).
    box_columns : per-box score columns shown on hover (each update must supply them).
    on_tap : called with the tapped point ``(x, y)`` in plot coordinates.
    """

    BOX_FIELDS = ("x0", "y0", "x1", "y1", "feature", "box_index", "color")

    def __init__(self, *, frame_width: int = 480, frame_height: int = 420,
                 box_columns: Sequence[str] = (), on_tap: TapCallback | None = None) -> None:
        self.frame_width, self.frame_height = int(frame_width), int(frame_height)
        self.box_columns = tuple(box_columns)
        empty_box = {c: [] for c in (*self.BOX_FIELDS, *self.box_columns)}
        self.photo = ColumnDataSource(_image_data(np.zeros((1, 1), np.uint32), 1, 1))
        self.map = ColumnDataSource(_image_data(np.zeros((1, 1), np.float32), 1, 1))
        self.outline = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []})
        self.boxes = ColumnDataSource(dict(empty_box))
        self.selected = ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": []})
        self.mapper = LinearColorMapper(palette=PALETTES["inferno"], low=0.0, high=1.0,
                                        nan_color=TRANSPARENT)
        fig = figure(frame_width=self.frame_width, frame_height=self.frame_height,
                     x_range=Range1d(0.0, 1.0), y_range=Range1d(-1.0, 0.0),
                     tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                     toolbar_location="above", x_axis_label="x (px)",
                     y_axis_label="y (px from top)")
        # y is negated in the frame: label ticks with the distance from the top.
        fig.yaxis.formatter = CustomJSTickFormatter(code="return Math.abs(tick).toFixed(0)")
        frame = {"image": field("image"), "x": field("x"), "y": field("y"), "dw": field("dw"),
                 "dh": field("dh")}
        fig.add_glyph(self.photo, ImageRGBA(**frame))
        self.map_renderer = fig.add_glyph(self.map, Image(**frame, color_mapper=self.mapper,
                                                          global_alpha=0.5))
        fig.add_layout(ColorBar(color_mapper=self.mapper, width=10), "right")
        fig.add_glyph(self.outline, Segment(**_EDGES, line_color="white", line_width=2))
        color = field("color")
        boxes = fig.add_glyph(
            self.boxes, Quad(**_QUAD, fill_color=color, line_color=color, fill_alpha=0.05,
                             line_width=2.5),
            hover_glyph=Quad(**_QUAD, fill_color=color, line_color=color, fill_alpha=0.25,
                             line_width=2.5))
        fig.add_glyph(self.selected, Quad(**_QUAD, fill_alpha=0.0, line_color="#ffffff",
                                          line_width=5))
        fig.add_layout(Legend(items=[LegendItem(label=field("feature"), renderers=[boxes])],
                              label_text_font_size="9pt"), "right")
        self.map_hover = HoverTool(renderers=[self.map_renderer], tooltips=[
            ("x, y (px)", "$x{0}, $y{0}"), ("attention", "@image{0.0000}")])
        fig.add_tools(self.map_hover, HoverTool(renderers=[boxes], tooltips=[
            ("feature", "@feature"), ("box", "@box_index"),
            # 3 decimals: the info pane next to the plot lists the same scores with 4.
            *[(c, f"@{{{c}}}{{0.000}}") for c in self.box_columns]]))
        if on_tap is not None:
            fig.on_event(Tap, lambda event: on_tap(event.x, event.y))
        self.fig = fig

    def set_photo(self, rgb: np.ndarray, width: float, height: float) -> None:
        """Show ``rgb`` (uint8 ``(h, w, 3)``, row 0 = top; any size) over the full ``W × H`` px
        frame, and reset the view to the whole photo."""
        self.photo.data = _image_data(rgba_image(rgb), width, height)
        (x0, x1), (y0, y1) = fit_ranges(width, height, self.frame_width, self.frame_height)
        _set(self.fig.x_range, start=x0, end=x1)
        _set(self.fig.y_range, start=y0, end=y1)

    def set_map(self, values: np.ndarray, width: float, height: float, *, label: str,
                cmap: str, alpha: float) -> None:
        """Show a ``(gh, gw)`` map (row 0 = top) over the frame, coloured over its own range."""
        arr = np.ascontiguousarray(np.asarray(values, dtype=np.float32)[::-1])
        self.map.data = _image_data(arr, width, height)
        low, high = _limits(arr)
        _set(self.mapper, low=low, high=high)
        self.set_style(cmap=cmap, alpha=alpha)
        _set(self.map_hover, tooltips=[("x, y (px)", "$x{0}, $y{0}"),
                                       (label, "@image{0.0000}")])

    def set_style(self, *, cmap: str, alpha: float) -> None:
        """Colormap name (:data:`PALETTES`) and opacity of the map."""
        _set(self.mapper, palette=PALETTES.get(cmap, PALETTES["inferno"]))
        _set(self.map_renderer.glyph, global_alpha=float(alpha))

    def set_outline(self, segments: np.ndarray) -> None:
        """Outline pieces ``(n, 4)``: ``x0, y0, x1, y1`` in plot coordinates."""
        seg = np.asarray(segments, dtype=float).reshape(-1, 4)
        self.outline.data = {k: seg[:, i] for i, k in enumerate(("x0", "y0", "x1", "y1"))}

    def set_boxes(self, table: Mapping[str, Sequence]) -> None:
        """Boxes: columns :attr:`BOX_FIELDS` (``color`` a CSS colour per box) and
        :attr:`box_columns`."""
        self.boxes.data = {c: table[c] for c in (*self.BOX_FIELDS, *self.box_columns)}

    def set_selected(self, x0: Sequence[float], y0: Sequence[float], x1: Sequence[float],
                     y1: Sequence[float]) -> None:
        """The thick outline of the selected box (empty sequences: none)."""
        self.selected.data = {"x0": list(x0), "y0": list(y0), "x1": list(x1), "y1": list(y1)}


class GridFigure:
    """A categorical heads × layers heat map with a ring on the current cell.

    ``on_tap`` receives the tapped cell's factors ``(head, layer)`` as the axis labels
    (``"mean"`` or a head number; a layer number), like a HoloViews ``Tap`` on a ``HeatMap``.
    """

    def __init__(self, *, frame_width: int = 240, frame_height: int = 240,
                 on_tap: Callable[[str, str], None] | None = None) -> None:
        self.cells = ColumnDataSource({"head": [], "layer": [], "value": []})
        self.marker = ColumnDataSource({"head": [], "layer": []})
        self.mapper = LinearColorMapper(palette=PALETTES["viridis"], low=0.0, high=1.0,
                                        nan_color=TRANSPARENT)
        fig = figure(frame_width=frame_width, frame_height=frame_height,
                     x_range=FactorRange(factors=["mean"]), y_range=FactorRange(factors=["0"]),
                     tools="save", toolbar_location="above", x_axis_label="head",
                     y_axis_label="layer", title="")
        cell = {"x": field("head"), "y": field("layer"), "width": 1, "height": 1}
        cells = fig.add_glyph(self.cells, Rect(**cell, line_color=None, fill_color={
            "field": "value", "transform": self.mapper}))
        fig.add_glyph(self.marker, Rect(**cell, fill_alpha=0.0, line_color=MARK, line_width=3))
        self.hover = HoverTool(renderers=[cells], tooltips=[
            ("layer", "@layer"), ("head", "@head"), ("value", "@value{0.0000}")])
        fig.add_tools(self.hover)
        fig.add_layout(ColorBar(color_mapper=self.mapper, width=10), "right")
        fig.xgrid.visible = fig.ygrid.visible = False
        self._on_tap = on_tap
        if on_tap is not None:
            fig.on_event(Tap, self._tap)
        self.fig = fig

    def _tap(self, event) -> None:
        # On a categorical axis factor i spans the synthetic coordinates [i, i + 1).
        heads, layers = self.fig.x_range.factors, self.fig.y_range.factors
        if event.x is None or event.y is None:
            return
        i, j = int(np.floor(event.x)), int(np.floor(event.y))
        if 0 <= i < len(heads) and 0 <= j < len(layers):
            self._on_tap(heads[i], layers[j])

    def set_cells(self, heads: Sequence[str], layers: Sequence[str], values: np.ndarray, *,
                  title: str, label: str, lower_is_better: bool) -> None:
        """``values[len(layers), len(heads)]`` (NaN cells blank); layers bottom to top."""
        vals = np.asarray(values, dtype=float).reshape(len(layers), len(heads))
        _set(self.fig.x_range, factors=list(heads) or ["mean"])
        _set(self.fig.y_range, factors=list(layers) or ["—"])
        self.cells.data = {"head": [h for _ in layers for h in heads],
                           "layer": [la for la in layers for _ in heads],
                           "value": vals.ravel()}
        low, high = _limits(vals)
        _set(self.mapper, low=low, high=high,
             palette=PALETTES["viridis_r" if lower_is_better else "viridis"])
        _set(self.fig.title, text=title)
        _set(self.hover, tooltips=[("layer", "@layer"), ("head", "@head"),
                                   (label, "@value{0.0000}")])

    def set_marker(self, head: str, layer: str) -> None:
        """Ring the cell ``(head, layer)`` (nothing when it is not on the axes)."""
        on = head in self.fig.x_range.factors and layer in self.fig.y_range.factors
        self.marker.data = {"head": [head] if on else [], "layer": [layer] if on else []}


class CurvesFigure:
    """Per-layer means (points, lines), CI bands and dashed baseline lines, with a ring on the
    current (model, layer). Colours come with the data (one CSS colour per row)."""

    def __init__(self, *, frame_width: int = 560, frame_height: int = 300,
                 on_tap: TapCallback | None = None) -> None:
        self.bands = ColumnDataSource({"xs": [], "ys": [], "color": []})
        self.lines = ColumnDataSource({"xs": [], "ys": [], "color": []})
        self.points = ColumnDataSource({k: [] for k in ("layer", "mean", "lo", "hi", "label",
                                                        "color")})
        self.base_lines = ColumnDataSource({"xs": [], "ys": []})
        self.base_text = ColumnDataSource({"x": [], "y": [], "text": []})
        self.marker = ColumnDataSource({"layer": [], "mean": []})
        fig = figure(frame_width=frame_width, frame_height=frame_height,
                     x_range=DataRange1d(), y_range=DataRange1d(),
                     tools="pan,wheel_zoom,reset,save", toolbar_location="above",
                     x_axis_label="layer", title="")
        xs, ys, color = field("xs"), field("ys"), field("color")
        at = {"x": field("layer"), "y": field("mean")}
        fig.add_glyph(self.bands, Patches(xs=xs, ys=ys, fill_color=color, fill_alpha=0.2,
                                          line_alpha=0.0))
        fig.add_glyph(self.lines, MultiLine(xs=xs, ys=ys, line_color=color, line_width=2))
        fig.add_glyph(self.base_lines, MultiLine(xs=xs, ys=ys, line_color="#555555",
                                                 line_dash="dashed", line_width=1.5))
        fig.add_glyph(self.base_text, Text(
            x=field("x"), y=field("y"), text=field("text"), text_align="right",
            text_baseline="bottom", text_font_size="8pt", text_color="#555555"))
        pts = fig.add_glyph(self.points, Scatter(**at, fill_color=color, line_color=color,
                                                 size=7))
        fig.add_glyph(self.marker, Scatter(**at, size=16, fill_alpha=0.0, line_color=MARK,
                                           line_width=3))
        self.hover = HoverTool(renderers=[pts], tooltips=[
            ("model", "@label"), ("layer", "@layer"), ("mean", "@mean{0.0000}"),
            ("95 % CI", "@lo{0.0000} – @hi{0.0000}")])
        fig.add_tools(self.hover)
        fig.add_layout(Legend(items=[LegendItem(label=field("label"), renderers=[pts])]),
                       "right")
        if on_tap is not None:
            fig.on_event(Tap, lambda event: on_tap(event.x, event.y))
        self.fig = fig

    def set_curves(self, summary, colors: Mapping[str, str], baselines: Mapping[str, float], *,
                   label: str, title: str) -> None:
        """``summary``: rows ``model, label, layer, mean, lo, hi`` (``label`` the legend entry,
        ``colors[model]`` its colour); ``baselines``: name → mean, drawn across the layers."""
        bands: dict[str, list] = {"xs": [], "ys": [], "color": []}
        lines: dict[str, list] = {"xs": [], "ys": [], "color": []}
        for model, df in summary.groupby("model", sort=False):
            df = df.sort_values("layer")
            color = colors.get(str(model), "#444444")
            x = df["layer"].to_numpy(float)
            lo, hi, mean = (df[c].to_numpy(float) for c in ("lo", "hi", "mean"))
            if len(x) > 1:
                bands["xs"].append(np.r_[x, x[::-1]])
                bands["ys"].append(np.r_[lo, hi[::-1]])
                bands["color"].append(color)
                lines["xs"].append(x)
                lines["ys"].append(mean)
                lines["color"].append(color)
        self.bands.data = bands
        self.lines.data = lines
        self.points.data = {
            "layer": summary["layer"].to_numpy(float), "mean": summary["mean"].to_numpy(float),
            "lo": summary["lo"].to_numpy(float), "hi": summary["hi"].to_numpy(float),
            "label": summary["label"].astype(str).tolist(),
            "color": [colors.get(str(m), "#444444") for m in summary["model"]]}
        x0 = float(summary["layer"].min()) if len(summary) else 0.0
        x1 = float(summary["layer"].max()) if len(summary) else 1.0
        base = {k: float(v) for k, v in baselines.items() if v is not None and np.isfinite(v)}
        self.base_lines.data = {"xs": [[x0, x1] for _ in base], "ys": [[v, v] for v in
                                                                        base.values()]}
        self.base_text.data = {"x": [x1] * len(base), "y": list(base.values()),
                               "text": [f"baseline: {k}" for k in base]}
        _set(self.fig.title, text=title)
        _set(self.fig.yaxis[0], axis_label=label)

    def set_marker(self, points: np.ndarray) -> None:
        """Rings at ``(layer, mean)`` rows (``(n, 2)``; none for ``n = 0``)."""
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        self.marker.data = {"layer": pts[:, 0], "mean": pts[:, 1]}
