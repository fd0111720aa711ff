"""Score an attention store: every map of every model against the expert boxes, plus baselines.

``score(store)`` reads a store (docs/SCHEMA.md, "Attention store"), scores only the images
marked ``complete`` and writes the scores Dataset of docs/SCHEMA.md ("Scores") next to it
(``X.zarr`` → ``X.scores.zarr``).

How it runs: per model group, variant and method, the maps become one xarray DataArray
``(image_id, layer, head, y, x)`` — ``head = -1`` is the mean over heads (the "fused" map,
computed here from the per-head maps), ``layer = -1`` where a method has no layer — chunked
over ``image_id`` and mapped with ``xr.apply_ufunc(..., dask="parallelized")``. Each task
scores its images with :func:`ssl_attn.metrics.core.evaluate` (one image's maps at a time,
sharing the upsample and sort across all metrics) and returns every metric packed along one
axis (:class:`.layout.Packing`); the driver unpacks the packed results into variables.
``scheduler`` picks where the tasks run: in-process threads (default), a dask scheduler
name, a ``distributed`` scheduler address, or a ``distributed.Client`` — the same graph, so
the numbers are identical.

Storage: one Zarr array per variable, chunked one ``(model, variant, method)`` block per
chunk, so blocks are written independently and combinations that do not exist are never
written (they read as NaN). Image-level variables are float64; per-box and per-feature
variables are float32 (they are the large ones). ``<metric>_draw_std`` holds the std over the
uniform baseline's draws with dims ``(model, image_id[, percentile])``, ``(model, box)`` or
``(model, image_feature)`` (NaN for every other model).

Resume: the root attr ``fingerprints`` (JSON) records, per ``model/variant`` and per
baseline, a hash of the inputs (completed image ids, the group's provenance, the boxes of
those images, and every scoring parameter). A rerun recomputes only blocks whose fingerprint
changed and copies the others. The existing output is verified first: a missing variable
means nothing is reused, and a block is reused only while its chunk files (counted in the root
attr ``block_chunks``) are all there. A whole run holds ``<out>.lock``. The root attrs
``stats_n_boot`` and ``stats_seed`` record the statistics convention of :mod:`ssl_attn.stats`
the analyses of these scores use.

Three steps, one module each:

- :mod:`.plan`: :func:`~.plan.make_plan` reads the store (:mod:`ssl_attn.store`), the boxes
  and any existing output, and lays out the output (:mod:`.layout`: coords, variables and the
  packed axis, all derived from :data:`ssl_attn.metrics.registry.METRICS`).
- :mod:`.compute`: :func:`~.compute.compute` builds the dask graph of the pending blocks and
  computes it.
- :mod:`.write`: :func:`~.write.write` unpacks the blocks into Zarr (or memory), copies or
  clears the other blocks and swaps the result in atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import xarray as xr

from ...store import MAP_METHODS, scores_path
from ..baselines import N_DRAWS
from ..core import PERCENTILES
from . import compute as _compute
from . import write as _write
from .layout import ScoreError
from .plan import BASELINE_METHOD, SCORES_VERSION, make_plan

__all__ = ["BASELINE_METHOD", "METHODS", "SCORES_VERSION", "ScoreError", "default_scores_path",
           "score"]

#: Store variables that hold maps, in the order of the scores' ``method`` dim (the store's
#: :data:`ssl_attn.store.MAP_METHODS`).
METHODS: tuple[str, ...] = MAP_METHODS
#: ``X.zarr`` → ``X.scores.zarr`` (:func:`ssl_attn.store.scores_path`).
default_scores_path = scores_path


def score(
    store: str | os.PathLike | xr.DataTree,
    *,
    out: str | os.PathLike | None = None,
    resolution: int = 224,
    percentiles: Sequence[float] = PERCENTILES,
    baselines: bool = True,
    scheduler: Any = None,
    data: str | os.PathLike | None = None,
    chunk_images: int = 4,
    n_draws: int = N_DRAWS,
    seed: int = 0,
) -> xr.Dataset:
    """Score every map of an attention store against the expert boxes; write and return the
    scores Dataset (docs/SCHEMA.md, "Scores").

    Args:
        store: store path (opened with :func:`ssl_attn.store.open_store`) or a DataTree.
        out: where to write; default ``X.scores.zarr`` next to ``X.zarr``. For a DataTree
            without ``out`` nothing is written (no resume) and an in-memory Dataset returns.
        resolution: evaluation frame ``R`` (maps upsampled to ``R × R``), default 224.
        percentiles: IoU percentiles, default ``(50, 60, 70, 75, 80, 85, 90)``.
        baselines: also score the ``baseline:*`` pseudo-models (see
            :mod:`ssl_attn.metrics.baselines`).
        scheduler: ``None`` = in-process threads; a dask scheduler name (``"processes"``);
            a ``distributed`` scheduler address (``"tcp://..."``) or ``Client``.
        data: WikiChurches root for the boxes (default: the store's root attr ``dataset``).
        chunk_images: images per dask task.
        n_draws, seed: uniform-baseline draws and seed.

    Only images whose ``complete`` flag is True are scored; everything else is NaN. Returns
    the Dataset (lazy, opened from ``out`` when written). Writing, the whole run holds the
    output's lock (``<out>.lock``): concurrent runs on one output take turns. An output that
    cannot be written, or a store of a newer schema version, raises before computing.
    """
    def run() -> xr.Dataset:
        plan = make_plan(store, out=out, resolution=resolution, percentiles=percentiles,
                         baselines=baselines, data=data, n_draws=n_draws, seed=seed)
        results = _compute.compute(plan, chunk_images=chunk_images, scheduler=scheduler)
        return _write.write(plan, results)

    if out is None and isinstance(store, xr.DataTree):
        return run()  # nothing written: no lock
    out_path = Path(out) if out is not None else scores_path(store)
    _write.check_writable(out_path)
    with _write.scores_lock(out_path):
        return run()

