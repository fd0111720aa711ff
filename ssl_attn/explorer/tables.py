"""The explorer's table views (Tabulator): the leaderboard and the image browser."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import panel as pn
import param

from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.views import _alert, _View

__all__ = ["ImageBrowser", "Leaderboard"]


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
        trig = self.events.trigger("method", "variant", "percentile")
        return pn.Column(
            pn.bind(self._widget, trig.param.count),
            pn.pane.Markdown("Best layer per model by the mean over images (head-mean maps); "
                             "lo/hi: 95 % bootstrap CI. The best layer is chosen on the same "
                             "images, so values are optimistic. Baseline rows: method "
                             "`baseline`.", styles={"font-size": "0.85em"}))


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
        # Thumbnails (one JPEG decode each) are filled in once the page is on screen
        # (immediately when there is no server session, e.g. in tests and scripts).
        self._table = pn.widgets.Tabulator(
            self.filtered(thumbs=False), show_index=False, selectable=1, disabled=True, height=300,
            formatters={"thumb": {"type": "html"}}, layout="fit_columns",
            widths={"thumb": 62, "image_id": 110, "style_name": 95, "n_boxes": 50},
            sizing_mode="stretch_width", pagination=None,
            titles={"thumb": "", "image_id": "image", "style_name": "style",
                    "n_boxes": "boxes"})
        self._table.param.watch(self._on_select, "selection")
        pn.state.onload(self._refilter)

    def filtered(self, thumbs: bool = True) -> pd.DataFrame:
        """Rows of the image table passing the style / feature / id filters, with an HTML
        ``thumb`` column (empty strings when ``thumbs`` is False)."""
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
        df.insert(0, "thumb", [self._thumb_html(i) if thumbs else "" for i in df["image_id"]])
        return df

    def _thumb_html(self, image_id: str) -> str:
        jpg = self.data.thumbnail(image_id)
        if jpg is None:
            return ""
        b64 = base64.b64encode(jpg).decode("ascii")
        return f'<img src="data:image/jpeg;base64,{b64}" style="height:48px">'

    @param.depends("style", "feature", "search", watch=True)
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
