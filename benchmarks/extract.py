"""Benchmark: ``ssl_attn.extract.extract`` (eager attention, maps, store writes) vs a bare forward.

For every model (default: every registered model) this builds a full-size random-weight
checkpoint (``save_random_model(size="full")``), generates a synthetic WikiChurches-format set of
``--n-images`` annotated images, and in **one subprocess per model** measures:

* ours: ``extract(...)`` into a fresh store, batch ``--batch-size``: image decoding and
  preprocessing (prefetched in a thread), the eager forward with attentions, the map reductions
  and the region writes to Zarr. images/s = images / time of the batch loop (model load
  excluded; one warm-up batch into a scratch store first).
* bare: the same model loaded with ``attn_implementation="sdpa"`` (no ``output_attentions``),
  forward only under ``torch.inference_mode()`` on the same preprocessed batches (prepared
  before timing), after one warm-up batch. For ResNet-50 the bare forward has no Grad-CAM
  backward, so its ratio measures the cost of Grad-CAM itself.

ratio = (ours seconds per image) / (bare seconds per image); the target is <= 1.2 for ViTs.

* eager/sdpa: the eager model's plain forward (no hooks, no maps) over sdpa's, on the same
  batches: the part of the ratio due to eager attention itself (which per-head maps need).

Memory: the peak resident set size of the child process (Linux ``VmHWM`` from
/proc/self/status, which counts torch's native allocations too; tracemalloc would not) at the
end of our run, before the bare model is loaded; "delta" subtracts the peak after imports
(torch, transformers) and before any model is loaded. Timings are wall clock on this machine.

Usage::

    python benchmarks/extract.py [--models dinov2 mae] [--n-images 32] [--batch-size 8]
                                 [--device cpu] [--size full|tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: ``VmHWM`` of /proc/self/status, which starts afresh at exec. (``ru_maxrss`` would
    not do for a child process: Linux carries the parent's peak over fork and exec, and the
    parent holds a full-size model it just saved.) Elsewhere: ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(args: argparse.Namespace) -> dict:
    """Measure one model in this process; returns the numbers as a dict."""
    import torch

    import ssl_attn.attention as attention
    from ssl_attn import extract as ex
    from ssl_attn import store as st
    from ssl_attn.models import load_model
    from ssl_attn.wikichurches import WikiChurches

    rss_imports = _peak_rss_mb()
    key, data, weights, work = args.child, Path(args.data), Path(args.weights), Path(args.work)
    wc = WikiChurches(data)
    ids = sorted(wc.images["image_id"])[: args.n_images]
    bs = args.batch_size

    # Time the two big steps of our loop by wrapping them (the loop calls them by module attr).
    spent = {"extract_maps": 0.0, "write_maps": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t0

        return wrapper

    attention.extract_maps = timed("extract_maps", attention.extract_maps)
    st.write_maps = timed("write_maps", st.write_maps)

    common = dict(weights_dir=weights, device=args.device, batch_size=bs, progress=False)
    ex.extract(work / f"{key}-warmup.zarr", data, key, image_ids=ids[:bs], **common)
    spent.update(extract_maps=0.0, write_maps=0.0)
    t0 = time.perf_counter()
    report = ex.extract(work / f"{key}.zarr", data, key, image_ids=ids, **common)
    ours_wall = time.perf_counter() - t0
    rep = report.models[key]
    assert rep.n_computed == len(ids), report
    ours_loop = rep.n_computed / rep.images_per_s
    rss_ours = _peak_rss_mb()

    def forward_seconds(loaded, batches) -> float:
        with torch.inference_mode():
            loaded.forward(batches[0])  # warm-up
            t0 = time.perf_counter()
            for pv in batches:
                loaded.forward(pv)
            return time.perf_counter() - t0

    vit = key != "resnet50"
    bare = load_model(key, device=args.device, weights_dir=weights,
                      **({"attn_implementation": "sdpa"} if vit else {}))
    batches = [bare.preprocess([wc.load_image(i) for i in ids[s : s + bs]]).pixel_values
               for s in range(0, len(ids), bs)]
    bare_s = forward_seconds(bare, batches)
    del bare
    # Where the time goes: the eager model's plain forward (no hooks, no maps) on the same
    # batches separates the cost of eager attention from the cost of capturing the maps.
    eager_s = forward_seconds(load_model(key, device=args.device, weights_dir=weights),
                              batches) if vit else float("nan")
    n = len(ids)
    return {
        "model": key,
        "n_images": n,
        "ours_images_per_s": n / ours_loop,
        "ours_wall_s_incl_load": ours_wall,
        "bare_images_per_s": n / bare_s,
        "ratio": ours_loop / bare_s,
        "eager_forward_images_per_s": n / eager_s,
        "eager_over_sdpa": eager_s / bare_s,
        "ours_extract_maps_s": spent["extract_maps"],
        "ours_write_s": spent["write_maps"],
        "ours_loop_s": ours_loop,
        "bare_s": bare_s,
        "peak_rss_mb": rss_ours,
        "peak_rss_delta_mb": rss_ours - rss_imports,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="model keys (default: every registered model)")
    parser.add_argument("--n-images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=("full", "tiny"), default="full",
                        help="random-weight model size (tiny: a smoke test of this script)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    # internal: the per-model child process
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0

    from ssl_attn import synthetic
    from ssl_attn.models import list_models
    from ssl_attn.models.testing import save_random_model

    keys = args.models or list(list_models())
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        synthetic.generate(data, n=args.n_images, seed=0, n_annotated=args.n_images,
                           progress=False)
        print(f"device={args.device} n_images={args.n_images} batch={args.batch_size} "
              f"size={args.size} cpus={os.cpu_count()}", flush=True)
        header = (f"{'model':10} {'ours img/s':>10} {'bare img/s':>10} {'ratio':>6} "
                  f"{'eager/sdpa':>10} {'maps s':>7} {'write s':>7} {'peak RSS MB':>11} "
                  f"{'delta MB':>8}")
        rows = []
        for key in keys:
            weights = tmp / "weights"
            save_random_model(key, weights, size=args.size, seed=0)
            cmd = [sys.executable, __file__, "--child", key, "--data", str(data),
                   "--weights", str(weights), "--work", str(tmp), "--n-images",
                   str(args.n_images), "--batch-size", str(args.batch_size), "--device",
                   args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{key}: failed\n{proc.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(lines[-1].removeprefix("RESULT "))
            rows.append(r)
            print(json.dumps(r), flush=True)
            for p in weights.glob("*"):  # full-size checkpoints are large: one at a time
                subprocess.run(["rm", "-rf", str(p)], check=False)
        print(header)
        for r in rows:
            print(f"{r['model']:10} {r['ours_images_per_s']:10.2f} {r['bare_images_per_s']:10.2f} "
                  f"{r['ratio']:6.2f} {r['eager_over_sdpa']:10.2f} "
                  f"{r['ours_extract_maps_s']:7.1f} {r['ours_write_s']:7.2f} "
                  f"{r['peak_rss_mb']:11.0f} {r['peak_rss_delta_mb']:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
