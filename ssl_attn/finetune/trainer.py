"""Fine-tune a :class:`~ssl_attn.finetune.model.FineTunableModel` on architectural style.

>>> from ssl_attn.finetune import FineTuningConfig, FineTuner, FineTunableModel  # doctest: +SKIP
>>> tuner = FineTuner(FineTuningConfig("dinov2", strategy="lora", out_dir="runs/dinov2-lora"))
>>> result = tuner.train(FineTunableModel("dinov2"), "data/wikichurches")        # doctest: +SKIP
>>> result.history_frame()                                                       # doctest: +SKIP

**Why 🤗 accelerate.** The models are transformers models and LoRA comes from peft, both
Hugging Face libraries that accelerate is built and tested with. One
:class:`accelerate.Accelerator` object does the device placement, the bf16/fp16 autocast (and the
fp16 gradient scaler), the gradient clipping, the collection of evaluation outputs across
processes, and DistributedDataParallel when the process is started by ``torchrun`` /
``accelerate launch`` (it reads their environment; on CPU it picks the gloo backend). The
library itself launches nothing: one process is a plain run, and the same code runs unchanged
under a launcher. Lightning Fabric would do the same but adds a second framework next to the
Hugging Face stack for no gain here.

**Accelerate settings.** ``Accelerator(cpu=<device is CPU>, mixed_precision=<"bf16" on CUDA for
precision "auto", else "no"; or as asked>, dataloader_config=DataLoaderConfiguration(
split_batches=True), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])``
(the backbones hold trainable weights their forward does not use, e.g. DINOv2's ``mask_token``,
which plain DistributedDataParallel refuses). ``split_batches=True`` makes ``batch_size`` the
*global* batch (so the
learning-rate schedule, stepped once per optimiser step, and the result do not depend on the
number of processes). The **training** batches are split by this module, not by accelerate:
accelerate's split mode either pads the last, smaller batch with images from the start of the
epoch (``even_batches=True``, which changes the gradient) or lets processes run different
numbers of steps (``even_batches=False``, which stalls DistributedDataParallel). Here one seeded
sampler draws the epoch's permutation from ``(seed, epoch)``; every process cuts the same global
batches and takes its contiguous share (``numpy.array_split``); a process whose share of a small
last batch is empty runs one image with weight 0 so that every process takes every step. The
**validation** loader is prepared by accelerate and its outputs collected with
``gather_for_metrics`` (which drops the padding).

**A loss that does not depend on the number of processes.** The class-weighted cross-entropy of
a global batch B is ``L = sum_{i in B} w_{y_i} CE_i / sum_{i in B} w_{y_i}`` (weights:
:func:`ssl_attn.finetune.split.class_weights`, sklearn's "balanced"). Process r computes
``L_r = W * sum_{i in B_r} w_{y_i} CE_i / sum_{i in B} w_{y_i}`` — the denominator is the
weight sum of the *global* batch, which every process knows because it knows the global batch
(same sampler, same labels). DistributedDataParallel averages the gradients over the W
processes: ``(1/W) sum_r grad L_r = grad L``, the one-process gradient. What remains different
is floating-point summation order (about 1e-7 relative per step). Exceptions: per-process
BatchNorm statistics (the ResNet-50 under ``full``) and dropout masks (LoRA dropout > 0) depend
on the sharding.

**Recipe.** AdamW on :meth:`FineTunableModel.param_groups` (head and backbone learning rates,
decoupled weight decay); ``transformers.get_cosine_schedule_with_warmup`` (linear warm-up over
``warmup_fraction`` of all steps, then cosine to 0); gradient clipping
(``accelerator.clip_grad_norm_``); validation each epoch: class-weighted loss, accuracy,
balanced accuracy and the confusion matrix (scikit-learn); the best epoch is the first with the
highest validation accuracy. Seeds: ``config.seed`` initialises the head, orders the batches
(``(seed, epoch)``), drives the augmentation (``(seed, epoch, index)``, in
:class:`~ssl_attn.finetune.data.StyleImages`) and reseeds torch's global generator at the start
of every epoch from ``(seed, epoch, process)`` (dropout), so that a resumed run is identical.

**Run folder and resume** (see :mod:`ssl_attn.finetune.checkpoint`). After every epoch:
``last/`` (trainable weights through :func:`~ssl_attn.finetune.checkpoint.save_weights`, plus
``optimizer.safetensors`` — the AdamW state tensors under ``state.<param>.<name>`` — and
``state.json``: the rest of the optimizer state, the scheduler's ``state_dict``, the epoch),
``best/`` when the validation accuracy improved, then ``manifest.json`` (atomic) last. The new
folders are written under ``.staging/`` and moved into place just before the manifest; a run
killed at any point is rolled back to the epoch its manifest records. No pickle anywhere.
:meth:`FineTuner.train` on a folder holding a manifest of the same config resumes from the
epoch after the last recorded one (or, when the run is complete, returns the stored result
without training); a manifest of another config is an error (use another ``out_dir``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_attn.finetune import checkpoint, rundir
from ssl_attn.finetune.config import RUNTIME_FIELDS, FineTuningConfig
from ssl_attn.finetune.rundir import RunFolderError

__all__ = ["FineTuneResult", "FineTuner", "RunFolderError",
           "epoch_batches", "shard", "shard_loss"]

#: History keys that measure speed, not results (they differ between identical runs).
TIMING_KEYS: tuple[str, ...] = ("seconds", "images_per_s")
_OWN_ENTRIES = {checkpoint.MANIFEST, "last", "best", rundir.STAGING, rundir.DONE}
_SAMPLER_TAG = 0x5A11  # keeps the batch-order stream apart from the augmentation's
_EPOCH_TAG = 0xE90C


# ---------------------------------------------------------------------------------- result


@dataclass
class FineTuneResult:
    """What a fine-tuning run produced.

    Attributes:
        history: one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_acc``,
            ``val_loss``, ``val_acc``, ``val_bacc``, ``lr_head``, ``lr_backbone`` (the
            learning rates of the epoch's last step; ``None`` for the linear probe's
            backbone), ``seconds`` (epoch wall time, training and validation) and
            ``images_per_s`` (training images per second of training, over all processes).
            Losses are class-weighted cross-entropies (weights of the training split).
        best_epoch: the 1-based epoch with the highest validation accuracy (the first on ties).
        best_val_acc: its validation accuracy.
        confusion: (C, C) int64 validation confusion matrix of the best epoch, rows the true
            class and columns the predicted one, in :attr:`classes` order.
        classes, class_names: style QIDs and their names.
        checkpoint_dir: the run folder (``manifest.json``, ``best/``, ``last/``; what
            ``ssl-attn extract --finetuned`` takes).
        manifest: the run's manifest (JSON dict).
        provenance: package version, git commit, library versions, creation time, the base
            model and the split.
        reused: True when the run was already complete and nothing was trained.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_val_acc: float
    confusion: np.ndarray
    classes: tuple[str, ...]
    class_names: tuple[str, ...]
    checkpoint_dir: Path
    manifest: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    @property
    def best_dir(self) -> Path:
        """``checkpoint_dir / "best"``: the weights of the best epoch."""
        return self.checkpoint_dir / "best"

    @property
    def best(self) -> dict[str, Any]:
        """The history entry of the best epoch."""
        return self.history[self.best_epoch - 1]

    def history_frame(self):
        """The history as a ``pandas.DataFrame`` indexed by ``epoch``."""
        import pandas as pd

        return pd.DataFrame(self.history).set_index("epoch")

    @classmethod
    def from_manifest(cls, run_dir: str | os.PathLike, *, reused: bool = False
                      ) -> FineTuneResult:
        """The result recorded in ``run_dir/manifest.json`` (after at least one epoch)."""
        run_dir = Path(run_dir)
        m = checkpoint.read_manifest(run_dir)
        if not m.get("history"):
            raise RunFolderError(f"{run_dir / checkpoint.MANIFEST}: no epoch recorded yet")
        prov_keys = ("package_version", "git_commit", "library_versions", "created", "model",
                     "split", "trainer")
        return cls(
            history=[dict(h) for h in m["history"]],
            best_epoch=int(m["best_epoch"]),
            best_val_acc=float(m["best_val_acc"]),
            confusion=np.asarray(m["confusion"], dtype=np.int64),
            classes=tuple(m["classes"]),
            class_names=tuple(m["class_names"]),
            checkpoint_dir=run_dir,
            manifest=m,
            provenance={k: m[k] for k in prov_keys if k in m},
            reused=reused,
        )

    def __str__(self) -> str:
        b = self.best
        return (f"best epoch {self.best_epoch}/{len(self.history)}: val acc {b['val_acc']:.3f}, "
                f"balanced {b['val_bacc']:.3f}, loss {b['val_loss']:.4f} -> "
                f"{self.checkpoint_dir}")


# ---------------------------------------------------------------------------------- batches


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The global batches of one epoch: a permutation of ``range(n)`` drawn from
    ``(seed, epoch)`` cut into consecutive chunks of ``batch_size`` (the last one smaller when
    ``batch_size`` does not divide ``n``; nothing is dropped or repeated). int64 arrays."""
    perm = np.random.default_rng((int(seed), int(epoch), 0, _SAMPLER_TAG)).permutation(int(n))
    return [perm[i:i + batch_size] for i in range(0, int(n), int(batch_size))]


def shard(batch: np.ndarray, rank: int, world: int) -> tuple[np.ndarray, bool]:
    """Process ``rank``'s contiguous share of a global batch (``numpy.array_split``) and whether
    it is a *ghost*: a share that would be empty is one image of the batch, to be weighted 0,
    so every process runs every step."""
    part = np.array_split(batch, world)[rank]
    if len(part) == 0:
        return batch[:1], True
    return part, False


def shard_loss(logits: torch.Tensor, y: torch.Tensor, class_w: torch.Tensor, w_global: float,
               world: int, *, ghost: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One process's share of the class-weighted cross-entropy of a global batch.

    ``loss = world * sum_i w_{y_i} CE_i / w_global`` over this process's ``logits`` (B, C) and
    labels ``y`` (B,), with ``class_w`` (C,) the class weights and ``w_global`` the sum of
    ``w_{y}`` over the *global* batch; DistributedDataParallel's gradient average over
    ``world`` processes then equals the gradient of ``sum_i w_{y_i} CE_i / w_global`` over
    the whole batch. A ``ghost`` share weighs 0. Returns ``(loss, w (B,), CE (B,))``; CE in
    float32 whatever the logits' dtype.
    """
    ce = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
    w = class_w[y] * (0.0 if ghost else 1.0)
    return (w * ce).sum() * (world / w_global), w, ce


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence((int(seed), int(epoch), int(rank), _EPOCH_TAG))
               .generate_state(1, dtype=np.uint64)[0] % (2**63))


def _epoch_line(row: dict[str, Any], epochs: int, improved: bool) -> str:
    """The one printed line of an epoch; ``*`` marks a new best."""
    return (f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.3f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} "
            f"bacc {row['val_bacc']:.3f} | {row['seconds']:6.1f} s {row['images_per_s']:7.1f} "
            f"img/s{'  *' if improved else ''}")


# ---------------------------------------------------------------------------------- trainer


class FineTuner:
    """Runs the recipe of :mod:`ssl_attn.finetune.trainer` for one :class:`FineTuningConfig`.

    ``config.out_dir`` is the run folder; ``None`` means ``runs/<model>-<variant>-seed<seed>``
    under the current directory.
    """

    def __init__(self, config: FineTuningConfig) -> None:
        if not isinstance(config, FineTuningConfig):
            raise TypeError(f"FineTuner needs a FineTuningConfig, got {type(config).__name__}")
        self.config = config

    @property
    def out_dir(self) -> Path:
        """The run folder."""
        c = self.config
        if c.out_dir is not None:
            return Path(c.out_dir)
        return Path("runs") / f"{c.model_name}-{c.variant}-seed{c.seed}"

    # ------------------------------------------------------------------ stored runs
    def _stored_manifest(self) -> dict[str, Any] | None:
        """The folder's manifest when it records this config; None when there is none.
        Raises :class:`RunFolderError` for another config or a folder that is not a run."""
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise RunFolderError(f"{out}: is a file, not a run folder; pass another output "
                                 "folder")  # fmt: skip
        path = out / checkpoint.MANIFEST
        if not path.exists():
            foreign = sorted(p.name for p in out.iterdir() if p.name not in _OWN_ENTRIES) \
                if out.is_dir() else []
            if foreign:
                raise RunFolderError(
                    f"{out}: not a fine-tuning run folder (no {checkpoint.MANIFEST}; holds "
                    f"{foreign[:5]}); pass a new or empty folder as the output (--out)")
            return None
        m = checkpoint.read_manifest(out)
        diff = self.config.differences(m.get("config", {}))
        if diff:
            shown = "; ".join(f"{k}: stored {a!r}, asked {b!r}"
                              for k, (b, a) in list(diff.items())[:6])
            raise RunFolderError(
                f"{out}: holds a run with other settings ({shown}); use another output folder "
                "(--out), or delete this one to start over")
        return m

    def stored_result(self) -> FineTuneResult | None:
        """The stored result when the run folder holds this config's *complete* run, else
        None (nothing there, or a run to resume). Loads no model. Raises
        :class:`RunFolderError` when the folder holds another config's run."""
        m = self._stored_manifest()
        if m is not None and m.get("complete"):
            return FineTuneResult.from_manifest(self.out_dir, reused=True)
        return None

    # ------------------------------------------------------------------ several seeds
    def train_seeds(self, model_factory: Callable[[], Any], dataset: Any, seeds: Sequence[int],
                    *, progress: bool = True) -> list[FineTuneResult]:
        """One run per seed in ``out_dir/seed-<n>/`` (``config.seed`` replaced by each), in
        order. ``model_factory()`` builds a fresh :class:`FineTunableModel` for each run that
        still has to train (complete runs are returned without building one)."""
        results = []
        for s in seeds:
            cfg = replace(self.config, seed=int(s), out_dir=str(self.out_dir / f"seed-{int(s)}"))
            tuner = FineTuner(cfg)
            result = tuner.stored_result()
            if result is None:
                result = tuner.train(model_factory(), dataset, progress=progress)
            elif progress:
                print(f"{tuner.out_dir}: complete ({len(result.history)} epochs); stored result, "
                      "not trained again", flush=True)  # fmt: skip
            results.append(result)
        return results

    # ------------------------------------------------------------------ train
    def train(self, model: Any, dataset: Any, *, progress: bool = True) -> FineTuneResult:
        """Fine-tune ``model`` on ``dataset``'s style split and return the result.

        Args:
            model: a :class:`~ssl_attn.finetune.model.FineTunableModel` of
                ``config.model_name``, not yet set up (this calls its ``setup``). It is trained
                in place and ends with the last epoch's weights (the best are in ``best/``).
            dataset: a :class:`~ssl_attn.wikichurches.WikiChurches` or its folder.
            progress: a tqdm bar per epoch and one line per epoch (main process only).

        Returns:
            A :class:`FineTuneResult`. When the run folder already holds this config's complete
            run, its stored result (``reused=True``; nothing is trained, the model is unused).

        Raises:
            RunFolderError: the run folder holds another config or is not a run folder.
            ssl_attn.finetune.split.SplitError: no style labels, a class without training
                images...
        """
        from ssl_attn.wikichurches import WikiChurches

        cfg = self.config
        out = self.out_dir
        stored = self._stored_manifest()
        if stored is not None and stored.get("complete"):
            if progress:
                print(f"{out}: complete ({len(stored['history'])} epochs); returning the stored "
                      "result without training", flush=True)  # fmt: skip
            return FineTuneResult.from_manifest(out, reused=True)
        key = getattr(getattr(model, "spec", None), "key", None)
        if key != cfg.model_name:
            raise ValueError(f"FineTuner.train: the model is {key!r} but config.model_name is "
                             f"{cfg.model_name!r}; build FineTunableModel({cfg.model_name!r})")
        base = (stored or {}).get("model", {}).get("base_digest")
        if base is not None and base != getattr(model, "base_digest", base):
            raise RunFolderError(
                f"{out}: its run started from other base weights ({stored['model'].get('weights')}"
                f", digest {base[:12]}...) than this model ({model.loaded.weights}); use another "
                "output folder (--out)")
        wc = dataset if isinstance(dataset, WikiChurches) else WikiChurches(dataset, rule=cfg.rule)
        return _Run(cfg, out, model, wc, stored, progress).run()


# ---------------------------------------------------------------------------------- one run


def _make_accelerator(cfg: FineTuningConfig):
    """The Accelerator of a run (settings in the module docstring)."""
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.state import AcceleratorState, PartialState

    from ssl_attn.models.loading import resolve_device

    dev = resolve_device(cfg.device)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if dev.type == "cuda" and dev.index is not None and not distributed:
        torch.cuda.set_device(dev)
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    cpu = dev.type == "cpu"
    # accelerate keeps one process-wide state, fixed by the first Accelerator. A later
    # single-process run in the same process (a notebook, train_seeds) may need another device
    # or precision: then the state is reset (never under a launcher, where it holds the
    # process group).
    state = AcceleratorState._shared_state or PartialState._shared_state
    if state and not distributed:
        have = state.get("device")
        if (state.get("_mixed_precision", precision) != precision
                or have is None or have.type != dev.type):  # fmt: skip
            AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=precision,
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


class _Run:
    """The state of one training run (see :meth:`FineTuner.train`)."""

    def __init__(self, cfg: FineTuningConfig, out: Path, model: Any, wc: Any,
                 stored: dict[str, Any] | None, progress: bool) -> None:
        self.cfg, self.out, self.raw_model, self.wc = cfg, out, model, wc
        self.stored, self.progress = stored, progress

    # ------------------------------------------------------------------ set-up
    def run(self) -> FineTuneResult:
        from transformers import get_cosine_schedule_with_warmup

        from ssl_attn.finetune.data import StyleImages
        from ssl_attn.finetune.split import class_weights, load_or_make_split

        cfg, out = self.cfg, self.out
        acc = self.acc = _make_accelerator(cfg)
        self.main = acc.is_main_process
        with acc.main_process_first():
            split, split_path = load_or_make_split(
                self.wc, cfg.split_file, cfg.rule, val_fraction=cfg.val_fraction,
                seed=cfg.split_seed)
        if cfg.labels == "shuffled":
            split = split.shuffled(cfg.shuffle_seed)
        if self.stored is not None:
            have = self.stored.get("split", {}).get("digest")
            if have is not None and have != split.digest:
                raise RunFolderError(
                    f"{out}: its run used the split {have[:12]}..., but the dataset now gives "
                    f"{split.digest[:12]}... ({split_path}); use another output folder (--out)")
        self.split, self.split_path = split, Path(split_path)
        n_classes = len(split.classes)
        model = self.raw_model
        model.setup(cfg.strategy, n_classes, lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                    lora_dropout=cfg.lora_dropout, seed=cfg.seed)
        size = (cfg.size, cfg.size) if cfg.size else tuple(model.loaded.input_size)
        self.train_labels = split.label_array(split.train)
        self.train_ds = StyleImages(self.wc, split.train, self.train_labels, model.spec, size,
                                    train=True, seed=cfg.seed, crop_scale=cfg.crop_scale,
                                    hflip=cfg.hflip, jitter=cfg.jitter)
        val_ds = StyleImages(self.wc, split.val, split.label_array(split.val), model.spec, size,
                             train=False)
        self.weights = class_weights(self.train_labels, n_classes)  # float64 (C,)
        self.steps_per_epoch = math.ceil(len(split.train) / cfg.batch_size)
        total = cfg.epochs * self.steps_per_epoch
        warmup = round(cfg.warmup_fraction * total)
        optimizer = torch.optim.AdamW(
            model.param_groups(cfg.lr_head, cfg.lr_backbone, cfg.weight_decay))
        scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
        world = acc.num_processes
        val_bs = world * math.ceil(cfg.batch_size / world)  # split_batches: a multiple of W
        self.pin = acc.device.type == "cuda"
        val_loader = torch.utils.data.DataLoader(val_ds, batch_size=val_bs, shuffle=False,
                                                 num_workers=cfg.num_workers,
                                                 pin_memory=self.pin)
        self.model, self.optimizer, self.scheduler, self.val_loader = acc.prepare(
            model, optimizer, scheduler, val_loader)
        self.class_w = torch.as_tensor(self.weights, dtype=torch.float32, device=acc.device)
        self.schedule = {"total_steps": total, "warmup_steps": warmup,
                         "steps_per_epoch": self.steps_per_epoch}
        self.history: list[dict[str, Any]] = []
        self.best_epoch, self.best_acc, self.confusion = 0, -math.inf, None
        self.created = self.stored.get("created") if self.stored else None
        start = self._resume()
        if start == 0 and self.main:  # records the config before the first epoch
            self._write_manifest(complete=False)
        acc.wait_for_everyone()
        for epoch in range(start, cfg.epochs):
            self._epoch(epoch)
        if self.main:
            self._write_manifest(complete=True)
        acc.wait_for_everyone()
        return FineTuneResult.from_manifest(out)

    # ------------------------------------------------------------------ resume
    def _resume(self) -> int:
        """Roll the folder back to its manifest, restore ``last/``; the first epoch to run."""
        acc, out, m = self.acc, self.out, self.stored
        done = len(m["history"]) if m else 0
        if self.main:
            out.mkdir(parents=True, exist_ok=True)
            rundir.recover(out, done)
        acc.wait_for_everyone()
        if done == 0:
            return 0
        state = rundir.load_resume_state(out / "last")
        if state["epoch"] != done - 1:
            raise RunFolderError(
                f"{out / 'last'}: holds epoch {state['epoch'] + 1}, but the manifest records "
                f"{done}; the folder is inconsistent: delete it or use another output folder "
                "(--out)")
        checkpoint.load_weights(out, self.acc.unwrap_model(self.model), "last")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and acc.scaler is not None:
            acc.scaler.load_state_dict(state["scaler"])
        self.history = [dict(h) for h in m["history"]]
        self.best_epoch, self.best_acc = int(m["best_epoch"]), float(m["best_val_acc"])
        self.confusion = np.asarray(m["confusion"], dtype=np.int64)
        self.created = m.get("created")
        if self.progress and self.main:
            print(f"{out}: resuming after epoch {done}/{self.cfg.epochs}", flush=True)
        return done

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, epoch: int) -> None:
        from tqdm.auto import tqdm

        cfg, acc, model = self.cfg, self.acc, self.model
        world, rank = acc.num_processes, acc.process_index
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, rank))
        self.train_ds.set_epoch(epoch)
        batches = epoch_batches(len(self.train_ds), cfg.batch_size, cfg.seed, epoch)
        shares = [shard(b, rank, world) for b in batches]
        loader = torch.utils.data.DataLoader(
            self.train_ds, batch_sampler=[s.tolist() for s, _ in shares],
            num_workers=cfg.num_workers, pin_memory=self.pin)
        model.train()
        sums = torch.zeros(4, dtype=torch.float64)  # sum w*CE, sum w, correct, images
        bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   leave=False, dynamic_ncols=True,
                   # None lets TQDM_DISABLE=1 (tests, papermill) silence the bar
                   disable=None if (self.progress and self.main) else True)
        seen = 0
        lr_factor = 1.0
        for k, (x, y) in enumerate(loader):
            x = x.to(acc.device, non_blocking=self.pin)
            y = y.to(acc.device, non_blocking=self.pin)
            ghost = shares[k][1]
            w_global = float(self.weights[self.train_labels[batches[k]]].sum())
            logits = model(x)
            loss, w, ce = shard_loss(logits, y, self.class_w, w_global, world, ghost=ghost)
            acc.backward(loss)
            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            g0 = self.optimizer.param_groups[0]
            lr_factor = g0["lr"] / g0["initial_lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if not ghost:
                with torch.no_grad():
                    sums += torch.tensor([float((w * ce).sum()), float(w.sum()),
                                          float((logits.argmax(1) == y).sum()), float(len(y))],
                                         dtype=torch.float64)
            seen += len(batches[k])
            dt = time.perf_counter() - t0
            bar.set_postfix(loss=f"{float(sums[0] / max(float(sums[1]), 1e-12)):.4f}",
                            acc=f"{float(sums[2] / max(float(sums[3]), 1)):.3f}",
                            img_s=f"{seen / dt:.1f}", refresh=False)
            bar.update()
        bar.close()
        train_s = time.perf_counter() - t0
        total = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
        val = self._evaluate()
        seconds = time.perf_counter() - t0
        row = {
            "epoch": epoch + 1,
            "train_loss": float(total[0] / total[1]),
            "train_acc": float(total[2] / total[3]),
            "val_loss": val["loss"], "val_acc": val["acc"], "val_bacc": val["bacc"],
            "lr_head": cfg.lr_head * lr_factor,
            "lr_backbone": None if cfg.strategy == "linear_probe" else cfg.lr_backbone * lr_factor,
            "seconds": round(seconds, 3),
            "images_per_s": round(len(self.train_ds) / train_s, 2),
        }
        improved = val["acc"] > self.best_acc
        if improved:
            self.best_epoch, self.best_acc, self.confusion = epoch + 1, val["acc"], val["confusion"]
        self.history.append(row)
        if self.main:
            self._commit(epoch, improved)
        acc.wait_for_everyone()
        if self.progress and self.main:
            print(_epoch_line(row, cfg.epochs, improved), flush=True)

    def _evaluate(self) -> dict[str, Any]:
        """Class-weighted loss, accuracy, balanced accuracy and confusion on the val split."""
        from sklearn.metrics import balanced_accuracy_score, confusion_matrix

        acc, model = self.acc, self.model
        model.eval()
        ces, preds, ys = [], [], []
        with torch.no_grad():
            for x, y in self.val_loader:
                logits = model(x)
                ce = torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
                ce, pred, y = acc.gather_for_metrics((ce, logits.argmax(1), y))
                ces.append(ce.double().cpu())
                preds.append(pred.cpu())
                ys.append(y.cpu())
        ce = torch.cat(ces).numpy()
        pred = torch.cat(preds).numpy()
        y = torch.cat(ys).numpy()
        if len(y) != len(self.split.val):
            raise RuntimeError(f"validation gathered {len(y)} predictions for "
                               f"{len(self.split.val)} images")
        w = self.weights[y]
        n_classes = len(self.split.classes)
        with warnings.catch_warnings():  # a class absent from a small val split
            warnings.simplefilter("ignore", UserWarning)
            bacc = float(balanced_accuracy_score(y, pred))
        return {"loss": float((w * ce).sum() / w.sum()), "acc": float((pred == y).mean()),
                "bacc": bacc,
                "confusion": confusion_matrix(y, pred, labels=np.arange(n_classes))}

    # ------------------------------------------------------------------ manifest
    def _manifest(self, complete: bool) -> dict[str, Any]:
        """The manifest: :func:`~ssl_attn.finetune.checkpoint.manifest_base` (format, base
        model, package version, commit, library versions, strategy, LoRA settings) plus the
        run (config, split, classes, history, best epoch, confusion, variant, complete) and
        the trainer's settings."""
        from importlib import metadata

        cfg, model, split, acc = self.cfg, self.acc.unwrap_model(self.model), self.split, self.acc
        m = checkpoint.manifest_base(model)
        versions = m.setdefault("library_versions", {})
        for lib in ("accelerate", "peft", "safetensors", "scikit-learn"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions.setdefault(lib, metadata.version(lib))
        now = m.get("created")
        self.created = self.created or now
        m.update({
            "config": cfg.to_dict(),
            "strategy": cfg.strategy,
            "labels_kind": split.labels_kind,
            "classes": list(split.classes),
            "class_names": list(split.class_names),
            "split": {"path": str(self.split_path), "digest": split.digest,
                      "n_train": len(split.train), "n_val": len(split.val)},
            "seed": cfg.seed,
            "history": self.history,
            "best_epoch": self.best_epoch or None,
            "best_val_acc": None if not self.history else self.best_acc,
            "confusion": None if self.confusion is None else self.confusion.tolist(),
            "variant": cfg.variant,
            "created": self.created,
            "updated": now,
            "complete": bool(complete),
            "trainer": {
                "class_weights": [float(v) for v in self.weights],
                "loss": "class-weighted cross-entropy, sum w_y CE / sum w_y over the global batch",
                "batch_size": cfg.batch_size,
                **self.schedule,
                "num_processes": acc.num_processes,
                "distributed_type": str(acc.distributed_type).rsplit(".", 1)[-1],
                "mixed_precision": acc.mixed_precision,
                "device": str(acc.device),
                "runtime": {k: getattr(cfg, k) for k in RUNTIME_FIELDS},
            },
        })
        return m

    def _write_manifest(self, complete: bool) -> None:
        checkpoint.write_manifest(self.out, self._manifest(complete))

    def _commit(self, epoch: int, improved: bool) -> None:
        """Epoch ``epoch``'s ``last/`` (weights and resume state), ``best/`` if ``improved``,
        then the manifest (:func:`ssl_attn.finetune.rundir.commit`; main process)."""
        model = self.acc.unwrap_model(self.model)
        scaler = self.acc.scaler

        def write_last(stage: Path) -> None:
            tensors, state = rundir.resume_state(
                epoch=epoch, optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=None if scaler is None else scaler.state_dict())
            checkpoint.save_weights(stage, model, "last", extra_tensors={"optimizer": tensors},
                                    extra_json={"state": state})

        rundir.commit(self.out, epoch, write_last=write_last,
                      write_best=(lambda stage: checkpoint.save_weights(stage, model, "best"))
                      if improved else None,
                      write_manifest=lambda: self._write_manifest(complete=False))
