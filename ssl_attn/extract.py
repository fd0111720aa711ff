"""The extraction driver: attention maps of every annotated image into a resumable store.

:func:`extract` loops over models; per model it loads the weights, computes which images of
this shard are not yet complete in the store, and streams them through ``preprocess`` →
:func:`ssl_attn.attention.extract_maps` → the model's store group (one
:class:`~ssl_attn.store.write.GroupWriter`, opened once) in batches, with a
tqdm bar showing images/s. Images that cannot be read are skipped and reported (in the returned
:class:`ExtractReport` and in the store's ``skipped_images`` attr); an interrupted run loses at
most the batch in flight, and a rerun computes only what is missing.

Sharding: shard ``i`` of ``n`` is the ``i``-th of ``n`` **contiguous blocks** of the sorted
image list (sizes differ by at most one, like ``numpy.array_split``). Contiguous blocks keep
each batch one contiguous region of the store (one region write per variable per batch) and
all images are preprocessed to the same size, so blocks are equally expensive.

:func:`extract_on_cluster` runs the shards as tasks on a ``dask.distributed`` cluster.

torch, transformers and dask are imported inside the functions that need them, so importing
this module stays light.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssl_attn import store as st
from ssl_attn.store.write import GroupWriter

__all__ = [
    "ExtractReport",
    "ModelReport",
    "extract",
    "extract_on_cluster",
    "image_table",
    "parse_shard",
    "shard_ids",
]


# --------------------------------------------------------------------------------------------
# reports


@dataclass
class ModelReport:
    """What :func:`extract` did for one model (in one shard).

    ``n_images``: images of this shard; ``n_done_before``: already complete when the run
    started; ``n_computed``: computed and written now; ``n_skipped``: unreadable images;
    ``seconds``: wall time from model load to last write; ``images_per_s``: n_computed over
    the time spent in the batch loop (load excluded).
    """

    model: str
    variant: str
    n_images: int
    n_done_before: int = 0
    n_computed: int = 0
    n_skipped: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0


@dataclass
class ExtractReport:
    """The result of :func:`extract`: per-model reports and the skipped images.

    ``skipped`` holds ``{image_id, model, variant, reason}`` records (also written to the
    store's root attr ``skipped_images``).
    """

    store: str
    shard: tuple[int, int] = (0, 1)
    models: dict[str, ModelReport] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_computed(self) -> int:
        """Images computed in this run, summed over models."""
        return sum(r.n_computed for r in self.models.values())

    def __str__(self) -> str:
        i, n = self.shard
        lines = [f"extract into {self.store} (shard {i}/{n}):"]
        for r in self.models.values():
            lines.append(
                f"  {r.model} [{r.variant}]: {r.n_computed} computed, {r.n_done_before} already "
                f"complete, {r.n_skipped} skipped of {r.n_images}; {r.images_per_s:.2f} images/s"
            )
        for s in self.skipped:
            lines.append(f"  skipped {s['image_id']} ({s['model']}): {s['reason']}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# images and shards


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based shard ``i`` of ``n``) into ``(i, n)``; raises ValueError."""
    try:
        i_text, n_text = str(text).split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard {text!r}: expected 'i/n' with integers, e.g. '0/4'.") from None
    _check_shard((i, n))
    return i, n


def _check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: need n >= 1 and 0 <= i < n (shards are 0-based).")


def shard_ids(image_ids: Sequence[str], shard: tuple[int, int]) -> list[str]:
    """The images of shard ``(i, n)``: the ``i``-th of ``n`` contiguous blocks of ``image_ids``.

    Block ``i`` is ``image_ids[i*N//n : (i+1)*N//n]``; together the blocks cover every image
    exactly once and their sizes differ by at most one.
    """
    _check_shard(shard)
    i, n = shard
    size = len(image_ids)
    return list(image_ids[i * size // n : (i + 1) * size // n])


def image_table(wc: Any) -> pd.DataFrame:
    """The annotated images of a :class:`~ssl_attn.wikichurches.WikiChurches`, sorted by id.

    Columns ``image_id, path, width, height, style`` (width/height ``<NA>`` where the file is
    missing or its header unreadable, style None where unlabelled).
    """
    table = wc.images.sort_values("image_id", kind="stable").reset_index(drop=True)
    return table[["image_id", "path", "width", "height", "style"]]


def _image_coords(table: pd.DataFrame) -> dict[str, list[Any]]:
    """Store coordinates per image; unknown sizes are -1 (filled in once the file reads)."""
    return {
        "style": [None if pd.isna(s) else str(s) for s in table["style"]],
        "width": [int(w) if not pd.isna(w) else -1 for w in table["width"]],
        "height": [int(h) if not pd.isna(h) else -1 for h in table["height"]],
    }


def _load_images(wc: Any, ids: Sequence[str], max_side: int | None = None
                 ) -> tuple[list[Any], list[str], list[tuple]]:
    """Decode a batch; returns (images, ids that loaded, [(id, reason)] for those that failed).

    ``max_side``: decode at reduced size, both sides kept >= it (``load_image(max_side=...)``:
    a 108-Mpx JPEG then costs ~85 MB instead of ~500 MB); ``None`` decodes in full.
    """
    images, ok, bad = [], [], []
    for iid in ids:
        try:
            image = wc.load_image(iid, max_side=max_side) if max_side else wc.load_image(iid)
            image.load()
        except Exception as exc:  # any failure to read one file skips that image, not the run
            bad.append((iid, f"{type(exc).__name__}: {exc}"))
            continue
        images.append(image)
        ok.append(iid)
    return images, ok, bad


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _prefetch(items: Iterable[Any], fn: Any) -> Iterator[Any]:
    """``fn(item)`` for each item, computing the next one in a thread while the caller works.

    Hand-written (a one-slot pipeline over ThreadPoolExecutor) because image decoding and
    resizing release the GIL and overlap well with the model's forward pass.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssl-attn-prefetch") as pool:
        pending = None
        for item in items:
            future = pool.submit(fn, item)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


# --------------------------------------------------------------------------------------------
# the driver


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().float().cpu().numpy() if value.dtype.is_floating_point else (
            value.detach().cpu().numpy())  # fmt: skip
    return np.asarray(value)


def _variables(maps: dict[str, np.ndarray], model: str) -> dict[str, tuple[str, ...]]:
    unknown = sorted(set(maps) - set(st.VARIABLE_DIMS))
    if unknown:
        raise st.StoreError(
            f"extract_maps for {model!r} returned {unknown}, which the store schema does not "
            f"define (known: {sorted(st.VARIABLE_DIMS)}); add them to store.VARIABLE_DIMS."
        )
    return {name: st.VARIABLE_DIMS[name] for name in maps}


def _axis_size(maps: dict[str, np.ndarray], dim: str) -> int | None:
    for name, array in maps.items():
        dims = st.VARIABLE_DIMS[name]
        if dim in dims:
            return int(array.shape[1 + dims.index(dim)])
    return None


def _layer_coords(maps: dict[str, np.ndarray], layers: Sequence[int] | None) -> list[int]:
    """``layer`` coordinate values, as ``extract_maps`` resolves ``layers``.

    ViT layers are 0-based block indices (default all); Grad-CAM stages are stored as 1..4
    (``layer1``..``layer4``, docs/SCHEMA.md) while ``layers`` indexes them 0-based.
    """
    n = _axis_size(maps, "layer")
    if n is None:
        return []
    values = list(range(n)) if layers is None else sorted({int(v) for v in layers})
    if "gradcam" in maps:
        values = [v + 1 for v in values]
    if len(values) != n:
        raise st.StoreError(
            f"extract_maps returned {n} layers but {len(values)} were requested ({values})."
        )
    return values


class _StoreRoot:
    """The store root of one :func:`extract` call, created no earlier than needed.

    An existing store (any path that is not absent or an empty folder) is checked at once with
    :func:`ssl_attn.store.init_store`, before any model loads. A new one is created only by the
    first write (a model group, or the record of a skipped image), so a run whose models fail
    to load, or whose first batch fails, leaves no empty store behind.
    """

    def __init__(self, path: Path, *, synthetic: bool, dataset: str) -> None:
        self.path, self.synthetic, self.dataset = Path(path), bool(synthetic), dataset
        self.ready = False
        if self.path.exists() and not (self.path.is_dir() and not any(self.path.iterdir())):
            self.ensure()

    def ensure(self) -> None:
        """Create (or check) the store root once."""
        if not self.ready:
            st.init_store(self.path, synthetic=self.synthetic, dataset=self.dataset)
            self.ready = True


class _ModelGroup:
    """The store group of one model in one :func:`extract` call: its variables, coordinates
    and writes.

    The group's layout is only known from the first batch (which methods came back, the grid,
    heads, layers, channels), so the first :meth:`write` creates (or checks, or extends by the
    variant) the group with :func:`ssl_attn.store.init_model_group` and opens one
    :class:`~ssl_attn.store.write.GroupWriter`; every batch is then written through it, without
    reopening the group.
    """

    def __init__(self, store: Path, key: str, variant: str, *, image_ids: Sequence[str],
                 image_coords: dict[str, list[Any]], synthetic: bool,
                 layers: Sequence[int] | None, root: _StoreRoot | None = None,
                 extra_attrs: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.store, self.key, self.variant = store, key, variant
        self.root = root
        # facts recorded on top of the model's (a fine-tuned variant's run, manifest, ...)
        self.extra_attrs = dict(extra_attrs or {})
        self.image_ids, self.image_coords = list(image_ids), image_coords
        self.synthetic, self.layers = bool(synthetic), layers
        self.writer: GroupWriter | None = None

    def write(self, loaded: Any, ids: list[str], maps: dict[str, np.ndarray],
              pixel_values: Any) -> None:  # fmt: skip
        """Write one batch (``maps`` as numpy, first axis = ``ids``), creating the group first."""
        if self.writer is None:
            if self.root is not None:
                self.root.ensure()
            self._create(loaded, maps, pixel_values)
            self.writer = GroupWriter(self.store, self.key, self.variant)
        self.writer.write(ids, maps)

    def _create(self, loaded: Any, maps: dict[str, np.ndarray], pixel_values: Any) -> None:
        """:func:`ssl_attn.store.init_model_group` with the layout of the first batch."""
        input_hw = [int(pixel_values.shape[-2]), int(pixel_values.shape[-1])]
        facts = dict(loaded.facts(size=tuple(input_hw))) if hasattr(loaded, "facts") else {}
        grid = (_axis_size(maps, "y"), _axis_size(maps, "x"))
        attrs = {
            "model_key": self.key,
            "device": str(getattr(loaded, "device", "unknown")),
            "dtype": str(getattr(loaded, "dtype", "unknown")),
            "weights": str(getattr(loaded, "weights", "unknown")),
            **facts,
            # what this store actually holds (may differ from the model's full capabilities)
            "grid": list(grid),
            "input_size": input_hw,
            "methods": sorted(maps),
            "variant": self.variant,
            "synthetic": self.synthetic,
            **self.extra_attrs,
        }
        st.init_model_group(
            self.store, self.key, image_ids=self.image_ids, image_coords=self.image_coords,
            variant=self.variant, layers=_layer_coords(maps, self.layers),
            heads=list(range(_axis_size(maps, "head") or 0)), grid=grid,
            variables=_variables(maps, self.key), channels=_axis_size(maps, "channel"),
            attrs=st.provenance(**attrs),
        )  # fmt: skip


@dataclass(frozen=True)
class _Settings:
    """How every model of one :func:`extract` call is loaded (``device``, ``dtype``,
    ``weights_dir``) and run (``layers``, ``methods``, ``embeddings``, ``size``,
    ``batch_size``, ``progress``); see :func:`extract` for each."""

    device: str
    dtype: Any
    weights_dir: str | os.PathLike | None
    layers: Sequence[int] | None
    methods: Sequence[str] | None
    embeddings: bool
    size: int | tuple[int, int] | None
    batch_size: int
    progress: bool
    finetuned: Path | None = None


def extract(
    store: str | os.PathLike,
    data: str | os.PathLike,
    models: str | Sequence[str],
    *,
    layers: Sequence[int] | None = None,
    variant: str | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    dtype: Any = None,
    batch_size: int = 8,
    shard: tuple[int, int] = (0, 1),
    size: int | tuple[int, int] | None = None,
    embeddings: bool = False,
    progress: bool = True,
    image_ids: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    finetuned: str | os.PathLike | None = None,
) -> ExtractReport:
    """Extract attention maps of the annotated images into a store, resumably.

    Args:
        store: the Zarr store directory (created if absent, at the first write: a run that
            writes nothing, e.g. because the model fails to load, leaves no store behind).
        data: a WikiChurches(-format) folder (``WikiChurches(data).images``: annotated only).
        models: a model key or keys (``ssl_attn.models.list_models()``).
        layers: 0-based layer indices passed to ``extract_maps`` (default all), stored as the
            ``layer`` coordinate (Grad-CAM stages: index 0..3 stored as 1..4).
        variant: the store variant written (``frozen``, ``linear_probe``, ``lora``, ``full``,
            ``<strategy>_shuffled``). Default: ``frozen``, or with ``finetuned`` the run's
            variant (its manifest's ``variant``; another value is an error).
        weights_dir: local checkpoints (``<weights_dir>/<key>/``) instead of the hub (with
            ``finetuned``: the base weights; default the folder the run recorded).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (cuda > mps > cpu, as
            ``load_model`` resolves it); dtype: model dtype (default float32).
        batch_size: images per forward pass (default 8).
        shard: ``(i, n)``: compute only the ``i``-th of ``n`` contiguous blocks of the sorted
            image list (see :func:`shard_ids`); shards may run concurrently on one store.
        size: preprocessing size override (default: the model's native input size).
        embeddings: also store final-layer patch embeddings (float16).
        progress: show a tqdm bar per model (images/s).
        image_ids: restrict the run to these annotated images (the store still allocates all).
        methods: attention methods passed to ``extract_maps`` (default: the model's
            ``default_methods``). A store group keeps the methods of its first run.
        finetuned: a fine-tuning run folder (``ssl-attn finetune --out RUN``): its best
            weights are loaded with :func:`ssl_attn.finetune.checkpoint.load_finetuned` (same
            preprocessing, dtype and images as ``frozen``). ``models`` must be the run's one
            model. The group's ``variant_provenance`` records the run, its manifest, strategy,
            labels kind, best epoch and validation accuracy, classes and split digest; a
            variant already extracted from another run (or from no run) is an error.

    Returns:
        An :class:`ExtractReport`. Images already complete for ``(model, variant)`` are not
        recomputed; unreadable images are skipped and listed in the report and the store.
    """
    from ssl_attn.wikichurches import WikiChurches

    store = Path(store)
    shard = (int(shard[0]), int(shard[1]))
    _check_shard(shard)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: need at least 1 image per batch.")
    keys = [models] if isinstance(models, str) else list(models)
    run_facts: dict[str, Any] | None = None
    if finetuned is not None:
        variant, run_facts = _finetuned_run(finetuned, keys, variant)
    elif variant is None:
        variant = "frozen"
    wc = WikiChurches(data)
    table = image_table(wc)
    all_ids = [str(i) for i in table["image_id"]]
    selected = all_ids
    if image_ids is not None:
        wanted = {str(i) for i in image_ids}
        unknown = sorted(wanted - set(all_ids))
        if unknown:
            raise ValueError(
                f"image_ids {unknown[:5]} are not annotated images of {wc.root} "
                f"(building_parts.json); pass ids like {all_ids[:2]}."
            )
        selected = [i for i in all_ids if i in wanted]
    mine = shard_ids(selected, shard)
    root = _StoreRoot(store, synthetic=bool(wc.is_synthetic), dataset=str(data))
    report = ExtractReport(store=str(store), shard=shard)
    settings = _Settings(device=device, dtype=dtype, weights_dir=weights_dir, layers=layers,
                         methods=methods, embeddings=embeddings, size=size,
                         batch_size=batch_size, progress=progress,
                         finetuned=None if finetuned is None else Path(finetuned))  # fmt: skip
    coords = _image_coords(table)

    for key in keys:
        _check_variant_source(store, key, variant, run_facts)
        done = st.completed(store, key, variant)
        todo = [i for i in mine if i not in done]
        mrep = ModelReport(model=key, variant=variant, n_images=len(mine),
                           n_done_before=len(mine) - len(todo))  # fmt: skip
        report.models[key] = mrep
        if todo:  # else nothing to do: the model is not even loaded (and nothing locked)
            st.check_writable(store)  # a read-only store fails here, before the model loads
            group = _ModelGroup(store, key, variant, image_ids=all_ids, image_coords=coords,
                                synthetic=wc.is_synthetic, layers=layers, root=root,
                                extra_attrs=run_facts)  # fmt: skip
            _run_model(wc, group, todo, mrep, report, settings)
    return report


#: The facts that identify the source of a fine-tuned variant in ``variant_provenance``.
_RUN_IDENTITY = ("run", "strategy", "labels_kind", "best_epoch", "split_digest")


def _finetuned_run(finetuned: str | os.PathLike, keys: list[str],
                   variant: str | None) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``(variant, provenance facts)`` of a fine-tuning run, checked against the call: the run's
    model must be the one model asked for, and an explicit variant must be the run's."""
    from ssl_attn.finetune.checkpoint import MANIFEST, finetune_provenance, read_manifest

    manifest = read_manifest(finetuned)
    path = Path(finetuned)
    where = path if path.name == MANIFEST else path / MANIFEST
    run_key, run_variant = manifest["model"]["key"], manifest["variant"]
    if keys != [run_key]:
        raise ValueError(f"{where}: this run fine-tuned {run_key!r}; --finetuned extracts "
                         f"exactly that one model (--models {run_key}), not {keys}")  # fmt: skip
    if variant is not None and variant != run_variant:
        raise ValueError(f"{where}: this run is variant {run_variant!r} (manifest 'variant'), "
                         f"not {variant!r}; leave --variant out or pass {run_variant}")  # fmt: skip
    return run_variant, finetune_provenance(finetuned, manifest)


def _check_variant_source(store: Path, key: str, variant: str,
                          run_facts: dict[str, Any] | None) -> None:  # fmt: skip
    """Refuse to add maps to a variant that holds maps of another source: another fine-tuning
    run (or another best epoch of it), or the base model where this call has a run (and the
    reverse). A variant the store lacks is always fine."""
    if not (store / key / "zarr.json").is_file():
        return
    try:
        raw = st.open_root(store)[key].attrs.get("variant_provenance", "{}")
    except Exception:  # unreadable or half-created: init_model_group decides
        return
    recorded = st.decode_attr(raw)
    if not isinstance(recorded, dict) or variant not in recorded:
        return
    have = st.decode_attrs(recorded[variant])
    before = {k: have.get(k) for k in _RUN_IDENTITY if have.get(k) is not None}
    now = {k: run_facts.get(k) for k in _RUN_IDENTITY
           if run_facts and run_facts.get(k) is not None}  # fmt: skip
    if before != now:
        raise st.StoreError(
            f"{store}: group {key!r} variant {variant!r} holds maps of "
            f"{before or 'the model as loaded (no fine-tuning run)'}, but this call extracts "
            f"{now or 'the model as loaded'}; write to another store or variant")


def _run_model(wc: Any, group: _ModelGroup, todo: list[str], mrep: ModelReport,
               report: ExtractReport, settings: _Settings) -> None:  # fmt: skip
    """Compute and write the ``todo`` images of one model; fills ``mrep`` and ``report``."""
    from tqdm.auto import tqdm

    from ssl_attn.attention import extract_maps
    from ssl_attn.models import load_model
    from ssl_attn.models.preprocess import input_hw

    key, variant = group.key, group.variant
    started = time.perf_counter()
    if settings.finetuned is not None:
        from ssl_attn.finetune.checkpoint import finetune_provenance, load_finetuned

        loaded, manifest = load_finetuned(settings.finetuned, device=settings.device,
                                          dtype=settings.dtype, weights_dir=settings.weights_dir,
                                          model_name=key)  # fmt: skip
        group.extra_attrs = finetune_provenance(settings.finetuned, manifest)
    else:
        loaded = load_model(key, device=settings.device, dtype=settings.dtype,
                            weights_dir=settings.weights_dir)  # fmt: skip
    # patch embeddings exist for ViTs only; a CNN in the same run simply has none
    embeddings = settings.embeddings and loaded.spec.is_vit
    skipped: list[dict[str, str]] = []
    computed: list[str] = []

    def prepare(ids: list[str]) -> tuple[list[str], Any, list[tuple[str, str]]]:
        images, ok, bad = _load_images(wc, ids, max_side=max(input_hw(loaded.spec,
                                                                      settings.size)))
        pixels = loaded.preprocess(images, size=settings.size).pixel_values if images else None
        return ok, pixels, bad

    bar = tqdm(total=mrep.n_images, initial=mrep.n_done_before, desc=f"{key} [{variant}]",
               unit="img", disable=not settings.progress, dynamic_ncols=True)  # fmt: skip
    loop_started = time.perf_counter()
    try:
        for ok, pixels, bad in _prefetch(_batches(todo, settings.batch_size), prepare):
            skipped += [{"image_id": iid, "model": key, "variant": variant, "reason": reason}
                        for iid, reason in bad]  # fmt: skip
            if ok:
                raw = extract_maps(loaded, pixels, layers=settings.layers,
                                   methods=settings.methods, embeddings=embeddings)  # fmt: skip
                group.write(loaded, ok, {name: _to_numpy(v) for name, v in raw.items()}, pixels)
                computed.extend(ok)
            bar.update(len(ok) + len(bad))
            if skipped:
                bar.set_postfix(skipped=len(skipped))
    finally:
        bar.close()
        loop_s = time.perf_counter() - loop_started
        mrep.n_computed, mrep.n_skipped = len(computed), len(skipped)
        mrep.seconds = time.perf_counter() - started
        mrep.images_per_s = len(computed) / loop_s if loop_s > 0 else 0.0
        report.skipped.extend(skipped)
        if skipped or computed:
            # Record what failed, and forget old failures of images that now succeeded.
            cleared = [{"image_id": i, "model": key, "variant": variant} for i in computed]
            if group.root is not None:
                group.root.ensure()
            st.add_skipped(group.store, skipped, clear=cleared)


# --------------------------------------------------------------------------------------------
# dask


def extract_on_cluster(
    client: Any,
    store: str | os.PathLike,
    data: str | os.PathLike,
    models: str | Sequence[str],
    *,
    n_shards: int | None = None,
    device: str = "auto",
    resources: dict[str, float] | None = None,
    **kwargs: Any,
) -> list[ExtractReport]:
    """Run :func:`extract` as ``n_shards`` tasks on a ``dask.distributed`` client.

    Args:
        client: a ``distributed.Client``; ``store`` and ``data`` must be paths every worker
            sees (a shared filesystem), and are made absolute here.
        n_shards: number of shard tasks (default: the number of workers).
        device: passed to each task; ``"auto"`` lets each worker pick its own (its visible
            GPU, else CPU). Run one worker per GPU (e.g. dask-cuda's ``LocalCUDACluster``,
            which gives each worker its own ``CUDA_VISIBLE_DEVICES``).
        resources: dask worker resources each task needs, e.g. ``{"GPU": 1}`` so that a
            worker started with ``--resources GPU=1`` runs one shard at a time.
        **kwargs: any other :func:`extract` argument (``variant``, ``batch_size``, ...);
            ``progress`` defaults to False on workers.

    Returns:
        One :class:`ExtractReport` per shard, in shard order. Shards write disjoint images, so
        they can run concurrently; a failed task raises here and a rerun resumes.
    """
    if n_shards is None:
        n_shards = max(1, len(client.nthreads()))
    kwargs.setdefault("progress", False)
    store, data = os.path.abspath(store), os.path.abspath(data)
    if kwargs.get("finetuned") is not None:
        kwargs["finetuned"] = os.path.abspath(kwargs["finetuned"])
    run_id = time.time_ns()
    futures = []
    for i in range(n_shards):
        futures.append(
            client.submit(
                extract, store, data, models, shard=(i, n_shards), device=device,
                resources=resources, pure=False, key=f"ssl-attn-extract-{run_id}-{i}-{n_shards}",
                **kwargs,
            )
        )
    return list(client.gather(futures))
