"""Benchmark: ``shift_table`` on a full-size scores Dataset, row-wise statistics against the loop.

    .venv/bin/python benchmarks/shift.py [--images 139] [--repeats 1] [--profile]

Builds in memory a scores Dataset of the full Q2 size — 7 models × 5 variants (``frozen``, the
reference; ``lora``, ``full`` and their ``*_shuffled`` controls) × 4 methods × 12 layers × 139
images, heads ``(-1, 0, 1)``, IoU at percentiles 50/90, coverage, 4 styles and 4 feature types
(``feature_coverage``, 1–3 types per image) and the uniform baseline — with RANDOM VALUES,
GENERATED FOR TIMING ONLY (float32, a planted shift per variant): nothing it shows means
anything.

Then times :func:`ssl_attn.finetune.shift.shift_table` twice in the same process: "old" with
the per-row statistics replaced by the row-by-row loop over the scalar
``ssl_attn.stats.paired_ttest`` / ``wilcoxon`` / ``cohens_dz`` (what ``shift_table`` did before
the row-wise functions), "new" as shipped; checks that both give identical tables and prints
seconds of each (best of ``--repeats``), the ratio new/old, the rows each row function got
and the seconds spent in them (mean per ``shift_table`` call; the rest is the bootstrap
:func:`ssl_attn.stats.mean_ci`, best layers and the Dataset). On a shared machine the seconds
include waiting for a core: compare the ratio.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("dinov2", "dinov3", "mae", "clip", "siglip2", "resnet50", "ijepa")
VARIANTS = ("frozen", "lora", "full", "lora_shuffled", "full_shuffled")
METHODS = ("cls", "rollout", "mean_received", "gradcam")
STYLES = ("Q46261", "Q176483", "Q840829", "Q236122")
FEATURES = ("portal", "window", "tower", "arch")


def full_scores(n_images: int = 139, seed: int = 0):
    """The scores Dataset described in the module docstring (docs/SCHEMA.md "Scores")."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    ids = [f"Q{9000000 + k}_wd0" for k in range(n_images)]
    names = [*MODELS, "baseline:uniform"]
    methods = [*METHODS, "baseline"]
    layers = list(range(-1, 12))
    heads = [-1, 0, 1]
    shape = (len(names), len(VARIANTS), len(methods), len(layers), len(heads), n_images)
    cov = np.full(shape, np.nan, dtype=np.float32)
    ref = rng.uniform(0.1, 0.6, size=(len(MODELS), 1, len(METHODS), 12, len(heads), n_images))
    shift = np.array([0.0, 0.03, 0.05, 0.005, 0.01])[None, :, None, None, None, None]
    sd = np.array([0.0, 0.02, 0.03, 0.03, 0.03])[None, :, None, None, None, None]
    noise = rng.standard_normal((len(MODELS), len(VARIANTS), len(METHODS), 12, len(heads),
                                 n_images))
    cov[: len(MODELS), :, : len(METHODS), 1:] = np.clip(ref + shift + sd * noise, 0, 1)
    cov[-1, 0, -1, 0, 0] = rng.uniform(0.15, 0.25, size=n_images)  # baseline:uniform
    feat_img, feat_label, feat_name, feat_rows = [], [], [], []
    for k, iid in enumerate(ids):
        for label in sorted(rng.choice(len(FEATURES), size=1 + k % 3, replace=False).tolist()):
            feat_img.append(iid)
            feat_label.append(label)
            feat_name.append(FEATURES[label])
            feat_rows.append(k)
    fcov = cov[..., feat_rows] * rng.uniform(0.5, 1.0, size=len(feat_rows)).astype(np.float32)
    pct = np.array([50.0, 90.0])
    dims = ("model", "variant", "method", "layer", "head")
    styles = {iid: STYLES[k % len(STYLES)] for k, iid in enumerate(ids)}
    return xr.Dataset(
        {"coverage": ((*dims, "image_id"), cov, {"direction": "higher"}),
         "iou": ((*dims, "image_id", "percentile"),
                 (cov[..., None] * (pct / 100)).astype(np.float32), {"direction": "higher"}),
         "feature_coverage": ((*dims, "image_feature"), fcov, {"direction": "higher"})},
        coords={"model": np.array(names, dtype=object),
                "variant": np.array(VARIANTS, dtype=object),
                "method": np.array(methods, dtype=object),
                "layer": np.array(layers, np.int64), "head": np.array(heads, np.int64),
                "image_id": np.array(ids, dtype=object), "percentile": pct,
                "image_feature": np.arange(len(feat_img)),
                "image_feature_image_id": ("image_feature", np.array(feat_img, dtype=object)),
                "image_feature_label": ("image_feature", np.array(feat_label, np.int64)),
                "image_feature_name": ("image_feature", np.array(feat_name, dtype=object))},
        attrs={"synthetic": True, "store": "benchmark"},
    ), styles


class _Counter:
    """Wraps a function, counting its calls, the rows it was given and its seconds."""

    def __init__(self, fn):
        self.fn, self.calls, self.rows, self.seconds = fn, 0, 0, 0.0

    def __call__(self, a, *args, **kwargs):
        self.calls += 1
        self.rows += 1 if np.ndim(a) <= 1 else len(a)
        t0 = time.perf_counter()
        try:
            return self.fn(a, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def _loop_rows(scalar):
    """The row-by-row loop over a scalar paired statistic (the "old" path)."""

    def rows(a, b):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        a = a.reshape(1, -1) if a.ndim <= 1 else a.reshape(a.shape[0], -1)
        b = b.reshape(a.shape)
        res = [scalar(x, y) for x, y in zip(a, b, strict=True)]
        if res and isinstance(res[0], tuple):
            return tuple(np.array(col, dtype=np.float64) for col in zip(*res, strict=True))
        return np.array(res, dtype=np.float64)

    return rows


def _timed(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=139)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="cProfile the new path (top 25)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import scipy.stats  # noqa: F401  (imported before timing: both paths need it)

    from ssl_attn import stats
    from ssl_attn.finetune import shift

    t0 = time.perf_counter()
    scores, styles = full_scores(args.images)
    print(f"built the scores in {time.perf_counter() - t0:.1f} s: "
          f"{dict(scores.sizes)}")

    def run():
        return shift.shift_table(scores, styles=styles)

    names = ("paired_ttest_rows", "wilcoxon_rows", "cohens_dz_rows")
    shipped = {k: getattr(stats, k) for k in names}
    counters = {k: _Counter(v) for k, v in shipped.items()}
    try:
        for k, c in counters.items():
            setattr(stats, k, c)
        t_new, new = _timed(run, args.repeats)
        loops = {"paired_ttest_rows": _Counter(_loop_rows(stats.paired_ttest)),
                 "wilcoxon_rows": _Counter(_loop_rows(stats.wilcoxon)),
                 "cohens_dz_rows": _Counter(_loop_rows(stats.cohens_dz))}
        for k, fn in loops.items():
            setattr(stats, k, fn)
        t_old, old = _timed(run, args.repeats)
        if args.profile:
            for k, fn in shipped.items():
                setattr(stats, k, fn)
            prof = cProfile.Profile()
            prof.runcall(run)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        for k, fn in shipped.items():
            setattr(stats, k, fn)
    for ds in (old, new):
        ds.attrs.pop("created")
    identical = new.identical(old)
    r = args.repeats
    print("per shift_table call, new path: " + ", ".join(
        f"{k} {c.rows // r} rows in {c.calls // r} calls" for k, c in counters.items()))
    for label, group in (("old", loops), ("new", counters)):
        print(f"seconds in the t-test / Wilcoxon / d_z rows, {label}: " + ", ".join(
            f"{k} {c.seconds / r:.2f}" for k, c in group.items())
            + f" (total {sum(c.seconds for c in group.values()) / r:.2f}; mean per call)")
    print(f"old (row loop): {t_old:.2f} s   new (row-wise): {t_new:.2f} s   "
          f"new/old = {t_new / t_old:.3f}   tables identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
