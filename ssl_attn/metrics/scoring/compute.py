"""Computing the scores of a :class:`.plan.Plan`: one lazy dask graph, computed in one call.

Per pending ``(model, variant, method)`` the maps become an ``(image_id, layer, head, y, x)``
DataArray chunked over ``image_id`` and mapped with ``xr.apply_ufunc(..., dask="parallelized")``
onto :func:`score_block`; each baseline maps :func:`baseline_block` over image positions. Every
task returns its metrics packed along one axis (:class:`.layout.Packing`). ``scheduler`` picks
where the tasks run: in-process threads (default), a dask scheduler name, a ``distributed``
scheduler address or a ``distributed.Client`` — the same graph, so the numbers are identical.
"""

from __future__ import annotations

import functools
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..baselines import baseline_maps
from ..core import evaluate
from ..target import make_target
from .layout import Params, ScoreError, _ImageSpec
from .plan import BASELINE_METHOD, Plan, dataset


@dataclass(frozen=True)
class Block:
    """Where a computed result goes: ``kind`` ``"model"`` (packed ``(n_img, L, H, n_out)``) or
    ``"baseline"`` (packed ``(n_img, 2, n_out)``: mean and std over draws), for the images
    ``ids`` and the store's ``layers`` / ``heads`` (``[-1]`` where absent)."""

    kind: str
    model: str
    variant: str
    method: str
    ids: tuple[str, ...]
    layers: np.ndarray
    heads: np.ndarray


# ------------------------------------------------------------------ task bodies
@functools.lru_cache(maxsize=512)
def target_of(spec: _ImageSpec, params: Params):
    """The :class:`~ssl_attn.metrics.Target` of one image in the evaluation frame (cached)."""
    return make_target(np.array(spec.boxes, dtype=np.float64).reshape(-1, 4),
                       labels=np.array(spec.labels, dtype=np.int64), frame=params.frame,
                       image_size=spec.size, tolerance_px=params.tolerance_px,
                       emd_grid=params.emd_grid)


def score_block(maps: np.ndarray, pos: np.ndarray, *, specs: tuple[_ImageSpec, ...],
                params: Params) -> np.ndarray:
    """Task body: ``maps`` ``(n_img, L, H, gh, gw)`` and their positions into ``specs`` →
    packed metrics ``(n_img, L, H, n_out)``; layer/head combinations with NaN maps stay NaN."""
    packing = params.packing
    n_img, nl, nh = maps.shape[:3]
    out = np.full((n_img, nl, nh, packing.n_out), np.nan)
    for i in range(n_img):
        stack = maps[i].reshape(nl * nh, *maps.shape[3:])
        ok = np.isfinite(stack).all(axis=(1, 2))  # layer/head combinations that exist
        if not ok.any():
            continue
        res = evaluate(stack[ok], target_of(specs[int(pos[i])], params),
                       percentiles=params.percentiles)
        packed = np.full((nl * nh, packing.n_out), np.nan)
        packed[ok] = packing.pack(res)
        out[i] = packed.reshape(nl, nh, -1)
    return out


def baseline_block(pos: np.ndarray, *, specs: tuple[_ImageSpec, ...], params: Params,
                   name: str, data: str, n_draws: int, seed: int) -> np.ndarray:
    """Task body for one baseline: positions ``(n_img,)`` → ``(n_img, 2, n_out)`` (mean and
    std over draws; std is 0 for single-map baselines, NaN where the mean is)."""
    packing = params.packing
    out = np.full((pos.shape[0], 2, packing.n_out), np.nan)
    for i, p in enumerate(pos):
        spec = specs[int(p)]
        maps = baseline_maps(name, spec.image_id, frame=params.frame,
                             load_image=dataset(data).load_image, n_draws=n_draws, seed=seed)
        packed = packing.pack(evaluate(maps, target_of(spec, params),
                                       percentiles=params.percentiles))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots
            out[i, 0] = np.nanmean(packed, axis=0) if packed.shape[0] > 1 else packed[0]
            out[i, 1] = np.nanstd(packed, axis=0) if packed.shape[0] > 1 else 0.0
        out[i, 1][np.isnan(out[i, 0])] = np.nan
    return out


# ------------------------------------------------------------------ the graph
def _index(ids: list[str], chunk_images: int) -> xr.DataArray:
    """Positions ``0..n-1`` along ``image_id``, chunked like the maps."""
    return xr.DataArray(np.arange(len(ids)), dims="image_id",
                        coords={"image_id": ids}).chunk({"image_id": chunk_images})


def build(plan: Plan, chunk_images: int) -> tuple[list[xr.DataArray], list[Block]]:
    """The lazy results of every pending block and where each goes (same order). A job with
    no complete image gives no block."""
    params = plan.params
    n_out = params.packing.n_out
    spec_of = plan.specs
    lazies, blocks = [], []
    for job in plan.pending():
        pos = job.positions()
        if pos.size == 0:
            continue
        arr = job.maps(pos).chunk(
            {"image_id": chunk_images, "layer": -1, "head": -1, "y": -1, "x": -1})
        ids = arr["image_id"].values.tolist()
        res = xr.apply_ufunc(
            score_block, arr, _index(ids, chunk_images),
            input_core_dims=[["layer", "head", "y", "x"], []],
            output_core_dims=[["layer", "head", "out"]],
            dask="parallelized", output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"out": n_out}},
            kwargs={"specs": tuple(spec_of[i] for i in ids), "params": params})
        lazies.append(res)
        blocks.append(Block("model", job.model, job.variant, job.method, tuple(ids),
                            arr["layer"].values, arr["head"].values))
    base_ids = plan.baseline_ids
    bspecs = tuple(spec_of[i] for i in base_ids)
    for b in plan.pending_baselines():
        res = xr.apply_ufunc(
            baseline_block, _index(base_ids, chunk_images), input_core_dims=[[]],
            output_core_dims=[["stat", "out"]], dask="parallelized",
            output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"stat": 2, "out": n_out}},
            kwargs={"specs": bspecs, "params": params, "name": b, "data": plan.data,
                    "n_draws": plan.n_draws, "seed": plan.seed})
        lazies.append(res)
        blocks.append(Block("baseline", f"baseline:{b}", "frozen", BASELINE_METHOD,
                            tuple(base_ids), np.array([-1]), np.array([-1])))
    return lazies, blocks


def scheduler_context(scheduler: Any):
    """``(compute_kwargs, context)`` for ``dask.compute`` (see :func:`compute`)."""
    if scheduler is None:
        try:  # numpy/BLAS threads inside dask threads would oversubscribe the cores
            from threadpoolctl import threadpool_limits

            ctx = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
            ctx = nullcontext()
        return {"scheduler": "threads"}, ctx
    if isinstance(scheduler, str) and scheduler in ("threads", "processes", "synchronous",
                                                     "sync", "single-threaded"):
        return {"scheduler": scheduler}, nullcontext()
    if isinstance(scheduler, str):
        from distributed import Client

        client = Client(scheduler)
        return {"scheduler": client.get}, client
    if hasattr(scheduler, "get") and hasattr(scheduler, "submit"):  # a distributed.Client
        return {"scheduler": scheduler.get}, nullcontext()
    raise ScoreError(f"scheduler must be None, a dask scheduler name, an address or a "
                     f"distributed.Client; got {scheduler!r}")


def compute(plan: Plan, *, chunk_images: int = 4, scheduler: Any = None
            ) -> list[tuple[Block, np.ndarray]]:
    """Compute every pending block in one ``dask.compute`` call: ``[(block, packed)]``.

    ``scheduler``: None = in-process threads (BLAS limited to one thread each); a dask
    scheduler name; a ``distributed`` scheduler address; or a ``distributed.Client``.
    """
    import dask

    lazies, blocks = build(plan, chunk_images)
    kwargs, ctx = scheduler_context(scheduler)
    with ctx:
        results = dask.compute(*[r.data for r in lazies], **kwargs) if lazies else ()
    return list(zip(blocks, results))


__all__ = ["Block", "baseline_block", "build", "compute", "scheduler_context",
           "score_block", "target_of"]
