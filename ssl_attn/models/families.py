"""Model families: one adapter entry per family, the one place that knows how families differ.

Import-light on purpose (no torch, no transformers at import time): classes are named by
string and resolved on use; the forward-input builders import torch inside.

Every branch on a model family elsewhere in the package is a lookup here
(:func:`get_family`). A new family is one :class:`Family` entry in :data:`FAMILY_TABLE`
(see README, "Add a model").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "CLS_DEFAULT",
    "CLS_METHODS",
    "FAMILIES",
    "FAMILY_TABLE",
    "HEAD_INPUTS",
    "METHODS",
    "SIGLIP_METHODS",
    "Family",
    "family_for_model_type",
    "get_family",
    "mae_inputs",
    "naflex_inputs",
    "pixel_inputs",
]

#: Every attention method name (keys of :func:`ssl_attn.attention.extract_maps`'s result).
METHODS = ("cls", "register_mass", "cls_self", "rollout", "mean_received", "probe", "gradcam")

CLS_METHODS = ("cls", "register_mass", "cls_self", "rollout", "mean_received")
CLS_DEFAULT = ("cls", "register_mass", "cls_self", "rollout")
SIGLIP_METHODS = ("mean_received", "probe")

#: What a fine-tuning head may read (:attr:`Family.head_input`).
HEAD_INPUTS = ("cls", "pooled", "gap")


# ---------------------------------------------------------------------------------------------
# forward inputs (torch imported inside: this module stays import-light)
# ---------------------------------------------------------------------------------------------


def pixel_inputs(pv: Any, patch: int) -> dict[str, Any]:
    """The plain call: ``{"pixel_values": pv}`` with ``pv`` (B, 3, H, W)."""
    return {"pixel_values": pv}


def mae_inputs(pv: Any, patch: int) -> dict[str, Any]:
    """ViT-MAE encoder inputs that keep every patch in raster order: ``noise = arange(N)``.

    With ``mask_ratio = 0`` (set at load, :attr:`Family.load_config`) the argsort of this noise
    is the identity, so no patch is dropped or shuffled; :func:`check_mae_output` verifies it.
    """
    import torch

    b, _, h, w = pv.shape
    n = (h // patch) * (w // patch)
    noise = torch.arange(n, device=pv.device, dtype=torch.float32).expand(b, n)
    return {"pixel_values": pv, "noise": noise}


def check_mae_output(out: Any) -> None:
    """Raise RuntimeError unless the MAE forward kept every patch, in raster order."""
    import torch

    b, n = out.ids_restore.shape
    expected = torch.arange(n, device=out.ids_restore.device).expand(b, n)
    if out.mask.any() or not torch.equal(out.ids_restore, expected):
        raise RuntimeError(
            "MAE patches were masked or shuffled (mask_ratio must be 0 and noise "
            "arange(N)); load the model through ssl_attn.models.load_model"
        )


def naflex_inputs(pv: Any, patch: int) -> dict[str, Any]:
    """Siglip2VisionModel (NaFlex) inputs for full images: patches in raster order, all valid.

    ``pixel_values`` (B, N, p·p·C) in the processor's layout, ``pixel_attention_mask`` (B, N)
    all ones, ``spatial_shapes`` (B, 2) = ``(gh, gw)``.
    """
    import torch

    b, c, h, w = pv.shape
    gh, gw = h // patch, w // patch
    # (B, C, gh, p, gw, p) -> (B, gh, gw, p, p, C) -> (B, N, p*p*C): the processor's layout
    patches = pv.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 3, 5, 1)
    patches = patches.reshape(b, gh * gw, patch * patch * c)
    mask = torch.ones(b, gh * gw, dtype=torch.long, device=pv.device)
    shapes = torch.tensor([[gh, gw]] * b, dtype=torch.long, device=pv.device)
    return {"pixel_values": patches, "pixel_attention_mask": mask, "spatial_shapes": shapes}


# ---------------------------------------------------------------------------------------------
# the adapter entry
# ---------------------------------------------------------------------------------------------


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return None if mapping is None else MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Family:
    """How one model family is loaded, called and read. Plain values and two small callables.

    Attributes:
        name: family name (:attr:`ModelSpec.family <ssl_attn.models.ModelSpec>`).
        backend: ``"transformers"`` (a ViT with per-layer attention) or ``"torchvision"``
            (a CNN explained by Grad-CAM).
        model_types: config ``model_type`` → ``(class loaded, class the hub checkpoint is saved
            as)``, transformers class names. Loaded is the vision tower; saved is what
            :func:`~ssl_attn.models.testing.save_random_model` writes (e.g. ``CLIPModel``,
            ``ViTMAEForPreTraining``), as the hub checkpoints are.
        accepts: families whose checkpoints a spec of this family may load (itself, and for
            SigLIP both SigLIP variants).
        has_cls: token 0 is a CLS token.
        registers: the config's ``num_register_tokens`` sits between CLS and the patches.
        methods, default_methods: attention methods offered / computed by default.
        inputs: ``inputs(pixel_values (B, 3, H, W), patch) -> forward kwargs``
            (:func:`pixel_inputs`, :func:`mae_inputs`, :func:`naflex_inputs`).
        check_output: called on the forward's output; raises if it is not usable.
        interpolate_pos_encoding: pass ``interpolate_pos_encoding=True`` (learned position
            grids resized to the input; identical to the plain call at the native size).
        load_config: config values forced at load (MAE: ``mask_ratio = 0``).
        post_norm: name of the model attribute applied to ``last_hidden_state`` to get the
            final-normed patch embeddings; ``None`` where ``last_hidden_state`` is already
            normed (CLIP normalises only its pooled CLS, so it is ``"post_layernorm"``).
        native_size: default input side when the config's ``image_size`` is a position grid,
            not the processor's input (DINOv2: 518 grid, 224 input); ``None``: ``image_size``.
        stages: CNN stages Grad-CAM explains, in layer order (``layer`` coords 1..4).
        grid_stride, size_multiple: CNN map grid = input / ``grid_stride``; input sides must
            be multiples of ``size_multiple``. ``None`` for ViTs (both are the patch size).
        facts: extra JSON facts written to the store group attrs.
        tiny_vision, tiny_text: changes that shrink a full config to a tiny test model (vision
            or top-level config; text tower), keeping the token layout (patch, CLS, registers,
            biases, activations, RoPE). ``None``: no tiny variant (the CNN is built full-size).
        nested: the config holds ``vision_config`` / ``text_config`` (dual-encoder checkpoints).
        lora_targets: module-name suffixes for LoRA (PEFT ``target_modules`` style: a module
            matches when its name is ``target`` or ends with ``"." + target``): for ViTs every
            ``nn.Linear`` of the encoder's self-attention (query, key, value, output), for the
            CNN every ``nn.Conv2d`` of the bottleneck blocks (``conv1`` also matches the stem).
        lora_rank, lora_alpha, lora_dropout: the LoRA defaults of the family (PEFT ``r``,
            ``lora_alpha``, ``lora_dropout``; the update is scaled by ``alpha / rank``);
            a :class:`~ssl_attn.finetune.config.FineTuningConfig` may override each.
        head_input: what the fine-tuning head (one ``nn.Linear``) reads, shape (B, D):
            ``"cls"``: token 0 of ``last_hidden_state`` after :attr:`post_norm` (where set;
            e.g. CLIP's ``post_layernorm``); ``"pooled"``: ``pooler_output``, the output of
            SigLIP / SigLIP 2's attention-pooling head; ``"gap"``: the CNN's global-average-
            pooled last-stage features (ResNet: the input of ``fc``, which the head replaces).
    """

    name: str
    backend: str
    model_types: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    accepts: tuple[str, ...] = ()
    has_cls: bool = True
    registers: bool = False
    methods: tuple[str, ...] = CLS_METHODS
    default_methods: tuple[str, ...] = CLS_DEFAULT
    inputs: Callable[[Any, int], dict[str, Any]] = pixel_inputs
    check_output: Callable[[Any], None] | None = None
    interpolate_pos_encoding: bool = False
    load_config: Mapping[str, Any] = field(default_factory=dict)
    post_norm: str | None = None
    native_size: int | None = None
    stages: tuple[str, ...] = ()
    grid_stride: int | None = None
    size_multiple: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    tiny_vision: Mapping[str, Any] | None = None
    tiny_text: Mapping[str, Any] | None = None
    nested: bool = False
    lora_targets: tuple[str, ...] = ()
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    head_input: str = "cls"

    def __post_init__(self) -> None:
        if self.backend not in ("transformers", "torchvision"):
            raise ValueError(f"family {self.name!r}: unknown backend {self.backend!r}")
        if self.head_input not in HEAD_INPUTS:
            raise ValueError(f"family {self.name!r}: head_input {self.head_input!r} is not one "
                             f"of {HEAD_INPUTS}")  # fmt: skip
        if self.head_input == "cls" and not self.has_cls:
            raise ValueError(f"family {self.name!r}: head_input 'cls' needs a CLS token")
        if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ValueError(f"family {self.name!r}: LoRA needs rank >= 1, alpha > 0 and "
                             f"0 <= dropout < 1")  # fmt: skip
        unknown = [m for m in (*self.methods, *self.default_methods) if m not in METHODS]
        if unknown:
            raise ValueError(f"family {self.name!r}: unknown methods {unknown}")
        for name in ("model_types", "load_config", "facts", "tiny_vision", "tiny_text"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if not self.accepts:
            object.__setattr__(self, "accepts", (self.name,))

    @property
    def is_vit(self) -> bool:
        """True for transformer families (per-layer attention), False for the CNN."""
        return self.backend == "transformers"

    @property
    def model_type(self) -> str:
        """The family's first (canonical) config ``model_type``."""
        return next(iter(self.model_types))

    def classes(self, model_type: str) -> tuple[str, str]:
        """``(class loaded, class saved)`` for a config ``model_type`` of this family."""
        return self.model_types[model_type]


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")

_SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
}
_TINY_TEXT = {**_SMALL, "vocab_size": 128, "max_position_embeddings": 16}
_QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
# CLIP/SigLIP: "out_proj" alone would also match the SigLIP pooling head's MultiheadAttention
# out_proj (used functionally by torch, so LoRA there would be silently bypassed).
_QKV_SELF_OUT = ("q_proj", "k_proj", "v_proj", "self_attn.out_proj")

FAMILY_TABLE: Mapping[str, Family] = MappingProxyType({
    f.name: f
    for f in (
        Family(
            name="dinov2",
            backend="transformers",
            model_types={
                "dinov2_with_registers": (
                    "Dinov2WithRegistersModel", "Dinov2WithRegistersModel"),
                "dinov2": ("Dinov2Model", "Dinov2Model"),
            },
            registers=True,
            native_size=224,
            tiny_vision={"hidden_size": 32, "mlp_ratio": 2, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "image_size": 56},
            lora_targets=_QKVO,
            head_input="cls",
        ),
        Family(
            name="dinov3",
            backend="transformers",
            model_types={"dinov3_vit": ("DINOv3ViTModel", "DINOv3ViTModel")},
            registers=True,
            tiny_vision={**_SMALL, "image_size": 64},
            lora_targets=_QKVO,
            head_input="cls",
        ),
        Family(
            name="mae",
            backend="transformers",
            model_types={"vit_mae": ("ViTMAEModel", "ViTMAEForPreTraining")},
            inputs=mae_inputs,
            check_output=check_mae_output,
            interpolate_pos_encoding=True,
            load_config={"mask_ratio": 0.0},
            facts={"mae_masking": "mask_ratio=0, noise=arange(N): all patches, raster order"},
            tiny_vision={**_SMALL, "image_size": 64, "decoder_hidden_size": 32,
                         "decoder_intermediate_size": 64, "decoder_num_hidden_layers": 1,
                         "decoder_num_attention_heads": 2},
            lora_targets=_QKVO,
            head_input="cls",
        ),
        Family(
            name="clip",
            backend="transformers",
            model_types={
                "clip": ("CLIPVisionModel", "CLIPModel"),
                "clip_vision_model": ("CLIPVisionModel", "CLIPVisionModel"),
            },
            interpolate_pos_encoding=True,
            post_norm="post_layernorm",
            tiny_vision={**_SMALL, "image_size": 64, "projection_dim": 16},
            tiny_text={**_TINY_TEXT, "projection_dim": 16},
            nested=True,
            lora_targets=_QKV_SELF_OUT,
            head_input="cls",
        ),
        Family(
            name="siglip",
            backend="transformers",
            model_types={
                "siglip": ("SiglipVisionModel", "SiglipModel"),
                "siglip_vision_model": ("SiglipVisionModel", "SiglipVisionModel"),
            },
            accepts=("siglip", "siglip2"),
            has_cls=False,
            methods=SIGLIP_METHODS,
            default_methods=SIGLIP_METHODS,
            interpolate_pos_encoding=True,
            tiny_vision={**_SMALL, "image_size": 64},
            tiny_text={**_TINY_TEXT, "projection_size": 32},
            nested=True,
            lora_targets=_QKV_SELF_OUT,
            head_input="pooled",
        ),
        Family(
            name="siglip2",
            backend="transformers",
            model_types={
                "siglip2": ("Siglip2VisionModel", "Siglip2Model"),
                "siglip2_vision_model": ("Siglip2VisionModel", "Siglip2VisionModel"),
            },
            accepts=("siglip", "siglip2"),
            has_cls=False,
            methods=SIGLIP_METHODS,
            default_methods=SIGLIP_METHODS,
            inputs=naflex_inputs,
            tiny_vision={**_SMALL, "num_patches": 16},
            tiny_text={**_TINY_TEXT, "projection_size": 32},
            nested=True,
            lora_targets=_QKV_SELF_OUT,
            head_input="pooled",
        ),
        Family(
            # plain ViT (transformers ViTModel): the demo model, trained from scratch
            name="vit",
            backend="transformers",
            model_types={"vit": ("ViTModel", "ViTModel")},
            # learned position grid for config image_size; other input sizes interpolate it
            # (bicubic); identical to the plain call at the native size
            interpolate_pos_encoding=True,
            # post_norm None: ViTModel's last_hidden_state is already its final layernorm's
            # output (its pooler, dense + tanh on CLS, is not used here)
            tiny_vision={**_SMALL, "image_size": 64},
            lora_targets=_QKVO,
        ),
        Family(
            name="resnet",
            backend="torchvision",
            has_cls=False,
            methods=("gradcam",),
            default_methods=("gradcam",),
            stages=_RESNET_STAGES,
            # layer1's grid (input / 4); sides multiples of 32 so layer4 (input / 32) tiles
            grid_stride=4,
            size_multiple=32,
            facts={
                "gradcam_target": "top1_logit",
                "gradcam_layers": list(_RESNET_STAGES),
                "gradcam_normalisation": "none (raw ReLU(sum_c alpha_c A_c))",
            },
            lora_targets=("conv1", "conv2", "conv3"),
            head_input="gap",
        ),
    )
})

#: Model families this package knows how to load and read attention from.
FAMILIES = tuple(FAMILY_TABLE)

_BY_MODEL_TYPE = {t: f for f in FAMILY_TABLE.values() for t in f.model_types}


def get_family(name: str) -> Family:
    """The :class:`Family` entry called ``name`` (one of :data:`FAMILIES`)."""
    try:
        return FAMILY_TABLE[name]
    except KeyError:
        raise ValueError(f"family {name!r} is not one of {FAMILIES}") from None


def family_for_model_type(model_type: str) -> tuple[str, str]:
    """``(family, transformers class name loaded)`` for a config ``model_type``."""
    try:
        fam = _BY_MODEL_TYPE[model_type]
    except KeyError:
        raise ValueError(
            f"config model_type {model_type!r} is not supported; supported: "
            f"{', '.join(sorted(_BY_MODEL_TYPE))}"
        ) from None
    return fam.name, fam.classes(model_type)[0]
