"""The whole explorer: :class:`Explorer` composes the views; :func:`build_app` wraps it in a
template for ``panel serve`` (see ``dashboards/explorer.py``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import panel as pn
import param

from ssl_attn.explorer.compare import ModelComparison, PatchSimilarity, VariantComparison
from ssl_attn.explorer.data import (
    ExplorerData,
    PathRejectedError,
    resolve_store_path,
)
from ssl_attn.explorer.finetune_view import FinetuneView
from ssl_attn.explorer.shared import shared_data
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.tables import ImageBrowser, Leaderboard
from ssl_attn.explorer.text import alert, error_line, markdown, md_code, md_escape, plain, show_path
from ssl_attn.explorer.views import AttentionView, LayerCurves, LayerHeadGrid

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_STORE", "Explorer", "build_app", "store_from_request"]

DEFAULT_STORE = Path("data/stores/demo.zarr")
DEFAULT_DATA_DIR = Path("data")
TITLE = "ssl-attn explorer: where do vision transformers look?"
ACCENT = "#0072B2"
log = logging.getLogger(__name__)


def is_random_init(weights: str) -> bool:
    """True for a model group's ``weights`` attr that says random weights: ``"random-init"``
    (built in memory) or ``"random-init:<path>"`` (saved by ``save_random_model``)."""
    return weights == "random-init" or weights.startswith("random-init:")


def store_from_request(
    default: str | os.PathLike, data_dir: str | os.PathLike, requested: str | None
) -> Path:
    """The store to open: ``requested`` (from ``?store=``) resolved strictly inside
    ``data_dir`` (:class:`PathRejectedError` otherwise), or ``default`` if none was requested."""
    if requested is None or requested == "":
        return Path(default)
    return resolve_store_path(requested, data_dir)


class _Template(pn.template.BootstrapTemplate):
    """``BootstrapTemplate`` that builds a session's document under one ``freeze``.

    The template adds each of its parts as a document root, and Bokeh recomputes the whole
    model graph after each one (measured: 9 recomputes, ~0.4 s of a cold start); frozen, it
    recomputes once at the end (Bokeh's documented ``DocumentModelManager.freeze``).
    """

    def _init_doc(self, doc=None, comm=None, title=None, notebook=False, location=True):
        document = doc or pn.state.curdoc
        if document is None:
            return super()._init_doc(doc, comm, title, notebook, location)
        with document.models.freeze():
            return super()._init_doc(document, comm, title, notebook, location)


class Explorer(pn.viewable.Viewer):
    """The dashboard as one Viewer: data + shared state + every view.

    Parameters
    ----------
    store : the attention store path (``X.zarr``); scores are read from ``X.scores.zarr``.
    data : dataset folder (default: the store's ``dataset`` root attr).
    error : a message to show instead of opening anything (e.g. a rejected URL path): Markdown,
        with any outside text escaped (:func:`ssl_attn.explorer.text.md_escape`).
    data_dir : the served data directory; paths are shown relative to it (default: the
        working directory), never absolute.
    skip_scores : open the store without its scores (maps only), e.g. after the scores failed.
    notes : extra ``(alert_type, markdown)`` banners, shown after ``error`` (if any).

    Attributes ``data``, ``state`` and the views (``attention``, ``grid``, ``curves``,
    ``leaderboard``, ``models``, ``variants``, ``finetune``, ``similarity``, ``browser``) are
    plain objects
    usable without a server; they are None when the store cannot be opened.
    """

    store = param.Path(default=None, check_exists=False, doc="Attention store (X.zarr)")

    def __init__(self, store: str | os.PathLike | None = None, *,
                 data: str | os.PathLike | None = None, scores: str | os.PathLike | None = None,
                 error: str | None = None, data_dir: str | os.PathLike | None = None,
                 skip_scores: bool = False, notes: list[tuple[str, str]] | None = None,
                 **params) -> None:
        super().__init__(store=str(store or DEFAULT_STORE), **params)
        self.error = error
        self.data_dir = data_dir
        self.notes = list(notes or [])
        self.data = self.state = None
        self.attention = self.grid = self.curves = self.leaderboard = None
        self.models = self.variants = self.finetune = self.similarity = self.browser = None
        if error:
            return
        if skip_scores:  # the fallback page: a private copy, never the shared one
            self.data = ExplorerData(self.store, data=data, scores=scores, data_dir=data_dir)
            self.data.scores = None
        else:
            # One ExplorerData per store and process, shared by every session (read-only).
            self.data = shared_data(self.store, data=data, scores=scores, data_dir=data_dir)
        if not self.data.ok:
            return
        self.state = ExplorerState(self.data)
        self.attention = AttentionView(self.state)
        self.grid = LayerHeadGrid(self.state)
        self.curves = LayerCurves(self.state)
        self.leaderboard = Leaderboard(self.state)
        self.models = ModelComparison(self.state)
        self.variants = VariantComparison(self.state)
        self.finetune = FinetuneView(self.state)
        self.similarity = PatchSimilarity(self.state)
        self.browser = ImageBrowser(self.state)

    # ------------------------------------------------------------------ messages
    def messages(self) -> list[tuple[str, str]]:
        """``(alert_type, markdown)`` banners: errors, the synthetic notice, missing parts (any
        outside text in them is escaped; paths are relative to the data directory)."""
        if self.error:
            return [("danger", self.error), *self.notes]
        out: list[tuple[str, str]] = list(self.notes)
        d = self.data
        if not d.ok:
            return out + ([("danger", p) for p in d.problems] or [
                ("danger", f"Cannot show the store {self._store_text()}.")])
        if d.synthetic:
            out.append(("warning", "**Synthetic data.** These photos, boxes and maps come from "
                        "the generated WikiChurches-format demo set, not from WikiChurches; "
                        "the numbers say nothing about the real models."))
        weights = {m: str(d.model_attrs(m).get("weights", "")) for m in d.models}
        rand = sorted(m for m, w in weights.items() if is_random_init(w))
        if rand:
            out.append(("warning", f"**Random weights:** {md_escape(', '.join(rand))} were "
                        "run with "
                        "randomly initialised weights (no pretrained checkpoint was available); "
                        "their maps show architecture, not learned attention."))
        out.extend(("info", p) for p in d.problems)
        return out

    def _banners(self) -> pn.Column:
        return pn.Column(*[alert(t, k, margin=(2, 10)) for k, t in self.messages()],
                         sizing_mode="stretch_width")

    def _store_text(self) -> str:
        """The store's path for display (relative to the data directory) as a code span."""
        return md_code(show_path(self.store, self.data_dir))

    # ------------------------------------------------------------------ layout
    def controls(self) -> pn.viewable.Viewable:
        """The selection widgets (built from the state's params)."""
        s = self.state
        return pn.Param(
            s.param,
            parameters=["model", "method", "variant", "layer", "head", "metric", "percentile",
                        "alpha", "cmap", "show_outline", "show_boxes"],
            widgets={
                "layer": {"type": pn.widgets.DiscretePlayer, "interval": 700,
                          "loop_policy": "loop", "show_loop_controls": False,
                          "width": 280, "name": "layer"},
                "alpha": {"type": pn.widgets.FloatSlider, "name": "map opacity"},
                "percentile": {"name": "percentile p (outline: top 100−p %)"},
            },
            show_name=False, sizing_mode="stretch_width")

    def status(self) -> pn.pane.Str:
        """A one-line description of the selection (updates with every change); plain text,
        since it names images, models and variants read from the store."""
        s = self.state
        pane = plain(s.describe(), css_classes=["explorer-status"], sizing_mode="stretch_width",
                     stylesheets=[":host pre {font-size: 0.8rem; margin: 2px 0; "
                                  "white-space: pre-wrap;}"])

        def show(_version: int) -> None:  # a bound watcher, not a ref (see explorer/events.py)
            pane.object = s.describe()

        pn.bind(show, s.param.version, watch=True)
        return pane

    def tabs(self) -> pn.Tabs:
        """The secondary views in tabs. A tab's content is built the first time it is shown
        (``dynamic=True`` alone would still build every view up front), so the leaderboard's
        bootstrap and the HoloViews comparison plots cost nothing until asked for; in a server
        session even the first tab is built only after the page is on screen."""
        views = [("Layer curves", self.curves), ("Leaderboard", self.leaderboard),
                 ("Model comparison", self.models), ("Variants", self.variants),
                 ("Fine-tuning", self.finetune), ("Patch similarity", self.similarity)]
        holders = [pn.Column(name=name, sizing_mode="stretch_width") for name, _ in views]
        tabs = pn.Tabs(*holders, dynamic=True, sizing_mode="stretch_width")

        def show(index: int) -> None:
            for i, (_, view) in enumerate(views):  # hidden views pause, the shown one catches up
                view.set_active(i == index)
            self.state.freeze_updates = views[index][1].replaces_models
            if not holders[index].objects:
                holders[index].objects = [views[index][1]]

        # The first tab is below the fold: build it once the page is on screen (a lighter first
        # render; ``onload`` runs at once without a server session, e.g. in tests).
        pn.state.onload(lambda: show(tabs.active))
        pn.bind(show, tabs.param.active, watch=True)
        return tabs

    def main(self) -> pn.viewable.Viewable:
        """The main area: banners, status, the attention view with its grid, then tabs."""
        if self.state is None:
            return self._banners()
        top = pn.Row(self.attention.plot_pane(),
                     pn.Column(self.grid, self.attention.info_pane()))
        return pn.Column(self._banners(), self.status(), top, self.tabs(),
                         sizing_mode="stretch_width")

    def sidebar(self) -> list:
        """Sidebar content: the image browser and the controls."""
        if self.state is None:
            return [markdown(f"Store: {self._store_text()}")]
        return [pn.pane.Markdown("### Image"), self.browser, pn.pane.Markdown("### Selection"),
                self.controls(), markdown(f"Store: {self._store_text()}",
                                          styles={"font-size": "0.8em"})]

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Row(pn.Column(*self.sidebar(), width=330), self.main())

    def template(self) -> pn.template.BootstrapTemplate:
        """The app in a ``BootstrapTemplate`` (title, sidebar, main).

        Bootstrap rather than the Fast templates: Fast pulls a Google font from the network,
        which fails offline (and on locked-down Binder mirrors) with console errors.
        """
        # The sidebar as one Column: each template item becomes a document root, and every
        # root added makes Bokeh recompute the document's model graph.
        return _Template(
            title=TITLE, sidebar=[pn.Column(*self.sidebar(), sizing_mode="stretch_width")],
            main=[self.main()], header_background=ACCENT, sidebar_width=340)


def build_app(
    store: str | os.PathLike | None = None,
    *,
    data: str | os.PathLike | None = None,
    data_dir: str | os.PathLike = DEFAULT_DATA_DIR,
    requested: str | None = None,
) -> pn.template.BootstrapTemplate:
    """The servable app. ``requested`` is a client's ``?store=`` value: it may only name a store
    inside ``data_dir``; anything else is refused with a message and nothing is opened.

    This is the session boundary: it never raises. A session that fails to build shows a
    banner with a one-line reason (the traceback goes to the server log): first it retries
    without the scores (maps only), then shows the banner alone. Request text and exception
    text are escaped, and paths are shown relative to ``data_dir``.
    """
    store = store or DEFAULT_STORE
    try:
        path = store_from_request(store, data_dir, requested)
    except PathRejectedError as exc:
        return _safe_template(Explorer(store, data_dir=data_dir,
                                       error=f"**Refused:** {md_escape(exc, limit=None)}"))
    except Exception as exc:  # anything else about the request: refuse it too
        log.exception("explorer: cannot resolve the requested store")
        return _safe_template(Explorer(store, data_dir=data_dir, error="**Refused:** "
                                       f"{md_escape(error_line(exc, data_dir), limit=None)}"))
    try:
        return Explorer(path, data=data, data_dir=data_dir).template()
    except Exception as exc:  # the session must still show something: retry maps only
        log.exception("explorer: building the session failed; retrying without scores")
        reason = md_escape(error_line(exc, data_dir), limit=None)
    note = ("danger", f"**The scores cannot be shown** (an error while building the page): "
            f"{reason}. Maps are shown without scores.")
    try:
        return Explorer(path, data=data, data_dir=data_dir, skip_scores=True,
                        notes=[note]).template()
    except Exception:
        log.exception("explorer: building the session without scores failed too")
    where = md_code(show_path(path, data_dir))
    return _safe_template(Explorer(store, data_dir=data_dir,
                                   error=f"**Cannot show the store {where}:** {reason}"))


def _safe_template(explorer: Explorer) -> pn.template.BootstrapTemplate:
    """The template of a banner-only explorer; if even that fails, a bare template with the
    banners (never a blank page)."""
    try:
        return explorer.template()
    except Exception:
        log.exception("explorer: building the banner page failed")
        return _Template(title=TITLE, main=[alert(t, k) for k, t in explorer.messages()],
                         header_background=ACCENT)
