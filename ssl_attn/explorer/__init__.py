"""The explorer dashboard (Panel + HoloViews): importable, unit-testable Viewer classes.

``Explorer(store)`` is the whole app as a Viewer; ``build_app(...)`` wraps it in a template
for ``panel serve dashboards/explorer.py``. Importing this package imports panel and holoviews;
``import ssl_attn`` does not import it.
"""

from __future__ import annotations

from ssl_attn.explorer.app import DEFAULT_DATA_DIR, DEFAULT_STORE, Explorer, build_app
from ssl_attn.explorer.data import (
    MAP_METHODS,
    ExplorerData,
    PathRejectedError,
    resolve_store_path,
    scores_path_for,
)
from ssl_attn.explorer.state import ExplorerState
from ssl_attn.explorer.views import (
    AttentionView,
    ImageBrowser,
    LayerCurves,
    LayerHeadGrid,
    Leaderboard,
    ModelComparison,
    PatchSimilarity,
    VariantComparison,
)

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_STORE",
    "MAP_METHODS",
    "AttentionView",
    "Explorer",
    "ExplorerData",
    "ExplorerState",
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
    "scores_path_for",
]
