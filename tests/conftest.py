"""Shared fixtures: a small synthetic WikiChurches-format dataset and tiny saved models.

Both are session-scoped and built lazily, so a test module that needs neither pays nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic dataset of 16 images, 8 of them annotated (seed 1)."""
    from ssl_attn import synthetic

    root = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(root, n=16, seed=1, n_annotated=8, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random models of every registered architecture, saved as real checkpoints are.

    Layout: ``<dir>/<key>/`` per model key, written by ``save_random_model(size="tiny")`` so tests
    load them through the same ``from_pretrained(dir)`` path as real runs.
    """
    from ssl_attn.models import list_models
    from ssl_attn.models.testing import save_random_model

    out = tmp_path_factory.mktemp("tiny_weights")
    for key in list_models():
        save_random_model(key, out, size="tiny", seed=0)
    return out
