"""The explorer's always-visible views, each a ``pn.viewable.Viewer`` over one shared
:class:`ExplorerState`: the attention view, the layer × head grid and the layer curves.

Every view exposes plain builder methods (``map_values``, ``box_table``, ``grid``, ``summary``
...) that return numpy / pandas data, and HoloViews elements of them (``map_element``,
``heatmap`` ...; for notebooks and tests), for the *current* state, without a server. On screen
they are drawn by the in-place Bokeh figures of :mod:`ssl_attn.explorer.figures`: each view
follows the state's once-per-action signal through its
:class:`~ssl_attn.explorer.events.Follower` and pushes only the parts whose inputs changed (the
photo is not re-sent on a layer change; maps come from the cube cache of :class:`ExplorerData`).
The tabbed views live in :mod:`~ssl_attn.explorer.compare` and :mod:`~ssl_attn.explorer.tables`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from ssl_attn import plots
from ssl_attn.explorer.events import Follower
from ssl_attn.explorer.figures import AttentionFigure, CurvesFigure, GridFigure
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.text import alert, markdown, md_escape

if TYPE_CHECKING:
    import holoviews as hv

__all__ = ["MAP_PARAMS", "AttentionView", "LayerCurves", "LayerHeadGrid", "TapStream"]

MAP_PARAMS = ["image_id", "model", "variant", "method", "layer", "head"]
#: Stand-in photo when the dataset has none: a light grey frame.
_GREY = np.full((2, 2, 3), 235, np.uint8)


def _ci_caption() -> str:
    """The CI convention shown under curves, read from :func:`ssl_attn.stats.bootstrap_settings`
    (the one owner of the number of draws and the seed)."""
    from ssl_attn import stats

    b = stats.bootstrap_settings()
    return (f"{b['ci']:.0%} percentile bootstrap over images ({b['n_boot']:,} draws, "
            f"seed {b['seed']})")


def _alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return alert(text, kind)  # raw HTML off; outside text goes in through md_escape/md_code


class TapStream:
    """A view's tap input: ``event(x=..., y=...)`` calls its handler, as a Bokeh ``Tap`` on the
    figure does (tests call it directly).

    Hand-written (three lines) instead of ``holoviews.streams.Tap``: the default page no longer
    imports HoloViews at all.
    """

    def __init__(self, callback: Callable[..., None]) -> None:
        self._callback = callback

    def event(self, x=None, y=None) -> None:
        """Deliver a tap at ``(x, y)`` (plot coordinates or axis factors)."""
        self._callback(x=x, y=y)


class _View(pn.viewable.Viewer):
    """Base: holds the shared state, its data and the view's :class:`Follower` (``events``).

    A view in a hidden tab is set inactive (:meth:`set_active`): it skips updates and catches
    up when shown again.
    """

    #: True for views whose updates replace Bokeh models (HoloViews plots): while one is shown,
    #: the state batches each action's document changes under one ``freeze``.
    replaces_models = False

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.data = state.data
        self.events = Follower(state)

    @property
    def active(self) -> bool:
        """False while the view's tab is hidden (it then skips updates)."""
        return self.events.active

    def set_active(self, active: bool) -> None:
        """Show (True: bring every part up to date now) or hide (False: skip updates)."""
        self.events.set_active(active)

    def _size(self, image_id: str | None = None) -> tuple[int, int]:
        return self.data.image_size(image_id or self.state.image_id)

    def _photo_rgb(self, image_id: str) -> np.ndarray:
        rgb = self.data.photo(image_id)
        return _GREY if rgb is None else rgb  # no dataset / missing file: keep the frame

    def _photo(self, image_id: str) -> hv.RGB:
        return plots.photo_element(self._photo_rgb(image_id), *self._size(image_id))

    def _boxes(self, image_id: str, extra: pd.DataFrame | None = None) -> pd.DataFrame:
        w, h = self._size(image_id)
        frame = plots.boxes_to_frame(self.data.boxes(image_id), w, h)
        if extra is not None and len(extra.columns):
            frame = frame.join(extra, on="box_index")
        return frame

    def _colors(self) -> dict[str, str]:
        return plots.feature_colors(self.data.features_by_frequency)

    def _stream(self, *names: str):
        """A HoloViews ``Params`` stream on the view's trigger for ``names`` (for DynamicMaps)."""
        hv = plots.hv_module()
        return hv.streams.Params(self.events.trigger(*names), ["count"])


class _FigureView(_View):
    """A view drawn by one Bokeh figure: built on first use, then kept in sync in place."""

    _figure: Any = None

    def _build_figure(self) -> Any:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError

    def figure(self) -> Any:
        """The view's Bokeh figure (built once; kept in sync with the state from then on)."""
        if self._figure is None:
            self._figure = self._build_figure()
            self.refresh()
            self.events.follow(self.refresh)
        return self._figure


class AttentionView(_FigureView):
    """Photo + attention map + top-p % outline + expert boxes, in one y-down pixel frame.

    Tap a box to select it (its per-box metrics are listed); the tapped point also drives the
    patch-similarity view. Hover a box for its feature and per-box scores.
    """

    frame_width = param.Integer(default=480)
    frame_height = param.Integer(default=420)

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = TapStream(self._on_tap)
        self._figure: AttentionFigure | None = None
        self._pane: pn.pane.Bokeh | None = None
        self._info: pn.pane.Markdown | None = None

    # ---------------------------------------------------------------- plot data
    def frame_bounds(self) -> tuple[float, float, float, float]:
        """``(0, −H, W, 0)`` of the current image (see :mod:`ssl_attn.plots`)."""
        return plots.frame_bounds(*self._size())

    def map_values(self) -> np.ndarray:
        """The current map ``(gh, gw)``: the store slice, or the head-mean for ``head = -1``."""
        s = self.state
        return self.data.attention_map(s.model, s.variant, s.method, s.image_id,
                                       s.layer if s.layer != -1 else None, s.head)

    def _values_or_none(self) -> np.ndarray | None:
        try:
            return self.map_values()
        except KeyError:
            return None

    def box_table(self) -> pd.DataFrame:
        """Boxes of the image in frame coords (``x0, y0, x1, y1``) + per-box scores."""
        s = self.state
        scores = self.data.box_scores(s.model, s.variant, s.method, s.image_id, s.layer,
                                      s.head, s.percentile)
        return self._boxes(s.image_id, scores)

    def outline(self) -> np.ndarray:
        """Outline pieces ``(n, 4)`` of the top-``(100 − p)`` % region (none when off)."""
        s = self.state
        values = self._values_or_none() if s.show_outline else None
        if values is None:
            return np.zeros((0, 4))
        w, h = self._size()
        return plots.outline_segments(values, w, h, s.percentile or 90,
                                      resolution=self.data.resolution)

    def box_at(self, x: float, y: float) -> int:
        """``box_index`` of the smallest box containing the frame point ``(x, y)``; −1 if none."""
        t = self._boxes(self.state.image_id)
        inside = t[(t.x0 <= x) & (x <= t.x1) & (t.y0 <= y) & (y <= t.y1)]
        if inside.empty:
            return -1
        area = (inside.x1 - inside.x0) * (inside.y1 - inside.y0)
        return int(inside.loc[area.idxmin(), "box_index"])

    def _on_tap(self, x: float | None = None, y: float | None = None) -> None:
        if x is None or y is None:
            return
        w, h = self._size()
        self.state.param.update(selected_box=self.box_at(x, y), tap_x=min(max(x / w, 0.0), 1.0),
                                tap_y=min(max(-y / h, 0.0), 1.0))

    def tap_at(self, x: float, y: float) -> None:
        """Simulate a tap at frame point ``(x, y)`` (what the Bokeh tap event sends)."""
        self.tap.event(x=x, y=y)

    # ---------------------------------------------------------------- HoloViews elements
    def photo_element(self, **_) -> hv.RGB:
        """The photo over the frame bounds (cached RGB)."""
        return self._photo(self.state.image_id)

    def map_element(self, **_) -> hv.Image:
        """The current map as ``hv.Image`` with the state's colormap and opacity."""
        s = self.state
        w, h = self._size()
        values = self._values_or_none()
        return plots.map_element(np.zeros((1, 1)) if values is None else values, w, h,
                                 label=s.method or "attention", cmap=s.cmap, alpha=s.alpha,
                                 colorbar=True, tools=["hover"])

    def outline_element(self, **_) -> hv.Segments:
        """Outline of the top-``(100 − p)`` % region as ``hv.Segments`` (empty when off)."""
        hv = plots.hv_module()
        return hv.Segments(self.outline(), kdims=["x0", "y0", "x1", "y1"]).opts(
            color="white", line_width=2)

    def boxes_element(self, **_) -> hv.Rectangles:
        """The expert boxes coloured by feature, hover showing feature and per-box scores."""
        table = self.box_table()
        if not self.state.show_boxes:
            table = table.iloc[:0]
        hover = [c for c in self.data.box_metrics if c in table.columns]
        return plots.boxes_element(table, self._colors(), hover_columns=hover)

    def selected_element(self, **_) -> hv.Rectangles:
        """A thick outline around the tapped box (empty when none)."""
        hv = plots.hv_module()
        t = self._boxes(self.state.image_id)
        t = t[t.box_index == self.state.selected_box]
        return hv.Rectangles(t[list(plots.BOX_COLUMNS)], kdims=list(plots.BOX_COLUMNS)).opts(
            fill_alpha=0, line_color="#ffffff", line_width=5)

    def overlay(self, **_) -> hv.Overlay:
        """Photo * map * outline * boxes * selected box for the current state (HoloViews; the
        dashboard draws the same data with :meth:`figure`)."""
        return (self.photo_element() * self.map_element() * self.outline_element()
                * self.boxes_element() * self.selected_element())

    # ---------------------------------------------------------------- Bokeh figure
    def _build_figure(self) -> AttentionFigure:
        return AttentionFigure(frame_width=self.frame_width, frame_height=self.frame_height,
                               box_columns=self.data.box_metrics, on_tap=self.tap_at)

    def _box_geometry(self, image_id: str) -> dict:
        """Frame coordinates, feature, ``box_index`` and colour of an image's boxes (plain
        columns, built once per image)."""
        t = self._boxes(image_id)
        colors = self._colors()
        out = {c: t[c].to_numpy(float) for c in plots.BOX_COLUMNS}
        out["feature"] = t["feature"].astype(str).tolist()
        out["box_index"] = t["box_index"].to_numpy(np.int64)
        out["color"] = [colors.get(f, "#777777") for f in out["feature"]]
        return out

    def _box_data(self) -> dict:
        """Columns of the figure's boxes: geometry plus every per-box metric (NaN if none)."""
        s = self.state
        geom = self.events.memo("box_geometry", s.image_id, lambda: self._box_geometry(s.image_id))
        if not s.show_boxes:
            geom = {k: v[:0] for k, v in geom.items()}
        bi = geom["box_index"]
        scores = self.data.box_score_arrays(s.model, s.variant, s.method, s.image_id, s.layer,
                                            s.head, s.percentile) if len(bi) else {}
        out = dict(geom)
        for m in self.data.box_metrics:
            vals = scores.get(m)
            out[m] = (np.where(bi < len(vals), vals[np.minimum(bi, len(vals) - 1)], np.nan)
                      if vals is not None and len(vals) else np.full(len(bi), np.nan))
        return out

    def refresh(self) -> None:
        """Push the parts of the figure whose inputs changed since the last call."""
        f, s = self._figure, self.state
        if f is None:
            return
        w, h = self._size()
        mkey = (s.model, s.variant, s.method, s.image_id, s.layer, s.head)
        if self.events.changed("photo", (s.image_id,)):
            f.set_photo(self._photo_rgb(s.image_id), w, h)
        new_map = self.events.changed("map", mkey)
        new_style = self.events.changed("style", (s.cmap, s.alpha))
        if new_map:
            values = self._values_or_none()
            f.set_map(np.zeros((1, 1)) if values is None else values, w, h,
                      label=s.method or "attention", cmap=s.cmap, alpha=s.alpha)
        elif new_style:
            f.set_style(cmap=s.cmap, alpha=s.alpha)
        if self.events.changed("outline", (mkey, s.percentile, s.show_outline)):
            f.set_outline(self.outline())
        if self.events.changed("boxes", (mkey, s.percentile, s.show_boxes)):
            f.set_boxes(self._box_data())
        if self.events.changed("selected", (s.image_id, s.selected_box)):
            t = self._boxes(s.image_id)
            t = t[t.box_index == s.selected_box]
            f.set_selected(t.x0, t.y0, t.x1, t.y1)

    # ---------------------------------------------------------------- text
    def box_info(self) -> str:
        """Markdown: the selected box's feature, size and per-box metrics."""
        s = self.state
        if s.selected_box < 0:
            return "**Box:** tap a box in the image to see its metrics."
        t = self.box_table()
        row = t[t.box_index == s.selected_box]
        if row.empty:
            return f"**Box {s.selected_box}:** not in this image."
        r = row.iloc[0]
        head = [f"**Box {s.selected_box}: {md_escape(r['feature'])}**",
                f"relative left/top/width/height: {r['left']:.3f} / {r['top']:.3f} / "
                f"{r['width']:.3f} / {r['height']:.3f}"]
        metrics = [m for m in self.data.box_metrics if m in row.columns]
        lines = [f"- {m}: {'n/a' if pd.isna(r[m]) else f'{r[m]:.4f}'}" for m in metrics]
        if not metrics:
            lines = ["(no per-box scores in the scores file)"]
        return "\n\n".join(head) + "\n\n" + "\n".join(lines)

    def plot_pane(self) -> pn.pane.Bokeh:
        """The figure in a Bokeh pane (one per view)."""
        if self._pane is None:
            self._pane = pn.pane.Bokeh(self.figure().fig)
        return self._pane

    def info_pane(self) -> pn.pane.Markdown:
        """The selected box's metrics (updates on tap and on any map change)."""
        if self._info is None:
            pane = markdown(self.box_info(), css_classes=["box-info"], width=380,
                            margin=(5, 20))

            def show(_count: int) -> None:  # a bound watcher, not a ref (see events.py)
                pane.object = self.box_info()

            pn.bind(show, self.events.trigger("selected_box", *MAP_PARAMS, "percentile")
                    .param.count, watch=True)
            self._info = pane
        return self._info

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(self.plot_pane(), self.info_pane())


class LayerHeadGrid(_FigureView):
    """Layer × head heatmap of the chosen metric for the current image; tap a cell to go there."""

    HEAT_PARAMS = ("image_id", "model", "variant", "method", "metric", "percentile")

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = TapStream(self._on_tap)
        self._figure: GridFigure | None = None

    def grid(self) -> tuple[list[int], list[int], np.ndarray]:
        """``(layers, heads, values[L, H])`` of the metric for the current image/model/method."""
        s = self.state
        return self.data.grid_scores(s.metric, s.model, s.variant, s.method, s.image_id,
                                     s.percentile)

    def _grid_or_empty(self) -> tuple[list[int], list[int], np.ndarray]:
        try:
            return self.grid()
        except KeyError:
            return [], [], np.zeros((0, 0))

    def _title(self) -> tuple[str, str, bool]:
        s = self.state
        label = self.data.metric_label(s.metric, s.percentile) if s.metric else ""
        lower = self.data.metric_attrs(s.metric)["direction"] == "lower" if s.metric else False
        return f"{label} · {s.model} · {s.method}", label, lower

    def heatmap(self, **_) -> hv.HeatMap:
        """The grid as ``hv.HeatMap`` (heads on x with ``mean`` first, layers on y)."""
        title, label, lower = self._title()
        layers, heads, vals = self._grid_or_empty()
        el = plots.layer_head_heatmap(vals, layers, heads, metric=label)
        return el.opts(cmap="viridis_r" if lower else "viridis", colorbar=True,
                       tools=["hover"], xlabel="head", ylabel="layer", title=title,
                       frame_width=240, frame_height=240, toolbar="above")

    def _on_tap(self, x=None, y=None) -> None:
        if x is None or y is None:
            return
        head = -1 if str(x) == "mean" else int(float(x))
        layer = int(float(y))
        s = self.state
        upd = {}
        if layer in s.param.layer.objects:
            upd["layer"] = layer
        if head in s.param.head.objects.values():
            upd["head"] = head
        s.param.update(**upd)

    def _build_figure(self) -> GridFigure:
        return GridFigure(on_tap=lambda head, layer: self.tap.event(x=head, y=layer))

    def refresh(self) -> None:
        """Re-send the cells when the grid's inputs changed; move the ring on layer/head."""
        f, s = self._figure, self.state
        if f is None:
            return
        new_cells = self.events.changed("cells", tuple(getattr(s, n) for n in self.HEAT_PARAMS))
        if new_cells:
            layers, heads, vals = self._grid_or_empty()
            title, label, lower = self._title()
            f.set_cells([plots.head_label(h) for h in heads], [str(la) for la in layers], vals,
                        title=title, label=label, lower_is_better=lower)
        if self.events.changed("marker", (s.layer, s.head)) or new_cells:
            f.set_marker(plots.head_label(s.head), str(s.layer))

    def __panel__(self) -> pn.viewable.Viewable:
        if self.data.scores is None:
            return _alert("No scores for this store: the layer × head grid needs "
                          f"`{self.data.scores_path.name}` (run `ssl-attn score`).")
        return pn.pane.Bokeh(self.figure().fig)


class LayerCurves(_FigureView):
    """Per-layer mean (95 % bootstrap CI band) for every model, baselines as dashed lines.

    Tap a point to select that model and layer. Each model uses the chosen method where it has
    it, otherwise its own primary method (named in the legend).
    """

    CURVE_PARAMS = ("metric", "method", "variant", "percentile")

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = TapStream(self._on_tap)
        self._figure: CurvesFigure | None = None

    def summary(self) -> pd.DataFrame:
        """Per model and layer: ``model, method, label, layer, mean, lo, hi, n``."""
        s = self.state
        return self.data.layer_summary(s.metric, s.method, s.variant, s.percentile)

    def _label(self) -> str:
        s = self.state
        return self.data.metric_label(s.metric, s.percentile) if s.metric else ""

    def curves(self, **_) -> hv.Overlay:
        """Curves, bands and baselines as a HoloViews overlay (for notebooks)."""
        s = self.state
        label = self._label()
        summ = self.summary()
        colors = plots.feature_colors(summ["model"].unique()) if len(summ) else {}
        over = plots.layer_curves(summ, colors, metric=label)
        base = self.data.baselines(s.metric, s.percentile)
        x_right = float(summ["layer"].max()) if len(summ) else 0.0
        return (over * plots.baseline_lines(base, x=x_right)).opts(
            title=f"{label} per layer (head-mean maps, {s.variant})")

    def marker_points(self) -> np.ndarray:
        """``(layer, mean)`` of the current model at the current layer: ``(0 or 1, 2)``."""
        s = self.state
        summ = self.summary()
        key = tuple(getattr(s, n) for n in self.CURVE_PARAMS)  # what the summary depends on
        means = self.events.memo("means", key, lambda: {
            (str(m), int(la)): float(v)
            for m, la, v in zip(summ["model"], summ["layer"], summ["mean"])})
        mean = means.get((s.model, s.layer))
        return np.zeros((0, 2)) if mean is None else np.array([[float(s.layer), mean]])

    def nearest(self, x: float, y: float) -> tuple[str, str, int] | None:
        """``(model, method, layer)`` of the curve point nearest a tap at ``(x, y)``."""
        summ = self.summary()
        if summ.empty:
            return None
        d = np.abs(summ["layer"] - x) * 1e3 + np.abs(summ["mean"] - y)
        r = summ.loc[d.idxmin()]
        return str(r["model"]), str(r["method"]), int(r["layer"])

    def _on_tap(self, x=None, y=None) -> None:
        if x is None or y is None:
            return
        hit = self.nearest(x, y)
        if hit is None:
            return
        model, method, layer = hit
        if model not in self.data.models:
            return
        self.state.model = model
        if method in self.state.param.method.objects:
            self.state.method = method
        if layer in self.state.param.layer.objects:
            self.state.layer = layer

    def _build_figure(self) -> CurvesFigure:
        return CurvesFigure(on_tap=lambda x, y: self.tap.event(x=x, y=y))

    def refresh(self) -> None:
        """Re-send the curves when metric/method/variant/p changed; move the ring otherwise."""
        f, s = self._figure, self.state
        if f is None:
            return
        ckey = tuple(getattr(s, n) for n in self.CURVE_PARAMS)
        new_curves = self.events.changed("curves", ckey)
        if new_curves:
            summ = self.summary()
            colors = plots.feature_colors(summ["model"].unique()) if len(summ) else {}
            label = self._label()
            f.set_curves(summ, colors, self.data.baselines(s.metric, s.percentile), label=label,
                         title=f"{label} per layer (head-mean maps, {s.variant})")
        if self.events.changed("marker", (ckey, s.model, s.layer)):
            f.set_marker(self.marker_points())

    def __panel__(self) -> pn.viewable.Viewable:
        if self.data.scores is None:
            return _alert("No scores for this store: per-layer curves need "
                          f"`{self.data.scores_path.name}` (run `ssl-attn score`).")
        return pn.Column(
            pn.pane.Bokeh(self.figure().fig),
            pn.pane.Markdown(f"Mean over images; band: {_ci_caption()}. Dashed lines: "
                             "baselines. ResNet-50 layers are Grad-CAM stages 1–4.",
                             styles={"font-size": "0.85em"}))
