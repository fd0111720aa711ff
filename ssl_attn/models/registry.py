"""Model registry: one frozen :class:`ModelSpec` per model key, and the token layouts they imply.

Import-light on purpose (no torch, no transformers at import time): the CLI and the store can
list models and compute grids without loading a deep-learning stack.

Every architecture value of the six registered models is written out explicitly in
``config_overrides`` (the values the ViT-B/16 encoders share once, in :data:`VIT_B_CONFIG`;
specs are :func:`vit_b` plus per-model overrides) and equals the ``config.json`` of the hub
checkpoint (several transformers
config classes default to other sizes, e.g. ``CLIPVisionConfig`` to patch 32 and
``DINOv3ViTConfig`` to ViT-S). The values are used to build full-size random models
(:func:`ssl_attn.models.testing.save_random_model`) and are checked against hard-coded copies of
the checkpoints' configs in ``tests/test_models.py``. A model loaded from the hub or a folder
always takes its architecture from the checkpoint's own ``config.json``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ssl_attn.models.families import CLS_DEFAULT, CLS_METHODS, FAMILIES, METHODS, get_family

__all__ = [
    "FAMILIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METHODS",
    "VIT_B_CONFIG",
    "ModelSpec",
    "get_spec",
    "grid_shape",
    "list_models",
    "register_model",
    "vit_b",
]


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelSpec:
    """Everything the package needs to know about one model, as plain values.

    Attributes:
        key: registry key, e.g. ``"dinov2"``; also the folder name under ``--weights-dir``.
        checkpoint: hub id (``"facebook/dinov2-with-registers-base"``) or, for torchvision,
            ``"torchvision/resnet50"``.
        family: one of :data:`FAMILIES`.
        model_class: the class that is loaded (transformers class name, or ``"resnet50"``).
            For SigLIP the class is decided from the checkpoint's ``model_type`` at load time
            (``SiglipVisionModel`` for ``"siglip"``, ``Siglip2VisionModel`` for ``"siglip2"``);
            this field records the class the registered checkpoint names.
        patch_size: ViT patch side in pixels; ``None`` for the CNN.
        n_registers: register tokens between CLS and the patches.
        has_cls: whether token 0 is a CLS token.
        n_layers, n_heads, hidden_size: transformer depth, heads per layer, width
            (for ResNet-50: 4 stages, 0 heads, 2048 final channels).
        image_size: default (native) input side in pixels, H = W; 224 for all six models.
        image_mean, image_std: per-channel normalisation applied after scaling pixels to [0, 1].
        resample: PIL resampling filter name of the model's own processor
            (``"bicubic"`` or ``"bilinear"``).
        methods: every attention method this model supports.
        default_methods: the methods :func:`~ssl_attn.attention.extract_maps` computes when
            none are asked for.
        config_overrides: the full, explicit architecture (transformers ``config.json`` values;
            for ResNet-50 the torchvision constructor and weights enum).
        gated: whether the hub checkpoint needs an accepted licence and a token.
        notes: free text (provenance of the values, caveats).
    """

    key: str
    checkpoint: str
    family: str
    model_class: str
    patch_size: int | None
    n_registers: int
    has_cls: bool
    n_layers: int
    n_heads: int
    hidden_size: int
    image_size: int = 224
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bicubic"
    methods: tuple[str, ...] = CLS_METHODS
    default_methods: tuple[str, ...] = CLS_DEFAULT
    config_overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    gated: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"ModelSpec {self.key!r}: family {self.family!r} is not one of {FAMILIES}"
            )
        unknown = [m for m in (*self.methods, *self.default_methods) if m not in METHODS]
        if unknown:
            raise ValueError(f"ModelSpec {self.key!r}: unknown methods {unknown}; known: {METHODS}")
        missing = [m for m in self.default_methods if m not in self.methods]
        if missing:
            raise ValueError(
                f"ModelSpec {self.key!r}: default_methods {missing} are not in methods"
            )
        if self.resample not in ("bicubic", "bilinear", "nearest", "lanczos"):
            raise ValueError(f"ModelSpec {self.key!r}: unknown resample {self.resample!r}")
        # Frozen dataclass: store a private deep copy so no caller can mutate the registry.
        object.__setattr__(self, "config_overrides", copy.deepcopy(dict(self.config_overrides)))

    @property
    def n_prefix_tokens(self) -> int:
        """Tokens before the patch tokens: CLS (if any) plus registers."""
        return int(self.has_cls) + self.n_registers

    @property
    def is_vit(self) -> bool:
        """True for the transformer families, False for the CNN."""
        return get_family(self.family).is_vit

    def config_dict(self) -> dict[str, Any]:
        """A deep copy of :attr:`config_overrides`, safe to modify."""
        return copy.deepcopy(dict(self.config_overrides))


# ---------------------------------------------------------------------------------------------
# The six models of DESIGN.md §1. Values are those of each checkpoint's config.json.
# ---------------------------------------------------------------------------------------------

#: The ViT-B/16 encoder every registered transformer shares (config.json keys); each spec below
#: spells out every value that differs or that this base does not hold.
VIT_B_CONFIG: Mapping[str, Any] = MappingProxyType({
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
})


def vit_b(key: str, checkpoint: str, family: str, **overrides: Any) -> ModelSpec:
    """A :class:`ModelSpec` on the shared ViT-B base (12 layers, 12 heads, 768 wide, 224 px,
    patch 16, ImageNet normalisation, bicubic), with the family's token facts and methods.

    ``model_class`` defaults to the family's class for ``config_overrides["model_type"]``;
    ``has_cls``, ``methods`` and ``default_methods`` to the family's; every other field to the
    ViT-B value. ``overrides`` are any :class:`ModelSpec` fields.
    """
    fam = get_family(family)
    model_type = overrides.get("config_overrides", {}).get("model_type", fam.model_type)
    fields: dict[str, Any] = {
        "key": key,
        "checkpoint": checkpoint,
        "family": family,
        "model_class": fam.classes(model_type)[0],
        "patch_size": 16,
        "n_registers": 0,
        "has_cls": fam.has_cls,
        "n_layers": 12,
        "n_heads": 12,
        "hidden_size": 768,
        "image_size": 224,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "resample": "bicubic",
        "methods": fam.methods,
        "default_methods": fam.default_methods,
    }
    fields.update(overrides)
    return ModelSpec(**fields)


_DINOV2 = vit_b(
    "dinov2",
    "facebook/dinov2-with-registers-base",
    "dinov2",
    patch_size=14,
    n_registers=4,
    resample="bicubic",  # BitImageProcessor, resample=3
    config_overrides={
        **VIT_B_CONFIG,
        "model_type": "dinov2_with_registers",
        "mlp_ratio": 4,  # intermediate size 3072; this config has no intermediate_size
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "image_size": 518,  # position-embedding grid 37x37; the processor feeds 224
        "patch_size": 14,
        "qkv_bias": True,
        "layerscale_value": 1.0,
        "drop_path_rate": 0.0,
        "use_swiglu_ffn": False,
        "num_register_tokens": 4,
        # in config.json; this transformers version always interpolates with antialias, offset 0
        "interpolate_antialias": True,
        "interpolate_offset": 0.0,
    },
    notes=(
        "Position embeddings are learned for 518 px (37x37) and interpolated (bicubic) to the "
        "input grid; the hub processor resizes the short side to 256 and centre-crops 224, which "
        "this package replaces by a full-image resize to 224 (no crop)."
    ),
)

_DINOV3 = vit_b(
    "dinov3",
    "facebook/dinov3-vitb16-pretrain-lvd1689m",
    "dinov3",
    n_registers=4,
    resample="bilinear",  # DINOv3ViTImageProcessorFast, resample=2, 224x224, no crop
    config_overrides={
        **VIT_B_CONFIG,
        "model_type": "dinov3_vit",
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "rope_theta": 100.0,
        "query_bias": True,
        "key_bias": False,
        "value_bias": True,
        "proj_bias": True,
        "mlp_bias": True,
        "layerscale_value": 1.0,
        "drop_path_rate": 0.0,
        "use_gated_mlp": False,
        "num_register_tokens": 4,
        "pos_embed_shift": None,
        "pos_embed_jitter": None,
        "pos_embed_rescale": 2.0,
    },
    gated=True,
    notes=(
        "RoPE positions (2-D, theta 100) on patch tokens only; any input size that is a multiple "
        "of 16 works natively. Gated on the hub: accept the DINOv3 licence and set HF_TOKEN."
    ),
)

_MAE = vit_b(
    "mae",
    "facebook/vit-mae-base",
    "mae",
    resample="bicubic",  # ViTImageProcessor of vit-mae-base, resample=3, 224x224
    config_overrides={
        **VIT_B_CONFIG,
        "model_type": "vit_mae",
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "qkv_bias": True,
        "decoder_num_attention_heads": 16,
        "decoder_hidden_size": 512,
        "decoder_num_hidden_layers": 8,
        "decoder_intermediate_size": 2048,
        "mask_ratio": 0.75,
        "norm_pix_loss": False,
    },
    notes=(
        "A pre-training checkpoint (ViTMAEForPreTraining, encoder + decoder, mask ratio 0.75). "
        "The encoder is loaded with mask_ratio=0 and run with noise=arange(N) so every patch is "
        "kept in raster order."
    ),
)

_CLIP = vit_b(
    "clip",
    "openai/clip-vit-base-patch16",
    "clip",
    image_mean=CLIP_MEAN,
    image_std=CLIP_STD,
    resample="bicubic",  # CLIPImageProcessor, resample=3
    config_overrides={
        "model_type": "clip",
        "projection_dim": 512,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "clip_text_model",
            "vocab_size": 49408,
            "hidden_size": 512,
            "intermediate_size": 2048,
            "projection_dim": 512,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "initializer_factor": 1.0,
        },
        "vision_config": {
            **VIT_B_CONFIG,
            "model_type": "clip_vision_model",
            "intermediate_size": 3072,
            "projection_dim": 512,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "initializer_factor": 1.0,
        },
    },
    notes=(
        "A full CLIP checkpoint (text and vision towers); only CLIPVisionModel is loaded. The hub "
        "processor resizes the short side to 224 and centre-crops; replaced by a full resize."
    ),
)

_SIGLIP2 = vit_b(
    "siglip2",
    "google/siglip2-base-patch16-224",
    "siglip",
    image_mean=HALF,
    image_std=HALF,
    resample="bilinear",  # SiglipImageProcessor, resample=2, 224x224, no crop
    config_overrides={
        "model_type": "siglip",
        "initializer_factor": 1.0,
        "text_config": {
            "model_type": "siglip_text_model",
            "vocab_size": 256000,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "max_position_embeddings": 64,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
            "projection_size": 768,
        },
        "vision_config": {
            **VIT_B_CONFIG,
            "model_type": "siglip_vision_model",
            "intermediate_size": 3072,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
            "vision_use_head": True,
        },
    },
    notes=(
        "The FixRes SigLIP 2 checkpoint: its config.json says model_type 'siglip', so it is a "
        "SiglipModel and the vision tower is SiglipVisionModel (fixed 224 px; other sizes use "
        "interpolate_pos_encoding). No CLS token: maps are the pooling head's probe attention and "
        "the mean attention each patch receives."
    ),
)

_RESNET50 = ModelSpec(
    key="resnet50",
    checkpoint="torchvision/resnet50",
    family="resnet",
    model_class="resnet50",
    patch_size=None,
    n_registers=0,
    has_cls=False,
    n_layers=4,
    n_heads=0,
    hidden_size=2048,
    image_size=224,
    image_mean=IMAGENET_MEAN,
    image_std=IMAGENET_STD,
    resample="bilinear",  # torchvision ImageClassification preset for these weights
    methods=("gradcam",),
    default_methods=("gradcam",),
    config_overrides={
        "arch": "resnet50",
        "num_classes": 1000,
        "weights": "IMAGENET1K_V2",  # acc@1 80.858; file resnet50-11ad3fa6.pth
    },
    notes=(
        "Supervised baseline; torchvision ResNet50_Weights.IMAGENET1K_V2. Grad-CAM per stage "
        "(layer1..layer4) of the top-1 logit, all stages on layer1's grid (input/4)."
    ),
)

# ---------------------------------------------------------------------------------------------
# The demo model: not one of the six, no hub checkpoint.
# ---------------------------------------------------------------------------------------------

#: Input side of the demo model (px): its native size and position grid (7 x 7 patches of 16).
DEMO_SIZE = 112

_DEMO_VIT = ModelSpec(
    key="demo_vit",
    checkpoint="ssl-attn/demo-vit",
    family="vit",
    model_class="ViTModel",
    patch_size=16,
    n_registers=0,
    has_cls=True,
    n_layers=6,
    n_heads=6,
    hidden_size=384,
    image_size=DEMO_SIZE,
    image_mean=HALF,
    image_std=HALF,
    resample="bilinear",
    config_overrides={
        "model_type": "vit",
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "image_size": DEMO_SIZE,
        "patch_size": 16,
        "num_channels": 3,
        "qkv_bias": True,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-6,
        "encoder_stride": 16,
        "pooler_act": "tanh",
    },
    notes=(
        "The demo model (ViT 6 layers x 6 heads x 384 wide, patch 16, CLS, 112 px): it has no "
        "hub checkpoint. It is built with random weights (load_model(..., random_init=True)) "
        "and trained from scratch on the synthetic style pool by `ssl-attn demo`; "
        "'ssl-attn/demo-vit' is a name, not a hub id. ViTModel's pooler (dense + tanh on CLS) "
        "is built but not used."
    ),
)

_REGISTRY: dict[str, ModelSpec] = {
    s.key: s for s in (_DINOV2, _DINOV3, _MAE, _CLIP, _SIGLIP2, _RESNET50, _DEMO_VIT)
}


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    """Add ``spec`` to the registry under ``spec.key`` and return it.

    Raises:
        KeyError: the key is taken and ``overwrite`` is False.
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register_model needs a ModelSpec, got {type(spec).__name__}")
    if spec.key in _REGISTRY and not overwrite:
        raise KeyError(
            f"model key {spec.key!r} is already registered; pass overwrite=True to replace it"
        )
    _REGISTRY[spec.key] = spec
    return spec


def get_spec(key: str) -> ModelSpec:
    """The registered :class:`ModelSpec` for ``key`` (e.g. ``"dinov2"``)."""
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(
            f"unknown model key {key!r}; registered: {', '.join(sorted(_REGISTRY))}. "
            "Register others with ssl_attn.models.register_model(spec_from_hub_config(id))."
        ) from None


def list_models() -> list[str]:
    """Registered model keys, in registration order."""
    return list(_REGISTRY)


def grid_shape(spec: ModelSpec, input_hw: int | tuple[int, int]) -> tuple[int, int]:
    """The map grid ``(gh, gw)`` for an input of ``input_hw`` pixels (int side or ``(H, W)``).

    ViTs: ``(H // patch, W // patch)``; sides must be multiples of the patch size.
    ResNet-50: layer1's grid, ``(H // 4, W // 4)``; sides must be multiples of 32.
    """
    if isinstance(input_hw, int):
        h, w = input_hw, input_hw
    else:
        h, w = int(input_hw[0]), int(input_hw[1])
    fam = get_family(spec.family)
    step = spec.patch_size if fam.is_vit else fam.size_multiple
    if h <= 0 or w <= 0 or h % step or w % step:
        raise ValueError(
            f"input size {(h, w)} for model {spec.key!r}: both sides must be positive multiples "
            f"of {step} (the {'patch size' if fam.is_vit else 'ResNet stride'})"
        )
    if fam.is_vit:
        return h // spec.patch_size, w // spec.patch_size
    return h // fam.grid_stride, w // fam.grid_stride
