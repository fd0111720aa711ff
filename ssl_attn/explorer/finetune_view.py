"""The explorer's fine-tuning tab (Q2): how fine-tuning moved each model's attention.

It shows the shift table (``X.shift.zarr`` beside the store, written by ``ssl-attn shift``):
per model a heat map of variant × layer for the sidebar's metric (and percentile) and method,
head-mean maps, colour = Δ (variant − frozen) on a diverging scale centred at 0, each cell
labelled with Δ and its effect (▲ enhance, ▼ destroy, faded: preserve); rows ``V − C`` give the
style-trained shift beyond its shuffled-label control, the column ``best`` the Δ at the
variant's own best layer. Hover shows Δ, its CI, p (Holm), d_z and n. Beside it, the best
validation accuracy per strategy. Tapping a cell selects that model, variant and layer (head-mean)
in the shared state, and the variant comparison below (:class:`~ssl_attn.explorer.compare.
VariantComparison`: frozen | fine-tuned | signed shift map of the current image) shows it.

The dashboard computes no number here: every value is the shift Dataset's
(:mod:`ssl_attn.finetune.shift`, the one owner of the Q2 statistics), read once per store
(:attr:`ssl_attn.explorer.data.ExplorerData.shift`) through :func:`load_shift`, the one place
that knows the Dataset's names (:data:`SHIFT_NAMES`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn
import xarray as xr
from bokeh.events import Tap
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    Rect,
    Text,
)
from bokeh.palettes import RdBu11
from bokeh.plotting import figure

from ssl_attn.explorer.compare import VariantComparison
from ssl_attn.explorer.figures import MARK, TRANSPARENT, _set
from ssl_attn.explorer.scores import fallback_method
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.text import alert, markdown, md_code, md_escape, show_path
from ssl_attn.explorer.views import _View
from ssl_attn.store import decode_attrs

__all__ = ["SHIFT_NAMES", "FinetuneView", "ShiftFigure", "ShiftSchemaError", "load_shift"]

#: The shift Dataset's names as this view reads them: view name → name in the Dataset
#: (:mod:`ssl_attn.finetune.shift` decides them, docs/SCHEMA.md; a rename there is one edit
#: here). Dims, then the per-cell variables ``(model, variant, method, metric, layer)``, the
#: beyond-control ones (``bc_*``: a style variant minus its shuffled-label control), those at
#: each variant's own best layer ``(model, variant, method, metric)``, ``accuracy (model,
#: variant)``, then attrs.
SHIFT_NAMES: dict[str, str] = {
    "model": "model", "variant": "variant", "method": "method", "metric": "metric",
    "layer": "layer", "percentile": "percentile",
    "delta": "delta", "ci_low": "ci_low", "ci_high": "ci_high", "p_value": "p_value",
    "p_holm": "p_holm", "dz": "dz", "n": "n", "reference_mean": "reference_mean",
    "variant_mean": "variant_mean", "effect": "effect",
    "bc_delta": "beyond_control_delta", "bc_ci_low": "beyond_control_ci_low",
    "bc_ci_high": "beyond_control_ci_high", "bc_p_value": "beyond_control_p_value",
    "bc_p_holm": "beyond_control_p_holm", "bc_effect": "beyond_control_effect",
    "best_layer": "best_layer", "best_delta": "best_delta", "best_ci_low": "best_ci_low",
    "best_ci_high": "best_ci_high", "best_p_holm": "best_p_holm", "best_effect": "best_effect",
    "accuracy": "accuracy",
    # attrs
    "holm_family": "holm_family", "reference": "reference", "controls": "controls",
    "ci": "ci", "stats_n_boot": "stats_n_boot", "percentile_attr": "percentile",
}
_DIMS = ("model", "variant", "method", "metric", "layer")
#: What the table cannot be drawn without (the others are optional: their rows/columns are
#: left out).
REQUIRED = (*_DIMS, "delta", "ci_low", "ci_high", "p_holm", "dz", "n", "effect")
_ATTRS = ("holm_family", "reference", "controls", "ci", "stats_n_boot", "percentile_attr")
EFFECTS = {-1: "destroy", 0: "preserve", 1: "enhance"}
_GLYPH = {-1: "▼", 0: "", 1: "▲"}
#: Blue (Δ < 0) → white → red (Δ > 0), as the shift maps' ``RdBu_r`` (Bokeh's ``RdBu11``
#: runs from blue to red).
DIVERGING = list(RdBu11)
BEST = "best"
_CELL_COLUMNS = ("x", "y", "variant", "layer", "kind", "control", "delta", "ci_low", "ci_high",
                 "p_value", "p_holm", "dz", "n", "effect", "reference_mean", "variant_mean")


class ShiftSchemaError(ValueError):
    """The shift table lacks a dimension or variable the view needs (another version wrote it)."""


def _open_shift(path: Path) -> xr.Dataset:
    from ssl_attn.finetune.shift import open_shift

    return open_shift(path)


def load_shift(path: str | os.PathLike) -> xr.Dataset:
    """The shift table at ``path`` (``X.shift.zarr``) in this view's names, loaded in memory.

    The one adapter between :func:`ssl_attn.finetune.shift.open_shift`'s Dataset and the view:
    variables, dims and attrs are renamed from :data:`SHIFT_NAMES` (Dataset name → view name),
    dims ordered ``model, variant, method, metric[, percentile][, layer]``; unknown variables
    (per-feature / per-style tables ...) are dropped; JSON attrs are decoded (``controls``:
    style variant → its control; ``holm_family``: list of dims). Raises
    :class:`ShiftSchemaError` naming the file and the missing names when a required one
    (:data:`REQUIRED`) is absent.
    """
    path = Path(path)
    ds = _open_shift(path)
    inverse = {v: k for k, v in SHIFT_NAMES.items()}
    have = set(ds.variables) | set(ds.dims)
    missing = [SHIFT_NAMES[k] for k in REQUIRED if SHIFT_NAMES[k] not in have]
    if missing:
        raise ShiftSchemaError(
            f"{path}: the shift table lacks {', '.join(map(repr, missing))} (has variables "
            f"{sorted(map(str, ds.data_vars))}); rewrite it with `ssl-attn shift --store X.zarr`")
    keep = [name for name in ds.data_vars if name in inverse]
    out = ds[keep]
    out = out.rename({n: inverse[n] for n in (*keep, *out.dims, *out.coords)
                      if n in inverse and inverse[n] != n})
    # One dim order for every variable (the view indexes the numpy values after ``sel``).
    out = out.transpose(*[d for d in (*_DIMS[:4], "percentile", "layer") if d in out.dims], ...)
    attrs = decode_attrs(ds.attrs)
    out.attrs = {k: attrs[SHIFT_NAMES[k]] for k in _ATTRS if SHIFT_NAMES[k] in attrs}
    return out.load()


def _fmt(value: float, spec: str) -> str:
    """``value`` formatted, ``—`` when missing; a true minus sign."""
    if value is None or not np.isfinite(value):
        return "—"
    return format(value, spec).replace("-", "−")


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}".replace("-", "−")


class ShiftFigure:
    """One model's shift table as a categorical Bokeh heat map (layer on x, rows on y), updated
    in place; a ring marks the selected cell. ``on_tap(x, y)`` receives the tapped cell's
    factors (a layer or ``best``; a row label)."""

    def __init__(self, *, on_tap: Callable[[str, str], None] | None = None) -> None:
        self.cells = ColumnDataSource({c: [] for c in (*_CELL_COLUMNS, "text", "text_color",
                                                       "alpha", "tip_delta", "tip_ci", "tip_p",
                                                       "tip_dz", "tip_n", "tip_effect",
                                                       "tip_means")})
        self.marker = ColumnDataSource({"x": [], "y": []})
        self.mapper = LinearColorMapper(palette=DIVERGING, low=-1.0, high=1.0,
                                        nan_color=TRANSPARENT)
        fig = figure(frame_width=200, frame_height=90, x_range=FactorRange(factors=["0"]),
                     y_range=FactorRange(factors=["—"]), tools="save", toolbar_location=None,
                     x_axis_label="layer", title="")
        cell = {"x": "x", "y": "y", "width": 0.96, "height": 0.92}
        rects = fig.add_glyph(self.cells, Rect(**cell, line_color=None, fill_alpha="alpha",
                                               fill_color={"field": "delta",
                                                           "transform": self.mapper}))
        fig.add_glyph(self.cells, Text(x="x", y="y", text="text", text_align="center",
                                       text_baseline="middle", text_font_size="8pt",
                                       text_color="text_color"))
        fig.add_glyph(self.marker, Rect(x="x", y="y", width=1, height=1, fill_alpha=0.0,
                                        line_color=MARK, line_width=3))
        fig.add_tools(HoverTool(renderers=[rects], tooltips=[
            ("cell", "@y · layer @x"), ("Δ", "@tip_delta"), ("95 % CI", "@tip_ci"),
            ("p (Holm)", "@tip_p"), ("d_z", "@tip_dz"), ("n", "@tip_n"),
            ("effect", "@tip_effect"), ("frozen → variant", "@tip_means")]))
        fig.add_layout(ColorBar(color_mapper=self.mapper, width=8, title="Δ"), "right")
        fig.xgrid.visible = fig.ygrid.visible = False
        fig.xaxis.major_tick_line_color = fig.yaxis.major_tick_line_color = None
        fig.outline_line_color = None
        self._on_tap = on_tap
        if on_tap is not None:
            fig.on_event(Tap, self._tap)
        self.fig = fig

    def _tap(self, event) -> None:
        # On a categorical axis factor i spans the synthetic coordinates [i, i + 1).
        xs, ys = self.fig.x_range.factors, self.fig.y_range.factors
        if event.x is None or event.y is None:
            return
        i, j = int(np.floor(event.x)), int(np.floor(event.y))
        if 0 <= i < len(xs) and 0 <= j < len(ys):
            self._on_tap(xs[i], ys[j])

    def set_cells(self, cells: pd.DataFrame, *, xs: Sequence[str], ys: Sequence[str],
                  limit: float, title: str) -> None:
        """Draw ``cells`` (:meth:`FinetuneView.cells` rows) with x factors ``xs`` (left to
        right) and rows ``ys`` (top to bottom); colours span ``[−limit, limit]``."""
        data = {c: cells[c].tolist() for c in _CELL_COLUMNS}
        eff = cells["effect"].to_numpy(float)
        strong = np.abs(cells["delta"].to_numpy(float)) > 0.6 * limit
        # preserve faded; no effect in the table (NaN) half-way
        data["alpha"] = np.where(eff == 0, 0.35, np.where(np.isfinite(eff), 1.0, 0.7)).tolist()
        data["text_color"] = np.where(strong & (eff != 0), "white", "#222222").tolist()
        data["text"] = [self._label(r) for r in cells.itertuples()]
        data["tip_delta"] = [_fmt(v, "+.4f") for v in cells["delta"]]
        data["tip_ci"] = [f"{_fmt(lo, '+.4f')} to {_fmt(hi, '+.4f')}"
                          for lo, hi in zip(cells["ci_low"], cells["ci_high"])]
        data["tip_p"] = [_fmt_p(p) for p in cells["p_holm"]]
        data["tip_dz"] = [_fmt(v, "+.2f") for v in cells["dz"]]
        data["tip_n"] = [_fmt(v, ".0f") for v in cells["n"]]
        data["tip_effect"] = ["—" if not np.isfinite(e) else EFFECTS[int(e)] for e in eff]
        data["tip_means"] = [f"{_fmt(a, '.4f')} → {_fmt(b, '.4f')}" for a, b in
                             zip(cells["reference_mean"], cells["variant_mean"])]
        _set(self.fig.x_range, factors=list(xs) or ["—"])
        _set(self.fig.y_range, factors=list(ys)[::-1] or ["—"])  # first row on top
        _set(self.fig, frame_width=max(150, 62 * len(xs)), frame_height=max(60, 34 * len(ys)))
        self.cells.data = data
        _set(self.mapper, low=-limit, high=limit)
        _set(self.fig.title, text=title)

    @staticmethod
    def _label(r) -> str:
        glyph = _GLYPH.get(int(r.effect), "") if np.isfinite(r.effect) else ""
        text = f"{_fmt(r.delta, '+.3f')}{glyph}"
        return f"{text}\nL{r.layer}" if r.kind == "best" and r.layer >= 0 else text

    def set_marker(self, x: str | None, y: str | None) -> None:
        """Ring the cell ``(x, y)`` (nothing when it is not on the axes)."""
        on = x in self.fig.x_range.factors and y in self.fig.y_range.factors
        self.marker.data = {"x": [x] if on else [], "y": [y] if on else []}


class FinetuneView(_View):
    """The fine-tuning tab: the shift table per model, accuracy per strategy, the selected
    cell's numbers and the variant comparison of the selected cell for the current image."""

    replaces_models = True  # the comparison below is HoloViews

    TABLE_PARAMS = ("metric", "method", "percentile")

    def __init__(self, state: ExplorerState, **params) -> None:
        super().__init__(state, **params)
        self.compare = VariantComparison(state)
        self.figures: dict[str, ShiftFigure] = {}
        self._detail = None
        self._layout = None

    def set_active(self, active: bool) -> None:
        super().set_active(active)
        self.compare.set_active(active)

    # ------------------------------------------------------------------ data (no server)
    @property
    def shift(self) -> xr.Dataset | None:
        """The store's shift table in the view's names (None without one)."""
        return self.data.shift

    def models(self) -> list[str]:
        """Models of the shift table with at least one cell, in its order."""
        ds = self.shift
        if ds is None:
            return []
        has = ds["delta"].notnull().any([d for d in ds["delta"].dims if d != "model"])
        return [str(m) for m, ok in zip(ds["model"].values, has.values) if ok]

    def metric(self) -> tuple[str | None, str]:
        """``(metric, note)``: the sidebar's metric when the table has it, else its first
        (``note`` says so; empty otherwise)."""
        have = [str(m) for m in self.shift["metric"].values]
        want = self.state.metric
        if want in have:
            return want, ""
        if not have:
            return None, "The shift table has no metric."
        if want is None:  # no scores: no sidebar metric to follow
            return have[0], ""
        return have[0], (f"The shift table has no {md_code(want)} (it has "
                         f"{md_escape(', '.join(have))}): showing {md_code(have[0])}.")

    def percentile(self) -> tuple[int | None, str]:
        """``(p, note)``: the percentile of the table's IoU@p: the sidebar's when the table has
        a ``percentile`` dim with it, else the table's own (its first, or its ``percentile``
        attr); ``note`` says when that is not the sidebar's."""
        ds, want = self.shift, self.state.percentile
        if "percentile" in ds.dims:
            have = [round(float(p)) for p in ds["percentile"].values]
            got = want if want in have else (have[0] if have else None)
        else:
            got = ds.attrs.get("percentile_attr")
            got = round(float(got)) if isinstance(got, (int, float)) else want
        metric, _ = self.metric()
        uses_p = "@" in self._label(metric, want)
        note = (f"The shift table is at p = {got}, not the sidebar's p = {want}."
                if uses_p and got != want else "")
        return got, note

    def _label(self, metric: str | None, percentile: int | None) -> str:
        """``iou@90`` for a percentile metric of the scores, else the name (plain text)."""
        d = self.data
        if metric is not None and d.scores is not None and metric in d.scores:
            return d.metric_label(metric, percentile)
        return str(metric)

    def _sub(self, model: str) -> tuple[xr.Dataset, str | None]:
        """The table of one model at the current metric (and percentile) and method:
        ``(Dataset with dims variant[, layer], method)``."""
        ds, s = self.shift, self.state
        metric, _ = self.metric()
        sub = ds.sel({"model": model, "metric": metric})
        if "percentile" in sub.dims:
            sub = sub.sel(percentile=self.percentile()[0])
        has = sub["delta"].notnull().any([d for d in sub["delta"].dims if d != "method"])
        methods = [str(m) for m, ok in zip(sub["method"].values, has.values) if ok]
        method = fallback_method(methods, s.method)
        return (sub.sel({"method": method}) if method is not None else sub.isel(method=0),
                method)

    def controls(self) -> dict[str, str]:
        """Style variant → its shuffled-label control (the table's ``controls`` attr)."""
        c = self.shift.attrs.get("controls") or {}
        return {str(k): str(v) for k, v in c.items()} if isinstance(c, dict) else {}

    def cells(self, model: str) -> pd.DataFrame:
        """:meth:`table_cells` of ``model`` at the current metric, method and percentile
        (remembered until they change; do not modify)."""
        key = (self.state.metric, self.state.method, self.state.percentile)
        return self.events.memo(f"cells:{model}", key, lambda: self.table_cells(model))

    def table_cells(self, model: str) -> pd.DataFrame:
        """Every drawn cell of one model: ``x`` (layer or ``best``), ``y`` (row label),
        ``variant`` and ``layer`` (what a tap selects; −1 when none), ``kind`` (``shift`` |
        ``beyond`` | ``best``), ``control``, then the table's numbers for that cell (``delta``,
        ``ci_low``, ``ci_high``, ``p_value``, ``p_holm``, ``dz``, ``n``, ``effect`` (−1/0/1;
        NaN when the table labels none), ``reference_mean``, ``variant_mean``; NaN when it has
        none). Rows: variants in the table's order with controls last, then ``V − C`` rows."""
        sub, method = self._sub(model)
        if method is None:
            return pd.DataFrame(columns=_CELL_COLUMNS)
        vnames = [str(v) for v in sub["variant"].values]
        lvals = [int(la) for la in sub["layer"].values]

        def arr(name: str) -> np.ndarray:
            """``name`` as float ``(variant, layer)`` (``(variant,)`` without a layer dim:
            :func:`load_shift` put the dims in that order); all NaN without the variable."""
            if name not in sub:
                return np.full((len(vnames), len(lvals)), np.nan)
            return sub[name].values.astype(float)

        delta = arr("delta")
        ok = np.isfinite(delta)
        controls = self.controls()
        ctrl_set = set(controls.values())
        vi = [i for i in range(len(vnames)) if ok[i].any()]
        vi = ([i for i in vi if vnames[i] not in ctrl_set]
              + [i for i in vi if vnames[i] in ctrl_set])
        li = [j for j in range(len(lvals)) if ok[:, j].any()]
        shift = {k: arr(k) for k in _CELL_COLUMNS[6:]}
        best = {k: arr(f"best_{k}") for k in ("layer", "delta", "ci_low", "ci_high", "p_holm",
                                               "effect")}
        beyond = {k: arr(f"bc_{k}") for k in ("delta", "ci_low", "ci_high", "p_value",
                                               "p_holm", "effect")}
        nan = math.nan
        rows = []
        for i in vi:
            v = vnames[i]
            for j in li:
                rows.append({"x": str(lvals[j]), "y": v, "variant": v, "layer": lvals[j],
                             "kind": "shift", "control": "",
                             **{k: a[i, j] for k, a in shift.items()}})
            if np.isfinite(best["delta"][i]):
                bl = best["layer"][i]
                rows.append({"x": BEST, "y": v, "variant": v,
                             "layer": int(bl) if np.isfinite(bl) else -1, "kind": "best",
                             "control": "", "delta": best["delta"][i],
                             "ci_low": best["ci_low"][i], "ci_high": best["ci_high"][i],
                             "p_value": nan, "p_holm": best["p_holm"][i], "dz": nan, "n": nan,
                             "effect": best["effect"][i],
                             "reference_mean": nan, "variant_mean": nan})
        for i in vi:
            v, c = vnames[i], controls.get(vnames[i])
            if c is None:
                continue
            for j in li:
                if np.isfinite(beyond["delta"][i, j]):
                    rows.append({"x": str(lvals[j]), "y": f"{v} − {c}", "variant": v,
                                 "layer": lvals[j], "kind": "beyond", "control": c,
                                 **{k: a[i, j] for k, a in beyond.items()},
                                 "dz": nan, "n": nan, "reference_mean": nan,
                                 "variant_mean": nan})
        out = pd.DataFrame(rows, columns=_CELL_COLUMNS)
        out.attrs["method"] = method
        return out

    def accuracy(self) -> pd.DataFrame:
        """Best validation accuracy: rows variants (strategies; those with any value),
        columns models (NaN where that model has no such variant)."""
        ds = self.shift
        if ds is None or "accuracy" not in ds:
            return pd.DataFrame()
        acc = ds["accuracy"].transpose("variant", "model").to_pandas()
        acc.index, acc.columns = acc.index.astype(str), acc.columns.astype(str)
        return acc.dropna(how="all").dropna(axis=1, how="all")

    def cell(self, model: str, variant: str, layer: int, kind: str = "shift") -> dict | None:
        """The row of :meth:`cells` for ``(model, variant, layer)`` of ``kind``, or None."""
        t = self.cells(model)
        hit = t[(t.variant == variant) & (t.layer == layer) & (t.kind == kind)]
        return None if hit.empty else hit.iloc[0].to_dict()

    # ------------------------------------------------------------------ selection
    def select(self, model: str, x: str, y: str) -> bool:
        """Select the cell ``(x, y)`` of ``model``'s table (a tap): the state's model, its
        method, ``compare_variant`` (the row's variant), ``layer`` (the column's; the best
        layer for ``best``) and ``head = −1`` (the table is of head-mean maps), in one action.
        Returns False (nothing changed) when the cell or its choices do not exist."""
        t = self.cells(model)
        hit = t[(t.x == str(x)) & (t.y == str(y))]
        if hit.empty or model not in self.data.models:
            return False
        r = hit.iloc[0]
        method = t.attrs.get("method")
        d = self.data
        if method not in d.methods(model) or r["variant"] not in d.variants(model):
            return False
        upd = {"model": model, "method": method, "compare_variant": r["variant"], "head": -1}
        if int(r["layer"]) in d.layers(model, method):
            upd["layer"] = int(r["layer"])
        self.state.select(**upd)
        return True

    def _marker_cell(self, model: str) -> tuple[str | None, str | None]:
        s = self.state
        if s.model != model:
            return None, None
        return str(s.layer), s.compare_variant

    # ------------------------------------------------------------------ text
    def caption(self) -> str:
        """How to read the table (Markdown; the Holm family and CI from the table's attrs)."""
        a = self.shift.attrs
        fam = a.get("holm_family") or []
        fam = [fam] if isinstance(fam, str) else list(fam)
        ci = a.get("ci")
        ci_text = f"{float(ci):.0%} CI" if isinstance(ci, (int, float)) else "CI"
        ref = md_escape(a.get("reference", "frozen"))
        return (f"Δ = variant − {ref}, mean over images of the paired difference (head-mean "
                f"maps); colour on a diverging scale centred at 0 (red: higher). ▲ enhance / "
                f"▼ destroy: significant after Holm within {md_escape(', '.join(fam) or '?')} "
                f"(sign by the metric's direction); faded: preserve. Rows **V − C**: the "
                f"style-trained Δ beyond its shuffled-label control C. Column **best**: Δ at "
                f"the variant's own best layer (L). Hover a cell for its {ci_text}, p (Holm), "
                "d_z and n; tap it to compare that variant and layer below. Numbers: "
                "`ssl_attn.finetune.shift`.")

    def detail(self) -> str:
        """Markdown: the selected cell's numbers (model, compare variant, layer)."""
        s = self.state
        if self.shift is None or s.model not in self.models() or s.compare_variant is None:
            return "Tap a cell of the table to compare that variant and layer below."
        metric, _ = self.metric()
        r = self.cell(s.model, s.compare_variant, s.layer)
        if r is None:
            return (f"No shift cell for {md_code(s.model)} · {md_code(s.compare_variant)} · "
                    f"layer {s.layer}: tap a cell of the table.")
        method = self.cells(s.model).attrs.get("method")
        label = md_escape(self._label(metric, self.percentile()[0]))
        eff = EFFECTS.get(int(r["effect"]), "—") if np.isfinite(r["effect"]) else "—"
        lines = [f"**{md_code(s.model)} · {md_code(s.compare_variant)} vs frozen · layer "
                 f"{s.layer}** ({md_code(method)}, {label}, head-mean): Δ = "
                 f"{_fmt(r['delta'], '+.4f')} (CI {_fmt(r['ci_low'], '+.4f')} to "
                 f"{_fmt(r['ci_high'], '+.4f')}), p (Holm) = {_fmt_p(r['p_holm'])}, d_z = "
                 f"{_fmt(r['dz'], '+.2f')}, n = {_fmt(r['n'], '.0f')}: **{eff}**; mean "
                 f"{_fmt(r['reference_mean'], '.4f')} → {_fmt(r['variant_mean'], '.4f')}."]
        b = self.cell(s.model, s.compare_variant, s.layer, "beyond")
        if b is not None:
            lines.append(f"Beyond its control {md_code(b['control'])}: Δ = "
                         f"{_fmt(b['delta'], '+.4f')} (CI {_fmt(b['ci_low'], '+.4f')} to "
                         f"{_fmt(b['ci_high'], '+.4f')}), p (Holm) = {_fmt_p(b['p_holm'])}.")
        return "\n\n".join(lines)

    def missing_message(self) -> str:
        """Markdown: no shift table, and the commands that make one."""
        store = show_path(self.data.store_path, self.data.data_dir)
        steps = [
            ("fine-tune (and the shuffled-label control with `--labels shuffled`)",
             "ssl-attn finetune --model KEY --strategy lora --data DIR --out runs/KEY-lora"),
            ("extract the fine-tuned variant",
             f"ssl-attn extract --store {store} --models KEY --variant lora "
             "--finetuned runs/KEY-lora"),
            ("score it", f"ssl-attn score --store {store}"),
            ("write the shift table", f"ssl-attn shift --store {store}"),
        ]
        items = "\n".join(f"{i}. {what}: {md_code(cmd, limit=None)}"
                          for i, (what, cmd) in enumerate(steps, 1))
        where = md_code(show_path(self.data.shift_path, self.data.data_dir))
        return (f"**No shift table for this store** ({where} not found): the fine-tuning "
                f"view needs it. Make it with\n\n{items}")

    def accuracy_markdown(self) -> str:
        """The accuracy table as Markdown (names escaped)."""
        acc = self.accuracy()
        if acc.empty:
            return "No accuracy in the shift table."
        head = "| strategy | " + " | ".join(md_escape(m) for m in acc.columns) + " |"
        rule = "|---|" + "---:|" * len(acc.columns)
        body = ["| " + md_escape(v) + " | " + " | ".join(_fmt(x, ".3f") for x in row) + " |"
                for v, row in zip(acc.index, acc.to_numpy(float))]
        return "\n".join(["**Best validation accuracy**", "", head, rule, *body])

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Re-send the tables when metric/method/percentile changed; move the rings and the
        detail on a selection change."""
        if not self.figures:
            return
        s = self.state
        key = tuple(getattr(s, n) for n in self.TABLE_PARAMS)
        new_cells = self.events.changed("cells", key)
        if new_cells:
            metric, note = self.metric()
            note = " ".join(n for n in (note, self.percentile()[1]) if n)
            tables = {m: self.cells(m) for m in self.figures}
            vals = np.concatenate([t["delta"].to_numpy(float) for t in tables.values()])
            finite = np.abs(vals[np.isfinite(vals)])
            limit = float(finite.max()) if finite.size and finite.max() > 0 else 1e-6
            label = self._label(metric, self.percentile()[0])
            for m, f in self.figures.items():
                t = tables[m]
                xs = list(dict.fromkeys(t["x"]))
                xs = [x for x in xs if x != BEST] + ([BEST] if BEST in xs else [])
                f.set_cells(t, xs=xs, ys=list(dict.fromkeys(t["y"])), limit=limit,
                            title=f"{m} · {t.attrs.get('method')} · Δ {label}")
            self._note.object = note
            self._note.visible = bool(note)
        marker = (s.model, s.compare_variant, s.layer)
        if self.events.changed("marker", marker) or new_cells:
            for m, f in self.figures.items():
                f.set_marker(*self._marker_cell(m))
            self._detail.object = self.detail()

    def _build(self) -> pn.viewable.Viewable:
        d = self.data
        compare = pn.Column(pn.pane.Markdown(
            "**Frozen | fine-tuned | shift** of the current image at the selected layer "
            "(a tap on the table chooses the variant and layer, head-mean).",
            margin=(10, 10, 0, 10)), self.compare, sizing_mode="stretch_width")
        if d.shift_problem:
            return pn.Column(alert(d.shift_problem, "danger"), compare,
                             sizing_mode="stretch_width")
        if self.shift is None:
            return pn.Column(alert(self.missing_message(), "info"), compare,
                             sizing_mode="stretch_width")
        models = self.models()
        for m in models:
            self.figures[m] = ShiftFigure(on_tap=lambda x, y, m=m: self.select(m, x, y))
        self._note = alert("", "warning", visible=False)
        self._detail = markdown("", sizing_mode="stretch_width", margin=(5, 10))
        lacking = [m for m in d.models if m not in models]
        extra = ([markdown(f"Not in the shift table (no fine-tuned variant): "
                           f"{md_escape(', '.join(lacking))}.", styles={"font-size": "0.85em"})]
                 if lacking else [])
        tables = pn.Column(*[pn.pane.Bokeh(f.fig) for f in self.figures.values()], *extra)
        side = markdown(self.accuracy_markdown(), width=300, margin=(10, 20))
        self.refresh()
        self.events.follow(self.refresh)
        return pn.Column(
            self._note, pn.FlexBox(tables, side),
            markdown(self.caption(), styles={"font-size": "0.85em"},
                     sizing_mode="stretch_width"),
            self._detail, compare, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        if self._layout is None:
            self._layout = self._build()
        return self._layout
