"""Explorer responsiveness on a full-size store: cold start and warm interactions (server time).

    .venv/bin/python benchmarks/explorer.py [--store DIR] [--repeats 30] [--keep]

Builds (or reuses, with ``--store`` pointing at an existing one) a store of the full WikiChurches
size — 139 images × 6 models × 12 layers × 12 heads — written through the store schema
(docs/SCHEMA.md) by ``tests/_store_builder.py`` with RANDOM BUT STRUCTURED VALUES, GENERATED FOR
TIMING ONLY (a blob per layer/head, random scores): nothing it shows means anything.

Then, like one browser session on the server: build the app's Bokeh document (cold start), and
drive the shared state (layer, head, model, image) while the default page is rendered, timing
each param change until every dependent Bokeh model is updated (the views update the document
synchronously). Prints p50 / p95 ms per interaction type, and how often Bokeh recomputed the
document's model graph during them (each recompute walks every model: ~50–150 ms here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

N_IMAGES, N_LAYERS, N_HEADS = 139, 12, 12


def full_layouts():
    """The six models at their real grids (224 px input) and attention methods."""
    from _store_builder import ModelLayout

    layers, heads = tuple(range(N_LAYERS)), tuple(range(N_HEADS))
    vit = ("cls", "rollout", "mean_received")
    return (
        ModelLayout("dinov2", vit, layers, heads, (16, 16), variants=("frozen", "full"),
                    n_registers=4),
        ModelLayout("dinov3", vit, layers, heads, (14, 14), n_registers=4),
        ModelLayout("mae", vit, layers, heads, (14, 14)),
        ModelLayout("clip", vit, layers, heads, (14, 14)),
        ModelLayout("siglip2", ("mean_received", "probe"), layers, heads, (14, 14)),
        ModelLayout("resnet50", ("gradcam",), (1, 2, 3, 4), (), (7, 7)),
    )


def full_images(seed: int = 0) -> dict:
    """139 ids with 640 × 480 / 480 × 640 photos and 1–8 random boxes each (631 in all ± a few)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(N_IMAGES):
        w, h = (640, 480) if i % 3 else (480, 640)
        boxes = []
        for _ in range(int(rng.integers(1, 9))):
            bw, bh = rng.uniform(0.05, 0.4, size=2)
            boxes.append((float(rng.uniform(0, 1 - bw)), float(rng.uniform(0, 1 - bh)),
                          float(bw), float(bh), int(rng.integers(0, 5))))
        out[f"Q{1000 + i}_wd0"] = (w, h, boxes)
    return out


def build(root: Path) -> Path:
    from _store_builder import build_dataset, build_scores, build_store

    images = full_images()
    layouts = full_layouts()
    t = time.perf_counter()
    ds = build_dataset(root / "synthetic", images)
    store = build_store(root / "stores" / "bench.zarr", layouts, images, dataset=ds,
                        content="random")
    build_scores(root / "stores" / "bench.scores.zarr", layouts, images, content="random")
    print(f"built the timing-only store in {time.perf_counter() - t:.1f} s: {store}")
    return store


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=None, help="reuse this store (else build one)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = p.parse_args(argv)

    print("NOTE: the store content is random, generated for timing only.")
    tmp = None
    store = args.store
    if store is None or not store.exists():
        tmp = Path(tempfile.mkdtemp(prefix="ssl_attn_bench_"))
        store = build(tmp)

    t0 = time.perf_counter()
    import panel as pn
    from bokeh.document import Document

    from ssl_attn.explorer import Explorer

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    ex = Explorer(store)
    doc = Document()
    ex.template().server_doc(doc)
    t_cold = time.perf_counter() - t1
    # As in a live session: callbacks run with the session's document as panel's curdoc.
    pn.state.curdoc = doc
    print(f"cold start: imports {t_import:.2f} s + session (open store, build and render the "
          f"page) {t_cold:.2f} s = {t_import + t_cold:.2f} s")

    import numpy as np

    rng = np.random.default_rng(0)
    s = ex.state
    images = list(s.param.image_id.objects)
    timings: dict[str, list[float]] = {"layer": [], "head": [], "model": [], "image": []}
    models = [m for m in ex.data.models]

    recomputes = [0]
    recompute = doc.models.recompute

    def counted_recompute() -> None:
        recomputes[0] += 1
        recompute()

    doc.models.recompute = counted_recompute  # instance attribute: counts every recompute

    def timed(kind: str, **values) -> None:
        t = time.perf_counter()
        s.param.update(**values)
        timings[kind].append((time.perf_counter() - t) * 1e3)

    for _ in range(args.repeats):
        layers = [la for la in s.param.layer.objects if la != s.layer]
        if layers:
            timed("layer", layer=int(rng.choice(layers)))
        heads = [h for h in s.param.head.objects.values() if h != s.head]
        if heads:
            timed("head", head=int(rng.choice(heads)))
        timed("image", image_id=str(rng.choice([i for i in images if i != s.image_id])))
        timed("model", model=str(rng.choice([m for m in models if m != s.model])))

    print(f"\nwarm interactions, {args.repeats} each, server time per change (ms):")
    print(f"{'interaction':<12}{'p50':>8}{'p95':>8}{'max':>8}")
    for kind, vals in timings.items():
        if vals:
            print(f"{kind:<12}{pct(vals, 0.5):8.1f}{pct(vals, 0.95):8.1f}{max(vals):8.1f}")
    all_vals = [v for vals in timings.values() for v in vals]
    print(f"{'all':<12}{statistics.median(all_vals):8.1f}{pct(all_vals, 0.95):8.1f}"
          f"{max(all_vals):8.1f}")
    print(f"document model-graph recomputes during the {len(all_vals)} changes: {recomputes[0]}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nmachine: {os.cpu_count()} CPUs, 1-min load average {load:.1f} "
          "(timings scale with load on shared machines)")
    print("targets: warm p95 <= 150 ms, cold start <= 5 s")
    if tmp is not None and not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp is not None:
        print(f"kept: {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
