"""Attention methods: one small class per method on a shared base.

Each method receives every layer's attention as it is computed (a forward hook on the layer's
attention module delivers a ``(B, H, N, N)`` tensor in the model's dtype) and reduces it at
once, so the full matrices of all layers are never stacked in memory. Reductions run in
float32 whatever the model dtype.

Token layout: ``N = P + gh * gw`` tokens, ``P`` prefix tokens (CLS first, then registers)
followed by the patch tokens in raster order (row-major over the ``gh x gw`` grid).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "AttentionMethod",
    "ClsAttention",
    "MeanReceived",
    "ProbeAttention",
    "Rollout",
    "TokenLayout",
    "attention_rollout",
    "rollout_step",
]


@dataclass(frozen=True)
class TokenLayout:
    """Where the patches are in a token sequence.

    Attributes:
        n_prefix: tokens before the patches (CLS + registers; 0 for SigLIP).
        has_cls: whether token 0 is a CLS token.
        grid: patch grid ``(gh, gw)``.
    """

    n_prefix: int
    has_cls: bool
    grid: tuple[int, int]

    @property
    def n_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def n_tokens(self) -> int:
        return self.n_prefix + self.n_patches


class AttentionMethod:
    """Base: receives per-layer attention, keeps what it needs for the requested layers.

    Subclasses implement :meth:`update` and :meth:`result`. ``keep`` is the sorted list of
    0-based layer indices whose maps are returned.
    """

    #: result keys this method can produce
    names: tuple[str, ...] = ()

    def __init__(self, layout: TokenLayout, keep: Sequence[int]) -> None:
        self.layout = layout
        self.keep = list(keep)
        self._slot = {layer: i for i, layer in enumerate(self.keep)}

    def update(self, layer: int, attn: torch.Tensor) -> None:
        """Consume layer ``layer``'s attention ``attn`` (B, H, N, N), rows = queries."""
        raise NotImplementedError

    def result(self) -> dict[str, np.ndarray]:
        """The finished maps as float32 numpy arrays."""
        raise NotImplementedError

    def _check(self, attn: torch.Tensor) -> None:
        if attn.ndim != 4 or attn.shape[-1] != self.layout.n_tokens:
            raise ValueError(
                f"{type(self).__name__}: attention of shape {tuple(attn.shape)} does not fit "
                f"{self.layout.n_prefix} prefix + {self.layout.grid} patch tokens"
            )

    def _patch_map(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N) token values -> (..., gh, gw) patch map."""
        return x[..., self.layout.n_prefix :].reshape(*x.shape[:-1], *self.layout.grid)


def _stack(parts: Iterable[torch.Tensor], dim: int = 1) -> np.ndarray:
    return torch.stack(list(parts), dim=dim).to(torch.float32).cpu().numpy()


class ClsAttention(AttentionMethod):
    """CLS -> patch attention, plus CLS mass on registers and on itself.

    Per kept layer, from the softmax row of the CLS query (row 0):

    - ``cls`` (B, L, H, gh, gw): attention to each patch.
    - ``register_mass`` (B, L, H): summed attention to the register tokens (0 without registers).
    - ``cls_self`` (B, L, H): attention of CLS to itself.

    ``cls.sum((-2, -1)) + register_mass + cls_self == 1`` per head (softmax rows sum to 1).
    """

    names = ("cls", "register_mass", "cls_self")

    def __init__(self, layout: TokenLayout, keep: Sequence[int]) -> None:
        if not layout.has_cls:
            raise ValueError("CLS attention needs a model with a CLS token")
        super().__init__(layout, keep)
        self._rows: dict[int, torch.Tensor] = {}

    def update(self, layer: int, attn: torch.Tensor) -> None:
        self._check(attn)
        if layer in self._slot:
            # index the CLS row before upcasting: (B, H, N), float32
            self._rows[layer] = attn[:, :, 0, :].to(torch.float32)

    def result(self) -> dict[str, np.ndarray]:
        rows = [self._rows[layer] for layer in self.keep]
        p = self.layout.n_prefix
        return {
            "cls": _stack(self._patch_map(r) for r in rows),
            "register_mass": _stack(r[..., 1:p].sum(-1) for r in rows),
            "cls_self": _stack(r[..., 0] for r in rows),
        }


class MeanReceived(AttentionMethod):
    """Mean attention each patch receives from all N query tokens.

    ``mean_received`` (B, L, H, gh, gw) = ``attn.mean(over queries)`` at the patch columns.
    """

    names = ("mean_received",)

    def __init__(self, layout: TokenLayout, keep: Sequence[int]) -> None:
        super().__init__(layout, keep)
        self._maps: dict[int, torch.Tensor] = {}

    def update(self, layer: int, attn: torch.Tensor) -> None:
        self._check(attn)
        if layer in self._slot:
            self._maps[layer] = self._patch_map(attn.mean(dim=2, dtype=torch.float32))

    def result(self) -> dict[str, np.ndarray]:
        return {"mean_received": _stack(self._maps[layer] for layer in self.keep)}


def rollout_step(rolled: torch.Tensor | None, attn: torch.Tensor) -> torch.Tensor:
    """One step of attention rollout (Abnar & Zuidema 2020).

    Args:
        rolled: rollout up to the previous layer, (B, N, N) float32, or ``None`` before layer 0.
        attn: this layer's attention (B, H, N, N).

    Returns:
        ``Â @ rolled`` with ``Â = rownorm(mean_heads(attn) + I)``: (B, N, N) float32, rows sum to 1.
    """
    fused = attn.mean(dim=1, dtype=torch.float32)
    fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    fused = fused / fused.sum(dim=-1, keepdim=True)
    return fused if rolled is None else fused @ rolled


def attention_rollout(attentions: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """Rollout chained from layer 0 for a sequence of (B, H, N, N) attentions.

    Returns one (B, N, N) float32 matrix per layer: the rollout up to and including it.
    """
    out: list[torch.Tensor] = []
    rolled = None
    for attn in attentions:
        rolled = rollout_step(rolled, attn)
        out.append(rolled)
    return out


class Rollout(AttentionMethod):
    """Attention rollout, always chained from layer 0; CLS row at the patch columns.

    ``rollout`` (B, L, gh, gw): row 0 of the rolled matrix up to and including each kept layer.
    Every layer must be seen in order (0, 1, ...).
    """

    names = ("rollout",)

    def __init__(self, layout: TokenLayout, keep: Sequence[int]) -> None:
        if not layout.has_cls:
            raise ValueError("rollout is read at the CLS row and needs a model with a CLS token")
        super().__init__(layout, keep)
        self._rolled: torch.Tensor | None = None
        self._next = 0
        self._maps: dict[int, torch.Tensor] = {}

    def update(self, layer: int, attn: torch.Tensor) -> None:
        self._check(attn)
        if layer != self._next:
            raise RuntimeError(f"rollout expected layer {self._next}, got layer {layer}")
        self._rolled = rollout_step(self._rolled, attn)
        self._next += 1
        if layer in self._slot:
            self._maps[layer] = self._patch_map(self._rolled[:, 0, :])

    def result(self) -> dict[str, np.ndarray]:
        return {"rollout": _stack(self._maps[layer] for layer in self.keep)}


class ProbeAttention:
    """SigLIP pooling-head probe attention.

    Fed the head's ``nn.MultiheadAttention`` weights per head, (B, H, 1, N) (one query: the
    learned probe; keys: the N patch tokens). ``probe`` (B, H, gh, gw).
    """

    names = ("probe",)

    def __init__(self, layout: TokenLayout) -> None:
        self.layout = layout
        self._map: torch.Tensor | None = None

    def update(self, weights: torch.Tensor) -> None:
        """Consume the probe weights (B, H, 1, N) (or (B, H, N))."""
        w = weights.to(torch.float32)
        if w.ndim == 4:
            w = w[:, :, 0, :]
        if w.shape[-1] != self.layout.n_tokens:
            raise ValueError(
                f"probe attention of shape {tuple(weights.shape)} does not fit the grid"
            )
        self._map = w[..., self.layout.n_prefix :].reshape(*w.shape[:-1], *self.layout.grid)

    def result(self) -> dict[str, np.ndarray]:
        if self._map is None:
            raise RuntimeError("the pooling head did not run: no probe attention was captured")
        return {"probe": self._map.cpu().numpy()}
