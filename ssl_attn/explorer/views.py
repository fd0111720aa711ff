"""The explorer's views: each a ``pn.viewable.Viewer`` over one shared :class:`ExplorerState`.

Every view exposes plain builder methods (``map_values``, ``box_table``, ``heatmap`` ...) that
return numpy / pandas / HoloViews objects for the *current* state, so tests can check the data
without a server; ``__panel__`` wires them into ``hv.DynamicMap``s driven by ``hv.streams.Params``
so a change re-runs only the elements that depend on it (the photo is not rebuilt on a layer
change; the map is not re-read: cubes are cached in :class:`ExplorerData`).
"""

from __future__ import annotations

import base64
import functools

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models import CustomJSTickFormatter

from ssl_attn import plots
from ssl_attn.explorer.state import ExplorerState

__all__ = [
    "AttentionView",
    "ImageBrowser",
    "LayerCurves",
    "LayerHeadGrid",
    "Leaderboard",
    "ModelComparison",
    "PatchSimilarity",
    "VariantComparison",
]

MAP_PARAMS = ["image_id", "model", "variant", "method", "layer", "head"]
#: y ticks show distance from the top (the frame's y is negated; the axis is not inverted).
_Y_TICKS = CustomJSTickFormatter(code="return Math.abs(tick).toFixed(0)")


def _frame_opts(width: int, height: int, **extra) -> dict:
    base = dict(frame_width=width, frame_height=height, data_aspect=1, xlabel="x (px)",
                ylabel="y (px from top)", yformatter=_Y_TICKS, framewise=True,
                active_tools=["wheel_zoom"], toolbar="above")
    base.update(extra)
    return base


def _alert(text: str, kind: str = "info") -> pn.pane.Alert:
    return pn.pane.Alert(text, alert_type=kind, sizing_mode="stretch_width")


class _Trigger(param.Parameterized):
    """A counter a view's DynamicMaps listen to (see :meth:`_View._stream`)."""

    count = param.Integer(default=0)

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.last: tuple = ()


class _View(pn.viewable.Viewer):
    """Base: holds the shared state and its data."""

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.data = state.data

    def _size(self, image_id: str | None = None) -> tuple[int, int]:
        return self.data.image_size(image_id or self.state.image_id)

    def _photo(self, image_id: str) -> hv.RGB:
        w, h = self._size(image_id)
        rgb = self.data.photo(image_id)
        if rgb is None:  # no dataset / missing file: a light grey stand-in keeps the frame
            rgb = np.full((2, 2, 3), 235, np.uint8)
        return plots.photo_element(rgb, w, h)

    def _boxes(self, image_id: str, extra: pd.DataFrame | None = None) -> pd.DataFrame:
        w, h = self._size(image_id)
        frame = plots.boxes_to_frame(self.data.boxes(image_id), w, h)
        if extra is not None and len(extra.columns):
            frame = frame.join(extra, on="box_index")
        return frame

    def _colors(self) -> dict[str, str]:
        return plots.feature_colors(self.data.features_by_frequency)

    def _stream(self, *names: str) -> hv.streams.Params:
        """A Params stream on :meth:`_trigger` (for DynamicMaps)."""
        return hv.streams.Params(self._trigger(*names), ["count"])

    def _trigger(self, *names: str) -> _Trigger:
        """A counter bumped once per selection change that touches ``names``.

        It listens to the state's ``version`` (bumped once per user action, after cascades)
        and counts only when one of ``names`` differs from the last count, so a view is not
        refreshed by changes it does not show, nor twice for one action.
        """
        trig = _Trigger()
        state = self.state

        def on_version(*_):
            key = tuple(getattr(state, n) for n in names)
            if key != trig.last:
                trig.last = key
                trig.count += 1

        trig.last = tuple(getattr(state, n) for n in names)
        state.param.watch(on_version, "version")
        return trig

    def _memo(self, name: str, key: tuple, build):
        """Return the element built last time for ``name`` when ``key`` is unchanged."""
        memo = self.__dict__.setdefault("_memo_store", {})
        hit = memo.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        memo[name] = (key, value)
        return value


class AttentionView(_View):
    """Photo + attention map + top-p % outline + expert boxes, in one y-down pixel frame.

    Tap a box to select it (its per-box metrics are listed); the tapped point also drives the
    patch-similarity view. Hover a box for its feature and per-box scores.
    """

    frame_width = param.Integer(default=480)
    frame_height = param.Integer(default=420)

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = hv.streams.Tap(x=None, y=None, transient=True)
        self.tap.add_subscriber(self._on_tap)

    # ---------------------------------------------------------------- plot data
    def frame_bounds(self) -> tuple[float, float, float, float]:
        """``(0, −H, W, 0)`` of the current image (see :mod:`ssl_attn.plots`)."""
        return plots.frame_bounds(*self._size())

    def map_values(self) -> np.ndarray:
        """The current map ``(gh, gw)``: the store slice, or the head-mean for ``head = -1``."""
        s = self.state
        return self.data.attention_map(s.model, s.variant, s.method, s.image_id,
                                       s.layer if s.layer != -1 else None, s.head)

    def box_table(self) -> pd.DataFrame:
        """Boxes of the image in frame coords (``x0, y0, x1, y1``) + per-box scores."""
        s = self.state
        scores = self.data.box_scores(s.model, s.variant, s.method, s.image_id, s.layer,
                                      s.head, s.percentile)
        return self._boxes(s.image_id, scores)

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
        """Simulate a tap at frame point ``(x, y)`` (what the Bokeh tap tool sends)."""
        self.tap.event(x=x, y=y)

    # ---------------------------------------------------------------- elements
    def photo_element(self, **_) -> hv.RGB:
        """The photo over the frame bounds (cached RGB; rebuilt only on image change)."""
        return self._photo(self.state.image_id)

    def map_element(self, **_) -> hv.Image:
        """The current map as ``hv.Image`` with the state's colormap and opacity."""
        s = self.state
        w, h = self._size()
        try:
            values = self.map_values()
        except KeyError:
            values = np.zeros((1, 1))
        return plots.map_element(values, w, h, label=s.method or "attention", cmap=s.cmap,
                                 alpha=s.alpha, colorbar=True, tools=["hover"])

    def outline_element(self, **_) -> hv.Segments:
        """Outline of the top-``(100 − p)`` % region (empty when switched off)."""
        s = self.state
        w, h = self._size()
        empty = hv.Segments(np.zeros((0, 4)), kdims=["x0", "y0", "x1", "y1"])
        if not s.show_outline:
            return empty
        try:
            values = self.map_values()
        except KeyError:
            return empty
        return plots.top_region_outline(values, w, h, s.percentile or 90).opts(
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
        t = self._boxes(self.state.image_id)
        t = t[t.box_index == self.state.selected_box]
        return hv.Rectangles(t[list(plots.BOX_COLUMNS)], kdims=list(plots.BOX_COLUMNS)).opts(
            fill_alpha=0, line_color="#ffffff", line_width=5)

    def overlay(self, **_) -> hv.Overlay:
        """Photo * map * outline * boxes * selected box for the current state.

        Each layer is memoised on the params it depends on, so an unchanged layer is the same
        object and HoloViews skips re-sending its data (e.g. the photo on a layer change).
        """
        s = self.state
        mkey = (s.model, s.variant, s.method, s.image_id, s.layer, s.head)
        return (
            self._memo("photo", (s.image_id,), self.photo_element)
            * self._memo("map", (*mkey, s.alpha, s.cmap), self.map_element)
            * self._memo("outline", (*mkey, s.percentile, s.show_outline), self.outline_element)
            * self._memo("boxes", (*mkey, s.percentile, s.show_boxes), self.boxes_element)
            * self._memo("selected", (s.image_id, s.selected_box), self.selected_element)
        )

    def plot(self) -> hv.DynamicMap:
        """The linked overlay as one DynamicMap fired once per relevant change (measured:
        one refresh of five memoised layers beats several refreshes of separate
        DynamicMaps). The Tap stream on it selects boxes."""
        opts = _frame_opts(self.frame_width, self.frame_height, legend_position="right",
                           legend_opts={"label_text_font_size": "9pt"})

        def frame(**_):
            # Plot options on the returned overlay: a DynamicMap.opts() would add a dynamic
            # operation that re-resolves the options on every frame (measured: ~3x slower).
            return self.overlay().opts(**opts)

        # The Tap stream goes into the DynamicMap's own streams so the plot wires the Bokeh
        # tap event to it (a stream merely sourced on the DynamicMap is not always found).
        return hv.DynamicMap(frame, streams=[self._stream(
            *MAP_PARAMS, "alpha", "cmap", "percentile", "show_outline", "show_boxes",
            "selected_box"), self.tap])

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
        head = [f"**Box {s.selected_box}: {r['feature']}**",
                f"relative left/top/width/height: {r['left']:.3f} / {r['top']:.3f} / "
                f"{r['width']:.3f} / {r['height']:.3f}"]
        metrics = [m for m in self.data.box_metrics if m in row.columns]
        lines = [f"- {m}: {'n/a' if pd.isna(r[m]) else f'{r[m]:.4f}'}" for m in metrics]
        if not metrics:
            lines = ["(no per-box scores in the scores file)"]
        return "\n\n".join(head) + "\n\n" + "\n".join(lines)

    def plot_pane(self) -> pn.pane.HoloViews:
        """The overlay in a HoloViews pane."""
        return pn.pane.HoloViews(self.plot(), linked_axes=False)

    def info_pane(self) -> pn.pane.Markdown:
        """The selected box's metrics (updates on tap and on any map change)."""
        trig = self._trigger("selected_box", *MAP_PARAMS, "percentile")
        return pn.pane.Markdown(pn.bind(lambda _: self.box_info(), trig.param.count),
                                css_classes=["box-info"], width=380, margin=(5, 20))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(self.plot_pane(), self.info_pane())


class LayerHeadGrid(_View):
    """Layer × head heatmap of the chosen metric for the current image; tap a cell to go there."""

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = hv.streams.Tap(x=None, y=None, transient=True)
        self.tap.add_subscriber(self._on_tap)

    def grid(self) -> tuple[list[int], list[int], np.ndarray]:
        """``(layers, heads, values[L, H])`` of the metric for the current image/model/method."""
        s = self.state
        return self.data.grid_scores(s.metric, s.model, s.variant, s.method, s.image_id,
                                     s.percentile)

    def heatmap(self, **_) -> hv.HeatMap:
        """The grid as ``hv.HeatMap`` (heads on x with ``mean`` first, layers on y)."""
        s = self.state
        label = self.data.metric_label(s.metric, s.percentile)
        try:
            layers, heads, vals = self.grid()
        except KeyError:
            layers, heads, vals = [], [], np.zeros((0, 0))
        lower = self.data.metric_attrs(s.metric)["direction"] == "lower" if s.metric else False
        el = plots.layer_head_heatmap(vals, layers, heads, metric=label)
        return el.opts(cmap="viridis_r" if lower else "viridis", colorbar=True,
                       tools=["hover"], xlabel="head", ylabel="layer",
                       title=f"{label} · {s.model} · {s.method}", frame_width=240,
                       frame_height=240, framewise=True, toolbar="above")

    def marker(self, **_) -> hv.Points:
        """A ring on the current (head, layer) cell."""
        s = self.state
        pt = [(plots.head_label(s.head), str(s.layer))]
        return hv.Points(pt, kdims=["head", "layer"]).opts(
            marker="square", size=22, fill_alpha=0, line_color="#ff2d55", line_width=3)

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

    def plot(self) -> hv.DynamicMap:
        """Heatmap and current-cell marker as two DynamicMaps: a layer/head change only moves
        the marker (HoloViews updates just the subplot whose stream fired)."""
        heat = hv.DynamicMap(self.heatmap, streams=[self._stream(
            "image_id", "model", "variant", "method", "metric", "percentile"), self.tap])
        mark = hv.DynamicMap(self.marker, streams=[self._stream("layer", "head")])
        return heat * mark

    def __panel__(self) -> pn.viewable.Viewable:
        if self.data.scores is None:
            return _alert("No scores for this store: the layer × head grid needs "
                          f"`{self.data.scores_path.name}` (run `ssl-attn score`).")
        return pn.pane.HoloViews(self.plot(), linked_axes=False)


class LayerCurves(_View):
    """Per-layer mean (95 % bootstrap CI band) for every model, baselines as dashed lines.

    Tap a point to select that model and layer. Each model uses the chosen method where it has
    it, otherwise its own primary method (named in the legend).
    """

    def summary(self) -> pd.DataFrame:
        s = self.state
        return self.data.layer_summary(s.metric, s.method, s.variant, s.percentile)

    def curves(self, **_) -> hv.Overlay:
        s = self.state
        label = self.data.metric_label(s.metric, s.percentile) if s.metric else ""
        summ = self.summary()
        colors = plots.feature_colors(summ["model"].unique()) if len(summ) else {}
        over = plots.layer_curves(summ, colors, metric=label)
        base = self.data.baselines(s.metric, s.percentile)
        x_right = float(summ["layer"].max()) if len(summ) else 0.0
        over = over * plots.baseline_lines(base, x=x_right)
        return over.opts(title=f"{label} per layer (head-mean maps, {s.variant})",
                         framewise=True)

    def marker(self, **_) -> hv.Points:
        s = self.state
        summ = self.summary()
        row = summ[(summ.model == s.model) & (summ.layer == s.layer)]
        pts = row[["layer", "mean"]].to_numpy(float)
        label = self.data.metric_label(s.metric, s.percentile) if s.metric else "mean"
        return hv.Points(pts, kdims=["layer", label]).opts(
            size=16, fill_alpha=0, line_color="#ff2d55", line_width=3)

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

    def plot(self) -> hv.DynamicMap:
        """Curves and the current (model, layer) marker as two DynamicMaps (a layer or model
        change only moves the marker)."""
        s = self.state

        def curves(**_):
            label = self.data.metric_label(s.metric, s.percentile) if s.metric else ""
            return self.curves().opts(ylabel=label, framewise=True)

        self.tap = hv.streams.Tap(x=None, y=None, transient=True)
        self.tap.add_subscriber(self._on_tap)
        lines = hv.DynamicMap(curves, streams=[self._stream(
            "metric", "method", "variant", "percentile"), self.tap])
        mark = hv.DynamicMap(self.marker, streams=[self._stream(
            "metric", "method", "variant", "percentile", "model", "layer")])
        return (lines * mark).opts(frame_width=560, frame_height=300, xlabel="layer",
                                   show_grid=True, legend_position="right")

    def __panel__(self) -> pn.viewable.Viewable:
        if self.data.scores is None:
            return _alert("No scores for this store: per-layer curves need "
                          f"`{self.data.scores_path.name}` (run `ssl-attn score`).")
        return pn.Column(
            pn.pane.HoloViews(self.plot(), linked_axes=False),
            pn.pane.Markdown("Mean over images; band: 95 % percentile bootstrap over images "
                             "(1000 draws, seeded). Dashed lines: baselines. ResNet-50 layers "
                             "are Grad-CAM stages 1–4.", styles={"font-size": "0.85em"}))


class Leaderboard(_View):
    """Models × metrics at each model's best layer, with CIs and the baselines (sortable)."""

    def table(self) -> pd.DataFrame:
        s = self.state
        return self.data.leaderboard(s.method, s.variant, s.percentile)

    def _widget(self, *_):
        df = self.table()
        if df.empty:
            return _alert("No scores to rank for this selection.")
        groups, fmt = {}, {}
        for m in self.data.metrics:
            label = self.data.metric_label(m, self.state.percentile)
            cols = [c for c in (label, f"{label} lo", f"{label} hi", f"{label} layer")
                    if c in df.columns]
            if cols:
                arrow = "↓" if self.data.metric_attrs(m)["direction"] == "lower" else "↑"
                groups[f"{label} {arrow}"] = cols
                for c in cols[:3]:
                    fmt[c] = {"type": "money", "precision": 3, "symbol": ""}
        return pn.widgets.Tabulator(df, show_index=False, groups=groups, formatters=fmt,
                                    frozen_columns=["model"], disabled=True, layout="fit_data",
                                    sizing_mode="stretch_width", height=360)

    def __panel__(self) -> pn.viewable.Viewable:
        if self.data.scores is None:
            return _alert("No scores for this store: the leaderboard needs "
                          f"`{self.data.scores_path.name}` (run `ssl-attn score`).")
        trig = self._trigger("method", "variant", "percentile")
        return pn.Column(
            pn.bind(self._widget, trig.param.count),
            pn.pane.Markdown("Best layer per model by the mean over images (head-mean maps); "
                             "lo/hi: 95 % bootstrap CI. The best layer is chosen on the same "
                             "images, so values are optimistic. Baseline rows: method "
                             "`baseline`.", styles={"font-size": "0.85em"}))


class ModelComparison(_View):
    """The current image for every model side by side, at the same relative depth."""

    def panels(self) -> list[tuple[str, str, int, np.ndarray | None]]:
        """Per model ``(model, method, layer, map or None)``: the chosen method (or the model's
        primary one) at the layer at the same relative depth as the current one."""
        s = self.state
        depth = s.layer_position()
        out = []
        for m in self.data.models:
            method = self.data.primary_method(m, s.method)
            if method is None:
                continue
            layers = self.data.layers(m, method)
            layer = layers[round(depth * (len(layers) - 1))] if layers else -1
            variant = s.variant if s.variant in self.data.variants(m) else "frozen"
            try:
                arr = self.data.attention_map(m, variant, method, s.image_id,
                                              layer if layers else None, s.head)
            except KeyError:
                arr = None
            out.append((m, method, layer, arr))
        return out

    def panel_element(self, panel_model: str, **_) -> hv.Overlay:
        """Photo * map * boxes of one model (its entry of :meth:`panels`)."""
        model = panel_model
        s = self.state
        w, h = self._size()
        entry = next((e for e in self.panels() if e[0] == model), None)
        method, layer, arr = (entry[1], entry[2], entry[3]) if entry else ("—", -1, None)
        title = f"{model} · {method}" + ("" if layer == -1 else f" · layer {layer}")
        if arr is None:
            arr = np.zeros((1, 1))
            title += " (no map)"
        boxes = self._memo("boxes", (s.image_id,), lambda: plots.boxes_element(
            self._boxes(s.image_id), self._colors(), show_legend=False, tools=[]))
        m = plots.map_element(arr, w, h, label=str(method), cmap=s.cmap, alpha=s.alpha)
        return (self._photo(s.image_id) * m * boxes).opts(title=title)

    def plot(self) -> hv.Layout:
        """One DynamicMap per model, all driven by one shared Params stream."""
        stream = self._stream("image_id", "method", "layer", "head", "variant", "cmap", "alpha",
                              "model")
        items = [hv.DynamicMap(functools.partial(self.panel_element, m), streams=[stream])
                 .opts(**_frame_opts(240, 200, toolbar=None, xaxis=None, yaxis=None))
                 for m in self.data.models]
        return hv.Layout(items).cols(3)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("Every model at the same relative depth as the selected layer "
                             "(its own method if it lacks the selected one).",
                             styles={"font-size": "0.85em"}),
            pn.pane.HoloViews(self.plot(), linked_axes=False))


class VariantComparison(_View):
    """Frozen vs a fine-tuned variant of the current model, and the shift map (variant − frozen)."""

    def maps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(frozen, variant, variant − frozen)`` maps, or None without a second variant."""
        s = self.state
        if not s.compare_variant or "frozen" not in self.data.variants(s.model):
            return None
        args = (s.method, s.image_id, s.layer if s.layer != -1 else None, s.head)
        frozen = self.data.attention_map(s.model, "frozen", *args)
        other = self.data.attention_map(s.model, s.compare_variant, *args)
        return frozen, other, other.astype(np.float64) - frozen

    def element(self, which: str, **_) -> hv.Overlay:
        """``which`` = ``frozen`` | ``variant`` | ``shift``: photo * that map."""
        s = self.state
        w, h = self._size()
        photo = self._photo(s.image_id)
        try:
            got = self.maps()
        except KeyError:
            got = None
        if got is None:
            return (photo * plots.map_element(np.zeros((1, 1)), w, h, alpha=0.0)).opts(
                title="no variant to compare")
        frozen, other, diff = got
        layer = "" if s.layer == -1 else f" · layer {s.layer}"
        if which == "shift":
            return (photo * plots.shift_element(diff, w, h, alpha=0.75)).opts(
                title=f"shift: {s.compare_variant} − frozen{layer}")
        lo = float(np.nanmin([np.nanmin(frozen), np.nanmin(other)]))
        hi = float(np.nanmax([np.nanmax(frozen), np.nanmax(other)]))
        arr, name = (frozen, "frozen") if which == "frozen" else (other, s.compare_variant)
        return (photo * plots.map_element(arr, w, h, clim=(lo, hi), cmap=s.cmap,
                                          alpha=s.alpha)).opts(title=f"{name}{layer}")

    def layout(self, model: str):
        """The three DynamicMaps, or a message when the model has no second variant."""
        if not self.data.variants(model)[1:]:
            return _alert(f"Model {model} has only the frozen variant in this store: nothing "
                          "to compare. Fine-tune it and extract with `--variant`.")
        stream = self._stream(*MAP_PARAMS, "compare_variant", "cmap", "alpha")
        items = [hv.DynamicMap(functools.partial(self.element, k), streams=[stream])
                 .opts(**_frame_opts(300, 260, toolbar=None)) for k in
                 ("frozen", "variant", "shift")]
        return pn.pane.HoloViews(hv.Layout(items).cols(3), linked_axes=False)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state
        return pn.Column(
            pn.Param(s.param, parameters=["compare_variant"], show_name=False,
                     widgets={"compare_variant": {"name": "compare with"}}),
            pn.bind(lambda _: self.layout(s.model), self._trigger("model").param.count))


class PatchSimilarity(_View):
    """Cosine similarity of the final-layer patch embeddings to a tapped patch or box."""

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = hv.streams.Tap(x=None, y=None, transient=True)
        self.tap.add_subscriber(self._on_tap)

    def reference(self) -> tuple[str, np.ndarray] | None:
        """``(description, embedding (C,))`` of the reference, or None if nothing is tapped."""
        s = self.state
        emb = self.data.embedding(s.model, s.variant, s.image_id)
        if emb is None:
            return None
        gh, gw = emb.shape[:2]
        if s.sim_source == "box" and s.selected_box >= 0:
            b = self.data.boxes(s.image_id)
            b = b[b.box_index == s.selected_box]
            if not b.empty:
                from ssl_attn.wikichurches import box_masks

                mask = box_masks(b[["left", "top", "width", "height"]].to_numpy(float),
                                 gh, gw)[0]
                return f"box {s.selected_box} ({b.iloc[0]['feature']}, {int(mask.sum())} "\
                       "patches)", emb[mask].mean(axis=0)
        if s.tap_x is None or s.tap_y is None:
            return None
        i = min(int(s.tap_y * gh), gh - 1)
        j = min(int(s.tap_x * gw), gw - 1)
        return f"patch (row {i}, col {j})", emb[i, j]

    def similarity(self) -> np.ndarray | None:
        """Cosine similarity ``(gh, gw)`` of every patch to the reference, or None."""
        s = self.state
        emb = self.data.embedding(s.model, s.variant, s.image_id)
        ref = self.reference()
        if emb is None or ref is None:
            return None
        e = emb.astype(np.float64)
        r = ref[1].astype(np.float64)
        num = e @ r
        den = np.linalg.norm(e, axis=-1) * np.linalg.norm(r)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    def _on_tap(self, x=None, y=None) -> None:
        if x is None or y is None:
            return
        w, h = self._size()
        t = plots.boxes_to_frame(self.data.boxes(self.state.image_id), w, h)
        inside = t[(t.x0 <= x) & (x <= t.x1) & (t.y0 <= y) & (y <= t.y1)]
        box = -1 if inside.empty else int(inside.loc[
            ((inside.x1 - inside.x0) * (inside.y1 - inside.y0)).idxmin(), "box_index"])
        self.state.param.update(tap_x=min(max(x / w, 0.0), 1.0),
                                tap_y=min(max(-y / h, 0.0), 1.0), selected_box=box)

    def element(self, **_) -> hv.Overlay:
        s = self.state
        w, h = self._size()
        sim = self.similarity()
        ref = self.reference()
        arr = sim if sim is not None else np.full((1, 1), np.nan)
        img = plots.map_element(arr, w, h, label="cosine", clim=(-1.0, 1.0)).opts(
            cmap="RdBu_r", alpha=0.7 if sim is not None else 0.0, colorbar=True,
            tools=["hover"])
        title = ("tap the image (patch) or pick 'box' and tap a box" if ref is None
                 else f"similarity to {ref[0]}")
        boxes = plots.boxes_element(self._boxes(s.image_id), self._colors(), show_legend=False,
                                    tools=[], fill_alpha=0)
        pts = [] if s.tap_x is None else [(s.tap_x * w, -s.tap_y * h)]
        mark = hv.Points(pts, kdims=["x", "y"]).opts(marker="x", size=14, color="black")
        return (self._photo(s.image_id) * img * boxes * mark).opts(title=title)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state

        def body(_):
            model = s.model
            if not self.data.has_embeddings(model):
                return _alert(f"No embeddings in this store for model {model}: patch similarity "
                              "needs the optional `embedding` variable (extract with "
                              "`--embeddings`).")
            dm = hv.DynamicMap(self.element, streams=[self._stream(
                "image_id", "model", "variant", "tap_x", "tap_y", "selected_box",
                "sim_source"), self.tap])
            return pn.pane.HoloViews(dm.opts(**_frame_opts(480, 400)), linked_axes=False)

        return pn.Column(
            pn.Param(s.param, parameters=["sim_source"], show_name=False,
                     widgets={"sim_source": {"type": pn.widgets.RadioButtonGroup,
                                             "name": "reference"}}),
            pn.bind(body, self._trigger("model", "variant").param.count))


class ImageBrowser(_View):
    """Thumbnails filterable by style and feature, searchable by id; a click selects an image."""

    style = param.Selector(default="All", objects=["All"])
    feature = param.Selector(default="All", objects=["All"])
    search = param.String(default="", doc="Substring of the image id")

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        t = self.data.image_table
        self.param.style.objects = ["All", *sorted(set(t["style_name"]))]
        self.param.feature.objects = ["All", *self.data.features_by_frequency]
        self._table = pn.widgets.Tabulator(
            self.filtered(), show_index=False, selectable=1, disabled=True, height=300,
            formatters={"thumb": {"type": "html"}}, layout="fit_columns",
            widths={"thumb": 62, "image_id": 110, "style_name": 95, "n_boxes": 50},
            sizing_mode="stretch_width", pagination=None,
            titles={"thumb": "", "image_id": "image", "style_name": "style",
                    "n_boxes": "boxes"})
        self._table.param.watch(self._on_select, "selection")
        self.param.watch(self._refilter, ["style", "feature", "search"])

    def filtered(self) -> pd.DataFrame:
        """Rows of the image table passing the style / feature / id filters."""
        t = self.data.image_table
        keep = np.ones(len(t), bool)
        if self.style != "All":
            keep &= (t["style_name"] == self.style).to_numpy()
        if self.feature != "All":
            keep &= t["features"].map(lambda f: self.feature in f).to_numpy(bool)
        if self.search.strip():
            keep &= t["image_id"].str.contains(self.search.strip(), case=False,
                                               regex=False).to_numpy()
        df = t.loc[keep, ["image_id", "style_name", "n_boxes"]].reset_index(drop=True)
        df.insert(0, "thumb", [self._thumb_html(i) for i in df["image_id"]])
        return df

    def _thumb_html(self, image_id: str) -> str:
        jpg = self.data.thumbnail(image_id)
        if jpg is None:
            return ""
        b64 = base64.b64encode(jpg).decode("ascii")
        return f'<img src="data:image/jpeg;base64,{b64}" style="height:48px">'

    def _refilter(self, *_) -> None:
        self._table.value = self.filtered()

    def _on_select(self, event) -> None:
        if event.new:
            iid = self._table.value.iloc[event.new[0]]["image_id"]
            if iid in self.state.param.image_id.objects:
                self.state.image_id = iid

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Param(self.param, parameters=["search", "style", "feature"], show_name=False,
                     widgets={"search": {"type": pn.widgets.TextInput,
                                         "placeholder": "search id, e.g. Q20"}}),
            self._table, sizing_mode="stretch_width")
