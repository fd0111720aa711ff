"""Writing the scores of a :class:`.plan.Plan`: unpack computed blocks into the output.

Storage: one Zarr array per variable, chunked one ``(model, variant, method)`` block per chunk,
so blocks are written independently and combinations that do not exist are never written (they
read as NaN). A fresh output is written to ``<out>.tmp-<pid>`` (this run's own) and swapped
in atomically at the end (unchanged blocks of a previous output are copied over first); an
output with the same layout is updated in place. Without an output path the blocks fill numpy
arrays (:class:`MemorySink`).

Concurrency: a whole scoring run (plan, compute, write) holds :func:`scores_lock`
(``<out>.lock``), so two runs on one output take turns and the second reuses the first's
blocks; :func:`check_writable` refuses an output that cannot be written before anything is
computed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ...store import decode_attr, open_scores
from ..baselines import CENTER_SIGMA, SALIENCY_SIGMA
from ..core import KL_EPS
from ..registry import METRICS
from .compute import Block
from .layout import DRAW_STD, Layout, Packing, ScoreError, variable_attrs
from .plan import Plan, block_chunks


# ------------------------------------------------------------------ lock and access
def lock_path(out_path: Path) -> Path:
    """The lock file of a scores output: ``<out>.lock`` next to it (the output folder itself
    is replaced by a rename, so it cannot hold its own lock)."""
    return out_path.with_name(out_path.name + ".lock")


@contextmanager
def scores_lock(out_path: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of the scores at ``out_path`` (``<out>.lock``, ``filelock``) for
    a whole run; waits for another run that holds it (saying so on stderr)."""
    from filelock import FileLock, Timeout

    out_path = Path(out_path)
    lock = FileLock(str(lock_path(out_path)), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"ssl-attn score: waiting for another run scoring into {out_path} "
              f"(lock {lock_path(out_path)})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def check_writable(out_path: str | os.PathLike) -> None:
    """Raise :class:`ScoreError` before anything is computed when the scores cannot be written:
    the folder they go in (for the temporary output and the lock) and an existing output must
    be writable."""
    out_path = Path(out_path)
    parent = out_path.parent
    if not parent.is_dir():
        raise ScoreError(f"{parent}: no such folder; cannot write the scores {out_path}.")
    for where in (parent, out_path):
        if where.exists() and not os.access(where, os.W_OK | os.X_OK):
            raise ScoreError(f"{where}: not writable; cannot write the scores {out_path}. "
                             "Pass --out to a writable place.")


def _stale_temporaries(out_path: Path) -> list[Path]:
    """Temporary outputs of earlier runs (``<out>.tmp``, ``<out>.tmp-*``): call under the lock,
    when none is in use."""
    return sorted(out_path.parent.glob(out_path.name + ".tmp*"))


# ------------------------------------------------------------------ root attrs and template
def root_attrs(plan: Plan) -> dict[str, Any]:
    """Root attrs: provenance, every scoring parameter, the baselines' definitions, the
    statistics convention the analyses use (``stats_n_boot``, ``stats_seed``; not part of
    the fingerprints), the resume fingerprints and the layout key."""
    import ssl_attn
    from ssl_attn import stats

    params = plan.params
    n_draws = plan.n_draws
    synthetic = decode_attr(plan.tree.attrs.get("synthetic", False))
    return {
        "title": "ssl-attn alignment scores",
        "store": str(plan.store_path) if plan.store_path else "",
        "dataset": plan.data,
        "synthetic": bool(synthetic),
        "resolution": params.frame,
        "percentiles": json.dumps(list(params.percentiles)),
        "tolerance_px": params.tolerance_px,
        "emd_grid": params.emd_grid,
        "kl_eps": KL_EPS,
        "n_draws": int(n_draws),
        "seed": int(plan.seed),
        "baselines": json.dumps({
            "uniform": f"i.i.d. U(0,1) per {params.frame}x{params.frame} frame pixel, "
                       f"{n_draws} draws, rng([seed, crc32(image_id)]); mean over draws",
            "center": f"isotropic Gaussian at the image centre, sigma={CENTER_SIGMA} (relative)",
            "saliency": "RGB distance to the mean border-ring colour (blurred image) x centre "
                        f"Gaussian sigma={SALIENCY_SIGMA}",
            "sobel": "Sobel gradient magnitude of the grey image resized to the frame"}),
        "stats_n_boot": int(stats.N_BOOT),
        "stats_seed": int(getattr(stats, "SEED", 0)),
        "fingerprints": json.dumps(plan.fingerprints, sort_keys=True),
        "layout": plan.layout.key(),
        "ssl_attn_version": ssl_attn.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def template(layout: Layout, attrs: dict[str, Any]) -> xr.Dataset:
    """The output Dataset full of NaN (lazy dask arrays on the storage chunks)."""
    import dask.array as da

    sizes = layout.sizes()
    data_vars = {}
    for name, (dims, dtype) in layout.variables().items():
        shape = tuple(sizes[d] for d in dims)
        arr = da.full(shape, np.nan, dtype=dtype, chunks=layout.chunks(dims))
        data_vars[name] = (dims, arr, variable_attrs(name))
    return xr.Dataset(data_vars, coords=layout.coords(), attrs=attrs)


class MemorySink:
    """Dense numpy arrays filled block by block (used when nothing is written to disk)."""

    def __init__(self, layout: Layout) -> None:
        sizes = layout.sizes()
        self.arrays = {name: np.full(tuple(sizes[d] for d in dims), np.nan, dtype=dtype)
                       for name, (dims, dtype) in layout.variables().items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class ZarrSink:
    """The output's Zarr arrays, opened for writing (``sink[name][index] = values``)."""

    def __init__(self, path: Path) -> None:
        import zarr

        self.group = zarr.open_group(str(path), mode="r+")

    def __getitem__(self, name: str):
        return self.group[name]


# ------------------------------------------------------------------ blocks
def _scatter(layout: Layout, packing: Packing, packed: np.ndarray) -> dict[str, np.ndarray]:
    """Packed ``(..., n_image, n_out)`` → per metric its output values: ``(..., n_image[, P])``
    for image-level metrics, ``(..., n_box)`` / ``(..., n_image_feature)`` for region ones
    (each row read from its image's slot)."""
    rows = {level: layout.region_rows(level) for level in ("box", "feature")}
    out = {}
    for name, vals in packing.unpack(packed).items():
        level = METRICS[name].level
        if level in rows:
            r, slot = rows[level]
            vals = vals[..., r, slot]
        out[name] = vals
    return out


def write_block(sink: Any, layout: Layout, packing: Packing, block: Block,
                packed: np.ndarray) -> None:
    """Unpack one computed block (see :class:`.compute.Block`) into the output arrays: the
    metrics at ``[model, variant, method]``, and for a baseline its draw std at ``[model]``."""
    variables = layout.variables()
    mi, vi = layout.models.index(block.model), layout.variants.index(block.variant)
    me = layout.methods.index(block.method)
    where = {iid: i for i, iid in enumerate(layout.image_ids)}
    img = np.array([where[i] for i in block.ids])
    n_img = len(layout.image_ids)
    if block.kind == "baseline":
        std = np.full((n_img, packing.n_out), np.nan)
        std[img] = packed[:, 1]
        for name, vals in _scatter(layout, packing, std).items():
            sink[name + DRAW_STD][mi] = vals.astype(variables[name][1])
        packed = packed[:, 0][:, None, None, :]  # (n_img, 1, 1, n_out)
    li = np.searchsorted(layout.layers, block.layers)
    hi = np.searchsorted(layout.heads, block.heads)
    full = np.full((n_img, len(layout.layers), len(layout.heads), packing.n_out), np.nan)
    full[np.ix_(img, li, hi)] = packed
    full = full.transpose(1, 2, 0, 3)  # (image, layer, head, out) -> (layer, head, image, out)
    for name, vals in _scatter(layout, packing, full).items():
        sink[name][mi, vi, me] = vals.astype(variables[name][1])


def clear_block(sink: Any, layout: Layout, model: str, variant: str, method: str) -> None:
    """Write NaN into every metric at ``[model, variant, method]``."""
    mi, vi = layout.models.index(model), layout.variants.index(variant)
    me = layout.methods.index(method)
    sizes = layout.sizes()
    for name, (dims, dtype) in layout.variables().items():
        if dims[:3] == ("model", "variant", "method"):
            sink[name][mi, vi, me] = np.full(tuple(sizes[d] for d in dims[3:]), np.nan,
                                             dtype=dtype)


def _positions(new: list[Any], old: list[Any]) -> np.ndarray:
    """For each new key, its position among the old keys (-1 when absent)."""
    where = {k: i for i, k in enumerate(old)}
    return np.array([where.get(k, -1) for k in new], dtype=np.int64)


def copy_block(sink: Any, layout: Layout, old: xr.Dataset, model: str, variant: str) -> None:
    """Copy an unchanged ``(model, variant)`` block from a previous scores store whose layout
    differs (more images, models, ...): every dim is matched by its keys, missing → NaN."""
    if model not in old["model"].values or variant not in old["variant"].values:
        return
    mi, vi = layout.models.index(model), layout.variants.index(variant)
    keys_new = {
        "method": layout.methods, "layer": layout.layers, "head": layout.heads,
        "image_id": layout.image_ids, "percentile": list(layout.percentiles),
        "box": list(zip(layout.boxes["image_id"], layout.boxes["box_index"])),
        "image_feature": list(zip(layout.features["image_id"], layout.features["label"])),
    }
    keys_old = {
        d: old[d].values.tolist() for d in ("method", "layer", "head", "image_id", "percentile")
    }
    keys_old["box"] = list(zip(old["box_image_id"].values.tolist(),
                               old["box_index"].values.tolist()))
    keys_old["image_feature"] = list(zip(old["image_feature_image_id"].values.tolist(),
                                         old["image_feature_label"].values.tolist()))
    for name, (dims, dtype) in layout.variables().items():
        if name not in old:
            continue
        sel = {"model": model, **({"variant": variant} if "variant" in dims else {})}
        vals = np.asarray(old[name].sel(sel).transpose(*[d for d in dims if d not in sel])
                          .values)
        for axis, d in enumerate(d for d in dims if d not in sel):
            pos = _positions(keys_new[d], keys_old[d])
            taken = np.take(vals, np.maximum(pos, 0), axis=axis)
            missing = [slice(None)] * taken.ndim
            missing[axis] = pos < 0
            taken[tuple(missing)] = np.nan
            vals = taken
        if "variant" in dims:
            sink[name][mi, vi] = vals.astype(dtype)
        else:
            sink[name][mi] = vals.astype(dtype)


# ------------------------------------------------------------------ the whole output
def write(plan: Plan, results: list[tuple[Block, np.ndarray]]) -> xr.Dataset:
    """Write every computed block, carry over reused ones and return the scores Dataset.

    With ``plan.out_path`` (call under :func:`scores_lock`): a new layout is written to
    ``<out>.tmp-<pid>`` (template, blocks, copies of reused blocks), then replaces ``out``; the
    same layout is updated in place, and recomputed ``(model, variant)`` blocks of methods
    that vanished are cleared to NaN. Returns the output opened lazily (coords loaded).
    Without a path: an in-memory Dataset.
    """
    layout, packing = plan.layout, plan.params.packing
    attrs = root_attrs(plan)
    if not plan.writes:
        sink: Any = MemorySink(layout)
        for block, packed in results:
            write_block(sink, layout, packing, block, packed)
        ds = template(layout, attrs)
        return ds.assign({k: (ds[k].dims, sink[k], ds[k].attrs) for k in ds.data_vars})

    out_path = plan.out_path
    for stale in _stale_temporaries(out_path):  # under scores_lock: no other run uses them
        shutil.rmtree(stale, ignore_errors=True)
    target = out_path if plan.in_place else out_path.with_name(f"{out_path.name}.tmp-{os.getpid()}")
    if plan.in_place:
        _forget_pending(target, plan)
    else:
        template(layout, attrs).to_zarr(str(target), mode="w", compute=False,
                                        consolidated=True, zarr_format=3)
    sink = ZarrSink(target)
    for block, packed in results:
        write_block(sink, layout, packing, block, packed)
    if plan.old is not None and not plan.in_place:
        for key in plan.reuse:
            copy_block(sink, layout, plan.old, *key.split("/"))
    if plan.in_place:  # recomputed blocks of methods that vanished must read NaN again
        for key in set(plan.fingerprints) - plan.reuse:
            g, v = key.split("/")
            done = {b.method for b, _ in results if b.model == g and b.variant == v}
            for m in set(layout.methods) - done:
                clear_block(sink, layout, g, v, m)
    attrs["block_chunks"] = json.dumps(block_chunks(target, layout.models, layout.variants),
                                       sort_keys=True)
    _finish(target, attrs)
    if not plan.in_place:
        if out_path.exists():
            shutil.rmtree(out_path)
        os.replace(target, out_path)
    res = open_scores(out_path, chunks={})
    return res.assign_coords({k: res[k].load() for k in res.coords})  # small: eager


def _forget_pending(path: Path, plan: Plan) -> None:
    """Before an in-place update: keep only the reused blocks' fingerprints, so that a run
    killed while rewriting a block leaves no fingerprint vouching for it."""
    import zarr

    kept = {k: plan.fingerprints[k] for k in sorted(plan.reuse)}
    zarr.open_group(str(path), mode="r+").attrs["fingerprints"] = json.dumps(kept,
                                                                              sort_keys=True)
    zarr.consolidate_metadata(str(path))


def _finish(path: Path, attrs: dict[str, Any]) -> None:
    """Set the root attrs and re-consolidate the metadata (last, so a crash leaves no
    fingerprints for blocks that were not written)."""
    import zarr

    zarr.open_group(str(path), mode="r+").attrs.update(attrs)
    zarr.consolidate_metadata(str(path))
