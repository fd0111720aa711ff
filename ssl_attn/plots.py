"""HoloViews building blocks for the explorer: photo + attention map + expert boxes, grids, curves.

One frame for everything drawn over a photo (DESIGN.md §8, docs/SCHEMA.md "Frames"):

* the **plot frame is the photo's own pixel grid with y negated**: a point at relative position
  ``(x, y)`` (origin top-left, y down, both in [0, 1]) of a ``W × H`` photo is drawn at
  ``x_plot = x · W`` and ``y_plot = −y · H``. The photo, every map and every box use the bounds
  ``(left, bottom, right, top) = (0, −H, W, 0)`` (:func:`frame_bounds`).
* HoloViews draws row 0 of an image array at the *top* of its bounds, so arrays stored y-down
  (row 0 = top of the photo, as the store's maps are) go in unflipped; only boxes need the
  transform (:func:`boxes_to_frame`). No HoloViews axis is ever inverted.
* Pixel units keep the photo's aspect ratio with ``data_aspect=1`` whatever the image size.

Everything here is a pure function of numpy / pandas inputs, so it is testable without a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import holoviews as hv

__all__ = [
    "BOX_COLUMNS",
    "FEATURE_PALETTE",
    "baseline_lines",
    "boxes_element",
    "boxes_to_frame",
    "feature_colors",
    "frame_bounds",
    "head_label",
    "hv_module",
    "layer_curves",
    "layer_head_heatmap",
    "map_element",
    "mask_edges",
    "message_element",
    "outline_segments",
    "photo_element",
    "shift_element",
    "top_region_outline",
]



def hv_module():
    """``holoviews`` with its Bokeh backend loaded, imported on first use.

    Lazy so that importing this module (and the explorer, whose always-visible views draw with
    Bokeh directly) does not pay for HoloViews; every element builder below calls it.
    """
    import holoviews as hv
    import holoviews.plotting.bokeh  # registers the Bokeh backend's options

    if hv.Store.current_backend != "bokeh":
        hv.Store.set_current_backend("bokeh")
    return hv


#: Colour-blind-safe categorical colours for feature types: Okabe & Ito (2008) without black,
#: then Paul Tol's "muted" scheme. Features beyond 16 distinct ones cycle.
FEATURE_PALETTE: tuple[str, ...] = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
    "#AA4499",
)

#: Columns of the frame-space box table produced by :func:`boxes_to_frame`.
BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def frame_bounds(width: float, height: float) -> tuple[float, float, float, float]:
    """Bounds ``(left, bottom, right, top)`` of a ``width × height`` px photo in the plot frame.

    Always ``(0, -height, width, 0)``: x to the right in pixels, y negated so the top of the
    photo is at ``y_plot = 0`` and its bottom at ``y_plot = -height``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"frame_bounds: width and height must be > 0 px, got {width}×{height}")
    return (0.0, -float(height), float(width), 0.0)


def boxes_to_frame(boxes: pd.DataFrame, width: float, height: float) -> pd.DataFrame:
    """Expert boxes in relative ``(left, top, width, height)`` → plot-frame rectangles.

    Parameters
    ----------
    boxes : DataFrame with float columns ``left, top, width, height`` (fractions of the photo's
        width/height, origin top-left, as in ``WikiChurches.boxes``); other columns are kept.
    width, height : the photo's size in pixels.

    Returns
    -------
    A copy with added columns ``x0 = left·W``, ``x1 = (left + width)·W``,
    ``y0 = −(top + height)·H`` (bottom edge) and ``y1 = −top·H`` (top edge), so ``x0 < x1`` and
    ``y0 < y1`` as ``hv.Rectangles`` expects.
    """
    missing = [c for c in ("left", "top", "width", "height") if c not in boxes.columns]
    if missing:
        raise KeyError(f"boxes table lacks column(s) {missing}; expected the WikiChurches boxes "
                       "table (left, top, width, height as fractions)")
    out = boxes.copy()
    left = out["left"].to_numpy(float)
    top = out["top"].to_numpy(float)
    w = out["width"].to_numpy(float)
    h = out["height"].to_numpy(float)
    out["x0"] = left * width
    out["x1"] = (left + w) * width
    out["y0"] = -(top + h) * height
    out["y1"] = -top * height
    return out


def feature_colors(features: Iterable[str]) -> dict[str, str]:
    """A fixed feature → colour mapping: features in the given order get :data:`FEATURE_PALETTE`.

    Pass the features sorted by frequency over the whole dataset so the common ones get the most
    distinct colours and a feature keeps its colour across images.
    """
    names = list(dict.fromkeys(str(f) for f in features))
    return {f: FEATURE_PALETTE[i % len(FEATURE_PALETTE)] for i, f in enumerate(names)}


def photo_element(rgb: np.ndarray, width: float, height: float, **opts) -> hv.RGB:
    """The photo as ``hv.RGB`` over :func:`frame_bounds`.

    ``rgb``: uint8 ``(h, w, 3)``, row 0 = top of the photo; it may be a downscaled copy — the
    bounds are the full-size ``width × height`` px so it lines up with maps and boxes.
    """
    hv = hv_module()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"photo_element: expected an (h, w, 3) RGB array, got shape {rgb.shape}")
    el = hv.RGB(rgb, bounds=frame_bounds(width, height), kdims=["x", "y"])
    return el.opts(**opts) if opts else el


def map_element(
    values: np.ndarray,
    width: float,
    height: float,
    *,
    label: str = "attention",
    clim: tuple[float, float] | None = None,
    **opts,
) -> hv.Image:
    """An attention map ``(gh, gw)`` (row 0 = top, native patch grid) as ``hv.Image``.

    The map covers the whole photo, so each cell spans ``W/gw × H/gh`` px of the plot frame and
    its centre sits at the store's relative centre ``((j + 0.5)/gw, (i + 0.5)/gh)`` scaled by
    ``(W, −H)``. ``clim``: colour limits; default ``None`` lets HoloViews use the map's range.
    """
    hv = hv_module()
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"map_element: expected a 2-D (gh, gw) map, got shape {arr.shape}")
    el = hv.Image(arr, bounds=frame_bounds(width, height), kdims=["x", "y"], vdims=[label],
                  datatype=["image"])
    if clim is not None:
        opts["clim"] = clim
    return el.opts(**opts) if opts else el


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """The boundary of a pixel set as straight pieces along pixel edges: float ``(n, 4)``
    rows ``x0, y0, x1, y1`` in frame-pixel units (x = column edge ``0 … FW``, y = row edge
    ``0 … FH``, y down).

    ``mask``: bool ``(FH, FW)``. An edge is drawn wherever a set pixel meets an unset one or
    the frame's border (the mask is padded with unset pixels, so regions touching the border
    close); runs of collinear edges are merged into one piece. The pieces enclose exactly the
    set pixels (even-odd rule): no sub-pixel interpolation that could take in or leave out a
    pixel. Empty mask → ``(0, 4)``.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    vert = m[1:-1, 1:] != m[1:-1, :-1]  # (FH, FW + 1): edge at x = c between rows r, r + 1
    horiz = m[1:, 1:-1] != m[:-1, 1:-1]  # (FH + 1, FW): edge at y = r between cols c, c + 1
    pieces = []
    for edges, vertical in ((vert.T, True), (horiz, False)):
        # Runs of True along axis 1 of each line: starts where it turns on, ends where off.
        step = np.diff(np.pad(edges, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        line, start = np.nonzero(step == 1)
        end = np.nonzero(step == -1)[1]  # same row-major order: pairs with the starts
        line, start, end = (v.astype(float) for v in (line, start, end))
        pieces.append(np.column_stack([line, start, line, end] if vertical
                                      else [start, line, end, line]))
    return np.vstack(pieces)


def outline_segments(
    values: np.ndarray, width: float, height: float, percentile: float, *, resolution: int = 224
) -> np.ndarray:
    """Outline of the pixel set IoU@p counts for a map: ``(n, 4)`` line pieces
    ``x0, y0, x1, y1`` in the plot frame (``(0, 4)`` when the set is empty, e.g. a map with NaN).

    ``values``: the native-grid map ``(gh, gw)``. The set is :func:`ssl_attn.metrics.top_region`
    (the metrics' own upsample to the ``resolution²`` evaluation frame and their top-``k`` tie
    rule: exactly ``k = round_half_up(N·(100 − p)/100)`` pixels, ties by lower flat index), so
    the outline encloses exactly the pixels IoU@p scored — on a flat map too, where the ties
    give the first ``k`` pixels in row-major order. The pieces run along the frame pixels'
    edges (:func:`mask_edges`), scaled to the ``width × height`` px photo (y negated).
    """
    from ssl_attn.metrics.core import top_region

    seg = mask_edges(top_region(values, percentile, resolution))
    seg[:, 0::2] *= width / resolution
    seg[:, 1::2] *= -height / resolution
    return seg


def top_region_outline(
    values: np.ndarray, width: float, height: float, percentile: float, *, resolution: int = 224
) -> hv.Segments:
    """:func:`outline_segments` as ``hv.Segments`` (``x0, y0, x1, y1`` per line piece): one
    flat table renders as one glyph, much cheaper to update than a multi-path."""
    hv = hv_module()
    seg = outline_segments(values, width, height, percentile, resolution=resolution)
    return hv.Segments(seg, kdims=["x0", "y0", "x1", "y1"])


def boxes_element(
    frame_boxes: pd.DataFrame,
    colors: Mapping[str, str],
    *,
    hover_columns: Sequence[str] = (),
    **opts,
) -> hv.Rectangles:
    """Expert boxes as ``hv.Rectangles`` coloured by ``feature``.

    ``frame_boxes``: the output of :func:`boxes_to_frame`; needs ``feature`` and ``box_index``.
    ``hover_columns``: extra columns (e.g. per-box scores) carried as value dims so the hover
    tool shows them. Colours come from ``colors`` (feature → hex); unknown features are grey.
    """
    hv = hv_module()
    vdims = ["feature", "box_index", *[c for c in hover_columns if c in frame_boxes.columns]]
    data = frame_boxes[[*BOX_COLUMNS, *vdims]].copy()
    data["feature"] = data["feature"].astype(str)
    cmap = {f: colors.get(f, "#777777") for f in data["feature"].unique()}
    el = hv.Rectangles({c: data[c].to_numpy() for c in data.columns}, kdims=list(BOX_COLUMNS),
                       vdims=vdims, datatype=["dictionary"])
    base = dict(
        color="feature", cmap=cmap, line_color="feature", fill_alpha=0.05, line_width=2.5,
        hover_fill_alpha=0.25, tools=["hover"], show_legend=True,
    )
    base.update(opts)
    return el.opts(**base)


def layer_head_heatmap(
    values: np.ndarray,
    layers: Sequence[int],
    heads: Sequence[int],
    *,
    metric: str,
    **opts,
) -> hv.HeatMap:
    """A layer × head grid of one metric for one image.

    ``values``: ``(n_layers, n_heads)``; head ``-1`` (the head-mean map) is labelled ``mean``.
    Cells are categorical: heads on x (as strings), layers on y (as strings), NaN cells blank.
    """
    hv = hv_module()
    values = np.asarray(values, dtype=float)
    if values.shape != (len(layers), len(heads)):
        raise ValueError(f"layer_head_heatmap: values {values.shape} ≠ "
                         f"(len(layers)={len(layers)}, len(heads)={len(heads)})")
    rows = [
        (head_label(h), str(lay), values[i, j])
        for i, lay in enumerate(layers)
        for j, h in enumerate(heads)
    ]
    df = pd.DataFrame(rows, columns=["head", "layer", metric])
    el = hv.HeatMap(df, kdims=["head", "layer"], vdims=[metric])
    return el.opts(**opts) if opts else el


def head_label(head: int) -> str:
    """``-1`` → ``"mean"``, otherwise the head number as a string."""
    return "mean" if int(head) == -1 else str(int(head))


def layer_curves(summary: pd.DataFrame, colors: Mapping[str, str], *, metric: str) -> hv.Overlay:
    """Per-layer mean curves with CI bands, all models in three elements.

    ``summary``: rows ``model, label, layer, mean, lo, hi`` (``label`` is the legend entry).
    Returns ``hv.Polygons`` (the lo–hi bands, 20 % opacity) * ``hv.Path`` (the mean lines) *
    ``hv.Scatter`` (the points, with hover and the legend), each coloured by ``label`` via
    ``colors[model]``. One glyph per element whatever the number of models keeps updates cheap.
    """
    hv = hv_module()
    bands, lines, cmap = [], [], {}
    for model, df in summary.groupby("model", sort=False):
        df = df.sort_values("layer")
        label = str(df["label"].iloc[0])
        cmap[label] = colors.get(str(model), "#444444")
        x = df["layer"].to_numpy(float)
        lo, hi, mean = (df[c].to_numpy(float) for c in ("lo", "hi", "mean"))
        if len(x) > 1:
            bands.append({"x": np.r_[x, x[::-1]], "y": np.r_[lo, hi[::-1]], "label": label})
            lines.append({"layer": x, metric: mean, "label": label})
    pts = summary.assign(label=summary["label"].astype(str))[
        ["layer", "mean", "lo", "hi", "label", "model"]]
    bands = [{"layer": b["x"], metric: b["y"], "label": b["label"]} for b in bands]
    poly = hv.Polygons(bands, kdims=["layer", metric], vdims=["label"]).opts(
        color="label", cmap=cmap, alpha=0.2, line_alpha=0, show_legend=False)
    path = hv.Path(lines, kdims=["layer", metric], vdims=["label"]).opts(
        color="label", cmap=cmap, line_width=2, show_legend=False)
    pts = pts.rename(columns={"mean": metric})
    scatter = hv.Scatter(pts, kdims=["layer"], vdims=[metric, "lo", "hi", "label", "model"])
    scatter = scatter.opts(color="label", cmap=cmap, size=7, tools=["hover"], show_legend=True)
    return (poly * path * scatter).opts(ylabel=metric, legend_position="right")


def baseline_lines(baselines: Mapping[str, float], x: float = 0.0) -> hv.Overlay:
    """One dashed grey ``hv.HLine`` per baseline mean (name → value), each named by an
    ``hv.Text`` label at ``x`` (e.g. the right-most layer)."""
    hv = hv_module()
    items = []
    finite = [v for v in baselines.values() if v is not None and np.isfinite(v)]
    # HLines and Text do not widen the axes: invisible points at the values do.
    items.append(hv.Points([(x, v) for v in finite], kdims=["layer", "baseline"]).opts(
        alpha=0, size=0))
    for i, (name, value) in enumerate(baselines.items()):
        if value is None or not np.isfinite(value):
            continue
        dash = ("dashed", "dotted", "dashdot", "dotdash")[i % 4]
        items.append(hv.HLine(value).opts(color="#555555", line_dash=dash, line_width=1.5))
        items.append(hv.Text(x, value, f"baseline: {name}", halign="right", valign="bottom")
                     .opts(text_font_size="8pt", text_color="#555555"))
    return hv.Overlay(items)


def shift_element(diff: np.ndarray, width: float, height: float, **opts) -> hv.Image:
    """A variant − frozen shift map with a diverging colormap centred at 0 (symmetric clim)."""
    hv = hv_module()
    arr = np.asarray(diff, dtype=float)
    finite = np.abs(arr[np.isfinite(arr)])
    lim = float(finite.max()) if finite.size and finite.max() > 0 else 1e-12
    el = hv.Image(arr, bounds=frame_bounds(width, height), kdims=["x", "y"], vdims=["shift"])
    base = dict(cmap="RdBu_r", clim=(-lim, lim), colorbar=True, symmetric=True)
    base.update(opts)
    return el.opts(**base)


def message_element(text: str, **opts) -> hv.Text:
    """A placeholder plot that says why there is nothing to draw (e.g. no embeddings)."""
    hv = hv_module()
    el = hv.Text(0.5, 0.5, text).opts(
        xaxis=None, yaxis=None, toolbar=None, text_font_size="11pt", text_color="#444444",
    )
    return el.opts(**opts) if opts else el
