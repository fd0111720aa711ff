"""The explorer's comparison tabs (HoloViews): every model side by side, frozen vs a fine-tuned
variant with the shift map, and patch similarity of the final-layer embeddings.

They sit in tabs that are built when first shown, so HoloViews is imported only then
(:func:`ssl_attn.plots.hv_module`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import panel as pn
from bokeh.models import CustomJSTickFormatter

from ssl_attn import plots
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.text import md_code
from ssl_attn.explorer.views import MAP_PARAMS, TapStream, _alert, _View

if TYPE_CHECKING:
    import holoviews as hv

__all__ = ["ModelComparison", "PatchSimilarity", "VariantComparison"]


def _frame_opts(width: int, height: int, **extra) -> dict:
    # A new tick formatter per plot: a Bokeh model belongs to one document only.
    base = dict(frame_width=width, frame_height=height, data_aspect=1, xlabel="x (px)",
                ylabel="y (px from top)", framewise=True, active_tools=["wheel_zoom"],
                toolbar="above",
                yformatter=CustomJSTickFormatter(code="return Math.abs(tick).toFixed(0)"))
    base.update(extra)
    return base


class ModelComparison(_View):
    """The current image for every model side by side, at the same relative depth."""

    replaces_models = True

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
        boxes = self.events.memo("boxes", (s.image_id,), lambda: plots.boxes_element(
            self._boxes(s.image_id), self._colors(), show_legend=False, tools=[]))
        m = plots.map_element(arr, w, h, label=str(method), cmap=s.cmap, alpha=s.alpha)
        return (self._photo(s.image_id) * m * boxes).opts(title=title)

    def plot(self) -> hv.Layout:
        """One DynamicMap per model, all driven by one shared Params stream."""
        stream = self._stream("image_id", "method", "layer", "head", "variant", "cmap", "alpha",
                              "model")
        hv = plots.hv_module()
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

    replaces_models = True

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
            return _alert(f"Model {md_code(model)} has only the frozen variant in this store: "
                          "nothing to compare. Fine-tune it and extract with `--variant`.")
        stream = self._stream(*MAP_PARAMS, "compare_variant", "cmap", "alpha")
        hv = plots.hv_module()
        items = [hv.DynamicMap(functools.partial(self.element, k), streams=[stream])
                 .opts(**_frame_opts(300, 260, toolbar=None)) for k in
                 ("frozen", "variant", "shift")]
        return pn.pane.HoloViews(hv.Layout(items).cols(3), linked_axes=False)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state
        return pn.Column(
            pn.Param(s.param, parameters=["compare_variant"], show_name=False,
                     widgets={"compare_variant": {"name": "compare with"}}),
            pn.bind(lambda _: self.layout(s.model), self.events.trigger("model").param.count))


class PatchSimilarity(_View):
    """Cosine similarity of the final-layer patch embeddings to a tapped patch or box."""

    replaces_models = True

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.tap = TapStream(self._on_tap)

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
        mark = plots.hv_module().Points(pts, kdims=["x", "y"]).opts(marker="x", size=14,
                                                                     color="black")
        return (self._photo(s.image_id) * img * boxes * mark).opts(title=title)

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.state

        def body(_):
            model = s.model
            if not self.data.has_embeddings(model):
                return _alert(f"No embeddings in this store for model {md_code(model)}: patch "
                              "similarity needs the optional `embedding` variable (extract with "
                              "`--embeddings`).")
            hv = plots.hv_module()
            # A HoloViews Tap in the DynamicMap's streams: the plot wires the Bokeh tap to it.
            tap = hv.streams.Tap(x=None, y=None, transient=True)
            tap.add_subscriber(self._on_tap)
            dm = hv.DynamicMap(self.element, streams=[self._stream(
                "image_id", "model", "variant", "tap_x", "tap_y", "selected_box",
                "sim_source"), tap])
            return pn.pane.HoloViews(dm.opts(**_frame_opts(480, 400)), linked_axes=False)

        return pn.Column(
            pn.Param(s.param, parameters=["sim_source"], show_name=False,
                     widgets={"sim_source": {"type": pn.widgets.RadioButtonGroup,
                                             "name": "reference"}}),
            pn.bind(body, self.events.trigger("model", "variant").param.count))
