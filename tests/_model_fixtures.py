"""Helpers shared by tests/test_models.py and tests/test_attention.py.

Independent re-computations of attention (from a layer's input hidden states and the layer's
own layer norm and q/k weights), test images, and a tiny DINOv2-with-registers model whose
CLS attention is a known monotonic function of patch brightness.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def softmax_attention(
    x: torch.Tensor,
    norm: torch.nn.Module,
    q_proj: torch.nn.Linear,
    k_proj: torch.nn.Linear,
    n_heads: int,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √d) per head from a layer's input ``x`` (B, N, D): (B, heads, N, N)."""
    h = norm(x)
    b, n, d_model = h.shape
    d = d_model // n_heads
    q = q_proj(h).view(b, n, n_heads, d).transpose(1, 2)
    k = k_proj(h).view(b, n, n_heads, d).transpose(1, 2)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A random RGB image (uint8)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def bright_square_image(
    width: int, height: int, box: tuple[int, int, int, int]
) -> Image.Image:
    """Black image with a white rectangle ``box = (left, top, right, bottom)`` in pixels."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    left, top, right, bottom = box
    arr[top:bottom, left:right] = 255
    return Image.fromarray(arr)


def save_brightness_dinov2(folder: Path, alpha: float = 2.0) -> Path:
    """A 1-layer, 1-head DINOv2-with-registers (patch 14, 4 registers) saved to ``folder/dinov2``.

    Weights are set so that the CLS attention logit of a patch is
    ``alpha * √D * s / sqrt(s² + 1)``, ``s`` = mean normalised pixel value of the patch
    (monotonic in brightness), and 0 for CLS and registers:

    - patch embedding: every pixel weight of output channel d is ``u[d] / (3·14·14)``, bias ``v``
      (``u`` alternates ±1, ``v`` is ``(+,+,-,-)``: both zero-mean and orthogonal), position
      embeddings 0, so a patch token is ``s·u + v`` and its layer norm ``(s·u + v)/sqrt(s² + 1)``;
    - CLS token ``v``, registers 0; query = identity; key = ``alpha · v̂ ûᵀ``.
    """
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    d = 32
    cfg = Dinov2WithRegistersConfig(
        hidden_size=d, num_hidden_layers=1, num_attention_heads=1, mlp_ratio=2, patch_size=14,
        image_size=56, num_register_tokens=4, layer_norm_eps=1e-6, qkv_bias=True,
    )
    model = Dinov2WithRegistersModel(cfg).eval()
    u = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(d)])
    v = torch.tensor([1.0 if i % 4 in (0, 1) else -1.0 for i in range(d)])
    assert float(u @ v) == 0.0
    with torch.no_grad():
        emb = model.embeddings
        proj = emb.patch_embeddings.projection
        proj.weight.copy_(u[:, None, None, None].expand_as(proj.weight) / (3 * 14 * 14))
        proj.bias.copy_(v)
        emb.position_embeddings.zero_()
        emb.cls_token.copy_(v.view(1, 1, d))
        emb.register_tokens.zero_()
        layer = model.encoder.layer[0]
        layer.norm1.weight.fill_(1.0)
        layer.norm1.bias.zero_()
        att = layer.attention
        att.q_proj.weight.copy_(torch.eye(d))
        att.q_proj.bias.zero_()
        att.k_proj.weight.copy_(alpha * torch.outer(v / v.norm(), u / u.norm()))
        att.k_proj.bias.zero_()
    out = folder / "dinov2"
    model.save_pretrained(out)
    return out
