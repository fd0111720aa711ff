"""Small hand-built inputs for the metrics/score tests: a two-image WikiChurches-format
dataset and an attention store built directly with xarray following docs/SCHEMA.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

# Boxes as fractions [left, top, width, height] and feature labels, per image.
BOXES = {
    "Q1_wd0": ([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 0.25, 0.25], [0.75, 0.0, 0.25, 0.25]],
               [0, 1, 0]),
    "Q2_wd0": ([[0.25, 0.25, 0.5, 0.5]], [1]),
}
SIZES = {"Q1_wd0": (60, 80), "Q2_wd0": (100, 100)}  # (height, width) pixels
FEATURES = ["Portal", "Rose window"]


def write_dataset(root: Path) -> Path:
    """A minimal WikiChurches-format folder (building_parts.json + images/)."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    ann = {}
    rng = np.random.default_rng(1)
    for iid, (boxes, labels) in BOXES.items():
        els = [{"left": b[0], "top": b[1], "width": b[2], "height": b[3], "label": lab}
               for b, lab in zip(boxes, labels)]
        ann[f"{iid}.jpg"] = {"styles": ["Q46261"],
                             "bbox_groups": [{"group_label": 0, "elements": els}]}
        h, w = SIZES[iid]
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            root / "images" / f"{iid}.jpg")
    parts = {"meta": [{"name": n, "parents": []} for n in FEATURES], "annotations": ann}
    (root / "building_parts.json").write_text(json.dumps(parts))
    return root


def model_group(seed: int, *, grid: int = 4, layers: int = 2, heads: int = 2,
                complete: tuple[bool, ...] = (True, True), methods=("cls", "rollout"),
                variants=("frozen",)) -> xr.Dataset:
    """A model group: random maps, ``complete`` flags as given (incomplete maps are NaN)."""
    rng = np.random.default_rng(seed)
    ids = list(BOXES)
    nv, ni = len(variants), len(ids)
    coords = {"variant": list(variants), "image_id": ids, "layer": np.arange(layers),
              "head": np.arange(heads), "y": (np.arange(grid) + 0.5) / grid,
              "x": (np.arange(grid) + 0.5) / grid,
              "height": ("image_id", [SIZES[i][0] for i in ids]),
              "width": ("image_id", [SIZES[i][1] for i in ids])}
    data = {}
    done = np.array(complete, dtype=bool)
    if "cls" in methods:
        a = rng.random((nv, ni, layers, heads, grid, grid)).astype(np.float32)
        a[:, ~done] = np.nan
        data["cls"] = (("variant", "image_id", "layer", "head", "y", "x"), a)
    if "rollout" in methods:
        a = rng.random((nv, ni, layers, grid, grid)).astype(np.float32)
        a[:, ~done] = np.nan
        data["rollout"] = (("variant", "image_id", "layer", "y", "x"), a)
    if "probe" in methods:
        a = rng.random((nv, ni, heads, grid, grid)).astype(np.float32)
        a[:, ~done] = np.nan
        data["probe"] = (("variant", "image_id", "head", "y", "x"), a)
    data["complete"] = (("variant", "image_id"), np.broadcast_to(done, (nv, ni)).copy())
    return xr.Dataset(data, coords=coords, attrs={"created": f"seed{seed}"})


def write_store(path: Path, data_root: Path, groups: dict[str, xr.Dataset]) -> Path:
    """Write a DataTree store (one group per model) to ``path``."""
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs={"dataset": str(data_root),
                                                         "synthetic": True}),
                                  **{f"/{k}": v for k, v in groups.items()}})
    tree.to_zarr(str(path), mode="w", consolidated=True)
    return path
