"""Q2: fine-tune a registered model on architectural style, save it, and measure how its
attention moves.

Modules (one job each):

- :mod:`~ssl_attn.finetune.config` — :class:`FineTuningConfig`, every knob of a run.
- :mod:`~ssl_attn.finetune.split` — the stratified, seeded, hashed train/val split of the
  style-labelled images that are not annotated (:class:`Split`).
- :mod:`~ssl_attn.finetune.data` — the torch Dataset of a split, with the seeded augmentation.
- :mod:`~ssl_attn.finetune.model` — :class:`FineTunableModel`: backbone + linear head and the
  three strategies (``linear_probe``, ``lora`` through peft, ``full``).
- :mod:`~ssl_attn.finetune.checkpoint` — safetensors checkpoints, the JSON manifest, resume
  state, and :func:`load_finetuned` for extraction.
- :mod:`~ssl_attn.finetune.trainer` — :class:`FineTuner` and :class:`FineTuneResult`.
- :mod:`~ssl_attn.finetune.shift` — the shift analysis (Δ against frozen, controls, Holm),
  written next to the scores. Imports no torch.

Import-light: names are resolved on first use, so ``import ssl_attn.finetune`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FineTuningConfig": "config",
    "STRATEGIES": "config",
    "Split": "split",
    "make_split": "split",
    "load_or_make_split": "split",
    "SplitError": "split",
    "class_weights": "split",
    "StyleImages": "data",
    "FineTunableModel": "model",
    "load_finetuned": "checkpoint",
    "read_manifest": "checkpoint",
    "FineTuner": "trainer",
    "FineTuneResult": "trainer",
    "shift_table": "shift",
    "open_shift": "shift",
    "write_shift": "shift",
    "shift_frame": "shift",
    "format_shift": "shift",
    "ShiftError": "shift",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ssl_attn.finetune' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
