"""Fine-tuning checkpoints: safetensors weights, the JSON manifest, and :func:`load_finetuned`.

Nothing here unpickles: weights are safetensors (``safetensors.torch.save_file`` /
``load_file``), LoRA adapters are written by peft's ``save_pretrained`` (safetensors, adapter
tensors only) and read back as safetensors; the manifest is JSON.

Run folder (``run_dir``)::

    manifest.json          written last, atomically (tmp + os.replace), after every epoch
    best/                  the best epoch's weights (what extraction loads)
        head.safetensors       head "weight" (C, D) and "bias" (C,)
        backbone.safetensors   full: every backbone tensor (the base model's state-dict keys)
        adapter/               lora: peft save_pretrained (adapter_config.json +
                               adapter_model.safetensors)
    last/                  the same for the last completed epoch, plus the trainer's resume
                           files (optimizer.safetensors, state.json)

A weights folder is replaced whole: written to ``.<which>.tmp``, then swapped in by renames;
a crash mid-swap leaves ``.<which>.old``, which the next read or write renames back (it still
matches the manifest, which is written after the weights).

Every error is a :class:`CheckpointError` (a ``ValueError``) naming the file at fault.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ssl_attn.finetune.config import STRATEGIES

if TYPE_CHECKING:  # pragma: no cover
    from ssl_attn.finetune.model import FineTunableModel
    from ssl_attn.models.loading import LoadedModel

__all__ = [
    "ADAPTER_DIR", "BACKBONE_FILE", "FORMAT", "FORMAT_VERSION", "HEAD_FILE", "MANIFEST",
    "CheckpointError", "finetune_provenance", "load_finetuned", "load_weights", "manifest_base",
    "read_manifest", "read_tensors", "save_weights", "weights_folder", "write_manifest",
]  # fmt: skip

MANIFEST = "manifest.json"
FORMAT = "ssl-attn-finetune"
FORMAT_VERSION = 1
HEAD_FILE = "head.safetensors"
BACKBONE_FILE = "backbone.safetensors"
ADAPTER_DIR = "adapter"
_ADAPTER_WEIGHTS = "adapter_model.safetensors"
_ADAPTER_CONFIG = "adapter_config.json"
_WHICH = re.compile(r"[A-Za-z0-9_-]+")


class CheckpointError(ValueError):
    """A fine-tuning run folder that cannot be used: a missing or malformed manifest, a corrupt
    or truncated safetensors file, weights for another base model or another number of
    classes. The message names the file."""


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------


def _run_and_manifest(run_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(run folder, manifest path)``; ``run_dir`` may also be the manifest file itself."""
    path = Path(run_dir)
    if path.name == MANIFEST and not path.is_dir():
        return path.parent, path
    return path, path / MANIFEST


def manifest_base(model: FineTunableModel) -> dict[str, Any]:
    """The fixed part of a run's manifest, from a :class:`FineTunableModel`.

    Keys: ``format``, ``format_version``, ``model`` (``key``, ``checkpoint``, ``revision``,
    ``weights`` (the base's label: ``pretrained:<id>@<rev>``, ``local:<path>``,
    ``random-init`` or ``random-init:<path>``), ``family``, ``model_class``, ``random_init``,
    ``init_seed``, ``weights_dir``, ``base_digest`` (sha256 of the base weights as loaded),
    ``head_input``, ``feature_dim``, ``input_size``, ``train_attn_implementation``),
    ``package_version``, ``git_commit``, ``library_versions``, ``created`` (ISO 8601 UTC);
    after :meth:`~FineTunableModel.setup` also ``strategy``, ``num_classes`` and ``lora``
    (``{rank, alpha, dropout, targets}`` or None). The trainer adds the rest (config, split,
    classes, history, best epoch, variant, complete).
    """
    import ssl_attn
    from ssl_attn.store.attrs import git_commit, library_versions

    loaded, init = model.loaded, model.init
    weights_dir = init.get("weights_dir")
    out: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {
            "key": model.model_name,
            "checkpoint": model.spec.checkpoint,
            "revision": loaded.revision,
            "weights": loaded.weights,
            "family": model.spec.family,
            "model_class": model.spec.model_class,
            "random_init": bool(init.get("random_init")),
            "init_seed": int(init.get("seed", 0)),
            "weights_dir": None if weights_dir is None else str(Path(weights_dir).resolve()),
            "base_digest": model.base_digest,
            "head_input": model.family.head_input,
            "feature_dim": int(model.feature_dim),
            "input_size": [int(v) for v in loaded.input_size],
            "train_attn_implementation": loaded.attn_implementation,
        },
        "package_version": ssl_attn.__version__,
        "git_commit": git_commit(),
        "library_versions": library_versions(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if model.strategy is not None:
        out.update(strategy=model.strategy, num_classes=model.num_classes,
                   lora=None if model.lora is None else dict(model.lora))  # fmt: skip
    return out


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and ±inf become None (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy / torch scalars
        return _finite(value.item())
    return value


def write_manifest(run_dir: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write ``run_dir/manifest.json`` atomically (a temporary file, then ``os.replace``).

    Non-finite floats are written as ``null``. Returns the manifest path.
    """
    run, path = _run_and_manifest(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite(dict(manifest)), indent=2, allow_nan=False)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _field_error(path: Path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path}: field {field!r} {problem}; this file must be a manifest "
                           "written by ssl-attn finetune")  # fmt: skip


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a run folder (or a ``manifest.json`` path), checked.

    Checks: the file exists and is a JSON object; ``format`` is ``"ssl-attn-finetune"``;
    ``format_version`` is an integer this version reads; ``model.key`` is a string;
    ``strategy`` is one of :data:`~ssl_attn.finetune.config.STRATEGIES`; ``classes`` is a
    list of at least two strings; ``variant`` is a string.

    Raises:
        CheckpointError: naming the manifest file and the field at fault.
    """
    run, path = _run_and_manifest(run_dir)
    if not path.is_file():
        where = "no such folder" if not run.exists() else "missing"
        raise CheckpointError(f"{path}: {where}; --finetuned needs a run folder written by "
                              "`ssl-attn finetune --out RUN` (it holds manifest.json)")  # fmt: skip
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
                              ) from None  # fmt: skip
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc}); the file is truncated or "
                              "corrupt") from None  # fmt: skip
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(data).__name__}, not a manifest "
                              "object")  # fmt: skip
    if data.get("format") != FORMAT:
        raise _field_error(path, "format", f"is {data.get('format')!r}, not {FORMAT!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _field_error(path, "format_version", f"is {version!r}, not a positive integer")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version} is newer than this ssl-attn "
                              f"reads ({FORMAT_VERSION}); upgrade ssl-attn")  # fmt: skip
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("key"), str):
        raise _field_error(path, "model.key", "is missing or not a string")
    if data.get("strategy") not in STRATEGIES:
        raise _field_error(path, "strategy", f"is {data.get('strategy')!r}, not one of "
                                             f"{STRATEGIES}")  # fmt: skip
    classes = data.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)):  # fmt: skip
        raise _field_error(path, "classes", "is not a list of at least two class names")
    if not isinstance(data.get("variant"), str) or not data["variant"]:
        raise _field_error(path, "variant", "is missing or not a string")
    return data


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


def _recover(run: Path, which: str) -> None:
    """Finish an interrupted swap: ``.<which>.old`` back to ``<which>`` when that is absent."""
    final, old = run / which, run / f".{which}.old"
    if not final.exists() and old.is_dir():
        os.replace(old, final)


def weights_folder(run_dir: str | os.PathLike[str], which: str = "best") -> Path:
    """``run_dir/<which>`` (after finishing an interrupted swap); raises CheckpointError when
    it does not exist."""
    if not _WHICH.fullmatch(which):
        raise ValueError(f"which = {which!r}: a plain folder name like 'best' or 'last'")
    run, _ = _run_and_manifest(run_dir)
    _recover(run, which)
    folder = run / which
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: missing; the run saved no {which!r} weights yet (no "
                              "completed epoch?)")  # fmt: skip
    return folder


def read_tensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, on CPU. Never unpickles.

    Raises:
        CheckpointError: naming the file when it is missing, truncated or corrupt.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the checkpoint folder is incomplete")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # SafetensorError, OSError, RuntimeError...
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{path}: not a readable safetensors file ({line}); it is "
                              "truncated or corrupt: restore it or rerun the fine-tuning"
                              ) from None  # fmt: skip
    return tensors, metadata


def _plain(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, none sharing memory (safetensors refuses sharing)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for k, v in state.items():
        t = v.detach().cpu().contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[k] = t
    return out


def _check_keys(path: Path, have: Mapping[str, torch.Tensor],
                want: Mapping[str, torch.Tensor], what: str) -> None:  # fmt: skip
    """Same names and shapes, else CheckpointError naming ``path``."""
    missing, unexpected = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    shapes = sorted(f"{k} {tuple(have[k].shape)} vs {tuple(want[k].shape)}"
                    for k in set(have) & set(want)
                    if tuple(have[k].shape) != tuple(want[k].shape))  # fmt: skip
    if missing or unexpected or shapes:
        parts = [f"{len(v)} {label} (e.g. {', '.join(v[:3])})"
                 for label, v in (("missing", missing), ("unexpected", unexpected),
                                  ("of another shape", shapes)) if v]  # fmt: skip
        raise CheckpointError(f"{path}: does not fit {what}: " + "; ".join(parts)
                              + "; it was saved for another base model")  # fmt: skip


def save_weights(
    run_dir: str | os.PathLike[str],
    model: FineTunableModel,
    which: str = "best",
    *,
    extra_tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    extra_json: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s trained weights to ``run_dir/<which>/`` (replaced whole, atomically).

    ``head.safetensors`` always; ``backbone.safetensors`` (the base model's state dict) for
    ``full``; ``adapter/`` (peft ``save_pretrained``: adapter tensors only) for ``lora``.

    Args:
        run_dir: the run folder (created if absent).
        model: a :class:`FineTunableModel` after :meth:`~FineTunableModel.setup` (unwrap it
            from any data-parallel wrapper first).
        which: the folder name, ``"best"`` (default) or ``"last"``.
        extra_tensors: more safetensors files in the same folder, ``{stem: {name: tensor}}``
            (e.g. ``{"optimizer": ...}``), swapped in with the weights.
        extra_json: more JSON files, ``{stem: value}`` (e.g. ``{"state": {...}}``).

    Returns:
        The folder written.
    """
    if model.head is None or model.strategy is None:
        raise RuntimeError("save_weights needs a model after setup(strategy, num_classes)")
    if not _WHICH.fullmatch(which):
        raise ValueError(f"which = {which!r}: a plain folder name like 'best' or 'last'")
    from safetensors.torch import save_file

    run, _ = _run_and_manifest(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    _recover(run, which)
    final, tmp, old = run / which, run / f".{which}.tmp", run / f".{which}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    meta = {"format": FORMAT, "model": model.model_name, "strategy": model.strategy,
            "num_classes": str(model.num_classes), "feature_dim": str(model.feature_dim)}
    save_file(_plain(model.head.state_dict()), str(tmp / HEAD_FILE), metadata=meta)
    if model.strategy == "full":
        save_file(_plain(model.loaded.model.state_dict()), str(tmp / BACKBONE_FILE),
                  metadata=meta)  # fmt: skip
    elif model.strategy == "lora":
        model.backbone.save_pretrained(str(tmp / ADAPTER_DIR), safe_serialization=True,
                                       save_embedding_layers=False)  # fmt: skip
    for stem, tensors in (extra_tensors or {}).items():
        save_file(_plain(tensors), str(tmp / f"{stem}.safetensors"))
    for stem, value in (extra_json or {}).items():
        (tmp / f"{stem}.json").write_text(json.dumps(_finite(value), indent=2, allow_nan=False))
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _read_head(folder: Path, num_classes: int | None, feature_dim: int,
               classes_from: str) -> dict[str, torch.Tensor]:  # fmt: skip
    path = folder / HEAD_FILE
    tensors, _ = read_tensors(path)
    if set(tensors) != {"weight", "bias"} or tensors["weight"].ndim != 2:
        raise CheckpointError(f"{path}: holds {sorted(tensors)}, not a linear head ('weight' "
                              "(C, D) and 'bias' (C,))")  # fmt: skip
    c, d = tensors["weight"].shape
    if num_classes is not None and c != num_classes:
        raise CheckpointError(f"{path}: the head has {c} classes but {classes_from} has "
                              f"{num_classes}; the weights belong to another run")  # fmt: skip
    if d != feature_dim or tuple(tensors["bias"].shape) != (c,):
        raise CheckpointError(f"{path}: the head reads {d} features but the base model gives "
                              f"{feature_dim}; it was trained on another base model")  # fmt: skip
    return tensors


def _adapter_tensors(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    adapter = folder / ADAPTER_DIR
    pickled = sorted(p.name for p in adapter.glob("*.bin")) if adapter.is_dir() else []
    if pickled:
        raise CheckpointError(f"{adapter}: holds pickled weights {pickled}; only "
                              f"{_ADAPTER_WEIGHTS} is read (never unpickled)")  # fmt: skip
    path = adapter / _ADAPTER_WEIGHTS
    tensors, _ = read_tensors(path)
    return path, tensors


def load_weights(run_dir: str | os.PathLike[str], model: FineTunableModel,
                 which: str = "best") -> None:  # fmt: skip
    """Apply saved weights (``run_dir/<which>/``) to a :class:`FineTunableModel` set up with
    the same strategy and number of classes (e.g. to resume); nothing is unpickled.

    Raises:
        CheckpointError: naming the file that is missing, corrupt, or does not fit the model.
    """
    if model.head is None:
        raise RuntimeError("load_weights needs a model after setup(strategy, num_classes)")
    folder = weights_folder(run_dir, which)
    head = _read_head(folder, model.num_classes, model.feature_dim, "the model")
    with torch.no_grad():
        model.head.weight.copy_(head["weight"])
        model.head.bias.copy_(head["bias"])
    if model.strategy == "full":
        path = folder / BACKBONE_FILE
        tensors, _ = read_tensors(path)
        _check_keys(path, tensors, model.loaded.model.state_dict(), f"model {model.model_name!r}")
        model.loaded.model.load_state_dict(tensors, strict=True)
    elif model.strategy == "lora":
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        path, tensors = _adapter_tensors(folder)
        want = get_peft_model_state_dict(model.backbone, save_embedding_layers=False)
        _check_keys(path, tensors, want, f"the LoRA adapters of model {model.model_name!r}")
        set_peft_model_state_dict(model.backbone, tensors)


# ---------------------------------------------------------------------------------------------
# load_finetuned (extraction)
# ---------------------------------------------------------------------------------------------


def _base_weights_dir(model: Mapping[str, Any], key: str) -> str | None:
    """Where the base came from when the caller gives no ``weights_dir``: the recorded
    ``weights_dir``, else the folder above ``<key>/`` in a ``local:`` / ``random-init:``
    label."""
    if model.get("weights_dir"):
        return str(model["weights_dir"])
    label = str(model.get("weights", ""))
    for prefix in ("local:", "random-init:"):
        if label.startswith(prefix):
            path = Path(label.removeprefix(prefix))
            folder = path.parent if path.suffix else path
            if folder.name == key:
                return str(folder.parent)
    return None


def load_finetuned(
    run_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    weights_dir: str | os.PathLike[str] | None = None,
    attn_implementation: str = "eager",
    model_name: str | None = None,
) -> tuple[LoadedModel, dict[str, Any]]:
    """The fine-tuned model of a run, as a plain :class:`~ssl_attn.models.LoadedModel` for
    :func:`ssl_attn.attention.extract_maps`, and the run's manifest.

    The base is loaded as extraction loads it (:func:`ssl_attn.models.load_model` with the
    manifest's key and revision, eager attention; a random-init base with the manifest's seed),
    checked against the manifest's ``base_digest``, then the best epoch's weights are applied:
    ``full`` loads the backbone state dict; ``lora`` attaches the adapters with peft and merges
    them (``merge_and_unload``, in float32), so the model is a plain transformers / torchvision
    model again; ``linear_probe`` leaves the backbone untouched (its maps equal the frozen
    ones). For the CNN the trained head becomes ``fc``, so Grad-CAM's top-1 logit is the top
    style logit. ``weights`` is ``"finetuned:<run>:<variant>:epoch<k>"`` (CNN: plus
    ``":gradcam-target=top1-of-<C>-style-logits"``).

    Args:
        run_dir: the run folder (or its ``manifest.json``).
        device, dtype: as :func:`~ssl_attn.models.load_model` (weights applied in float32 on
            CPU, then moved and cast).
        weights_dir: the base weights folder (``<weights_dir>/<key>/``); default: the one the
            run recorded, else the hub.
        attn_implementation: ``"eager"`` (maps) or ``"sdpa"``.
        model_name: the model key the caller expects; another key in the manifest is an error.

    Raises:
        CheckpointError: a missing or malformed manifest, a run of another base model (key or
            base weights), a head with another number of classes, corrupt, truncated or
            mismatched safetensors. Each names the file.
    """
    from ssl_attn.finetune.model import state_digest
    from ssl_attn.models import get_family, get_spec, load_model
    from ssl_attn.models.loading import resolve_device, resolve_dtype

    manifest = read_manifest(run_dir)
    run, mpath = _run_and_manifest(run_dir)
    base = manifest["model"]
    key, strategy, classes = base["key"], manifest["strategy"], manifest["classes"]
    if model_name is not None and model_name != key:
        raise CheckpointError(f"{mpath}: model.key = {key!r}: this run fine-tuned {key!r}, not "
                              f"{model_name!r}; pass --models {key} or another run")  # fmt: skip
    try:
        get_spec(key)
    except KeyError as exc:
        raise CheckpointError(f"{mpath}: model.key = {key!r}: {exc.args[0]}") from None
    best = manifest.get("best_epoch")
    if not isinstance(best, int) or isinstance(best, bool):
        raise _field_error(mpath, "best_epoch", f"is {best!r}: the run has no completed epoch")
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    label = str(base.get("weights", ""))
    if label == "random-init":
        loaded = load_model(key, random_init=True, seed=int(base.get("init_seed",
                            manifest.get("seed", 0))), attn_implementation=attn_implementation)
    else:
        wd = weights_dir if weights_dir is not None else _base_weights_dir(base, key)
        revision = base.get("revision") if label.startswith("pretrained:") else None
        loaded = load_model(key, weights_dir=wd, revision=revision,
                            attn_implementation=attn_implementation)  # fmt: skip
    family = get_family(loaded.spec.family)
    if base.get("family") not in (None, loaded.spec.family):
        raise CheckpointError(f"{mpath}: model.family = {base['family']!r} but the base loaded "
                              f"for {key!r} ({loaded.weights}) is {loaded.spec.family!r}")
    digest = base.get("base_digest")
    if digest and state_digest(loaded.model) != digest:
        raise CheckpointError(
            f"{mpath}: the base weights loaded for {key!r} ({loaded.weights}) differ from those "
            f"this run was trained on ({label or 'unknown'}; model.base_digest); pass the "
            "same --weights-dir / revision as the fine-tuning run")
    model = loaded.model
    feature_dim = (model.fc.in_features if family.head_input == "gap"
                   else int((getattr(model.config, "vision_config", None) or model.config)
                            .hidden_size))  # fmt: skip
    folder = weights_folder(run, "best")
    head = _read_head(folder, len(classes), feature_dim, f"the manifest {mpath} (classes)")
    if strategy == "full":
        path = folder / BACKBONE_FILE
        tensors, _ = read_tensors(path)
        want = model.state_dict()
        if family.head_input == "gap":  # saved with fc replaced by the head
            want = {k: v for k, v in want.items() if not k.startswith("fc.")}
        _check_keys(path, tensors, want, f"model {key!r} ({loaded.weights})")
        model.load_state_dict(tensors, strict=family.head_input != "gap")
    elif strategy == "lora":
        model = _merge_lora(folder, model, f"model {key!r} ({loaded.weights})")
    if family.head_input == "gap":
        fc = torch.nn.Linear(feature_dim, len(classes))
        with torch.no_grad():
            fc.weight.copy_(head["weight"])
            fc.bias.copy_(head["bias"])
        model.fc = fc
    model = model.to(device=dev, dtype=dt).eval()
    weights = f"finetuned:{run.resolve()}:{manifest['variant']}:epoch{best}"
    if family.head_input == "gap":
        weights += f":gradcam-target=top1-of-{len(classes)}-style-logits"
    weights = " ".join(weights.split())  # one line
    return replace(loaded, model=model, device=dev, dtype=dt, weights=weights), manifest


def _merge_lora(folder: Path, model: torch.nn.Module, what: str) -> torch.nn.Module:
    """Attach the adapters saved in ``folder/adapter`` with peft and merge them into
    ``model``'s weights (float32); returns the plain model."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from peft.utils.save_and_load import get_peft_model_state_dict

    path, tensors = _adapter_tensors(folder)
    config_path = path.parent / _ADAPTER_CONFIG
    try:
        config = LoraConfig.from_pretrained(str(path.parent))
    except Exception as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"{config_path}: not a readable LoRA adapter config ({line})"
                              ) from None  # fmt: skip
    config.inference_mode = True
    config.base_model_name_or_path = None  # the base is checked by base_digest, not by name
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing",
                                category=FutureWarning)  # fmt: skip
        try:
            peft_model = get_peft_model(model, config)
        except ValueError as exc:  # e.g. target modules not found in the base
            raise CheckpointError(f"{config_path}: does not fit {what}: {exc}") from None
    want = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    _check_keys(path, tensors, want, f"the LoRA adapters of {what}")
    set_peft_model_state_dict(peft_model, tensors)
    return peft_model.merge_and_unload()


def finetune_provenance(run_dir: str | os.PathLike[str],
                        manifest: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The facts a store's ``variant_provenance`` records for a fine-tuned variant.

    ``run`` and ``manifest`` (absolute paths), ``strategy``, ``labels_kind``, ``best_epoch``,
    ``best_val_acc``, ``classes``, ``split_digest``, ``complete``; for the CNN also
    ``gradcam_target`` (the top-1 logit of the fine-tuned style head).
    """
    from ssl_attn.models import get_family, get_spec

    run, mpath = _run_and_manifest(run_dir)
    split = manifest.get("split") if isinstance(manifest.get("split"), Mapping) else {}
    out: dict[str, Any] = {
        "run": str(run.resolve()),
        "manifest": str(mpath.resolve()),
        "strategy": manifest.get("strategy"),
        "labels_kind": manifest.get("labels_kind"),
        "best_epoch": manifest.get("best_epoch"),
        "best_val_acc": manifest.get("best_val_acc"),
        "classes": list(manifest.get("classes") or []),
        "split_digest": split.get("digest"),
        "complete": bool(manifest.get("complete", False)),
    }
    key = manifest.get("model", {}).get("key")
    try:
        gap = get_family(get_spec(key).family).head_input == "gap"
    except (KeyError, ValueError):
        gap = False
    if gap:
        out["gradcam_target"] = (f"top1_logit of the fine-tuned style head "
                                 f"({len(out['classes'])} classes)")  # fmt: skip
    return out
