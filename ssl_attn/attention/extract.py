"""One batched forward pass -> every requested attention map, as float32 numpy arrays."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ssl_attn.attention.gradcam import grad_cam
from ssl_attn.attention.methods import (
    AttentionMethod,
    ClsAttention,
    MeanReceived,
    ProbeAttention,
    Rollout,
    TokenLayout,
)
from ssl_attn.models.families import get_family
from ssl_attn.models.loading import LoadedModel
from ssl_attn.models.registry import grid_shape

__all__ = ["EagerAttentionError", "attention_modules", "bare_forward", "extract_maps"]


class EagerAttentionError(RuntimeError):
    """The model returned no per-head attention weights (not the eager implementation)."""


def _eager_message(loaded: LoadedModel, detail: str) -> str:
    impl = getattr(getattr(loaded.model, "config", None), "_attn_implementation", None)
    return (
        f"model {loaded.spec.key!r}: {detail}. Its attention implementation is {impl!r}; "
        "per-head attention maps need attn_implementation='eager' (sdpa and flash kernels return "
        "no weights). Load it with ssl_attn.models.load_model(..., attn_implementation='eager'), "
        "the default."
    )


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The self-attention modules of a transformers vision model, in layer order.

    Found by the class the model declares for recording attentions
    (``_can_record_outputs["attentions"]``).
    """
    rec = getattr(type(model), "_can_record_outputs", None) or {}
    target = rec.get("attentions")
    target = getattr(target, "target_class", target)
    if not isinstance(target, type):
        raise TypeError(f"{type(model).__name__} declares no attention module class to hook")
    return [m for m in model.modules() if isinstance(m, target)]


@contextlib.contextmanager
def _hooks(handles: list[Any]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _resolve_methods(loaded: LoadedModel, methods: Sequence[str] | None) -> list[str]:
    spec = loaded.spec
    if methods is None:
        return list(spec.default_methods)
    if isinstance(methods, str):
        methods = [methods]
    bad = [m for m in methods if m not in spec.methods]
    if bad:
        raise ValueError(
            f"model {spec.key!r} (family {spec.family}) does not support methods {bad}; "
            f"it supports {list(spec.methods)}"
        )
    return list(dict.fromkeys(methods))


def _resolve_layers(layers: Sequence[int] | None, n_layers: int, key: str) -> list[int]:
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int):
        layers = [layers]
    out = sorted({int(x) for x in layers})
    bad = [x for x in out if not 0 <= x < n_layers]
    if bad or not out:
        raise ValueError(
            f"model {key!r}: layers {list(layers)} must be 0-based indices in [0, {n_layers - 1}]"
        )
    return out


def _final_patch_tokens(loaded: LoadedModel, out: Any, layout: TokenLayout) -> np.ndarray:
    """(B, gh, gw, C) float16 final-layer patch tokens after the model's final norm."""
    hidden = out.last_hidden_state
    post_norm = get_family(loaded.spec.family).post_norm
    if post_norm is not None:
        # e.g. CLIPVisionModel applies post_layernorm to the pooled CLS only: apply it to all
        hidden = getattr(loaded.model, post_norm)(hidden)
    patches = hidden[:, layout.n_prefix :]
    b, _, c = patches.shape
    return patches.reshape(b, *layout.grid, c).to(torch.float16).cpu().numpy()


def extract_maps(
    loaded: LoadedModel,
    pixel_values: torch.Tensor,
    *,
    layers: Sequence[int] | None = None,
    methods: Sequence[str] | None = None,
    embeddings: bool = False,
) -> dict[str, np.ndarray]:
    """All requested attention maps of one batch, from a single forward pass.

    Args:
        loaded: a model from :func:`ssl_attn.models.load_model` (eager attention).
        pixel_values: (B, 3, H, W) from :meth:`LoadedModel.preprocess`; H, W multiples of the
            patch size (32 for ResNet-50).
        layers: 0-based layer indices to return (default all). Rollout is always chained from
            layer 0. For ResNet-50 the indices 0..3 select stages layer1..layer4.
        methods: subset of ``loaded.spec.methods``; default ``loaded.spec.default_methods``.
        embeddings: also return the final-layer patch tokens (after the final norm).

    Returns:
        float32 arrays (``embedding`` float16), only for the methods asked:

        - ``cls`` (B, L, H, gh, gw), ``register_mass`` (B, L, H), ``cls_self`` (B, L, H)
        - ``rollout`` (B, L, gh, gw)
        - ``mean_received`` (B, L, H, gh, gw)
        - ``probe`` (B, H, gh, gw)  (SigLIP pooling head)
        - ``gradcam`` (B, L, gh, gw)  (ResNet-50, L = 4 stages on layer1's grid)
        - ``embedding`` (B, gh, gw, C)

        ``L`` is ``len(layers)``; ``H`` heads; ``(gh, gw)`` the patch grid.

    Raises:
        EagerAttentionError: the model does not return attention weights for every layer.
        ValueError: unsupported method, bad layer index, or input size off the patch grid.
    """
    spec = loaded.spec
    chosen = _resolve_methods(loaded, methods)
    hw = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
    grid = grid_shape(spec, hw)

    if not get_family(spec.family).is_vit:
        return _extract_gradcam(loaded, pixel_values, layers, grid, chosen, embeddings)

    keep = _resolve_layers(layers, spec.n_layers, spec.key)
    impl = getattr(loaded.model.config, "_attn_implementation", None)
    if impl != "eager":
        raise EagerAttentionError(_eager_message(loaded, "it cannot return attention weights"))
    layout = TokenLayout(n_prefix=spec.n_prefix_tokens, has_cls=spec.has_cls, grid=grid)

    per_layer: list[AttentionMethod] = []
    if {"cls", "register_mass", "cls_self"} & set(chosen):
        per_layer.append(ClsAttention(layout, keep))
    if "rollout" in chosen:
        per_layer.append(Rollout(layout, keep))
    if "mean_received" in chosen:
        per_layer.append(MeanReceived(layout, keep))
    probe = ProbeAttention(layout) if "probe" in chosen else None

    modules = attention_modules(loaded.model)
    if len(modules) != spec.n_layers:
        raise EagerAttentionError(
            _eager_message(
                loaded, f"found {len(modules)} attention modules for {spec.n_layers} layers"
            )
        )
    seen: list[int] = []

    def layer_hook(index: int) -> Any:
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if not isinstance(weights, torch.Tensor):
                return  # counted as missing below
            seen.append(index)
            for method in per_layer:
                method.update(index, weights)

        return hook

    handles = [m.register_forward_hook(layer_hook(i)) for i, m in enumerate(modules)]
    if probe is not None:
        handles += _probe_hooks(loaded, probe)

    with _hooks(handles), torch.inference_mode():
        out = loaded.forward(pixel_values)
        embedding = _final_patch_tokens(loaded, out, layout) if embeddings else None

    if seen != list(range(spec.n_layers)):
        raise EagerAttentionError(
            _eager_message(
                loaded,
                f"attention weights came back from {len(seen)} of {spec.n_layers} layers",
            )
        )
    result: dict[str, np.ndarray] = {}
    for method in per_layer:
        result.update({k: v for k, v in method.result().items() if k in chosen})
    if probe is not None:
        result.update(probe.result())
    if embedding is not None:
        result["embedding"] = embedding
    return result


def _probe_hooks(loaded: LoadedModel, probe: ProbeAttention) -> list[Any]:
    """Hooks on the SigLIP pooling head's MultiheadAttention that capture per-head weights."""
    head = getattr(loaded.model, "head", None)
    mha = getattr(head, "attention", None)
    if not isinstance(mha, torch.nn.MultiheadAttention):
        raise ValueError(
            f"model {loaded.spec.key!r} has no attention-pooling head "
            "(config vision_use_head=False?): the 'probe' method is not available"
        )

    def pre(_m: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        # force per-head weights: need_weights=True, average_attn_weights=False
        kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
        return args, kwargs

    def post(_m: torch.nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        probe.update(output[1])  # (B, heads, 1, N)

    return [
        mha.register_forward_pre_hook(pre, with_kwargs=True),
        mha.register_forward_hook(post, with_kwargs=True),
    ]


def _extract_gradcam(
    loaded: LoadedModel,
    pixel_values: torch.Tensor,
    layers: Sequence[int] | None,
    grid: tuple[int, int],
    chosen: list[str],
    embeddings: bool,
) -> dict[str, np.ndarray]:
    if embeddings:
        raise ValueError(f"model {loaded.spec.key!r}: embeddings are only offered for ViTs")
    names = get_family(loaded.spec.family).stages
    keep = _resolve_layers(layers, len(names), loaded.spec.key)
    stages = [getattr(loaded.model, names[i]) for i in keep]
    pv = pixel_values.to(device=loaded.device, dtype=loaded.dtype)
    maps = grad_cam(loaded.model, pv, stages, out_size=grid)
    return {"gradcam": maps.cpu().numpy()} if "gradcam" in chosen else {}


def bare_forward(loaded: LoadedModel, pixel_values: torch.Tensor) -> Any:
    """The model's plain forward (no hooks, no attention capture) under ``inference_mode``.

    For speed benchmarks: compare an eager model against its sdpa twin,
    ``load_model(key, attn_implementation="sdpa")``.
    """
    with torch.inference_mode():
        return loaded.forward(pixel_values)
