"""A registered model as a classifier to fine-tune: backbone + one linear head.

:class:`FineTunableModel` loads the backbone through :func:`ssl_attn.models.load_model` (the
same weights extraction uses) and adds an ``nn.Linear`` head on the family's head input
(:attr:`ssl_attn.models.families.Family.head_input`): the CLS token after the family's final
norm, the SigLIP attention-pooling output, or a CNN's global-average-pooled features (ResNet's
``fc`` is replaced by the head). :meth:`FineTunableModel.setup` then applies one of the three
strategies:

- ``linear_probe``: every backbone tensor frozen (``requires_grad`` False) and the backbone
  kept in eval mode, so nothing in it changes, BatchNorm statistics included;
- ``lora``: LoRA adapters through peft (``LoraConfig`` + ``get_peft_model``) on the family's
  target modules with its rank, alpha and dropout (each may be overridden); only the adapters
  and the head train, and BatchNorm layers stay in eval mode (their statistics are not
  adapter tensors);
- ``full``: every weight trains (except a ``mask_token``: used only by masked-image
  pre-training, never in this forward, and left frozen so that data-parallel training meets no
  unused parameter).

Transformer backbones are loaded with ``attn_implementation="sdpa"`` for training where every
class of the family supports it (else eager); the weights are the same, and
:func:`ssl_attn.finetune.checkpoint.load_finetuned` loads them eager for extraction.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ssl_attn.finetune.config import STRATEGIES
from ssl_attn.models import get_family, get_spec
from ssl_attn.models.families import Family

__all__ = ["FineTunableModel", "state_digest", "training_attn_implementation"]

#: Parameter names (substrings) that get no weight decay besides biases and 1-d tensors
#: (norm weights): learned tokens and position embeddings.
_NO_DECAY_NAMES = ("cls_token", "register_tokens", "mask_token", "position_embedding",
                   "pos_embed", "class_embedding", "probe")  # fmt: skip


def training_attn_implementation(family: Family) -> str:
    """``"sdpa"`` when every transformers class of ``family`` supports it, else ``"eager"``
    (also for the CNN, where it is unused)."""
    if not family.is_vit:
        return "eager"
    import transformers

    classes = [getattr(transformers, loaded, None) for loaded, _ in family.model_types.values()]
    ok = all(c is not None and getattr(c, "_supports_sdpa", False) for c in classes)
    return "sdpa" if ok else "eager"


def state_digest(module: nn.Module) -> str:
    """sha256 hex of a module's state dict: every tensor's name, dtype, shape and bytes, in
    sorted name order. Identical weights give identical digests on any machine."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}\n".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


class FineTunableModel(nn.Module):
    """Backbone of a registered model + a linear head, for one fine-tuning strategy.

    Args:
        model_name: registry key (``ssl_attn.models.list_models()``).
        weights_dir, random_init, seed, revision, token: as
            :func:`ssl_attn.models.load_model` (``seed`` seeds ``random_init``).
        size: default input side (int or ``(H, W)``) for :meth:`preprocess`; default native.

    Attributes:
        spec: the loaded :class:`~ssl_attn.models.ModelSpec` (architecture from the weights).
        loaded: the :class:`~ssl_attn.models.LoadedModel` (its ``model`` is the backbone's
            base model; with LoRA the adapters sit inside it).
        backbone: the backbone module (the peft ``PeftModel`` wrapping ``loaded.model`` after
            ``setup("lora")``; ``loaded.model`` otherwise). ResNet's ``fc`` is ``nn.Identity``.
        head: ``nn.Linear(feature_dim, num_classes)`` (float32) after :meth:`setup`, else None.
        feature_dim: D, the width of the head input.
        strategy, num_classes: set by :meth:`setup` (None before).
        lora: ``{"rank", "alpha", "dropout", "targets"}`` after ``setup("lora")``, else None.
        base_digest: :func:`state_digest` of the base weights as loaded (before anything
            trains; recorded in the manifest so a checkpoint is only applied to its base).
        init: how the base was loaded (``weights_dir``, ``random_init``, ``seed``,
            ``revision``, ``size``).
    """

    def __init__(
        self,
        model_name: str,
        *,
        weights_dir: Any = None,
        random_init: bool = False,
        seed: int = 0,
        revision: str | None = None,
        token: str | bool | None = None,
        size: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        from ssl_attn.models import load_model

        spec = get_spec(model_name)
        family = get_family(spec.family)
        loaded = load_model(
            spec.key, weights_dir=weights_dir, random_init=random_init, seed=seed,
            revision=revision, token=token, size=size,
            attn_implementation=training_attn_implementation(family),
        )  # fmt: skip
        self.model_name = spec.key
        self.loaded = loaded
        self.spec = loaded.spec
        self.family = family
        self.init = {"weights_dir": None if weights_dir is None else str(weights_dir),
                     "random_init": bool(random_init), "seed": int(seed), "revision": revision,
                     "size": None if size is None else list(loaded.input_size)}  # fmt: skip
        self.base_digest = state_digest(loaded.model)
        model = loaded.model
        if family.head_input == "gap":
            fc = getattr(model, "fc", None)
            if not isinstance(fc, nn.Linear):
                raise ValueError(f"model {spec.key!r}: head_input 'gap' needs an nn.Linear 'fc' "
                                 f"to replace, found {type(fc).__name__}")  # fmt: skip
            self.feature_dim = int(fc.in_features)
            model.fc = nn.Identity()  # the backbone now returns the GAP features (B, D)
        else:
            vision = getattr(model.config, "vision_config", None) or model.config
            self.feature_dim = int(vision.hidden_size)
        self.backbone: nn.Module = model
        self.head: nn.Linear | None = None
        self.strategy: str | None = None
        self.num_classes: int | None = None
        self.lora: dict[str, Any] | None = None
        self.train(False)

    # -- setup ----------------------------------------------------------------------------------
    def setup(
        self,
        strategy: str,
        num_classes: int,
        *,
        lora_rank: int | None = None,
        lora_alpha: float | None = None,
        lora_dropout: float | None = None,
        seed: int = 0,
    ) -> None:
        """Add the head and apply ``strategy`` (once per model).

        Args:
            strategy: ``"linear_probe"``, ``"lora"`` or ``"full"``
                (:data:`~ssl_attn.finetune.config.STRATEGIES`).
            num_classes: C, the head's outputs (>= 2).
            lora_rank, lora_alpha, lora_dropout: LoRA settings; ``None`` takes the family's
                (:attr:`~ssl_attn.models.families.Family.lora_rank` ...). Only for ``"lora"``.
            seed: seeds the head's initialisation (truncated normal, std 0.02, zero bias) and
                the LoRA ``A`` matrices (``B`` starts at zero); the global RNG is untouched.
        """
        if self.strategy is not None:
            raise RuntimeError(f"FineTunableModel({self.model_name!r}) is already set up for "
                               f"{self.strategy!r}; build a new one for another strategy")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {STRATEGIES}")
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes = {num_classes!r}: need an integer >= 2")
        if strategy != "lora" and any(v is not None for v in (lora_rank, lora_alpha,
                                                             lora_dropout)):
            raise ValueError(f"lora_rank/lora_alpha/lora_dropout are for strategy 'lora', not "
                             f"{strategy!r}")  # fmt: skip
        gen = torch.Generator().manual_seed(int(seed))
        head = nn.Linear(self.feature_dim, int(num_classes))
        with torch.no_grad():
            nn.init.trunc_normal_(head.weight, std=0.02, a=-0.04, b=0.04, generator=gen)
            head.bias.zero_()
        param = next(self.loaded.model.parameters())
        self.head = head.to(device=param.device)
        if strategy == "linear_probe":
            self.backbone.requires_grad_(False)
        elif strategy == "lora":
            self._add_lora(lora_rank, lora_alpha, lora_dropout, int(seed))
        else:
            self.backbone.requires_grad_(True)
            for name, p in self.backbone.named_parameters():
                if name.rsplit(".", 1)[-1] == "mask_token":  # masked-image-modelling only
                    p.requires_grad_(False)
        self.strategy, self.num_classes = strategy, int(num_classes)
        self.train(self.training)

    def _add_lora(self, rank: int | None, alpha: float | None, dropout: float | None,
                  seed: int) -> None:  # fmt: skip
        from peft import LoraConfig, get_peft_model

        fam = self.family
        r = fam.lora_rank if rank is None else int(rank)
        a = fam.lora_alpha if alpha is None else float(alpha)
        d = fam.lora_dropout if dropout is None else float(dropout)
        if r < 1 or a <= 0 or not 0 <= d < 1:
            raise ValueError(f"LoRA rank={r}, alpha={a}, dropout={d}: need rank >= 1, "
                             "alpha > 0, 0 <= dropout < 1")  # fmt: skip
        if not fam.lora_targets:
            raise ValueError(f"family {fam.name!r} declares no lora_targets "
                             "(ssl_attn/models/families.py); use linear_probe or full")  # fmt: skip
        config = LoraConfig(r=r, lora_alpha=a, lora_dropout=d,
                            target_modules=list(fam.lora_targets), bias="none")  # fmt: skip
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # peft asks transformers a deprecated question about gradient checkpointing
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing",
                                    category=FutureWarning)  # fmt: skip
            torch.manual_seed(seed)
            self.backbone = get_peft_model(self.loaded.model, config)
        self.lora = {"rank": r, "alpha": a, "dropout": d, "targets": list(fam.lora_targets)}

    # -- modes ----------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> FineTunableModel:
        """Set training mode; the linear probe's backbone, and LoRA's BatchNorm layers, stay in
        eval mode (their statistics must not change)."""
        super().train(mode)
        if self.strategy in (None, "linear_probe"):
            self.backbone.eval()
        elif self.strategy == "lora":
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> FineTunableModel:
        # .to() / .cuda() / .half(): keep the LoadedModel's device and dtype in step, since its
        # forward moves the input to them.
        super()._apply(fn, recurse)
        param = next(self.loaded.model.parameters(), None)
        if param is not None:
            self.loaded.device, self.loaded.dtype = param.device, param.dtype
        return self

    # -- forward --------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[Any], size: int | Sequence[int] | None = None) -> Any:
        """:meth:`ssl_attn.models.LoadedModel.preprocess` of the base model: a ``Batch`` whose
        ``pixel_values`` are (B, 3, H, W) (full-image resize, no crop)."""
        return self.loaded.preprocess(images, size)

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The head input (B, D) for ``pixel_values`` (B, 3, H, W): the CLS token after the
        family's post norm, SigLIP's pooled output, or the CNN's GAP features."""
        frozen = self.strategy == "linear_probe" and not pixel_values.requires_grad
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            out = self.loaded.forward(pixel_values)
            how = self.family.head_input
            if how == "gap":
                return out
            if how == "pooled":
                pooled = getattr(out, "pooler_output", None)
                if pooled is None:
                    raise ValueError(f"model {self.model_name!r} returned no pooler_output "
                                     "(config vision_use_head=False?); its head needs the "
                                     "attention-pooling output")  # fmt: skip
                return pooled
            cls = out.last_hidden_state[:, 0]
            if self.family.post_norm is not None:
                cls = getattr(self.loaded.model, self.family.post_norm)(cls)
            return cls

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) for ``pixel_values`` (B, 3, H, W) (after :meth:`setup`)."""
        if self.head is None:
            raise RuntimeError("call setup(strategy, num_classes) before the forward pass")
        feats = self.features(pixel_values)
        return self.head(feats.to(self.head.weight.dtype))

    # -- optimisation -----------------------------------------------------------------------------
    def param_groups(self, lr_head: float, lr_backbone: float,
                     weight_decay: float) -> list[dict[str, Any]]:  # fmt: skip
        """AdamW parameter groups of the trainable parameters.

        Head and backbone get their own learning rate; biases, 1-d tensors (norm weights) and
        learned tokens / position embeddings get no weight decay. Each group carries a
        ``"name"`` (``head``, ``head_no_decay``, ``backbone``, ``backbone_no_decay``); empty
        groups are left out (the linear probe has no backbone group).
        """
        if self.head is None:
            raise RuntimeError("call setup(strategy, num_classes) before param_groups")
        groups: dict[str, list[nn.Parameter]] = {}
        for part, module in (("head", self.head), ("backbone", self.backbone)):
            for name, p in module.named_parameters():
                if not p.requires_grad:
                    continue
                plain = p.ndim <= 1 or name.endswith("bias") or any(
                    k in name for k in _NO_DECAY_NAMES)  # fmt: skip
                groups.setdefault(f"{part}_no_decay" if plain else part, []).append(p)
        lrs = {"head": lr_head, "backbone": lr_backbone}
        out = []
        for name in ("head", "head_no_decay", "backbone", "backbone_no_decay"):
            if groups.get(name):
                part = name.removesuffix("_no_decay")
                out.append({"name": name, "params": groups[name], "lr": float(lrs[part]),
                            "weight_decay": 0.0 if name.endswith("_no_decay")
                            else float(weight_decay)})  # fmt: skip
        return out

    # -- state ----------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """What training changes, by name (detached views of the live tensors: clone to keep).

        ``head.weight``, ``head.bias`` always; plus, for ``lora``, every adapter parameter
        (``backbone.…lora_A.default.weight`` ...); for ``full``, every backbone tensor
        (parameters and buffers, e.g. BatchNorm statistics). The linear probe: the head only.
        """
        if self.head is None:
            raise RuntimeError("call setup(strategy, num_classes) before trainable_state")
        state = {f"head.{k}": v.detach() for k, v in self.head.state_dict().items()}
        if self.strategy == "full":
            state.update({f"backbone.{k}": v.detach()
                          for k, v in self.backbone.state_dict().items()})  # fmt: skip
        elif self.strategy == "lora":
            state.update({f"backbone.{k}": p.detach()
                          for k, p in self.backbone.named_parameters() if p.requires_grad})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (keys and shapes exactly those of :meth:`trainable_state`) into the
        model; raises ValueError listing missing, unexpected or misshapen tensors."""
        own = self.trainable_state()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state)
                        if tuple(own[k].shape) != tuple(state[k].shape))  # fmt: skip
        if missing or unexpected or shapes:
            parts = [f"{len(v)} {what} (e.g. {', '.join(v[:3])})"
                     for what, v in (("missing", missing), ("unexpected", unexpected),
                                     ("of another shape", shapes)) if v]  # fmt: skip
            raise ValueError(f"state for {self.model_name!r} ({self.strategy}): "
                             + "; ".join(parts))  # fmt: skip
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)

    def extra_repr(self) -> str:
        return (f"model={self.model_name!r}, strategy={self.strategy!r}, "
                f"feature_dim={self.feature_dim}, num_classes={self.num_classes}")
