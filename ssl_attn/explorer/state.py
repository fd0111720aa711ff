"""The explorer's shared selection: one ``param.Parameterized`` every view reads and writes.

Changing ``model`` or ``method`` re-derives the valid ``variant`` / ``layer`` / ``head`` choices
in one batched update (``param.depends`` cascades), so views never see an impossible
combination. The once-per-action ``version`` signal views listen to comes from
:class:`~ssl_attn.explorer.events.BatchedSelection` (see there for why it is not plain
``param.depends``).
"""

from __future__ import annotations

import param

from ssl_attn.explorer.data import ExplorerData
from ssl_attn.explorer.events import BatchedSelection
from ssl_attn.plots import head_label

__all__ = ["CMAPS", "SELECTION", "ExplorerState"]

#: Perceptually uniform, colour-blind-friendly sequential colormaps for the attention overlay.
CMAPS = ("inferno", "viridis", "magma", "cividis", "gray")
#: Every parameter a view can depend on (a change of any bumps ``version`` once).
SELECTION = ("image_id", "model", "variant", "method", "layer", "head", "metric", "percentile",
             "alpha", "cmap", "show_outline", "show_boxes", "selected_box", "tap_x", "tap_y",
             "compare_variant", "sim_source")


class ExplorerState(BatchedSelection):
    """The current selection. ``layer = -1`` / ``head = -1`` mean "no layer" / head-mean."""

    image_id = param.Selector(default=None, objects=[], doc="Image shown by every view")
    model = param.Selector(default=None, objects=[], doc="Model group of the store")
    variant = param.Selector(default=None, objects=[], doc="frozen or a fine-tuned variant")
    method = param.Selector(default=None, objects=[], doc="Attention method (store variable)")
    layer = param.Selector(default=-1, objects=[-1], doc="Layer coordinate (-1: no layer)")
    head = param.Selector(default=-1, objects={"mean": -1}, doc="Head (-1: mean over heads)")
    metric = param.Selector(default=None, objects=[], doc="Score variable for grid/curves")
    percentile = param.Selector(default=None, objects=[], doc="p of IoU@p / the outline")
    alpha = param.Number(default=0.5, bounds=(0.0, 1.0), step=0.05, doc="Map opacity")
    cmap = param.Selector(default="inferno", objects=list(CMAPS), doc="Map colormap")
    show_outline = param.Boolean(default=True, doc="Outline the top-(100-p)% region")
    show_boxes = param.Boolean(default=True, doc="Draw the expert boxes")
    selected_box = param.Integer(default=-1, doc="box_index of the tapped box (-1: none)")
    tap_x = param.Number(default=None, allow_None=True, doc="Tapped point, relative x in [0,1]")
    tap_y = param.Number(default=None, allow_None=True, doc="Tapped point, relative y in [0,1]")
    compare_variant = param.Selector(default=None, objects=[], doc="Variant vs frozen")
    sim_source = param.Selector(default="patch", objects=["patch", "box"],
                                doc="Similarity reference: the tapped patch or the box mean")

    def __init__(self, data: ExplorerData, **params) -> None:
        super().__init__(**params)
        self.data = data
        self._watch_selection(SELECTION)
        if not data.ok:
            return
        self.param.image_id.objects = list(data.image_ids)
        self.param.model.objects = list(data.models)
        metrics = list(data.metrics)
        self.param.metric.objects = metrics
        self.param.percentile.objects = list(data.percentiles) or [90]
        init = {
            "image_id": params.get("image_id") or data.image_ids[0],
            "model": params.get("model") or next(
                (m for m in data.models if "cls" in data.methods(m)), data.models[0]),
            # IoU@90 is the headline metric (DESIGN.md §7); else coverage; else the first.
            "metric": params.get("metric") or next(
                (m for m in ("iou", "coverage") if m in metrics), metrics[0] if metrics else None),
            "percentile": params.get("percentile") or (
                90 if 90 in (data.percentiles or [90]) else data.percentiles[-1]),
        }
        self.param.update(**init)
        self._sync_model(keep=params)

    # ------------------------------------------------------------------ derived choices
    def _layer_head_for(self, model: str, method: str, keep: dict) -> dict:
        layers = self.data.layers(model, method) or [-1]
        heads = self.data.heads(model, method)
        head_objs = {"mean": -1, **{head_label(h): h for h in heads}}
        self.param.layer.objects = layers
        self.param.head.objects = head_objs
        layer = keep.get("layer", self.layer)
        if layer not in layers:
            layer = layers[-1]
        head = keep.get("head", self.head)
        if head not in head_objs.values():
            head = -1
        return {"layer": layer, "head": head}

    def _sync_model(self, keep: dict | None = None) -> None:
        keep = keep or {}
        model = self.model
        methods = self.data.methods(model)
        variants = self.data.variants(model)
        self.param.method.objects = methods
        self.param.variant.objects = variants
        method = keep.get("method", self.method)
        if method not in methods:
            method = self.data.primary_method(model, method)
        variant = keep.get("variant", self.variant)
        if variant not in variants:
            variant = variants[0]
        others = [v for v in variants if v != "frozen"]
        self.param.compare_variant.objects = others
        compare = self.compare_variant if self.compare_variant in others else (
            others[0] if others else None)
        upd = {"method": method, "variant": variant, "compare_variant": compare}
        upd.update(self._layer_head_for(model, method, keep))
        self.param.update(**upd)

    # Each user action may cascade (model -> method -> layer objects ...). Cascades run inside
    # ``cascade()``; ``version`` is bumped once, by the outermost event, so every view refreshes
    # exactly once per action and never sees a half-updated selection.
    @param.depends("model", watch=True, on_init=False)
    def _on_model(self) -> None:
        if self.data.ok and self.model is not None:
            with self.cascade():
                self._sync_model()

    @param.depends("method", watch=True, on_init=False)
    def _on_method(self) -> None:
        if self.data.ok and self.model is not None and self.method is not None:
            with self.cascade():
                self.param.update(**self._layer_head_for(self.model, self.method, {}))

    @param.depends("image_id", watch=True, on_init=False)
    def _on_image(self) -> None:
        with self.cascade():
            self.param.update(selected_box=-1, tap_x=None, tap_y=None)

    # ------------------------------------------------------------------ helpers
    def select(self, **values) -> None:
        """Set several params as one user action (``version`` bumped once, at the end).

        ``model`` is set first, then ``method``, so the choices that depend on them (method,
        variant, layer, head, compare_variant) are re-derived before the other ``values`` are
        set; a value not among its param's choices then raises param's ``ValueError``. E.g. a
        tap on the fine-tuning view's shift table: ``select(model=..., method=...,
        compare_variant=..., layer=..., head=-1)``.
        """
        before = tuple(getattr(self, n) for n in SELECTION)
        with self.cascade():
            for name in ("model", "method"):
                if name in values:
                    setattr(self, name, values.pop(name))
            self.param.update(**values)
        if tuple(getattr(self, n) for n in SELECTION) != before:
            self._bump()

    def map_key(self) -> tuple:
        """``(model, variant, method, image_id, layer, head)`` of the current map."""
        return (self.model, self.variant, self.method, self.image_id, self.layer, self.head)

    def layer_position(self) -> float:
        """Relative depth of the current layer in [0, 1] (1 for a single layer)."""
        layers = self.data.layers(self.model, self.method)
        if len(layers) < 2 or self.layer not in layers:
            return 1.0
        return layers.index(self.layer) / (len(layers) - 1)

    def describe(self) -> str:
        """One line naming the current selection (also the browser test's probe)."""
        layer = "—" if self.layer == -1 else str(self.layer)
        box = "none" if self.selected_box < 0 else str(self.selected_box)
        return (f"image {self.image_id} · model {self.model} · {self.variant} · {self.method} · "
                f"layer {layer} · head {head_label(self.head)} · box {box}")
