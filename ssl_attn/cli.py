"""The ``ssl-attn`` command: download, synth, info, extract, score, finetune, shift, demo.

Every sub-command imports its heavy dependencies (torch, transformers, dask) only when it runs, so
``ssl-attn --help`` answers at once. Run ``ssl-attn <command> --help`` for the options.

Errors and exit status (also in the README, section CLI):

====  ==================================================================================
0     success
1     a data or runtime error: a malformed or missing file, weights that do not load, a
      foreign or corrupt store, an interrupted run (130 for Ctrl-C), or a bug
2     a usage error: an argument value that is not valid (checked at parse time where
      possible, e.g. ``--device``, ``--shard``, ``--batch-size``, a ``--data`` that does not
      exist; unknown model keys and a ``--size`` that is no multiple of a model's patch size
      right after parsing)
3     ``extract`` finished but skipped unreadable images (listed in its report and in the
      store's ``skipped_images`` attr); ``--allow-skipped`` makes that exit 0
====  ==================================================================================

Expected errors (the package's own exceptions, and ``OSError``/``ValueError``/``KeyError``)
print one line, ``ssl-attn <command>: error: <message>``, on stderr; the message names the
file and the field at fault. ``--debug`` (before the command) or ``SSL_ATTN_DEBUG=1`` prints
the traceback as well. Any other exception is a bug: it prints a one-line hint first, then the
traceback, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DATA = Path("data/synthetic")
DEFAULT_STORE = Path("data/stores/demo.zarr")

EXIT_OK = 0
EXIT_ERROR = 1  # data or runtime error (or a bug, with its traceback)
EXIT_USAGE = 2  # a bad argument value
EXIT_SKIPPED = 3  # extract finished, but images were skipped (see --allow-skipped)
EXIT_INTERRUPTED = 130  # Ctrl-C


class UsageError(ValueError):
    """An argument value found wrong after parsing (unknown model key, size vs patch size);
    exits with status 2 like an argparse error."""


class StoreFileError(ValueError):
    """A store's ``zarr.json`` is unreadable, not JSON, or not Zarr v3 group metadata."""


# --------------------------------------------------------------------------- argument types
# argparse ``type=`` functions: a bad value exits 2 at parse time with one line naming the option.

_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def _device_arg(text: str) -> str:
    """``auto``, ``cpu``, ``mps``, ``cuda`` or ``cuda:N``."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N "
                                         "or mps")  # fmt: skip
    return text


def _checked_by(module: str, name: str):
    """An argparse ``type=`` that keeps the text and lets ``module.name(text)``, the owner of the
    rule, reject it: its ValueError becomes the argument's one-line error. The module is
    imported only when the argument is given (``ssl-attn --help`` stays fast)."""

    def parse(text: str) -> str:
        check = getattr(importlib.import_module(module), name)
        try:
            check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = name
    return parse


#: ``--dtype``: a name :func:`ssl_attn.models.loading.resolve_dtype` accepts (it owns the list).
_dtype_arg = _checked_by("ssl_attn.models.loading", "resolve_dtype")
#: ``--shard``: ``i/n`` with ``0 <= i < n`` (:func:`ssl_attn.extract.parse_shard`).
_shard_arg = _checked_by("ssl_attn.extract", "parse_shard")


def _int_arg(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value}: need {what} (>= {minimum})")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


_positive = _int_arg(1, "a positive integer")
_non_negative = _int_arg(0, "a non-negative integer")


def _existing_dir(text: str) -> Path:
    """A folder that exists (``--data``, ``--weights-dir``)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such folder")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a folder")
    return path


def _store_arg(text: str) -> Path:
    """A store path: absent (extract creates it) or a folder, never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a store folder")
    return path


def _existing_store_arg(text: str) -> Path:
    """A store folder that exists (``score``)."""
    path = _store_arg(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such store (run `ssl-attn extract` first)")
    return path


def _check_default(value: Path, option: str, check) -> Path:
    """Apply a ``type=`` check to a default (argparse converts only given values here, so
    that parsing never depends on the working directory); a failure is a :class:`UsageError`."""
    try:
        return check(str(value))
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"argument {option}: {exc}") from None


def check_store_metadata(path: str | os.PathLike, *, must_exist: bool) -> None:
    """Refuse a store whose Zarr metadata is foreign or corrupt, before any work.

    Reads ``zarr.json`` of the root and of its groups and arrays (two levels down): each must
    be a JSON object of Zarr format 3. ``must_exist``: a folder without ``zarr.json`` is not a
    store (``score``). Raises :class:`StoreFileError` naming the file.
    """
    path = Path(path)
    root_meta = path / "zarr.json"
    if not root_meta.exists():
        if must_exist:
            raise StoreFileError(f"{path}: not a Zarr store (no zarr.json); pass the folder "
                                 "that `ssl-attn extract` wrote")  # fmt: skip
        return
    for meta in [root_meta, *sorted(path.glob("*/zarr.json")), *sorted(path.glob("*/*/zarr.json"))]:
        try:
            value = json.loads(meta.read_bytes())
        except OSError as exc:
            raise StoreFileError(f"{meta}: cannot read ({exc.strerror or exc})") from exc
        except ValueError as exc:
            raise StoreFileError(f"{meta}: not valid JSON ({exc}); this is not a store written "
                                 "by ssl-attn, or it is corrupt") from exc  # fmt: skip
        if not isinstance(value, dict):
            raise StoreFileError(f"{meta}: holds a JSON {type(value).__name__}, not Zarr "
                                 "metadata; this is not a store written by ssl-attn")  # fmt: skip
        if value.get("zarr_format") != 3:
            raise StoreFileError(f"{meta}: zarr_format is {value.get('zarr_format')!r}, not 3; "
                                 "ssl-attn reads and writes Zarr v3 stores only")  # fmt: skip


# --------------------------------------------------------------------------- sub-commands


def _cmd_download(args: argparse.Namespace) -> int:
    from ssl_attn import wikichurches as wc

    paths = wc.download(files=args.files or None, out_dir=args.output, base_url=args.base_url)
    for name, path in paths.items():
        print(f"{name:24s} {path}")
    if args.extract_annotated:
        zip_path = paths.get("images.zip") or Path(args.output) / "images.zip"
        if not zip_path.exists():
            print("--extract-annotated needs images.zip: add `--files images.zip`", file=sys.stderr)
            return 2
        extracted = wc.extract_annotated_images(zip_path, args.output)
        print(f"extracted {len(extracted)} annotated images into {Path(args.output) / 'images'}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from ssl_attn import synthetic

    summary = synthetic.generate(
        args.output, n=args.n, seed=args.seed, n_annotated=args.n_annotated, progress=True
    )
    print(summary)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ssl_attn.wikichurches import WikiChurches

    # With --validate, bad entries are left out of the tables (and listed below) instead of
    # stopping the description at the first one.
    data = WikiChurches(_check_default(args.data, "--data", _existing_dir),
                        strict=not args.validate)
    with warnings.catch_warnings():
        if args.validate:  # the report below lists each problem once
            warnings.simplefilter("ignore", UserWarning)
        print(describe_dataset(data))
    if args.validate:
        report = data.validate(decode=True, raise_on_error=False)
        print(report)
        if not report.ok:
            first = report.errors[0] if report.errors else ""
            print(f"ssl-attn info: error: {data.root}: validation found {len(report.errors)} "
                  f"error(s) (listed above); the first: {one_line(first)}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_ERROR
    return EXIT_OK


def describe_dataset(data) -> str:
    """A readable summary of a :class:`~ssl_attn.wikichurches.WikiChurches` dataset.

    Lists images per training style and boxes per feature type, and says whether the data is
    synthetic. Used by ``ssl-attn info`` and ``ssl-attn demo``.
    """
    images = data.images
    boxes = data.boxes
    kind = "SYNTHETIC (generated by ssl_attn.synthetic)" if data.is_synthetic else "WikiChurches"
    lines = [
        f"dataset: {data.root}  [{kind}]",
        f"annotated images: {len(images)}   boxes: {len(boxes)}   feature types in ontology: "
        f"{len(data.ontology)}",
        "",
        "images per style (training label):",
    ]
    names = data.style_names
    counts = images["style"].map(lambda q: names.get(q, q) if q else "(none)").value_counts()
    lines += [f"  {name:28s} {n:5d}" for name, n in counts.items()]
    lines += ["", "boxes per feature:"]
    lines += [f"  {name:28s} {n:5d}" for name, n in boxes["feature"].value_counts().items()]
    problems = getattr(data, "problems", ())
    if problems:
        lines += ["", f"annotation problems: {len(problems)} (left out above; "
                      "`ssl-attn info --validate` lists them)"]
    return "\n".join(lines)


def _parse_models(values: Sequence[str]) -> list[str]:
    from ssl_attn.models import list_models

    if not values or values == ["all"]:
        return list(list_models())
    known = set(list_models())
    unknown = [v for v in values if v not in known]
    if unknown:
        raise UsageError(
            f"argument --models: unknown model key(s) {unknown}; known: {sorted(known)} "
            "(register others with ssl_attn.models.register_model)"
        )
    return list(values)


def _check_size(size: int | None, models: Sequence[str]) -> None:
    """``--size`` must be a multiple of every chosen model's patch size (32 for ResNet-50)."""
    if size is None:
        return
    from ssl_attn.models import get_spec
    from ssl_attn.models.registry import grid_shape

    for key in models:
        try:
            grid_shape(get_spec(key), (size, size))
        except ValueError as exc:
            raise UsageError(f"argument --size: {exc}") from None


def _cmd_extract(args: argparse.Namespace) -> int:
    from ssl_attn.extract import extract, parse_shard

    if args.finetuned is not None and args.models is None:
        from ssl_attn.finetune.checkpoint import read_manifest

        models = [read_manifest(args.finetuned)["model"]["key"]]  # the run's one model
    else:
        models = _parse_models(args.models)
    _check_size(args.size, models)
    check_store_metadata(_check_default(args.store, "--store", _store_arg), must_exist=False)
    report = extract(
        args.store,
        _check_default(args.data, "--data", _existing_dir),
        models,
        layers=args.layers,
        variant=args.variant,
        weights_dir=args.weights_dir,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        shard=parse_shard(args.shard),
        size=args.size,
        embeddings=args.embeddings,
        progress=True,
        finetuned=args.finetuned,
    )
    print(report)
    if report.skipped and not args.allow_skipped:
        n_images = len({s["image_id"] for s in report.skipped})
        first = report.skipped[0]
        reason = one_line(f"{first['image_id']}: {first['reason']}")[:300]
        print(f"ssl-attn extract: {n_images} image(s) were skipped (unreadable; listed above and "
              f"in the store's skipped_images attr; the first: {reason}); exit status "
              f"{EXIT_SKIPPED}. Pass --allow-skipped to exit 0.", file=sys.stderr)  # fmt: skip
        return EXIT_SKIPPED
    return EXIT_OK


def _cmd_score(args: argparse.Namespace) -> int:
    from ssl_attn.metrics import score

    check_store_metadata(_check_default(args.store, "--store", _existing_store_arg),
                         must_exist=True)
    scores = score(
        args.store,
        out=args.output,
        resolution=args.resolution,
        baselines=not args.no_baselines,
        scheduler=args.scheduler,
        data=args.data,
    )
    print(f"scores: {dict(scores.sizes)} -> {args.output or str(args.store) + ' (scores)'}")
    return 0


def _cmd_shift(args: argparse.Namespace) -> int:
    """The Q2 shift table of a store's fine-tuned variants: read ``X.scores.zarr``, write
    ``X.shift.zarr`` (:mod:`ssl_attn.finetune.shift`) and print it."""
    from ssl_attn.finetune.shift import ShiftError, format_shift, shift_table, write_shift
    from ssl_attn.store import open_scores, scores_path, shift_path

    store = _check_default(args.store, "--store", _existing_store_arg)
    check_store_metadata(store, must_exist=True)
    scores_file = Path(args.scores) if args.scores else scores_path(store)
    if not (scores_file / "zarr.json").exists():
        raise ShiftError(f"{scores_file}: no scores (no zarr.json); run `ssl-attn score --store "
                         f"{store}` first")
    controls = {}
    for pair in args.control or ():
        variant, sep, control = pair.partition("=")
        if not sep or not variant or not control:
            raise UsageError(f"argument --control: {pair!r} is not VARIANT=CONTROL")
        controls[variant] = control
    family = args.family[0] if args.family == ["all"] else args.family
    table = shift_table(open_scores(scores_file), metrics=args.metric,
                        percentile=args.percentile, reference=args.reference,
                        controls=controls or None, holm_family=family, store=store)
    out = write_shift(table, Path(args.output) if args.output else shift_path(store))
    print(format_shift(table, all_rows=args.all))
    print(f"\nshift table: {dict(table.sizes)} -> {out}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic data → attention store → scores, each step skipped when already done."""
    from ssl_attn import synthetic
    from ssl_attn.wikichurches import WikiChurches

    data_dir = Path(args.data)
    if not (data_dir / "building_parts.json").exists():
        print(synthetic.generate(data_dir, n=args.n, seed=args.seed, progress=True))
    data = WikiChurches(data_dir)
    print(describe_dataset(data))
    if args.no_extract:
        return 0

    from ssl_attn.demo import prepare_demo_weights

    models = _parse_models(args.models)
    check_store_metadata(_check_default(args.store, "--store", _store_arg), must_exist=False)
    weights_dir = prepare_demo_weights(models, args.weights_dir)
    from ssl_attn.extract import extract

    report = extract(
        args.store,
        data_dir,
        models,
        weights_dir=weights_dir,
        device=args.device,
        batch_size=args.batch_size,
        embeddings=True,
        progress=True,
    )
    print(report)
    from ssl_attn.metrics import score

    scores = score(args.store, data=data_dir)
    print(f"scored: {dict(scores.sizes)}")
    print(f"\nstore: {args.store}\nnext: panel serve dashboards/explorer.py --args --store "
          f"{args.store}")
    return 0


# --------------------------------------------------------------------------- finetune

#: ``--strategy`` / ``--labels`` / ``--precision``: values :mod:`ssl_attn.finetune.config` owns.
_strategy_arg = _checked_by("ssl_attn.finetune.config", "check_strategy")
_labels_arg = _checked_by("ssl_attn.finetune.config", "check_labels")
_precision_arg = _checked_by("ssl_attn.finetune.config", "check_precision")


def _positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value}: need a number > 0")
    return value


#: ``ssl-attn finetune`` options passed to FineTuningConfig when given (its defaults otherwise).
_FINETUNE_FIELDS = {
    "strategy": "strategy", "labels": "labels", "epochs": "epochs", "batch_size": "batch_size",
    "lr_head": "lr_head", "lr_backbone": "lr_backbone", "device": "device",
    "precision": "precision", "size": "size", "val_fraction": "val_fraction",
    "split_seed": "split_seed", "shuffle_seed": "shuffle_seed", "num_workers": "num_workers",
    "split_file": "split_file",
}


def _cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune one model (one run per ``--seed``) and print a summary per run."""
    from ssl_attn.finetune.config import FineTuningConfig

    if args.model == "all":
        raise UsageError("argument --model: give one model key, not 'all'")
    models = _parse_models([args.model])
    _check_size(args.size, models)
    data = _check_default(args.data, "--data", _existing_dir)
    given = {field: getattr(args, opt) for opt, field in _FINETUNE_FIELDS.items()
             if getattr(args, opt) is not None}
    seeds = list(dict.fromkeys(args.seed)) if args.seed else [None]
    try:
        config = FineTuningConfig(
            model_name=args.model, out_dir=str(args.out),
            weights_dir=None if args.weights_dir is None else str(args.weights_dir),
            random_init=bool(args.random_init), **given,
            **({} if seeds[0] is None else {"seed": seeds[0]}))
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    from ssl_attn.finetune.trainer import FineTuner
    from ssl_attn.wikichurches import WikiChurches

    def build_model():
        from ssl_attn.finetune.model import FineTunableModel

        return FineTunableModel(args.model, weights_dir=args.weights_dir,
                                random_init=bool(args.random_init), size=args.size)

    wc = WikiChurches(data, rule=config.rule)
    tuner = FineTuner(config)
    try:
        if len(seeds) > 1:
            results = tuner.train_seeds(build_model, wc, seeds)
        else:
            result = tuner.stored_result()
            if result is not None:
                print(f"{tuner.out_dir}: complete ({len(result.history)} epochs); stored "
                      "result, not trained again")  # fmt: skip
            else:
                result = tuner.train(build_model(), wc)
            results = [result]
    finally:
        _end_distributed()
    if int(os.environ.get("RANK", "0")) == 0:  # one summary under torchrun
        for r in results:
            best = r.best
            print(f"{config.variant} seed {r.manifest['seed']}: best epoch {r.best_epoch}/"
                  f"{len(r.history)}  val acc {best['val_acc']:.3f}  balanced acc "
                  f"{best['val_bacc']:.3f}  val loss {best['val_loss']:.4f}  -> "
                  f"{r.checkpoint_dir}")  # fmt: skip
    return EXIT_OK


def _end_distributed() -> None:
    """Close the process group a launcher's run opened (torchrun / accelerate launch)."""
    if "torch" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``<prog>: error: <message>``, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_EPILOG = (
    "exit status: 0 success; 1 data or runtime error (one line naming the file; a bug also "
    "prints its traceback); 2 bad arguments; 3 extract skipped images (see --allow-skipped); "
    "130 interrupted. --debug or SSL_ATTN_DEBUG=1 prints the traceback of every error."
)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``ssl-attn`` (exposed for tests and docs)."""
    p = _Parser(
        prog="ssl-attn",
        description="Do self-supervised ViTs look where architecture experts look?",
        epilog=_EPILOG,
    )
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of an error (also: SSL_ATTN_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("download", help="fetch WikiChurches files from Zenodo (verified)")
    d.add_argument("--files", nargs="*", help="file names of record 5166987 (default: the "
                   "annotations, churches.json and style_names.txt)")
    d.add_argument("-o", "--output", default="data/wikichurches", help="target folder")
    d.add_argument("--base-url", default=None, help="Zenodo base URL (default https://zenodo.org"
                   " or $SSL_ATTN_ZENODO_URL)")
    d.add_argument("--extract-annotated", action="store_true",
                   help="extract only the annotated images from images.zip")
    d.set_defaults(func=_cmd_download)

    s = sub.add_parser("synth", help="write the synthetic WikiChurches-format dataset")
    s.add_argument("-o", "--output", default=str(DEFAULT_DATA))
    s.add_argument("--n", type=_positive, default=300, help="images in all (default 300)")
    s.add_argument("--n-annotated", type=_non_negative, default=None,
                   help="images with expert boxes (default min(n, 139))")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("info", help="summarise (and optionally validate) a dataset folder")
    i.add_argument("--data", type=_existing_dir, default=DEFAULT_DATA)
    i.add_argument("--validate", action="store_true", help="also decode every annotated image")
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser(
        "extract", help="attention maps of the annotated images into a store",
        epilog=f"exit status: 0 done; {EXIT_SKIPPED} done but unreadable images were skipped "
        "(listed in the report and the store's skipped_images attr; --allow-skipped makes it 0); "
        "1 data, weights or store error; 2 bad arguments. A run whose first model fails to load "
        "leaves no new store behind.",
    )  # fmt: skip
    e.add_argument("--models", nargs="+", default=None,
                   help="model keys or 'all' (default: all; with --finetuned: the run's model)")
    e.add_argument("--layers", nargs="+", type=_non_negative, default=None,
                   help="layer indices (0-based; default all)")
    e.add_argument("--data", type=_existing_dir, default=DEFAULT_DATA)
    e.add_argument("--store", type=_store_arg, default=DEFAULT_STORE)
    e.add_argument("--weights-dir", type=_existing_dir, default=None,
                   help="offline weights: one folder per model key (save_pretrained layout, or "
                   "a torchvision state dict for resnet50)")
    e.add_argument("--variant", default=None,
                   help="store variant (default: frozen; with --finetuned: the run's variant)")
    e.add_argument("--finetuned", type=_existing_dir, default=None, metavar="RUN",
                   help="a fine-tuning run folder (ssl-attn finetune --out RUN): extract its "
                   "best weights as the run's variant; the store's variant_provenance names the "
                   "run and its manifest")
    e.add_argument("--device", type=_device_arg, default="auto",
                   help="auto, cpu, cuda, cuda:1, mps")
    e.add_argument("--dtype", type=_dtype_arg, default=None,
                   help="float32 (default), bfloat16, float16 (GPU)")
    e.add_argument("--batch-size", type=_positive, default=8)
    e.add_argument("--shard", type=_shard_arg, default="0/1",
                   help="i/n: this process does shard i of n")
    e.add_argument("--size", type=_positive, default=None,
                   help="input side in px, a multiple of each model's patch size (default native)")
    e.add_argument("--embeddings", action="store_true", help="also store final patch embeddings")
    e.add_argument("--allow-skipped", action="store_true",
                   help=f"exit 0 even when unreadable images were skipped (default: exit "
                   f"{EXIT_SKIPPED})")
    e.set_defaults(func=_cmd_extract)

    c = sub.add_parser("score", help="alignment scores and baselines for a store")
    c.add_argument("--store", type=_existing_store_arg, default=DEFAULT_STORE)
    c.add_argument("--data", type=_existing_dir, default=None,
                   help="dataset folder (default: the store's own)")
    c.add_argument("-o", "--output", default=None, help="default: <store>.scores.zarr")
    c.add_argument("--resolution", type=_positive, default=224, help="evaluation frame R (px)")
    c.add_argument("--no-baselines", action="store_true")
    c.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    c.set_defaults(func=_cmd_score)

    f = sub.add_parser("shift", help="how fine-tuned variants move attention (Q2): the shift "
                       "table of a scored store")
    f.add_argument("--store", type=_existing_store_arg, default=DEFAULT_STORE)
    f.add_argument("--scores", default=None, help="default: <store>.scores.zarr")
    f.add_argument("-o", "--output", default=None, help="default: <store>.shift.zarr")
    f.add_argument("--metric", nargs="+", default=["iou", "coverage"],
                   help="image-level metrics (default: iou coverage)")
    f.add_argument("--percentile", type=float, default=90.0, help="IoU percentile (default 90)")
    f.add_argument("--reference", default="frozen", help="the variant compared against")
    f.add_argument("--family", nargs="+", default=["layer"],
                   choices=["model", "variant", "method", "metric", "layer", "all"],
                   help="dims one Holm family spans (default: layer, i.e. one correction per "
                   "model x variant x method x metric across layers), or all")
    f.add_argument("--control", action="append", metavar="VARIANT=CONTROL",
                   help="a variant's shuffled-label control (default: <s>_shuffled for <s>)")
    f.add_argument("--all", action="store_true",
                   help="print every per-layer cell (default: enhance/destroy only)")
    f.set_defaults(func=_cmd_shift)

    m = sub.add_parser("demo", help="synthetic data -> attention store -> scores")
    m.add_argument("--data", default=str(DEFAULT_DATA))
    m.add_argument("--store", type=_store_arg, default=DEFAULT_STORE)
    m.add_argument("--n", type=_positive, default=300)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--models", nargs="+", default=["all"])
    m.add_argument("--weights-dir", type=_existing_dir, default=None,
                   help="real weights (one folder per key); otherwise the hub cache, else "
                   "random-init full-size models, labelled as such")
    m.add_argument("--device", type=_device_arg, default="auto")
    m.add_argument("--batch-size", type=_positive, default=8)
    m.add_argument("--no-extract", action="store_true", help="only generate the dataset")
    m.set_defaults(func=_cmd_demo)

    f = sub.add_parser(
        "finetune", help="fine-tune a model on architectural style (a resumable run folder)",
        description="Fine-tune MODEL on the style labels of the images that are not annotated "
        "(stratified split saved beside the data). A rerun with the same options resumes an "
        "interrupted run and returns a complete one; multi-process: torchrun --nproc_per_node N "
        "-m ssl_attn.cli finetune ... (gloo on CPU). Options left out take FineTuningConfig's "
        "defaults.",
        epilog="exit status: 0 done; 1 data error (no style labels, a class without training "
        "images, a run folder holding other settings, weights that do not load); 2 bad "
        "arguments.",
    )  # fmt: skip
    f.add_argument("--model", required=True, help="model key (e.g. dinov2)")
    f.add_argument("--strategy", type=_strategy_arg, default=None,
                   help="linear_probe, lora (default) or full")
    f.add_argument("--labels", type=_labels_arg, default=None,
                   help="style (default) or shuffled (the shuffled-label control)")
    f.add_argument("--data", type=_existing_dir, default=DEFAULT_DATA)
    f.add_argument("--out", type=Path, required=True,
                   help="the run folder (manifest.json, best/, last/); with several --seed, "
                   "one seed-N/ folder per seed inside it")
    f.add_argument("--weights-dir", type=_existing_dir, default=None,
                   help="offline base weights: one folder per model key (as extract)")
    f.add_argument("--random-init", action="store_true",
                   help="start from random weights (seed 0) instead of pretrained ones")
    f.add_argument("--epochs", type=_positive, default=None, help="default 10")
    f.add_argument("--batch-size", type=_positive, default=None,
                   help="global batch over all processes (default 16)")
    f.add_argument("--lr-head", type=_positive_float, default=None, help="default 1e-3")
    f.add_argument("--lr-backbone", type=_positive_float, default=None, help="default 1e-4")
    f.add_argument("--seed", type=_non_negative, nargs="+", default=None,
                   help="one or more seeds (default 0); several: one run per seed")
    f.add_argument("--device", type=_device_arg, default=None,
                   help="auto (default), cpu, cuda, cuda:1, mps")
    f.add_argument("--precision", type=_precision_arg, default=None,
                   help="auto (default: bf16 on CUDA, else fp32), no, bf16, fp16")
    f.add_argument("--size", type=_positive, default=None,
                   help="input side in px, a multiple of the patch size (default native)")
    f.add_argument("--val-fraction", type=float, default=None,
                   help="validation share of the split (default 0.2)")
    f.add_argument("--split-seed", type=_non_negative, default=None, help="default 0")
    f.add_argument("--shuffle-seed", type=_non_negative, default=None,
                   help="label permutation of --labels shuffled (default 0)")
    f.add_argument("--split-file", default=None,
                   help="the split JSON (default: <data>/splits/...)")
    f.add_argument("--num-workers", type=_non_negative, default=None,
                   help="data-loader worker processes (default 0)")
    f.set_defaults(func=_cmd_finetune)
    return p


# --------------------------------------------------------------------------- errors


def _is_expected(exc: BaseException) -> bool:
    """An error of the input or environment, not a bug: the package's own exceptions, the
    ones of zarr, and ``OSError`` / ``ValueError`` / ``KeyError``."""
    from ssl_attn.models.errors import ModelLoadError

    if isinstance(exc, (OSError, ValueError, KeyError, ModelLoadError)):
        return True
    module = type(exc).__module__ or ""
    return module.split(".")[0] in ("ssl_attn", "zarr", "PIL", "safetensors")


_MAX_MESSAGE = 2000


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: newlines folded into ``; ``, an ``OSError`` as ``<file>: <reason>``,
    a ``KeyError`` as ``missing key '<k>'``; a foreign exception keeps its type name.
    Capped at 2,000 characters."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
        text = f"{where}: {exc.strerror}"
    elif isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"missing key {exc.args[0]!r}"
    else:
        text = str(exc) or type(exc).__name__
    own = (type(exc).__module__ or "").startswith("ssl_attn") or isinstance(
        exc, (UsageError, StoreFileError))  # also when this module runs as __main__
    if not own and not isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {text}"
    return one_line(text)


def one_line(text_in: str) -> str:
    """``text_in`` with its lines folded into one (joined by ``; ``, or a space after a colon),
    capped at 2,000 characters."""
    text = ""
    for line in (ln.strip() for ln in str(text_in).splitlines()):
        if line:
            text += ("" if not text else " " if text.endswith(":") else "; ") + line
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 40].rstrip() + " ... (--debug shows all)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ssl-attn`` console script; returns the exit status.

    Argument errors raise ``SystemExit(2)`` from argparse (one line on stderr) and ``--help``
    ``SystemExit(0)``; every other outcome is returned: 0, 1, 2 (:class:`UsageError`), 3
    (extract skipped images) or 130 (interrupted). See the module docstring.
    """
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TQDM_MININTERVAL", "1")
    debug = bool(args.debug) or os.environ.get("SSL_ATTN_DEBUG", "").lower() not in (
        "", "0", "false", "no")  # fmt: skip
    prog = f"ssl-attn {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted; a rerun resumes where this one stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one top-level handler
        sys.stdout.flush()
        if not _is_expected(exc):
            print(f"{prog}: internal error (a bug in ssl-attn; please report it with this "
                  f"traceback): {error_line(exc)}", file=sys.stderr)  # fmt: skip
            traceback.print_exc()
            return EXIT_ERROR
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
