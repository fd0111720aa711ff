"""Group and root attrs: JSON encoding of non-plain values, and provenance."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import subprocess
from collections.abc import Mapping
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

import ssl_attn

_LIBRARIES = (
    "numpy", "pandas", "xarray", "zarr", "dask", "torch", "torchvision", "transformers",
    "pillow", "scipy", "peft", "accelerate", "safetensors",
)  # fmt: skip



def encode_attrs(attrs: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """Return ``attrs`` with every value that is not str/int/float/bool as a JSON string.

    NumPy scalars become Python scalars; tuples, lists, dicts and None become JSON text.
    """
    out: dict[str, str | int | float | bool] = {}
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str | bool | int | float):
            out[key] = value
        else:
            out[key] = json.dumps(_jsonable(value), sort_keys=True)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # dtypes, devices and the like: their text form is the useful record


def decode_attr(value: Any) -> Any:
    """Decode an attr written by :func:`encode_attrs` (JSON text back to lists/dicts)."""
    if isinstance(value, str) and (value[:1] in ("[", "{") or value == "null"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of an attrs mapping through :func:`decode_attr` (a new plain dict)."""
    return {k: decode_attr(v) for k, v in attrs.items()}


@functools.cache
def _git_commit() -> str:
    """The commit of the source tree ssl_attn runs from, or "unknown" (installed, no git)."""
    here = Path(ssl_attn.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else "unknown"


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = _metadata.version(name)
        except _metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str:
    """The git commit ssl_attn runs from, or ``"unknown"`` (the ``git_commit`` provenance)."""
    return _git_commit()


def library_versions() -> dict[str, str]:
    """``{name: version}`` of the installed libraries that shape results (the
    ``library_versions`` provenance; libraries not installed are left out)."""
    return _library_versions()


def provenance(
    *, device: str = "unknown", dtype: str = "unknown", synthetic: bool = False, **extra: Any
) -> dict[str, str | int | float | bool]:
    """Provenance attrs for a store group, already encoded (see :func:`encode_attrs`).

    Keys: ``ssl_attn_version``, ``git_commit`` (or ``"unknown"``), ``library_versions`` (JSON
    ``{name: version}`` of the installed libraries that shape results), ``device``, ``dtype``,
    ``created`` (ISO 8601, UTC, seconds), ``synthetic`` (bool), plus ``extra`` (which may
    override any of them).
    """
    attrs: dict[str, Any] = {
        "ssl_attn_version": ssl_attn.__version__,
        "git_commit": _git_commit(),
        "library_versions": _library_versions(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "synthetic": bool(synthetic),
    }
    attrs.update(extra)
    return encode_attrs(attrs)
