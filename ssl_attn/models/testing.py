"""Random-weight models written exactly as real checkpoints are, for tests and benchmarks.

:func:`save_random_model` builds a registered architecture with random weights and writes it
with ``save_pretrained`` into ``out_dir/<key>/``, so tests load it through the very same
``from_pretrained(dir)`` path as real runs (``load_model(key, weights_dir=out_dir)``). CLIP and
SigLIP are saved as full dual-encoder models and MAE with its decoder
(``ViTMAEForPreTraining``), as the hub checkpoints are; ResNet-50 as a torchvision state dict.

``size="full"`` uses the registry's real architecture; ``size="tiny"`` shrinks it (hidden 32,
2 layers, 2 heads, intermediate 64, 56-64 px position grids) but keeps the token layout: patch
size, CLS, register tokens, biases, activations and RoPE settings stay those of the real model.
The loaded model's architecture then comes from the saved ``config.json``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch

from ssl_attn.models.loading import RANDOM_INIT_MARKER, build_hf_config
from ssl_attn.models.registry import ModelSpec, get_spec

__all__ = ["fix_mae_init", "save_random_model", "tiny_config"]

_SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}

#: family -> (changes for the top-level / vision config, changes for a text config)
_TINY: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "dinov2": (
        {
            "hidden_size": 32,
            "mlp_ratio": 2,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 56,
        },
        None,
    ),
    "dinov3": ({**_SMALL, "image_size": 64}, None),
    "mae": (
        {
            **_SMALL,
            "image_size": 64,
            "decoder_hidden_size": 32,
            "decoder_intermediate_size": 64,
            "decoder_num_hidden_layers": 1,
            "decoder_num_attention_heads": 2,
        },
        None,
    ),
    "clip": (
        {**_SMALL, "image_size": 64, "projection_dim": 16},
        {**_SMALL, "vocab_size": 128, "max_position_embeddings": 16, "projection_dim": 16},
    ),
    "siglip": (
        {**_SMALL, "image_size": 64},
        {**_SMALL, "vocab_size": 128, "max_position_embeddings": 16, "projection_size": 32},
    ),
    "siglip2": (
        {**_SMALL, "num_patches": 16},
        {**_SMALL, "vocab_size": 128, "max_position_embeddings": 16, "projection_size": 32},
    ),
}

_FULL_CLASS = {
    # model_type -> the class the hub checkpoint was saved from
    "dinov2_with_registers": "Dinov2WithRegistersModel",
    "dinov2": "Dinov2Model",
    "dinov3_vit": "DINOv3ViTModel",
    "vit_mae": "ViTMAEForPreTraining",
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "siglip2": "Siglip2Model",
}


def fix_mae_init(model: torch.nn.Module) -> None:
    """Give a freshly built ViT-MAE its real initialisation (fixed 2-D sin-cos positions).

    In this transformers version ``ViTMAEEmbeddings.initialize_weights`` returns early once the
    patch projection was initialised, leaving zero position embeddings and a zero CLS token in
    a model built from a config. We re-run it with the flag cleared.
    """
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    for mod in model.modules():
        if isinstance(mod, ViTMAEEmbeddings):
            mod.patch_embeddings.projection._is_hf_initialized = False
            with torch.no_grad():
                mod.initialize_weights()


def _sharpen_attention(model: torch.nn.Module) -> None:
    """Redraw query/key weights of a tiny model with std 1.5/sqrt(D).

    The transformers init (std 0.02) makes a 32-wide model's attention almost uniform
    (logit std ~1e-2), which would let wrong token orders or heads pass tests unnoticed. With
    std 1.5/sqrt(D), layer-normed inputs give attention logits of std ~2: peaked, not one-hot.
    Registers (zero-initialised by transformers) are drawn at random too, so they get attention.
    """
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("q_proj", "k_proj"):
                mod.weight.normal_(0.0, 1.5 / mod.in_features**0.5)
            elif isinstance(mod, torch.nn.MultiheadAttention):
                d = mod.embed_dim
                mod.in_proj_weight[: 2 * d].normal_(0.0, 1.5 / d**0.5)
        emb = getattr(model, "embeddings", None)
        if isinstance(getattr(emb, "register_tokens", None), torch.nn.Parameter):
            emb.register_tokens.normal_(0.0, 1.0)


def tiny_config(spec: ModelSpec) -> dict[str, Any]:
    """The spec's full config dict shrunk to a tiny model with the same token layout."""
    cfg = spec.config_dict()
    try:
        top, text = _TINY[spec.family]
    except KeyError:
        raise ValueError(f"no tiny configuration for family {spec.family!r}") from None
    if isinstance(cfg.get("vision_config"), dict):
        cfg["vision_config"].update(copy.deepcopy(top))
        if text is not None and isinstance(cfg.get("text_config"), dict):
            cfg["text_config"].update(copy.deepcopy(text))
        if "projection_dim" in cfg:
            cfg["projection_dim"] = top.get("projection_dim", cfg["projection_dim"])
    else:
        cfg.update(copy.deepcopy(top))
    return cfg


def save_random_model(
    key: str | ModelSpec,
    out_dir: str | Path,
    size: Literal["tiny", "full"] = "tiny",
    seed: int = 0,
) -> Path:
    """Write a random-weight model of ``key``'s architecture to ``out_dir/<key>/``.

    Args:
        key: registry key or :class:`ModelSpec`.
        out_dir: parent folder (the ``weights_dir`` of :func:`~ssl_attn.models.load_model`).
        size: ``"tiny"`` (fast tests) or ``"full"`` (the real architecture, real sizes).
        seed: torch seed for the random weights.

    Returns:
        The model folder ``out_dir/<key>``.
    """
    spec = get_spec(key) if isinstance(key, str) else key
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")
    folder = Path(out_dir) / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    marker = {"random_init": True, "key": spec.key, "size": size, "seed": seed,
              "note": "random weights written by ssl_attn.models.testing.save_random_model; "
                      "maps computed from them say nothing about the pretrained model"}
    (folder / RANDOM_INIT_MARKER).write_text(json.dumps(marker, indent=2))
    if spec.family == "resnet":
        import torchvision

        arch = spec.config_overrides.get("arch", "resnet50")
        model = getattr(torchvision.models, arch)(
            weights=None, num_classes=int(spec.config_overrides.get("num_classes", 1000))
        )
        # a random BatchNorm state so that eval-mode statistics are not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        torch.save(model.state_dict(), folder / f"{arch}.pth")
        return folder

    import transformers

    cfg = spec.config_dict() if size == "full" else tiny_config(spec)
    config = build_hf_config(cfg)
    cls = getattr(transformers, _FULL_CLASS[cfg["model_type"]])
    model = cls(config)
    fix_mae_init(model)
    if size == "tiny":
        _sharpen_attention(model)
    model.save_pretrained(folder)
    return folder
