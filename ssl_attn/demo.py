"""Weights for ``ssl-attn demo``: real where this machine has them, random-init otherwise.

The demo must run from a clean clone with no network. For each model it uses, in order:

1. ``weights_dir/<key>/`` when the caller passes a weights folder (real checkpoints, offline);
2. the HuggingFace hub cache (or torch hub cache for ResNet-50), when the checkpoint is there;
3. a full-size model of the real architecture with **random weights**, written once by
   :func:`ssl_attn.models.testing.save_random_model` into ``data/weights/demo/<key>/`` with a
   ``RANDOM_INIT.json`` marker, so the store records ``weights = "random-init:<path>"`` and the
   dashboard can say so.

Everything goes through ``load_model(key, weights_dir=...)``, the same ``from_pretrained(dir)``
path as real runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

DEMO_WEIGHTS = Path("data/weights/demo")


def _hub_snapshot(checkpoint: str) -> Path | None:
    """The cached snapshot folder of a hub checkpoint, or None when it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with the models extra
        return None
    hit = try_to_load_from_cache(checkpoint, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


def _torchvision_cached(spec) -> Path | None:
    """The cached torchvision weights file of a ResNet spec, or None."""
    import torch
    import torchvision

    arch = spec.config_overrides.get("arch", "resnet50")
    enum = torchvision.models.get_model_weights(arch)[
        spec.config_overrides.get("weights", "IMAGENET1K_V2")
    ]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    return path if path.exists() else None


def _folder_ready(folder: Path) -> bool:
    return folder.is_dir() and any(
        (folder / name).exists() for name in ("config.json", "resnet50.pth")
    )


def prepare_demo_weights(
    models: Sequence[str],
    weights_dir: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = DEMO_WEIGHTS,
    *,
    verbose: bool = True,
) -> Path:
    """Make a ``weights_dir`` with one folder per model key for the demo, and return it.

    Args:
        models: registry keys, e.g. ``["dinov2", "mae"]``.
        weights_dir: a folder of real weights; returned unchanged when given.
        out_dir: where the demo folder is assembled (default ``data/weights/demo``).
        verbose: print where each model's weights come from.

    Returns:
        The folder to pass as ``weights_dir`` to :func:`ssl_attn.extract.extract`.
    """
    if weights_dir is not None:
        return Path(weights_dir)
    from ssl_attn.models import get_spec
    from ssl_attn.models.families import get_family

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key in models:
        spec = get_spec(key)
        hub = get_family(spec.family).backend == "transformers"  # else a torchvision CNN
        folder = out / key
        if _folder_ready(folder):
            source = "already prepared"
        elif hub and (snap := _hub_snapshot(spec.checkpoint)) is not None:
            if folder.is_symlink():
                folder.unlink()
            folder.symlink_to(snap.resolve(), target_is_directory=True)
            source = f"hub cache {snap}"
        elif not hub and (cached := _torchvision_cached(spec)) is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "resnet50.pth").symlink_to(cached.resolve())
            source = f"torch hub cache {cached}"
        else:
            from ssl_attn.models.testing import save_random_model

            save_random_model(key, out, size="full", seed=0)
            source = "RANDOM weights (full-size architecture; no checkpoint on this machine)"
        if verbose:
            print(f"  weights {key:10s} {source}")
    return out
