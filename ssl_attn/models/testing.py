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

from ssl_attn.models.families import get_family
from ssl_attn.models.loading import RANDOM_INIT_MARKER, build_hf_config, fix_mae_init
from ssl_attn.models.registry import ModelSpec, get_spec

__all__ = ["save_random_model", "tiny_config"]

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


def tiny_config(spec: ModelSpec | str) -> dict[str, Any]:
    """A full config dict shrunk to a tiny model with the same token layout.

    ``spec``: a :class:`ModelSpec` (its full config is shrunk) or a family name (the family's
    canonical ``model_type`` with transformers defaults, shrunk), using the family's
    ``tiny_vision`` / ``tiny_text`` changes (:mod:`ssl_attn.models.families`).
    """
    if isinstance(spec, str):
        fam = get_family(spec)
        cfg: dict[str, Any] = {"model_type": fam.model_type}
        if fam.nested:
            cfg.update(vision_config={}, text_config={})
    else:
        fam = get_family(spec.family)
        cfg = spec.config_dict()
    if fam.tiny_vision is None:
        raise ValueError(f"no tiny configuration for family {fam.name!r}")
    top = copy.deepcopy(dict(fam.tiny_vision))
    if isinstance(cfg.get("vision_config"), dict):
        cfg["vision_config"].update(top)
        if fam.tiny_text is not None and isinstance(cfg.get("text_config"), dict):
            cfg["text_config"].update(copy.deepcopy(dict(fam.tiny_text)))
        if "projection_dim" in cfg:
            cfg["projection_dim"] = top.get("projection_dim", cfg["projection_dim"])
    else:
        cfg.update(top)
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
    fam = get_family(spec.family)
    if not fam.is_vit:
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
    cls = getattr(transformers, fam.classes(cfg["model_type"])[1])
    model = cls(config)
    fix_mae_init(model)
    if size == "tiny":
        _sharpen_attention(model)
    model.save_pretrained(folder)
    return folder
