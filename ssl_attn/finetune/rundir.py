"""The trainer's side of a run folder: the resume state of ``last/`` and the per-epoch commit.

A run folder (layout in :mod:`ssl_attn.finetune.checkpoint`) changes once per epoch. This module
makes that change safe to interrupt at any point:

* :func:`commit` writes the epoch's new ``last/`` (and ``best/`` when it improved) under
  ``.staging/``, then ``.staging/commit.json`` naming the epoch, then moves the old folders into
  ``.staging/previous-*`` and the new ones into place, then calls ``write_manifest`` — **the
  manifest is the commit point** —, then renames ``.staging`` to ``.staging-done`` (atomic) and
  deletes it.
* :func:`recover`, called before a resume, finishes or undoes an interrupted commit: when
  ``commit.json`` names an epoch the manifest does not record, the previous folders are moved
  back, so ``last/`` and ``best/`` again hold what the manifest says.

The resume state of ``last/`` (beside the trainable weights that
:func:`~ssl_attn.finetune.checkpoint.save_weights` writes) is ``optimizer.safetensors`` — every
AdamW state tensor under ``state.<param index>.<name>`` (``exp_avg``, ``exp_avg_sq``,
``step``) — and ``state.json``: the epoch (0-based), the optimizer's ``param_groups`` and any
non-tensor state, the scheduler's ``state_dict`` and the fp16 gradient scaler's. Safetensors and
JSON only: nothing is ever pickled or unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DONE",
    "OPTIMIZER_FILE",
    "STAGING",
    "STATE_FILE",
    "RunFolderError",
    "commit",
    "load_resume_state",
    "optimizer_state_from_files",
    "optimizer_state_to_files",
    "read_json",
    "recover",
    "resume_state",
    "write_json",
]

STAGING = ".staging"
DONE = ".staging-done"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
_COMMIT_FILE = "commit.json"


class RunFolderError(ValueError):
    """The run folder holds another run (other config, other split), is not a run folder, or
    its checkpoint does not match its manifest. The message names the folder and the fix."""


# ---------------------------------------------------------------------------------- JSON


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values (scalar tensors and numpy scalars as numbers, tuples as
    lists, keys as strings); a ``TypeError`` for anything else."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (a temporary file beside it, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``; a :class:`RunFolderError` naming it when unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc}); the run folder is damaged: delete "
                             "it, or pass another output folder (--out)") from exc  # fmt: skip


# ---------------------------------------------------------------------------------- optimizer


def optimizer_state_to_files(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer ``state_dict`` into safetensors tensors (``state.<param>.<name>``,
    contiguous CPU copies) and the JSON rest (``param_groups`` and any non-tensor state)."""
    tensors: dict[str, torch.Tensor] = {}
    extra: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().to("cpu").contiguous()
            else:
                extra.setdefault(str(pid), {})[name] = jsonable(value)
    return tensors, {"param_groups": jsonable(sd["param_groups"]), "state_extra": extra}


def optimizer_state_from_files(tensors: dict[str, torch.Tensor], rest: dict[str, Any]
                               ) -> dict[str, Any]:
    """The inverse of :func:`optimizer_state_to_files` (``betas`` back to a tuple)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in rest.get("state_extra", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def resume_state(*, epoch: int, optimizer: dict[str, Any], scheduler: dict[str, Any],
                 scaler: dict[str, Any] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The resume files of ``last/``: ``(tensors of optimizer.safetensors, content of
    state.json)`` for ``epoch`` (0-based) and the optimizer, scheduler and gradient-scaler
    ``state_dict``\\ s (written by :func:`~ssl_attn.finetune.checkpoint.save_weights`'s
    ``extra_tensors={"optimizer": ...}``, ``extra_json={"state": ...}``)."""
    tensors, rest = optimizer_state_to_files(optimizer)
    return tensors, {"epoch": int(epoch), "optimizer": rest, "scheduler": jsonable(scheduler),
                     "scaler": None if scaler is None else jsonable(scaler)}


def load_resume_state(folder: Path) -> dict[str, Any]:
    """``{"epoch", "optimizer", "scheduler", "scaler"}`` from ``folder`` (a ``last/``) as
    :func:`resume_state` made them (``optimizer``: a ``state_dict`` for
    ``Optimizer.load_state_dict``). Raises :class:`RunFolderError` or
    :class:`~ssl_attn.finetune.checkpoint.CheckpointError` naming the file that is missing or
    unreadable."""
    from ssl_attn.finetune.checkpoint import read_tensors

    folder = Path(folder)
    state = read_json(folder / STATE_FILE)
    tensors, _ = read_tensors(folder / OPTIMIZER_FILE)
    try:
        optimizer = optimizer_state_from_files(tensors, state["optimizer"])
        return {"epoch": int(state["epoch"]), "optimizer": optimizer,
                "scheduler": state["scheduler"], "scaler": state.get("scaler")}
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{folder / STATE_FILE}: malformed resume state ({exc!r}); delete "
                             "the run folder to start over") from exc  # fmt: skip


# ---------------------------------------------------------------------------------- commit


def commit(out: Path, epoch: int, *, write_last: Callable[[Path], None],
           write_best: Callable[[Path], None] | None,
           write_manifest: Callable[[], None]) -> None:
    """Replace ``out/last`` (and ``out/best`` when ``write_best`` is given) by epoch
    ``epoch``'s, then write the manifest (see the module docstring for the order).

    ``write_last(stage)`` / ``write_best(stage)`` write ``stage/last/`` / ``stage/best/``;
    ``write_manifest()`` writes ``out/manifest.json`` atomically.
    """
    out = Path(out)
    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    write_last(stage)
    names = ["last"]
    if write_best is not None:
        write_best(stage)
        names.append("best")
    write_json(stage / _COMMIT_FILE, {"epoch": int(epoch), "moves": names})
    for name in names:
        if (out / name).exists():
            os.replace(out / name, stage / f"previous-{name}")
        os.replace(stage / name, out / name)
    write_manifest()
    shutil.rmtree(out / DONE, ignore_errors=True)
    os.replace(stage, out / DONE)  # atomic: a half-deleted stage is never read as a commit
    shutil.rmtree(out / DONE)


def recover(out: Path, done: int) -> None:
    """Bring ``out`` back to what its manifest records (``done`` epochs): finish or undo an
    interrupted :func:`commit`. With ``done == 0`` every checkpoint folder is removed."""
    out = Path(out)
    stage = out / STAGING
    shutil.rmtree(out / DONE, ignore_errors=True)
    if done == 0:
        for name in ("last", "best", STAGING):
            shutil.rmtree(out / name, ignore_errors=True)
        return
    if not stage.exists():
        return
    try:
        epoch = int(json.loads((stage / _COMMIT_FILE).read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        epoch = None  # the commit never reached its moves
    if epoch != done - 1:  # the manifest of that epoch was not written: undo the moves
        for name in ("last", "best"):
            previous = stage / f"previous-{name}"
            if previous.exists():
                shutil.rmtree(out / name, ignore_errors=True)
                os.replace(previous, out / name)
    shutil.rmtree(stage)
