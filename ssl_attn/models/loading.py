"""Load a registered model for attention extraction: hub id, local folder, or random weights.

Transformer models are always built with ``attn_implementation="eager"`` (per-head attention
weights are only returned by the eager kernel) and put in ``.eval()`` mode. Half precision
(bf16/fp16) is allowed: the eager kernels compute softmax in the model dtype, and the attention
methods (:mod:`ssl_attn.attention`) upcast every captured attention tensor to float32 before any
reduction, so sums, means and rollout products are accumulated in float32.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ssl_attn.models.errors import (
    GatedModelError,
    ModelLoadError,
    WeightsUnavailableError,
    hub_errors,
)
from ssl_attn.models.families import family_for_model_type, get_family
from ssl_attn.models.hub_specs import spec_with_config
from ssl_attn.models.preprocess import RESIZE_NOTE, Batch, input_hw, preprocess_images
from ssl_attn.models.registry import ModelSpec, get_spec, grid_shape

__all__ = [
    "GatedModelError",
    "LoadedModel",
    "ModelLoadError",
    "WeightsUnavailableError",
    "build_hf_config",
    "fix_mae_init",
    "hub_errors",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


# ---------------------------------------------------------------------------------------------
# small resolvers
# ---------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` picks cuda > mps > cpu; anything else is passed to :class:`torch.device`."""
    if isinstance(device, torch.device):
        return device
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device {device!r} is not a torch device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r}: CUDA is not available on this machine; use "
                             "cpu or auto")  # fmt: skip
    if dev.type == "mps" and not mps_ok:
        raise ModelLoadError(f"device {device!r}: MPS is not available on this machine; use "
                             "cpu or auto")  # fmt: skip
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``None`` means float32; accepts torch dtypes and ``"bf16"``, ``"fp16"``, ``"float32"``..."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype {dtype} is not supported; use float32, bfloat16 or float16")
        return dtype
    try:
        return _DTYPES[str(dtype).lower().removeprefix("torch.")]
    except KeyError:
        raise ValueError(
            f"dtype {dtype!r} is not supported; use one of {sorted(_DTYPES)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------


def build_hf_config(cfg: dict[str, Any], attn_implementation: str | None = None) -> Any:
    """A transformers config object from a full ``config.json``-style dict (deep-copied)."""
    import transformers

    cfg = json.loads(json.dumps(cfg))  # deep copy, and proves it is plain JSON
    model_type = cfg.pop("model_type")
    config = transformers.AutoConfig.for_model(model_type, **cfg)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def read_config(path: Path, key: str) -> dict[str, Any]:
    """A model folder's ``config.json`` as a dict; every failure names the file.

    Raises :class:`WeightsUnavailableError` when it cannot be read and :class:`ModelLoadError`
    when it is not a JSON object.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"model {key!r}: {path} is not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start}); write it with save_pretrained") from None  # fmt: skip
    except OSError as exc:
        raise WeightsUnavailableError(
            f"model {key!r}: cannot read {path} ({exc.strerror or exc})"
        ) from exc
    try:
        cfg = json.loads(text)
    except ValueError as exc:
        raise ModelLoadError(f"model {key!r}: {path} is not valid JSON ({exc}); write it with "
                             "save_pretrained") from None  # fmt: skip
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"model {key!r}: {path} holds a JSON {type(cfg).__name__}, not a "
                             "config object")  # fmt: skip
    return cfg


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (never torch's weights_only advice)."""
    text = str(exc)
    if "weights_only" in text or "Weights only load failed" in text:
        return ("it holds Python objects besides tensors, which are never unpickled "
                "(torch.load with weights_only=True)")  # fmt: skip
    if "ignore_mismatched_sizes" in text or "size mismatch" in text:
        return "the tensor shapes differ from those its config.json describes"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


_WEIGHT_FILES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".h5", ".msgpack")


@contextlib.contextmanager
def _weights_errors(key: str, source: str, local: bool) -> Iterator[None]:
    """Turn any failure of ``from_pretrained(source)`` into one :class:`ModelLoadError` line
    naming the folder and its weight files (hub errors are already translated inside)."""
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as exc:
        if not local:
            raise ModelLoadError(
                f"model {key!r}: loading {source} failed: {_first_line(exc)}"
            ) from exc
        folder = Path(source)
        files = sorted(p.name for p in folder.iterdir() if p.suffix in _WEIGHT_FILES)
        if not files:
            raise ModelLoadError(
                f"model {key!r}: {folder} has config.json but no weights file (model.safetensors"
                " or pytorch_model.bin); write the folder with save_pretrained"
            ) from exc
        shown = ", ".join(str(folder / name) for name in files[:3])
        raise ModelLoadError(
            f"model {key!r}: cannot load the weights in {shown}: {_first_line(exc)} (a truncated "
            "or corrupt file, or weights of another model size)"
        ) from exc


def _vision_config(config: Any) -> Any:
    return getattr(config, "vision_config", None) or config


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    # transformers prints a load report (as a warning) listing the text tower / MAE decoder
    # weights a vision-only model does not use. We check missing weights ourselves.
    from transformers.utils import logging as tf_logging

    level = tf_logging.get_verbosity()
    tf_logging.set_verbosity_error()
    try:
        yield
    finally:
        tf_logging.set_verbosity(level)


# ---------------------------------------------------------------------------------------------
# LoadedModel
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready for attention extraction.

    Attributes:
        spec: the spec, with architecture fields taken from the weights actually loaded.
        model: the ``torch.nn.Module`` (eval mode, on ``device``, in ``dtype``).
        device: torch device.
        dtype: parameter dtype (float32, bfloat16 or float16).
        weights: ``"pretrained:<id>@<revision>"``, ``"local:<path>"`` or ``"random-init"``.
        attn_implementation: ``"eager"`` (maps) or ``"sdpa"`` (bare speed only); ``None`` for
            the CNN.
        input_size: default input ``(H, W)`` for :meth:`preprocess`.
        revision: resolved revision (commit hash where known) or ``None``.
    """

    spec: ModelSpec
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    weights: str
    attn_implementation: str | None = "eager"
    input_size: tuple[int, int] = (224, 224)
    revision: str | None = None

    # -- input ----------------------------------------------------------------------------------
    def preprocess(
        self, images: Sequence[Image.Image], size: int | Sequence[int] | None = None
    ) -> Batch:
        """Resize full images (no crop) and normalise them: ``Batch.pixel_values`` (B, 3, H, W).

        ``size`` (int or ``(H, W)``, multiples of the patch size) defaults to
        :attr:`input_size`.
        """
        arr, transforms = preprocess_images(self.spec, images, size or self.input_size)
        pv = torch.from_numpy(arr).to(device=self.device, dtype=self.dtype)
        return Batch(pixel_values=pv, transforms=transforms)

    def grid(self, size: int | Sequence[int] | None = None) -> tuple[int, int]:
        """Map grid ``(gh, gw)`` for input ``size`` (default :attr:`input_size`)."""
        return grid_shape(self.spec, input_hw(self.spec, size or self.input_size))

    # -- forward --------------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """Run the model on ``pixel_values`` (B, 3, H, W) with the family's required arguments.

        MAE gets ``noise = arange(N)`` (with ``mask_ratio = 0`` every patch is kept, in raster
        order; checked on the returned ``ids_restore``); MAE, CLIP and SigLIP get
        ``interpolate_pos_encoding=True`` (identical to the plain call at the native size);
        SigLIP 2 NaFlex models get their patch sequence, mask and spatial shapes.
        Gradients follow the caller's grad mode.
        """
        pv = pixel_values.to(device=self.device, dtype=self.dtype)
        fam = get_family(self.spec.family)
        if not fam.is_vit:
            return self.model(pv)
        grid_shape(self.spec, tuple(pv.shape[-2:]))  # checks the sides against the patch size
        if fam.interpolate_pos_encoding:
            kwargs.setdefault("interpolate_pos_encoding", True)
        out = self.model(**fam.inputs(pv, self.spec.patch_size), **kwargs)
        if fam.check_output is not None:
            fam.check_output(out)
        return out

    # -- facts ----------------------------------------------------------------------------------
    def facts(self, size: int | Sequence[int] | None = None) -> dict[str, Any]:
        """Plain JSON-able model facts for store attrs (see docs/SCHEMA.md, group attrs)."""
        hw = input_hw(self.spec, size or self.input_size)
        s = self.spec
        facts: dict[str, Any] = {
            "model_key": s.key,
            "checkpoint": s.checkpoint,
            "revision": self.revision or "",
            "family": s.family,
            "model_class": type(self.model).__name__,
            "patch_size": int(s.patch_size or 0),
            "n_prefix_tokens": s.n_prefix_tokens,
            "n_registers": s.n_registers,
            "has_cls": s.has_cls,
            "n_layers": s.n_layers,
            "n_heads": s.n_heads,
            "hidden_size": s.hidden_size,
            "grid": list(grid_shape(s, hw)),
            "input_size": list(hw),
            "preprocessing": {
                "decode": "the full image, decoded at the largest JPEG draft / Image.reduce "
                          "factor that keeps both sides >= max(input_size) "
                          "(WikiChurches.load_image(max_side=...)), then resized",
                "resize": RESIZE_NOTE,
                "input_size": list(hw),
                "interpolation": s.resample,
                "rescale": "1/255",
                "mean": [float(x) for x in s.image_mean],
                "std": [float(x) for x in s.image_std],
            },
            "weights": self.weights,
            "methods": list(s.methods),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "attn_implementation": self.attn_implementation or "",
            "attention_precision": "captured in model dtype, upcast to float32 before reduction",
        }
        facts.update(json.loads(json.dumps(dict(get_family(s.family).facts))))  # a deep copy
        return facts


# ---------------------------------------------------------------------------------------------
# load_model
# ---------------------------------------------------------------------------------------------


def load_model(
    key_or_spec: str | ModelSpec,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    token: str | bool | None = None,
    size: int | Sequence[int] | None = None,
    attn_implementation: str = "eager",
    random_init: bool = False,
    seed: int = 0,
) -> LoadedModel:
    """Load a model by registry key (or spec), ready for :func:`ssl_attn.attention.extract_maps`.

    Args:
        key_or_spec: registry key (``"dinov2"``...) or a :class:`ModelSpec`.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``, ``"auto"`` (cuda > mps > cpu) or a device.
        dtype: ``None``/``"float32"`` (default), ``"bf16"`` or ``"fp16"`` (meant for GPUs;
            captured attention is upcast to float32).
        revision: hub revision (branch, tag or commit) for hub loads.
        weights_dir: load from ``weights_dir/<key>/`` instead of the hub: a ``save_pretrained``
            folder (``config.json`` + weights), or for ``resnet50`` one torchvision state-dict
            file ``*.pth`` / ``*.pt`` / ``*.safetensors``.
        token: hub token (default: ``HF_TOKEN`` / the cached login); needed for gated DINOv3.
        size: default input size for :meth:`LoadedModel.preprocess` (int or ``(H, W)``);
            default the spec's native 224.
        attn_implementation: ``"eager"`` (default; required for maps) or ``"sdpa"`` (a bare
            twin for speed benchmarks; :func:`~ssl_attn.attention.extract_maps` refuses it).
        random_init: build the registry architecture with random weights (seeded) instead of
            loading any.
        seed: seed for ``random_init``.

    Raises:
        GatedModelError: gated checkpoint without access (accept the licence, set HF_TOKEN).
        WeightsUnavailableError: not cached and offline / unreachable, or the folder is missing.
        ModelLoadError: the weights do not fit the model (missing tensors, wrong family).
    """
    spec = get_spec(key_or_spec) if isinstance(key_or_spec, str) else key_or_spec
    if attn_implementation not in ("eager", "sdpa"):
        raise ValueError(
            f"attn_implementation must be 'eager' or 'sdpa', got {attn_implementation!r}"
        )
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    hw = input_hw(spec, size)
    if not get_family(spec.family).is_vit:
        model, weights, rev = _load_resnet(spec, weights_dir, random_init, seed)
        attn = None
    else:
        model, spec, weights, rev = _load_hf(
            spec, weights_dir, revision, token, attn_implementation, random_init, seed
        )
        attn = model.config._attn_implementation
        if attn != attn_implementation:
            raise ModelLoadError(
                f"model {spec.key!r}: asked for attn_implementation={attn_implementation!r} but "
                f"the model uses {attn!r}"
            )
    model = model.to(device=dev, dtype=dt).eval()
    return LoadedModel(
        spec=spec,
        model=model,
        device=dev,
        dtype=dt,
        weights=weights,
        attn_implementation=attn,
        input_size=hw,
        revision=rev,
    )


def _load_hf(
    spec: ModelSpec,
    weights_dir: str | os.PathLike[str] | None,
    revision: str | None,
    token: str | bool | None,
    attn: str,
    random_init: bool,
    seed: int,
) -> tuple[torch.nn.Module, ModelSpec, str, str | None]:
    import transformers

    if random_init:
        config = build_hf_config(spec.config_dict())
        fam, cls_name = family_for_model_type(spec.config_overrides["model_type"])
        vcfg = _vision_config(config)
        for name, value in get_family(fam).load_config.items():
            setattr(vcfg, name, value)
        cls = getattr(transformers, cls_name)
        torch.manual_seed(seed)
        model = cls._from_config(vcfg, attn_implementation=attn)
        fix_mae_init(model)
        return model, spec, "random-init", None

    local_checkpoint = weights_dir is None and Path(spec.checkpoint).is_dir()
    if weights_dir is not None or local_checkpoint:
        folder = Path(spec.checkpoint) if local_checkpoint else Path(weights_dir) / spec.key
        if not (folder / "config.json").is_file():
            raise WeightsUnavailableError(
                f"model {spec.key!r}: {folder} has no config.json; weights_dir must hold one "
                f"folder per model key as written by save_pretrained (e.g. "
                f"{folder}/config.json + model.safetensors)"
            )
        source, weights, rev = str(folder), local_weights_label(folder), None
        cfg = read_config(folder / "config.json", spec.key)
    else:
        from huggingface_hub import hf_hub_download

        source = spec.checkpoint
        with hub_errors(spec.checkpoint, spec.key):
            cfg_file = Path(
                hf_hub_download(spec.checkpoint, "config.json", revision=revision, token=token)
            )
        cfg = read_config(cfg_file, spec.key)
        # a cached hub file lives in snapshots/<commit>/: that is the resolved revision
        rev = cfg_file.parent.name if cfg_file.parent.parent.name == "snapshots" else revision
        weights = f"pretrained:{spec.checkpoint}@{rev or revision or 'main'}"

    model_type = cfg.get("model_type", "")
    try:
        fam, cls_name = family_for_model_type(model_type)
    except ValueError as exc:
        raise ModelLoadError(f"model {spec.key!r} ({source}/config.json): {exc}") from None
    if fam not in get_family(spec.family).accepts:
        raise ModelLoadError(
            f"model {spec.key!r}: {source}/config.json has model_type {model_type!r} "
            f"(family {fam!r}) but the spec is family {spec.family!r}; put the right checkpoint "
            f"in that folder or load it under another key"
        )
    cls = getattr(transformers, cls_name)
    kwargs: dict[str, Any] = {"attn_implementation": attn, "output_loading_info": True}
    if not weights.startswith("local:"):
        # the resolved commit keeps config and weights from one snapshot
        kwargs.update(revision=rev or revision, token=token)
    kwargs.update(get_family(fam).load_config)
    local = weights.startswith(("local:", "random-init:"))
    with _weights_errors(spec.key, source, local), hub_errors(spec.checkpoint, spec.key), \
            _quiet_transformers():  # fmt: skip
        model, info = cls.from_pretrained(source, **kwargs)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(
            f"model {spec.key!r}: {source} lacks {len(missing)} weights of {cls_name} "
            f"({shown}); it is not a checkpoint of this architecture"
        )
    loaded_spec = spec_with_config(replace(spec, model_class=cls_name, family=fam), cfg)
    return model, loaded_spec, weights, rev


def fix_mae_init(model: torch.nn.Module) -> None:
    """Give a ViT-MAE built from a config its real initialisation (fixed 2-D sin-cos positions).

    In this transformers version ``ViTMAEEmbeddings.initialize_weights`` returns early once the
    patch projection was initialised, leaving zero position embeddings and a zero CLS token in
    a model built from a config. We re-run it with the flag cleared. A no-op for models without
    ViT-MAE embeddings, so it is safe to call on any freshly built model.
    """
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEEmbeddings

    for mod in model.modules():
        if isinstance(mod, ViTMAEEmbeddings):
            mod.patch_embeddings.projection._is_hf_initialized = False
            with torch.no_grad():
                mod.initialize_weights()


_STATE_SUFFIXES = (".pth", ".pt", ".safetensors")

#: Written by :func:`ssl_attn.models.testing.save_random_model` into the folders it creates, so
#: random weights loaded from disk are never reported as a real checkpoint.
RANDOM_INIT_MARKER = "RANDOM_INIT.json"


def local_weights_label(folder: Path, path: Path | None = None) -> str:
    """``"local:<path>"``, or ``"random-init:<path>"`` where the folder holds random weights."""
    where = path or folder
    if (Path(folder) / RANDOM_INIT_MARKER).exists():
        return f"random-init:{where}"
    return f"local:{where}"


def _load_resnet(
    spec: ModelSpec,
    weights_dir: str | os.PathLike[str] | None,
    random_init: bool,
    seed: int,
) -> tuple[torch.nn.Module, str, str | None]:
    import torchvision

    arch = spec.config_overrides.get("arch", "resnet50")
    num_classes = int(spec.config_overrides.get("num_classes", 1000))
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if random_init:
        return model, "random-init", None
    if weights_dir is not None:
        folder = Path(weights_dir) / spec.key
        files = sorted(p for p in folder.glob("*") if p.suffix in _STATE_SUFFIXES)
        if len(files) != 1:
            raise WeightsUnavailableError(
                f"model {spec.key!r}: {folder} must hold exactly one torchvision state dict "
                f"(*.pth, *.pt or *.safetensors); found {[p.name for p in files]}"
            )
        path = files[0]
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"model {spec.key!r}: {path} is not a readable torchvision state dict: "
                f"{_first_line(exc)}"
            ) from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"model {spec.key!r}: {path} holds a {type(state).__name__}, "
                                 "not a state dict of tensors")  # fmt: skip
        weights, rev = local_weights_label(folder, path), None
    else:
        enum_name = spec.config_overrides.get("weights", "IMAGENET1K_V2")
        enum = torchvision.models.get_model_weights(arch)[enum_name]
        try:
            state = enum.get_state_dict(progress=os.environ.get("TQDM_DISABLE") != "1")
        except Exception as exc:
            raise WeightsUnavailableError(
                f"model {spec.key!r}: torchvision weights {arch} {enum_name} are not cached in "
                f"{torch.hub.get_dir()}/checkpoints and cannot be downloaded from {enum.url} "
                f"({type(exc).__name__}). Copy that file there, or put it in DIR/{spec.key}/ and "
                "pass weights_dir=DIR (CLI: --weights-dir DIR)."
            ) from exc
        weights, rev = f"pretrained:torchvision/{arch}.{enum_name}@{Path(enum.url).name}", None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        have, want = set(state), set(model.state_dict())
        missing, unexpected = sorted(want - have), sorted(have - want)
        where = f"{path}" if weights_dir is not None else weights
        detail = (f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})"
                  if missing else "")  # fmt: skip
        if unexpected:
            detail += ("; " if detail else "") + (
                f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise ModelLoadError(
            f"model {spec.key!r}: the state dict in {where} does not fit torchvision {arch}: "
            f"{detail or _first_line(exc)}"
        ) from None
    return model, weights, rev
