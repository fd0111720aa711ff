"""Benchmark: one fine-tuning step through ``ssl_attn.finetune`` vs a bare PyTorch step.

For a full-size model with RANDOM weights (``FineTunableModel(key, random_init=True)``: the
registry's architecture, default ``dinov2``, a ViT-B/14 with registers) at batch ``--batch``
(default 16) and input side ``--size`` (default 224), this measures each strategy
(``linear_probe``, ``lora``, ``full``) in two subprocesses (the script re-invokes itself with
``--one STRATEGY`` and ``--one STRATEGY --paired``).

What "ours" is. :meth:`ssl_attn.finetune.FineTuner.train`: the trainer exposes no step
function of its own (the step is inline in its epoch loop), so the whole path is timed as a
user runs it: ``FineTunableModel.setup`` + ``param_groups`` + AdamW + the cosine schedule +
accelerate's ``prepare``, then per step the augmented images of
:class:`~ssl_attn.finetune.StyleImages` (decoded once, cached; ``num_workers=0``), the
class-weighted loss (``shard_loss``), ``accelerator.backward``, gradient clipping and the
optimiser and scheduler steps. The pool is a synthetic WikiChurches-format set whose training
split holds exactly ``--batch x --steps`` images, so one epoch is ``--steps`` steps; two
epochs run, the first one the warm-up.

What "bare" is. The same transformers model (built by ``load_model(random_init=True)`` with the
trainer's attention implementation, sdpa for the ViTs) + an ``nn.Linear`` head +
``torch.optim.AdamW`` + plain cross-entropy on one fixed, already preprocessed batch of the
same images: ``forward -> CE -> backward -> step -> zero_grad``, under the trainer's autocast
dtype (none on CPU). It does the work of the strategy: ``linear_probe`` runs the frozen
backbone under ``no_grad`` and trains the head; ``lora`` wraps the model with peft's
``get_peft_model`` (the family's rank, alpha, dropout and targets); ``full`` trains everything.

1. Sequential (``--one S``): ``FineTuner.train``, then the bare step in the same process (one
   warm-up step, then ``--steps`` timed steps). "ours img/s" is the trainer's **own**
   ``images_per_s`` of the second epoch, from its history (training images / training seconds
   of the epoch: the data pipeline included, validation and checkpoint writing excluded;
   rounded to 0.01 by the trainer). ratio = (ours seconds per image) / (bare seconds per
   image); the target is <= 1.1.
2. Paired (``--one S --paired``; skip with ``--no-paired``): on a machine shared with other
   work the load moves between the two halves of the sequential run, so here the bare model is
   built first and one bare step runs right after every optimiser step of
   ``FineTuner.train``, from torch's global ``register_optimizer_step_post_hook``. An ours step
   is the time from the end of the previous bare step to the end of the trainer's next
   optimiser step within an epoch (data, forward, loss, backward, clipping, optimiser; the
   scheduler step and zero_grad of the step before), which gives ``2 x (steps - 1)`` figures
   (none when ``--steps 1``); each is paired with the bare step that follows it (the first
   bare step, after the first ours step, is the bare warm-up). "paired ratio" is the median
   over the pairs of (ours step / bare step); "paired ours s" and "paired bare s" are the
   means. Steps of the same work were seen to take 1.4 s and 8 s within one run on the shared
   2-core machine this was written on: trust the paired ratio over the sequential one there.

"data s/step" is the time :class:`StyleImages` takes to produce one batch from cached decoded
images (augmentation + preprocessing), measured apart: the part of the ratio due to the data
pipeline, which the bare step does not have.

Memory: the peak resident set size of a fresh child process (Linux ``VmHWM`` of
/proc/self/status, read by ``benchmarks/extract.py``'s helper; ``ru_maxrss`` would carry the
parent's peak over fork and exec). "peak RSS MB": the sequential child at the end of
``FineTuner.train``, before the bare model is built (imports, model load, training, validation,
checkpoint writing); "train delta" subtracts the resident set right after the model is loaded.
"bare peak MB" / "bare delta": the same for the bare step, in the paired child after its bare
warm-up step and before the trainer's model is built (so with ``--no-paired`` there is none).
On CUDA the peaks of ``torch.cuda.max_memory_allocated`` are given as well.

``--demo-run DIR [DIR ...]`` adds the training time and accuracy of finished runs (the demo
recipe's), read from each run folder's ``manifest.json``.

Timings are wall clock on a possibly shared machine: the script prints the CPU count, torch's
thread count and the load average before and after; compare the ratios.

Usage::

    python benchmarks/finetune.py [--model dinov2] [--batch 16] [--steps 2] [--size 224]
                                  [--strategies linear_probe lora full] [--device cpu]
                                  [--precision auto] [--no-paired]
                                  [--demo-run runs/demo-full ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from extract import _peak_rss_mb  # noqa: E402  (benchmarks/extract.py: peak RSS of a child)

STRATEGIES = ("linear_probe", "lora", "full")
N_VAL = 4  # validation images: one per synthetic style (the split needs >= one per class)


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux ``VmRSS``; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# ---------------------------------------------------------------------------------- child


def _config(args: argparse.Namespace, run_dir: Path):
    from ssl_attn.finetune import FineTuningConfig

    return FineTuningConfig(model_name=args.model, strategy=args.one, epochs=2,
                            batch_size=args.batch, size=args.size,
                            val_fraction=args.val_fraction, device=args.device,
                            precision=args.precision, out_dir=str(run_dir), random_init=True)


def _split(args: argparse.Namespace):
    """The split the trainer uses (the same file: ``<data>/splits/...``), its first batch of
    training ids and their labels."""
    from ssl_attn.finetune.split import load_or_make_split
    from ssl_attn.wikichurches import WikiChurches

    wc = WikiChurches(args.data)
    cfg = _config(args, Path(args.work) / "unused")
    split, _ = load_or_make_split(wc, None, cfg.rule, val_fraction=cfg.val_fraction,
                                  seed=cfg.split_seed)
    ids = list(split.train[: args.batch])
    return wc, split, ids, split.label_array(ids)


def bare_step(args: argparse.Namespace, wc, ids: list[str], labels, n_classes: int,
              precision: str):
    """The bare PyTorch training step of ``args.one`` on the batch ``ids``: a closure running
    one ``forward -> CE -> backward -> AdamW step -> zero_grad`` (returns the loss), and the
    number of trainable parameters."""
    import torch

    from ssl_attn.finetune.model import training_attn_implementation
    from ssl_attn.models import get_family, get_spec, load_model

    strategy, size = args.one, args.size
    family = get_family(get_spec(args.model).family)
    loaded = load_model(args.model, random_init=True, seed=0, size=size, device=args.device,
                        attn_implementation=training_attn_implementation(family))
    patch = loaded.spec.patch_size
    x = loaded.preprocess([wc.load_image(i) for i in ids], size).pixel_values
    x = x.to(loaded.device)
    y = torch.as_tensor(labels, dtype=torch.long, device=loaded.device)
    net = loaded.model
    del loaded
    extra = {"interpolate_pos_encoding": True} if family.interpolate_pos_encoding else {}
    if family.head_input == "gap":  # ResNet: the head replaces fc
        net.fc = torch.nn.Linear(net.fc.in_features, n_classes)
        head = torch.nn.Identity()
    else:
        vision = getattr(net.config, "vision_config", None) or net.config
        head = torch.nn.Linear(vision.hidden_size, n_classes)
    post_norm = (getattr(net, family.post_norm) if family.post_norm is not None
                 else torch.nn.Identity())
    if strategy == "linear_probe":
        net.requires_grad_(False)
        net.eval()
    elif strategy == "lora":
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(
            r=family.lora_rank, lora_alpha=family.lora_alpha, lora_dropout=family.lora_dropout,
            target_modules=list(family.lora_targets), bias="none"))
        net.train()
    else:
        net.train()
    net, head = net.to(x.device), head.to(x.device)
    params = [p for p in [*net.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def features(pv):
        if family.head_input == "gap":
            return net(pv)
        out = net(**family.inputs(pv, patch), **extra)
        if family.head_input == "pooled":
            return out.pooler_output
        return post_norm(out.last_hidden_state[:, 0])

    def step() -> float:
        with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
            with torch.set_grad_enabled(strategy != "linear_probe"):
                f = features(x)
            logits = head(f.float())
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)  # synchronises on CUDA

    return step, sum(p.numel() for p in params)


def _ours_steps(stamps: list[float], per_epoch: int) -> list[float]:
    """Seconds between consecutive optimiser steps within each of the two epochs."""
    if len(stamps) != 2 * per_epoch:
        raise RuntimeError(f"expected {2 * per_epoch} optimiser steps, saw {len(stamps)}")
    return [stamps[e * per_epoch + k] - stamps[e * per_epoch + k - 1]
            for e in (0, 1) for k in range(1, per_epoch)]


def child(args: argparse.Namespace) -> dict:
    """Sequential measurement of one strategy in this process: ``FineTuner.train`` (its
    history, its optimiser-step intervals, the peak RSS), the data pipeline alone, then the
    bare step. Returns the numbers."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from ssl_attn.finetune import FineTunableModel, FineTuner, StyleImages
    from ssl_attn.finetune.checkpoint import read_manifest

    strategy, bs, steps, size = args.one, args.batch, args.steps, args.size
    cuda = args.device.startswith("cuda")
    rss_imports = _peak_rss_mb()

    # ------------------------------------------------------------------ ours: FineTuner.train
    model = FineTunableModel(args.model, random_init=True, seed=0, size=size)
    rss_loaded = _rss_mb()
    run_dir = Path(args.work) / f"run-{strategy}"
    stamps: list[float] = []  # the end of every optimiser step (a public, global hook)

    def stamp(*_):
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    hook = register_optimizer_step_post_hook(stamp)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = FineTuner(_config(args, run_dir)).train(model, args.data, progress=False)
    ours_wall = time.perf_counter() - t0
    hook.remove()
    rss_ours = _peak_rss_mb()
    gpu_ours = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    hist = result.history
    manifest = read_manifest(run_dir)
    n_train = manifest["split"]["n_train"]
    per_epoch = math.ceil(n_train / bs)
    ours_steps = _ours_steps(stamps, per_epoch)
    precision = manifest["trainer"]["mixed_precision"]  # what accelerate resolved "auto" to
    ours_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    # the data pipeline alone: one batch of augmented images from cached decoded images
    wc, split, ids, labels = _split(args)
    ds = StyleImages(wc, ids, labels, model.spec, (size, size), train=True, seed=0)
    for i in range(len(ds)):  # decode into the cache
        _ = ds[i]
    ds.set_epoch(1)
    t0 = time.perf_counter()
    for i in range(len(ds)):
        _ = ds[i]
    data_s = time.perf_counter() - t0
    del model, result, ds
    gc.collect()

    # ------------------------------------------------------------------ bare, afterwards
    step, bare_trainable = bare_step(args, wc, ids, labels, len(split.classes), precision)
    step()  # warm-up
    bare_steps = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        bare_steps.append(time.perf_counter() - t0)

    ours_ips = float(hist[1]["images_per_s"])
    bare_ips = bs * steps / sum(bare_steps)
    return {
        "strategy": strategy,
        "model": args.model,
        "device": manifest["trainer"]["device"],
        "device_name": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "precision": precision,
        "size": size,
        "batch": bs,
        "steps_per_epoch": per_epoch,
        "n_train": n_train,
        "ours_images_per_s": ours_ips,
        "ours_warmup_epoch_images_per_s": float(hist[0]["images_per_s"]),
        "ours_wall_s_2_epochs_incl_val_and_checkpoints": ours_wall,
        "bare_images_per_s": bare_ips,
        "ratio": bare_ips / ours_ips,
        "ours_step_s": ours_steps,
        "bare_step_s": bare_steps,
        "data_s_per_step": data_s,
        "peak_rss_mb": rss_ours,
        "rss_after_imports_mb": rss_imports,
        "rss_after_load_mb": rss_loaded,
        "train_delta_mb": rss_ours - rss_loaded,
        "gpu_peak_mb": gpu_ours,
        "torch_threads": torch.get_num_threads(),
        "trainable_params": ours_trainable,
        "bare_trainable_params": bare_trainable,
    }


def child_paired(args: argparse.Namespace) -> dict:
    """Interleaved measurement of one strategy: the bare step runs right after every optimiser
    step of ``FineTuner.train`` (from the step hook), so each ours step and the bare step
    next to it meet the same load. Returns the step times."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from ssl_attn.finetune import FineTunableModel, FineTuner

    cuda = args.device.startswith("cuda")
    wc, split, ids, labels = _split(args)
    precision = args.precision
    if precision == "auto":  # as the trainer resolves it (checked against its manifest below)
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    rss_imports = _peak_rss_mb()
    step, _ = bare_step(args, wc, ids, labels, len(split.classes), precision)
    rss_loaded = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # the bare warm-up, alone in this fresh process: the bare step's peak memory
    bare_peak = _peak_rss_mb()
    gpu_bare = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    model = FineTunableModel(args.model, random_init=True, seed=0, size=args.size)
    stamps: list[float] = []  # end of each ours step (before the bare step)
    bare: list[float] = []  # each bare step
    ends: list[float] = []  # end of each bare step
    running = False

    def after_step(*_):
        nonlocal running
        if running:  # the bare step's own optimiser
            return
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        stamps.append(t0)
        running = True
        try:
            step()
        finally:
            running = False
        t1 = time.perf_counter()
        bare.append(t1 - t0)
        ends.append(t1)

    hook = register_optimizer_step_post_hook(after_step)
    run_dir = Path(args.work) / f"paired-{args.one}"
    result = FineTuner(_config(args, run_dir)).train(model, args.data, progress=False)
    hook.remove()
    n_train = result.manifest["split"]["n_train"]
    if result.manifest["trainer"]["mixed_precision"] != precision:
        raise RuntimeError(f"bare precision {precision} != the trainer's "
                           f"{result.manifest['trainer']['mixed_precision']}")
    per = math.ceil(n_train / args.batch)
    # pair k: ours step k (from the end of the previous bare step to the end of its own
    # optimiser step; not the first step of an epoch) and the bare step that follows it
    pairs = [(stamps[i] - ends[i - 1], bare[i])
             for e in (0, 1) for i in range(e * per + 1, (e + 1) * per)]
    return {"strategy": args.one, "paired_ours_step_s": [o for o, _ in pairs],
            "paired_bare_step_s": [b for _, b in pairs], "bare_peak_rss_mb": bare_peak,
            "bare_rss_after_imports_mb": rss_imports, "bare_rss_after_load_mb": rss_loaded,
            "bare_train_delta_mb": bare_peak - rss_loaded, "bare_gpu_peak_mb": gpu_bare}


# ---------------------------------------------------------------------------------- parent


def make_pool(data: Path, batch: int, steps: int) -> tuple[float, int, int]:
    """Write a synthetic dataset to ``data`` whose stratified split has exactly ``batch * steps``
    training images, and the fewest validation images (>= :data:`N_VAL`) that stratify.

    Returns ``(val_fraction, n_train, n_val)``. sklearn's split takes
    ``n_val = ceil(val_fraction * n)``; the pool grows one validation image at a time until
    every style has the two images a stratified split needs.
    """
    from ssl_attn import synthetic
    from ssl_attn.finetune.split import SplitError, make_split
    from ssl_attn.wikichurches import WikiChurches

    target = batch * steps
    for n_val in range(N_VAL, N_VAL + 40):
        n = target + n_val
        val_fraction = (n_val - 0.5) / n
        # one annotated image (the evaluation set; never in the pool), then the pool
        synthetic.generate(data, n=n + 1, seed=0, n_annotated=1, progress=False)
        try:
            split = make_split(WikiChurches(data), val_fraction=val_fraction)
        except SplitError:
            continue
        if len(split.train) == target:
            return val_fraction, len(split.train), len(split.val)
    raise RuntimeError(f"no synthetic pool gives {target} training images; change --batch or "
                       "--steps")


def demo_rows(dirs: list[str]) -> list[dict]:
    """Training time and accuracy of finished runs, from their manifests."""
    from ssl_attn.finetune.checkpoint import read_manifest

    rows = []
    for d in dirs:
        m = read_manifest(d)
        hist = m.get("history") or []
        best = hist[m["best_epoch"] - 1] if m.get("best_epoch") else {}
        trainer = m.get("trainer", {})
        rows.append({
            "run": str(d), "model": m["model"]["key"], "variant": m.get("variant"),
            "epochs": len(hist), "n_train": m["split"]["n_train"], "n_val": m["split"]["n_val"],
            "size": m["config"].get("size"), "device": trainer.get("device"),
            "train_s": sum(float(h["seconds"]) for h in hist),
            "images_per_s": (sum(h["images_per_s"] for h in hist) / len(hist)) if hist else None,
            "best_epoch": m.get("best_epoch"), "best_val_acc": m.get("best_val_acc"),
            "best_val_bacc": best.get("val_bacc"), "complete": m.get("complete"),
        })
    return rows


def _run_child(cmd: list[str], what: str) -> dict | None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"{what}: failed\n{proc.stderr[-3000:]}", flush=True)
        return None
    return json.loads(lines[-1].removeprefix("RESULT "))


def _mean(values: list[float] | None) -> float:
    return sum(values) / len(values) if values else math.nan


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else math.nan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dinov2", help="model key (default dinov2, ViT-B)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2,
                        help="timed steps per strategy (after one warm-up epoch / step)")
    parser.add_argument("--size", type=int, default=224, help="input side in px")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES),
                        choices=STRATEGIES)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), no, bf16")
    parser.add_argument("--demo-run", nargs="+", default=[],
                        help="finished run folder(s) whose training time and accuracy to show")
    parser.add_argument("--no-paired", action="store_true",
                        help="skip the interleaved measurement (halves the run time)")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temp dir)")
    # internal: the per-strategy child process
    parser.add_argument("--one", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--val-fraction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--paired", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be >= 1")
    if args.one:
        print("RESULT " + json.dumps((child_paired if args.paired else child)(args)), flush=True)
        return 0

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    print(f"model={args.model} (full size, random weights) batch={args.batch} "
          f"steps={args.steps} size={args.size} device={args.device} "
          f"precision={args.precision} cpus={os.cpu_count()} load average before: {_load()}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        val_fraction, n_train, n_val = make_pool(data, args.batch, args.steps)
        print(f"synthetic pool: {n_train} training + {n_val} validation images", flush=True)
        for strategy in args.strategies:
            cmd = [sys.executable, __file__, "--one", strategy, "--data", str(data),
                   "--work", str(tmp), "--val-fraction", repr(val_fraction),
                   "--model", args.model, "--batch", str(args.batch), "--steps",
                   str(args.steps), "--size", str(args.size), "--device", args.device,
                   "--precision", args.precision]
            r = _run_child(cmd, strategy)
            if r is None:
                continue
            if not args.no_paired:
                r.update(_run_child([*cmd, "--paired"], f"{strategy} (paired)") or {})
            pairs = zip(r.get("paired_ours_step_s", []), r.get("paired_bare_step_s", []),
                        strict=True)
            r["paired_ratio"] = _median([o / b for o, b in pairs])
            rows.append(r)
            print(json.dumps(r), flush=True)
            for d in (f"run-{strategy}", f"paired-{strategy}"):  # full-size checkpoints
                subprocess.run(["rm", "-rf", str(tmp / d)], check=False)
    if rows:
        r0 = rows[0]
        print(f"\n{r0['model']} at {r0['size']}px, batch {r0['batch']}, {r0['steps_per_epoch']} "
              f"timed steps, device {r0['device']} ({r0['device_name']}), precision "
              f"{r0['precision']}, torch threads {r0['torch_threads']}, load average after: "
              f"{_load()}")
        cols = [("strategy", 12, lambda r: f"{r['strategy']:<12}"),
                ("ours img/s", 10, lambda r: f"{r['ours_images_per_s']:10.2f}"),
                ("bare img/s", 10, lambda r: f"{r['bare_images_per_s']:10.2f}"),
                ("ratio", 6, lambda r: f"{r['ratio']:6.2f}"),
                ("paired ours s", 13,
                 lambda r: f"{_mean(r.get('paired_ours_step_s')):13.2f}"),
                ("paired bare s", 13,
                 lambda r: f"{_mean(r.get('paired_bare_step_s')):13.2f}"),
                ("paired ratio", 12, lambda r: f"{r['paired_ratio']:12.2f}"),
                ("data s/step", 11, lambda r: f"{r['data_s_per_step']:11.2f}"),
                ("peak RSS MB", 11, lambda r: f"{r['peak_rss_mb']:11.0f}"),
                ("train delta", 11, lambda r: f"{r['train_delta_mb']:11.0f}"),
                ("bare peak MB", 12, lambda r: f"{r.get('bare_peak_rss_mb', math.nan):12.0f}"),
                ("bare delta", 10, lambda r: f"{r.get('bare_train_delta_mb', math.nan):10.0f}"),
                ("trainable", 11, lambda r: f"{r['trainable_params']:11,d}")]
        if args.device != "cpu":
            cols += [("GPU peak MB", 11, lambda r: f"{r['gpu_peak_mb']:11.0f}"),
                     ("bare GPU MB", 11,
                      lambda r: f"{r.get('bare_gpu_peak_mb', math.nan):11.0f}")]
        print(" ".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}"
                       for i, (name, w, _) in enumerate(cols)))
        for r in rows:
            print(" ".join(fmt(r) for _, _, fmt in cols))
    if args.demo_run:
        print("\ndemo runs (from their manifests):")
        print(f"{'run':40} {'model':10} {'variant':16} {'epochs':>6} {'n_train':>7} "
              f"{'train s':>8} {'img/s':>7} {'best ep':>7} {'val acc':>7} {'val bacc':>8}")
        for d in demo_rows(args.demo_run):
            print(f"{d['run'][-40:]:40} {d['model']:10} {d['variant']:16} {d['epochs']:6d} "
                  f"{d['n_train']:7d} {d['train_s']:8.1f} {d['images_per_s'] or 0:7.1f} "
                  f"{d['best_epoch'] or 0:7d} {d['best_val_acc'] or 0:7.3f} "
                  f"{d['best_val_bacc'] or 0:8.3f}"
                  + ("" if d["complete"] else "  (incomplete)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
