"""Attention maps of vision models: CLS attention, register mass, rollout, mean received,
SigLIP probe attention and ResNet Grad-CAM.

Importing this package imports torch (it is not imported by ``import ssl_attn``).

Main entry point::

    maps = extract_maps(loaded, batch.pixel_values, layers=None, methods=None)

One small class per method on a shared base lives in :mod:`ssl_attn.attention.methods`;
Grad-CAM in :mod:`ssl_attn.attention.gradcam`.
"""

from __future__ import annotations

from ssl_attn.attention.extract import (
    EagerAttentionError,
    attention_modules,
    bare_forward,
    extract_maps,
)
from ssl_attn.attention.gradcam import grad_cam, top1_logit
from ssl_attn.attention.methods import (
    AttentionMethod,
    ClsAttention,
    MeanReceived,
    ProbeAttention,
    Rollout,
    TokenLayout,
    attention_rollout,
    rollout_step,
)
from ssl_attn.models.registry import grid_shape

__all__ = [
    "AttentionMethod",
    "ClsAttention",
    "EagerAttentionError",
    "MeanReceived",
    "ProbeAttention",
    "Rollout",
    "TokenLayout",
    "attention_modules",
    "attention_rollout",
    "bare_forward",
    "extract_maps",
    "grad_cam",
    "grid_shape",
    "rollout_step",
    "top1_logit",
]
