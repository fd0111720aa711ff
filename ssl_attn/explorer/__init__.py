"""The explorer dashboard (Panel + HoloViews): importable, unit-testable Viewer classes.

``Explorer(store)`` is the whole app as a Viewer; ``build_app(...)`` wraps it in a template
for ``panel serve dashboards/explorer.py``. Importing this package imports panel and bokeh
(HoloViews only when a comparison tab is first shown); ``import ssl_attn`` does not import it.

Modules: ``data`` / ``scores`` (cached, read-only access through :mod:`ssl_attn.store`; the
numbers come from :mod:`ssl_attn.metrics` and :mod:`ssl_attn.stats`), ``shared`` (one
``ExplorerData`` per store and server process), ``state`` (the shared selection), ``events``
(the once-per-action signal, the per-view memo), ``text`` (outside text made safe for panes),
``figures`` (in-place Bokeh figures), ``views`` (attention view, layer × head grid, layer
curves), ``compare`` and ``tables`` (the tabbed views), ``finetune_view`` (the fine-tuning tab:
the Q2 shift table), ``app`` (the whole dashboard).
"""

from __future__ import annotations

from ssl_attn.explorer.app import DEFAULT_DATA_DIR, DEFAULT_STORE, Explorer, build_app
from ssl_attn.explorer.compare import ModelComparison, PatchSimilarity, VariantComparison
from ssl_attn.explorer.data import ExplorerData, PathRejectedError, resolve_store_path
from ssl_attn.explorer.finetune_view import FinetuneView
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.tables import ImageBrowser, Leaderboard
from ssl_attn.explorer.views import AttentionView, LayerCurves, LayerHeadGrid
from ssl_attn.store import MAP_METHODS  # re-exported: the store's one list, the same object

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_STORE",
    "MAP_METHODS",
    "AttentionView",
    "Explorer",
    "ExplorerData",
    "ExplorerState",
    "FinetuneView",
    "ImageBrowser",
    "LayerCurves",
    "LayerHeadGrid",
    "Leaderboard",
    "ModelComparison",
    "PatchSimilarity",
    "PathRejectedError",
    "VariantComparison",
    "build_app",
    "resolve_store_path",
]
