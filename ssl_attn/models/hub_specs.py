"""Specs for other hub checkpoints, read from their ``config.json``; token layouts of loaded models.

Import-light like :mod:`ssl_attn.models.registry` (huggingface_hub only when a hub id is read).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ssl_attn.models.families import family_for_model_type, get_family
from ssl_attn.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

__all__ = [
    "family_for_model_type",
    "spec_from_config_dict",
    "spec_from_hub_config",
    "spec_with_config",
]


_PIL_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _vision_part(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg.get("vision_config", cfg) if isinstance(cfg.get("vision_config"), dict) else cfg


def spec_from_config_dict(
    cfg: dict[str, Any],
    checkpoint: str,
    key: str | None = None,
    processor: dict[str, Any] | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` from a parsed ``config.json`` (and ``preprocessor_config.json``).

    ``key`` defaults to the last path component of ``checkpoint``. Normalisation and
    resampling come from ``processor`` where given, else ImageNet values / bicubic (stated in
    ``notes``).
    """
    model_type = cfg.get("model_type", "")
    family, cls_name = family_for_model_type(model_type)
    fam = get_family(family)
    v = _vision_part(cfg)
    patch = v.get("patch_size", 16)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    n_reg = int(v.get("num_register_tokens", 0) or 0) if fam.registers else 0
    notes = [f"spec read from the config of {checkpoint}"]
    mean, std, resample = IMAGENET_MEAN, IMAGENET_STD, "bicubic"
    if processor:
        mean = tuple(float(x) for x in processor.get("image_mean", mean))
        std = tuple(float(x) for x in processor.get("image_std", std))
        resample = _PIL_RESAMPLE_NAMES.get(int(processor.get("resample", 3)), "bicubic")
    else:
        notes.append("no preprocessor_config.json: ImageNet mean/std and bicubic assumed")
    hidden = int(v.get("hidden_size", 768))
    return ModelSpec(
        key=key or checkpoint.rstrip("/").split("/")[-1],
        checkpoint=checkpoint,
        family=family,
        model_class=cls_name,
        patch_size=patch,
        n_registers=n_reg,
        has_cls=fam.has_cls,
        n_layers=int(v.get("num_hidden_layers", 12)),
        n_heads=int(v.get("num_attention_heads", 12)),
        hidden_size=hidden,
        image_size=fam.native_size or int(v.get("image_size", 224) or 224),
        image_mean=mean,  # type: ignore[arg-type]
        image_std=std,  # type: ignore[arg-type]
        resample=resample,
        methods=fam.methods,
        default_methods=fam.default_methods,
        config_overrides=cfg,
        gated=False,
        notes="; ".join(notes),
    )


def spec_from_hub_config(
    checkpoint: str,
    key: str | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> ModelSpec:
    """Build a :class:`ModelSpec` for any supported HF vision checkpoint by reading its config.

    ``checkpoint`` is a hub id or a local folder holding ``config.json`` (and optionally
    ``preprocessor_config.json``). The spec is returned, not registered: pass it to
    :func:`register_model` or straight to :func:`~ssl_attn.models.load_model`.
    """
    folder = Path(checkpoint)
    if folder.is_dir():
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{folder}: no config.json (write one with save_pretrained)")
        proc_path = folder / "preprocessor_config.json"
    else:
        from huggingface_hub import hf_hub_download  # lazy: only for hub ids

        from ssl_attn.models.errors import hub_errors

        with hub_errors(checkpoint):
            cfg_path = Path(
                hf_hub_download(checkpoint, "config.json", revision=revision, token=token)
            )
        try:
            proc_path = Path(
                hf_hub_download(
                    checkpoint, "preprocessor_config.json", revision=revision, token=token
                )
            )
        except Exception:  # a checkpoint without a processor file is fine
            proc_path = Path("/nonexistent")
    cfg = json.loads(cfg_path.read_text())
    processor = json.loads(proc_path.read_text()) if proc_path.is_file() else None
    return spec_from_config_dict(cfg, checkpoint, key=key, processor=processor)


def spec_with_config(spec: ModelSpec, cfg: dict[str, Any]) -> ModelSpec:
    """``spec`` with its architecture fields replaced by those of a loaded ``config.json``.

    Used when a model comes from a folder whose architecture differs from the registry's
    (a tiny test model): the token layout always follows the weights actually loaded.
    """
    if not spec.is_vit:
        return spec
    v = _vision_part(cfg)
    patch = v.get("patch_size", spec.patch_size)
    patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)
    registers = get_family(spec.family).registers
    n_reg = int(v.get("num_register_tokens", 0) or 0) if registers else 0
    return replace(
        spec,
        patch_size=patch,
        n_registers=n_reg,
        n_layers=int(v.get("num_hidden_layers", spec.n_layers)),
        n_heads=int(v.get("num_attention_heads", spec.n_heads)),
        hidden_size=int(v.get("hidden_size", spec.hidden_size)),
        config_overrides=cfg,
    )
