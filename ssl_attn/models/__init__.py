"""Model registry, family adapters, loading and geometry-exact preprocessing.

Families (DINOv2, DINOv3, MAE, CLIP, SigLIP, SigLIP 2, ResNet) differ only through their
entry in :data:`FAMILY_TABLE` (:mod:`ssl_attn.models.families`); models are
:class:`ModelSpec` entries, most of them :func:`vit_b` plus overrides.

``import ssl_attn.models`` stays light (registry only, no torch); the loading API
(:func:`load_model`, :class:`LoadedModel`, :class:`Batch`) is imported on first use.

Typical use::

    from ssl_attn.models import load_model
    loaded = load_model("dinov2", device="auto")            # hub id, eager attention, eval
    batch = loaded.preprocess([img1, img2])                  # full-image resize to 224, no crop
    from ssl_attn.attention import extract_maps
    maps = extract_maps(loaded, batch.pixel_values)          # {"cls": (B, L, H, gh, gw), ...}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ssl_attn.models.errors import GatedModelError, ModelLoadError, WeightsUnavailableError
from ssl_attn.models.families import FAMILY_TABLE, Family, get_family
from ssl_attn.models.hub_specs import spec_from_hub_config
from ssl_attn.models.registry import (
    FAMILIES,
    METHODS,
    ModelSpec,
    get_spec,
    grid_shape,
    list_models,
    register_model,
    vit_b,
)

if TYPE_CHECKING:  # pragma: no cover
    from ssl_attn.models.loading import LoadedModel, load_model
    from ssl_attn.models.preprocess import Batch

__all__ = [
    "FAMILIES",
    "FAMILY_TABLE",
    "METHODS",
    "Batch",
    "Family",
    "GatedModelError",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "WeightsUnavailableError",
    "get_family",
    "get_spec",
    "grid_shape",
    "list_models",
    "load_model",
    "register_model",
    "spec_from_hub_config",
    "vit_b",
]

_LAZY = {
    "load_model": "ssl_attn.models.loading",
    "LoadedModel": "ssl_attn.models.loading",
    "Batch": "ssl_attn.models.preprocess",
}


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: keep torch out of `import ssl_attn.models`.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssl_attn.models' has no attribute {name!r}")
