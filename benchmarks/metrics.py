"""Benchmark: score a full-size cube of attention maps in memory and time each metric family.

Cube (random-but-structured maps, random boxes, ~4.5 per image):
  dinov2 cls 12 layers x 12 heads at 16x16; dinov3, mae, clip cls 12 x 12 at 14x14;
  siglip2 mean_received 12 x 12 at 14x14 plus the pooling probe (12 heads); resnet50 Grad-CAM
  4 layers at 56x56. Every head set also gets its head-mean map (head = -1), as in score().
Scored at R = 224 with every metric, per box and per feature type, plus the four baselines.

Prints seconds per metric family summed over worker threads (wall time inside the family,
which on a busy machine includes waiting for a core, and the threads' CPU time), the wall and
CPU time of the whole score() call, and peak resident memory. Run:

    .venv/bin/python benchmarks/metrics.py [--images 139] [--scheduler threads] [--draws 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MODELS = {  # key: (method, layers, heads, grid)
    "dinov2": [("cls", 12, 12, 16)],
    "dinov3": [("cls", 12, 12, 14)],
    "mae": [("cls", 12, 12, 14)],
    "clip": [("cls", 12, 12, 14)],
    "siglip2": [("mean_received", 12, 12, 14), ("probe", None, 12, 14)],
    "resnet50": [("gradcam", 4, None, 56)],
}
DIMS = {"cls": ("layer", "head"), "mean_received": ("layer", "head"), "probe": ("head",),
        "gradcam": ("layer",)}


def structured_maps(rng: np.random.Generator, shape: tuple[int, ...], grid: int) -> np.ndarray:
    """Smooth positive maps: low-frequency noise (4x4, upsampled) sharpened by exp, plus
    per-patch noise, normalised to sum 1 like attention rows."""
    from ssl_attn.metrics.resample import upsample

    n = int(np.prod(shape))
    low = upsample(rng.standard_normal((n, 4, 4)).astype(np.float32), grid)
    a = np.exp(2.0 * low + 0.3 * rng.standard_normal((n, grid, grid)).astype(np.float32))
    a /= a.sum(axis=(1, 2), keepdims=True)
    return a.reshape(*shape, grid, grid)


def write_dataset(root: Path, n_images: int, rng: np.random.Generator) -> list[str]:
    """A WikiChurches-format folder with random boxes (~4.5 per image) and small images."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    ann, ids = {}, []
    for i in range(n_images):
        iid = f"Q{1000 + i}_wd0"
        ids.append(iid)
        nb = int(rng.integers(1, 9))
        els = []
        for _ in range(nb):
            w, h = rng.uniform(0.05, 0.4, 2)
            els.append({"left": float(rng.uniform(0, 1 - w)), "top": float(rng.uniform(0, 1 - h)),
                        "width": float(w), "height": float(h), "label": int(rng.integers(0, 6))})
        ann[f"{iid}.jpg"] = {"styles": ["Q46261"],
                             "bbox_groups": [{"group_label": 0, "elements": els}]}
        hw = (int(rng.integers(300, 700)), int(rng.integers(300, 700)))
        img = (rng.random((hw[0] // 8, hw[1] // 8, 3)) * 255).astype(np.uint8)
        Image.fromarray(img).resize((hw[1], hw[0])).save(root / "images" / f"{iid}.jpg")
    meta = [{"name": f"feature{k}", "parents": []} for k in range(6)]
    (root / "building_parts.json").write_text(json.dumps({"meta": meta, "annotations": ann}))
    return ids


def build_tree(ids: list[str], data_root: Path, rng: np.random.Generator):
    import xarray as xr

    groups = {}
    n_maps = 0
    for key, methods in MODELS.items():
        data, coords = {}, {"variant": ["frozen"], "image_id": ids}
        for method, nl, nh, grid in methods:
            shape = [1, len(ids)] + [v for v in (nl, nh) if v is not None]
            a = structured_maps(rng, tuple(shape), grid)
            n_maps += int(np.prod(shape[1:])) + (int(np.prod(shape[1:-1])) if nh else 0)
            data[method] = (("variant", "image_id", *DIMS[method], "y", "x"), a)
            if nl:
                coords["layer"] = np.arange(nl) + (1 if method == "gradcam" else 0)
            if nh:
                coords["head"] = np.arange(nh)
            coords["y"] = coords["x"] = (np.arange(grid) + 0.5) / grid
        data["complete"] = (("variant", "image_id"), np.ones((1, len(ids)), bool))
        groups[f"/{key}"] = xr.Dataset(data, coords=coords, attrs={"created": "bench"})
    root = xr.Dataset(attrs={"dataset": str(data_root), "synthetic": True})
    return xr.DataTree.from_dict({"/": root, **groups}), n_maps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=139)
    p.add_argument("--scheduler", default=None,
                   help="dask scheduler name (threads, processes); default in-process threads")
    p.add_argument("--draws", type=int, default=100, help="uniform-baseline draws per image")
    p.add_argument("--resolution", type=int, default=224)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")

    from ssl_attn.metrics import profile
    from ssl_attn.metrics.scoring import score

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        ids = write_dataset(Path(tmp) / "wc", args.images, rng)
        tree, n_maps = build_tree(ids, Path(tmp) / "wc", rng)
        n_base = args.images * (args.draws + 3)
        print(f"cube: {n_maps} model maps over {args.images} images + {n_base} baseline maps; "
              f"R = {args.resolution}; scheduler = {args.scheduler or 'threads (in-process)'}")
        t0, c0 = time.perf_counter(), time.process_time()
        with profile() as fam:
            ds = score(tree, resolution=args.resolution, baselines=True, n_draws=args.draws,
                       scheduler=args.scheduler)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_all = n_maps + n_base
    print(f"{'family':22s} {'thread s':>9s} {'CPU s':>9s} {'CPU ms/map':>11s}")
    for name in sorted(fam, key=fam.get, reverse=True):
        print(f"{name:22s} {fam[name]:9.2f} {fam.cpu[name]:9.2f} "
              f"{1e3 * fam.cpu[name] / n_all:11.3f}")
    print(f"{'sum of families':22s} {sum(fam.values()):9.2f} {sum(fam.cpu.values()):9.2f}")
    print("(thread s: wall time inside each family summed over worker threads, so it includes "
          "waiting for a core on a busy machine; CPU s: the threads' CPU time there)")
    print(f"wall, whole cube incl. baselines and dask/xarray overhead: {wall:.1f} s "
          f"(target 60 s); process CPU during score(): {cpu:.1f} s")
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: this process {me:.0f} MB (target 4096 MB); largest child {kids:.0f} MB")
    print(f"scores: {dict(ds.sizes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
