"""Every knob of a fine-tuning run: :class:`FineTuningConfig` (torch-free).

A config is validated when it is built (``__post_init__``): a bad value raises a ``ValueError``
naming the field, the value and what is allowed. :meth:`FineTuningConfig.to_dict` is plain JSON
(the manifest's ``config``); :meth:`FineTuningConfig.from_dict` reads it back (round trip).
:meth:`FineTuningConfig.differences` compares two configs on the fields that change a run's
result; :data:`RUNTIME_FIELDS` (device, data loader workers, output folder) are left out, so a
run may resume on another device or with another number of workers.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ssl_attn.wikichurches.styles import StyleRule

__all__ = ["LABELS", "PRECISIONS", "RUNTIME_FIELDS", "STRATEGIES", "FineTuningConfig"]

#: The fine-tuning strategies: backbone frozen, LoRA adapters (peft), every weight.
STRATEGIES: tuple[str, ...] = ("linear_probe", "lora", "full")
#: Training labels: the style labels, or the same labels permuted over the training pool (the
#: shuffled-label control).
LABELS: tuple[str, ...] = ("style", "shuffled")
#: ``"auto"``: bf16 autocast on CUDA, full float32 elsewhere; ``"no"``: float32; ``"bf16"`` /
#: ``"fp16"``: autocast (fp16 with a gradient scaler; GPU only in practice).
PRECISIONS: tuple[str, ...] = ("auto", "no", "bf16", "fp16")
#: Fields that say where and how fast a run goes, not what it computes: a run may resume with
#: other values of these (they are still recorded in the manifest).
RUNTIME_FIELDS: tuple[str, ...] = ("device", "num_workers", "out_dir")

_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _fail(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"FineTuningConfig.{name} = {value!r}: {allowed}")


@dataclass
class FineTuningConfig:
    """One fine-tuning run: model, strategy, labels, recipe, data split and runtime.

    Attributes:
        model_name: registry key of the base model (``"dinov2"``...).
        strategy: one of :data:`STRATEGIES` (default ``"lora"``).
        labels: ``"style"`` (default) or ``"shuffled"`` (the shuffled-label control: the style
            labels permuted over the train+val pool with ``shuffle_seed``).
        epochs: passes over the training split (>= 1; default 10).
        batch_size: images per optimiser step over all processes (the global batch; >= 1;
            default 16).
        lr_head, lr_backbone: AdamW peak learning rates of the head and of the trainable
            backbone weights (LoRA adapters or the whole backbone; unused by the linear
            probe); > 0.
        weight_decay: AdamW decoupled weight decay (>= 0; default 0.05).
        warmup_fraction: fraction of all optimiser steps spent in the linear warm-up before the
            cosine decay (in [0, 1); default 0.1).
        grad_clip: max global L2 norm of the gradients (> 0; default 1.0).
        seed: head initialisation, batch order and augmentation (default 0).
        split_seed, val_fraction: the stratified train/val split (``val_fraction`` in (0, 1);
            default 0.2).
        shuffle_seed: permutation of the labels when ``labels == "shuffled"``.
        rule: :class:`~ssl_attn.wikichurches.StyleRule` picking each image's label.
        size: input side in pixels (a multiple of the patch size); ``None``: the model's
            native size.
        crop_scale: random-resized-crop area range ``(lo, hi)``, ``0 < lo <= hi <= 1``.
        hflip: horizontal-flip probability in [0, 1].
        jitter: colour-jitter strength (brightness, contrast, saturation) in [0, 1).
        lora_rank, lora_alpha, lora_dropout: LoRA settings; ``None``: the family's defaults
            (:mod:`ssl_attn.models.families`).
        precision: one of :data:`PRECISIONS` (default ``"auto"``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
        out_dir: the run folder (manifest, ``best/``, ``last/``).
        split_file: the split JSON (default: beside the dataset, see
            :func:`~ssl_attn.finetune.split.load_or_make_split`).
        weights_dir: offline base weights, one folder per model key (as ``extract``).
        random_init: start from random weights instead of pretrained ones.
        num_workers: DataLoader worker processes (0, the default: load in the main process,
            where the decoded images stay cached across epochs; workers start anew each
            epoch and decode again).
    """

    model_name: str
    strategy: str = "lora"
    labels: str = "style"
    epochs: int = 10
    batch_size: int = 16
    lr_head: float = 1e-3
    lr_backbone: float = 1e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    split_seed: int = 0
    val_fraction: float = 0.2
    shuffle_seed: int = 0
    rule: StyleRule = field(default_factory=StyleRule)
    size: int | None = None
    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip: float = 0.5
    jitter: float = 0.2
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    precision: str = "auto"
    device: str = "auto"
    out_dir: str | None = None
    split_file: str | None = None
    weights_dir: str | None = None
    random_init: bool = False
    num_workers: int = 0

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        if not isinstance(self.model_name, str) or not self.model_name:
            raise _fail("model_name", self.model_name, "need a registered model key, e.g. "
                        "'dinov2'")  # fmt: skip
        self._choice("strategy", STRATEGIES)
        self._choice("labels", LABELS)
        self._choice("precision", PRECISIONS)
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise _fail("device", self.device, "use auto, cpu, cuda, cuda:N or mps")
        for name in ("epochs", "batch_size"):
            self._int(name, minimum=1)
        for name in ("seed", "split_seed", "shuffle_seed", "num_workers"):
            self._int(name, minimum=0)
        for name in ("lr_head", "lr_backbone", "grad_clip"):
            self._real(name, lo=0.0, lo_open=True)
        self._real("weight_decay", lo=0.0)
        self._real("warmup_fraction", lo=0.0, hi=1.0, hi_open=True)
        self._real("val_fraction", lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        self._real("hflip", lo=0.0, hi=1.0)
        self._real("jitter", lo=0.0, hi=1.0, hi_open=True)
        self._crop_scale()
        if self.size is not None:
            self._int("size", minimum=1)
        if self.lora_rank is not None:
            self._int("lora_rank", minimum=1)
        if self.lora_alpha is not None:
            self._real("lora_alpha", lo=0.0, lo_open=True)
        if self.lora_dropout is not None:
            self._real("lora_dropout", lo=0.0, hi=1.0, hi_open=True)
        lora = [n for n in ("lora_rank", "lora_alpha", "lora_dropout")
                if getattr(self, n) is not None]
        if lora and self.strategy != "lora":
            raise _fail(lora[0], getattr(self, lora[0]), f"LoRA settings need strategy 'lora', "
                        f"not {self.strategy!r}; leave them None")  # fmt: skip
        if isinstance(self.rule, Mapping):
            self.rule = _rule_from(self.rule)
        if not isinstance(self.rule, StyleRule):
            raise _fail("rule", self.rule, "need a StyleRule or {'main_styles': [...], "
                        "'multi': 'first'|'priority'|'drop'}")  # fmt: skip
        if not isinstance(self.random_init, bool):
            raise _fail("random_init", self.random_init, "need True or False")
        for name in ("out_dir", "split_file", "weights_dir"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, bytes)) and not hasattr(value, "__fspath__"):
                    raise _fail(name, value, "need a path or None")
                setattr(self, name, str(value))

    def _choice(self, name: str, allowed: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in allowed:
            raise _fail(name, value, f"need one of {', '.join(allowed)}")

    def _int(self, name: str, *, minimum: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
                setattr(self, name, value)
            else:
                raise _fail(name, value, f"need an integer >= {minimum}")
        if value < minimum:
            raise _fail(name, value, f"need an integer >= {minimum}")

    def _real(self, name: str, *, lo: float | None = None, hi: float | None = None,
              lo_open: bool = False, hi_open: bool = False) -> None:
        value = getattr(self, name)
        if hi is None:
            want = f"need a finite number {'>' if lo_open else '>='} {lo:g}"
        else:
            lo_b, hi_b = ("(" if lo_open else "["), (")" if hi_open else "]")
            want = f"need a number in {lo_b}{lo:g}, {hi:g}{hi_b}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(name, value, want)
        value = float(value)
        bad = not math.isfinite(value)
        bad |= lo is not None and (value <= lo if lo_open else value < lo)
        bad |= hi is not None and (value >= hi if hi_open else value > hi)
        if bad:
            raise _fail(name, getattr(self, name), want)
        setattr(self, name, value)

    def _crop_scale(self) -> None:
        value = self.crop_scale
        want = "need (lo, hi) with 0 < lo <= hi <= 1 (random-resized-crop area fractions)"
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise _fail("crop_scale", value, want) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= 1):
            raise _fail("crop_scale", value, want)
        self.crop_scale = (lo, hi)

    # ------------------------------------------------------------------ derived
    @property
    def variant(self) -> str:
        """The store variant this run produces: the strategy, or ``"<strategy>_shuffled"``
        for the shuffled-label control."""
        return self.strategy if self.labels == "style" else f"{self.strategy}_{self.labels}"

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values of every field (the manifest's ``config``): ``rule`` as
        ``{"main_styles": [...], "multi": ...}``, ``crop_scale`` as a list."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "rule":
                value = {"main_styles": list(value.main_styles), "multi": value.multi}
            elif f.name == "crop_scale":
                value = [float(v) for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FineTuningConfig:
        """The config of :meth:`to_dict`'s output (the inverse; validated). Unknown keys raise
        a ``ValueError`` naming them; missing ones take their defaults (``model_name`` is
        required)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"FineTuningConfig.from_dict: need a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"FineTuningConfig.from_dict: unknown field(s) {unknown}; known: "
                             f"{sorted(names)}")  # fmt: skip
        if "model_name" not in d:
            raise ValueError("FineTuningConfig.from_dict: missing field 'model_name'")
        kwargs = dict(d)
        if isinstance(kwargs.get("rule"), Mapping):
            kwargs["rule"] = _rule_from(kwargs["rule"])
        if isinstance(kwargs.get("crop_scale"), list):
            kwargs["crop_scale"] = tuple(kwargs["crop_scale"])
        return cls(**kwargs)

    def differences(self, other: FineTuningConfig | Mapping[str, Any],
                    ignore: tuple[str, ...] = RUNTIME_FIELDS) -> dict[str, tuple[Any, Any]]:
        """``{field: (this value, other value)}`` for every field that differs between this
        config and ``other`` (a config or its :meth:`to_dict`), leaving out ``ignore``
        (default :data:`RUNTIME_FIELDS`). Empty when the two runs compute the same thing."""
        theirs = other.to_dict() if isinstance(other, FineTuningConfig) else dict(other)
        mine = self.to_dict()
        keys = (set(mine) | set(theirs)) - set(ignore)
        missing = object()
        return {k: (mine.get(k), theirs.get(k)) for k in sorted(keys)
                if mine.get(k, missing) != theirs.get(k, missing)}


def _rule_from(d: Mapping[str, Any]) -> StyleRule:
    unknown = sorted(set(d) - {"main_styles", "multi"})
    if unknown:
        raise ValueError(f"FineTuningConfig.rule: unknown key(s) {unknown}; use main_styles "
                         "and multi")  # fmt: skip
    try:
        return StyleRule(**{k: (tuple(v) if k == "main_styles" else v) for k, v in d.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"FineTuningConfig.rule: {exc}") from None


def _checker(name: str, allowed: tuple[str, ...]):
    def check(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not a {name}; use one of {', '.join(allowed)}")
        return text

    check.__name__ = f"check_{name}"
    check.__doc__ = f"``text`` if it is one of the {name} values, else a ``ValueError``."
    return check


#: Parse-time checks for the CLI (``ssl-attn finetune``): each returns its text or raises a
#: ``ValueError`` listing the allowed values.
check_strategy = _checker("strategy", STRATEGIES)
check_labels = _checker("labels", LABELS)
check_precision = _checker("precision", PRECISIONS)
