"""Grad-CAM (Selvaraju et al. 2017) for CNN stages.

For a target score ``y`` and a layer's activations ``A`` (B, C, h, w):
``alpha_c = mean_{i,j} dy/dA_c(i, j)`` and ``cam = ReLU(sum_c alpha_c A_c)`` (B, h, w).
No per-map normalisation is applied: maps are stored raw so that magnitudes stay comparable
across stages and images; metrics that need a scale normalise themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional

__all__ = ["grad_cam", "top1_logit"]


def top1_logit(logits: torch.Tensor) -> torch.Tensor:
    """Per-image top-1 logit (B,) of ``logits`` (B, K): a class-agnostic Grad-CAM target."""
    return logits.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1)


def grad_cam(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    layers: Sequence[torch.nn.Module],
    target: Callable[[torch.Tensor], torch.Tensor] = top1_logit,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Grad-CAM maps of ``layers`` for ``target(model(inputs))``.

    Args:
        model: the network; run as is (put it in eval mode first).
        inputs: (B, C, H, W) input batch.
        layers: modules whose outputs (B, C_l, h_l, w_l) are explained.
        target: maps the model output to one score per image (B,); default :func:`top1_logit`.
            Images are independent in eval mode, so the scores are summed for one backward.
        out_size: ``(h, w)`` to upsample every map to (bilinear, ``align_corners=False``);
            default: the first layer's size (all layers must then share it).

    Returns:
        float32 tensor (B, len(layers), h, w), detached, non-negative.
    """
    acts: list[torch.Tensor | None] = [None] * len(layers)

    def keeper(i: int) -> Callable[..., None]:
        def hook(_m: torch.nn.Module, _a: object, out: torch.Tensor) -> None:
            acts[i] = out

        return hook

    handles = [layer.register_forward_hook(keeper(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode(False), torch.enable_grad():
            # a fresh leaf that requires grad keeps every activation in the graph even when the
            # parameters are frozen (and turns an inference tensor into a normal one)
            x = inputs.detach().clone().requires_grad_(True)
            score = target(model(x))
            if score.ndim != 1 or score.shape[0] != x.shape[0]:
                raise ValueError(
                    f"target must return one score per image, got shape {tuple(score.shape)}"
                )
            if any(a is None for a in acts):
                raise RuntimeError("a Grad-CAM layer did not run in the forward pass")
            grads = torch.autograd.grad(score.sum(), acts)  # type: ignore[arg-type]
    finally:
        for h in handles:
            h.remove()

    size = out_size or tuple(acts[0].shape[-2:])  # type: ignore[union-attr]
    maps = []
    for act, grad in zip(acts, grads):
        a = act.detach().to(torch.float32)  # type: ignore[union-attr]
        g = grad.detach().to(torch.float32)
        alpha = g.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((alpha * a).sum(dim=1, keepdim=True))  # (B, 1, h, w)
        if tuple(cam.shape[-2:]) != tuple(size):
            cam = functional.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        maps.append(cam[:, 0])
    return torch.stack(maps, dim=1)
