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
axis; the driver unpacks the packed results into variables. ``scheduler`` picks where the
tasks run: in-process threads (default), a dask scheduler name, a ``distributed`` scheduler
address, or a ``distributed.Client`` — the same graph, so the numbers are identical.

Storage: one Zarr array per variable, chunked one ``(model, variant, method)`` block per
chunk, so blocks are written independently and combinations that do not exist are never
written (they read as NaN). Image-level variables are float64; per-box and per-feature
variables are float32 (they are the large ones). ``<metric>_draw_std`` holds the std over the
uniform baseline's draws with dims ``(model, image_id[, percentile])``, ``(model, box)`` or
``(model, image_feature)`` (NaN for every other model).

Resume: the root attr ``fingerprints`` (JSON) records, per ``model/variant`` and per
baseline, a hash of the inputs (completed image ids, the group's provenance, the boxes of
those images, and every scoring parameter). A rerun recomputes only blocks whose fingerprint
changed and copies the others.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .baselines import BASELINES, CENTER_SIGMA, N_DRAWS, SALIENCY_SIGMA, baseline_maps
from .core import IMAGE_METRICS, KL_EPS, PERCENTILES, REGION_METRICS, evaluate
from .registry import METRICS
from .target import DEFAULT_EMD_GRID, DEFAULT_TOLERANCE_PX, make_target

__all__ = ["METHODS", "ScoreError", "default_scores_path", "score"]

#: Store variables that hold maps, in the order they appear in the scores' ``method`` dim.
METHODS: tuple[str, ...] = ("cls", "rollout", "mean_received", "probe", "gradcam")
BASELINE_METHOD = "baseline"
SCORES_VERSION = 1
_IMAGE_VARS = ("iou", *IMAGE_METRICS)
_BOX_VARS = tuple(f"box_{m}" for m in REGION_METRICS)
_FEATURE_VARS = tuple(f"feature_{m}" for m in REGION_METRICS)


class ScoreError(ValueError):
    """The store or dataset cannot be scored as asked (the message says what to fix)."""


def default_scores_path(store_path: str | os.PathLike) -> Path:
    """``X.zarr`` → ``X.scores.zarr`` (any other name gets ``.scores.zarr`` appended)."""
    p = Path(store_path)
    stem = p.name[:-5] if p.name.endswith(".zarr") else p.name
    return p.with_name(f"{stem}.scores.zarr")


# ------------------------------------------------------------------ per-image facts
@dataclass(frozen=True)
class _ImageSpec:
    image_id: str
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[int, ...]
    size: tuple[int, int] | None  # (height, width) of the photo in pixels


@dataclass(frozen=True)
class _Params:
    frame: int
    percentiles: tuple[float, ...]
    max_boxes: int
    max_features: int
    tolerance_px: float = DEFAULT_TOLERANCE_PX
    emd_grid: int = DEFAULT_EMD_GRID

    @property
    def n_out(self) -> int:
        return (len(IMAGE_METRICS) + len(self.percentiles)
                + len(REGION_METRICS) * (self.max_boxes + self.max_features))


@functools.lru_cache(maxsize=512)
def _target(spec: _ImageSpec, params: _Params):
    return make_target(np.array(spec.boxes, dtype=np.float64).reshape(-1, 4),
                       labels=np.array(spec.labels, dtype=np.int64), frame=params.frame,
                       image_size=spec.size, tolerance_px=params.tolerance_px,
                       emd_grid=params.emd_grid)


def _pack(res: dict[str, np.ndarray], params: _Params) -> np.ndarray:
    """Metric dict of :func:`evaluate` (n maps) → float64 ``(n, n_out)``; box and feature
    slots beyond the image's own count are NaN."""
    n = res["coverage"].shape[0]
    out = np.full((n, params.n_out), np.nan)
    j = 0
    for k in IMAGE_METRICS:
        out[:, j] = res[k]
        j += 1
    npc = len(params.percentiles)
    out[:, j:j + npc] = res["iou"]
    j += npc
    for level, size in (("box", params.max_boxes), ("feature", params.max_features)):
        for k in REGION_METRICS:
            v = res[f"{level}_{k}"]
            out[:, j:j + v.shape[1]] = v
            j += size
    return out


def _score_block(maps: np.ndarray, pos: np.ndarray, *, specs: tuple[_ImageSpec, ...],
                 params: _Params) -> np.ndarray:
    """Task body: ``maps`` ``(n_img, L, H, gh, gw)`` and their positions into ``specs`` →
    packed metrics ``(n_img, L, H, n_out)``."""
    n_img, nl, nh = maps.shape[:3]
    out = np.full((n_img, nl, nh, params.n_out), np.nan)
    for i in range(n_img):
        stack = maps[i].reshape(nl * nh, *maps.shape[3:])
        ok = np.isfinite(stack).all(axis=(1, 2))  # layer/head combinations that exist
        if not ok.any():
            continue
        res = evaluate(stack[ok], _target(specs[int(pos[i])], params),
                       percentiles=params.percentiles)
        packed = np.full((nl * nh, params.n_out), np.nan)
        packed[ok] = _pack(res, params)
        out[i] = packed.reshape(nl, nh, -1)
    return out


@functools.lru_cache(maxsize=4)
def _dataset(root: str):
    from ..wikichurches import WikiChurches

    return WikiChurches(root)


def _baseline_block(pos: np.ndarray, *, specs: tuple[_ImageSpec, ...], params: _Params,
                    name: str, data: str, n_draws: int, seed: int) -> np.ndarray:
    """Task body for one baseline: positions ``(n_img,)`` → ``(n_img, 2, n_out)`` (mean and
    std over draws; std is 0 for single-map baselines)."""
    out = np.full((pos.shape[0], 2, params.n_out), np.nan)
    for i, p in enumerate(pos):
        spec = specs[int(p)]
        maps = baseline_maps(name, spec.image_id, frame=params.frame,
                             load_image=_dataset(data).load_image, n_draws=n_draws, seed=seed)
        packed = _pack(evaluate(maps, _target(spec, params), percentiles=params.percentiles),
                       params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slots
            out[i, 0] = np.nanmean(packed, axis=0) if packed.shape[0] > 1 else packed[0]
            out[i, 1] = np.nanstd(packed, axis=0) if packed.shape[0] > 1 else 0.0
        out[i, 1][np.isnan(out[i, 0])] = np.nan
    return out


# ------------------------------------------------------------------ reading the store
def _open(store: Any) -> tuple[xr.DataTree, Path | None]:
    if isinstance(store, xr.DataTree):
        return store, None
    from ..store import open_store

    path = Path(store)
    return open_store(path, chunks={}), path


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _image_specs(wc, image_ids: Sequence[str], store_sizes: dict[str, tuple[int, int]]
                 ) -> tuple[dict[str, _ImageSpec], pd.DataFrame]:
    boxes = wc.boxes
    images = wc.images.set_index("image_id")
    boxes = boxes[boxes["image_id"].isin(list(image_ids))]
    order = {iid: i for i, iid in enumerate(image_ids)}
    boxes = boxes.assign(_o=boxes["image_id"].map(order)).sort_values(["_o", "box_index"])
    boxes = boxes.drop(columns="_o").reset_index(drop=True)
    specs = {}
    for iid in image_ids:
        b = boxes[boxes["image_id"] == iid]
        size = None
        if iid in images.index and not pd.isna(images.at[iid, "height"]):
            size = (int(images.at[iid, "height"]), int(images.at[iid, "width"]))
        elif iid in store_sizes:
            size = store_sizes[iid]
        specs[iid] = _ImageSpec(
            iid, tuple(map(tuple, b[["left", "top", "width", "height"]].to_numpy(float))),
            tuple(int(v) for v in b["label"]), size)
    return specs, boxes


def _method_array(ds: xr.Dataset, method: str, variant: str, image_pos: np.ndarray
                  ) -> xr.DataArray:
    """``(image_id, layer, head, y, x)`` maps of one method with ``head=-1`` the head-mean."""
    da = ds[method].sel(variant=variant).isel(image_id=image_pos)
    if "head" in da.dims:
        fused = da.mean("head", skipna=False).expand_dims(head=[-1])
        da = xr.concat([fused, da], dim="head")
    else:
        da = da.expand_dims(head=[-1])
    if "layer" not in da.dims:
        da = da.expand_dims(layer=[-1])
    da = da.transpose("image_id", "layer", "head", "y", "x")
    return da.assign_coords(layer=da["layer"].astype(np.int64), head=da["head"].astype(np.int64))


def _fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------ output layout
@dataclass
class _Layout:
    models: list[str]
    variants: list[str]
    methods: list[str]
    layers: list[int]
    heads: list[int]
    image_ids: list[str]
    percentiles: tuple[float, ...]
    boxes: pd.DataFrame  # image_id, box_index, feature, label
    features: pd.DataFrame  # image_id, label, name, n_boxes

    def coords(self) -> dict[str, Any]:
        b, f = self.boxes, self.features
        return {
            "model": ("model", np.array(self.models, dtype=object)),
            "variant": ("variant", np.array(self.variants, dtype=object)),
            "method": ("method", np.array(self.methods, dtype=object)),
            "layer": ("layer", np.array(self.layers, dtype=np.int64)),
            "head": ("head", np.array(self.heads, dtype=np.int64)),
            "image_id": ("image_id", np.array(self.image_ids, dtype=object)),
            "percentile": ("percentile", np.array(self.percentiles, dtype=np.float64)),
            "box": ("box", np.arange(len(b), dtype=np.int64)),
            "box_image_id": ("box", b["image_id"].to_numpy(dtype=object)),
            "box_index": ("box", b["box_index"].to_numpy(dtype=np.int64)),
            "box_feature": ("box", b["feature"].astype(str).to_numpy(dtype=object)),
            "box_label": ("box", b["label"].to_numpy(dtype=np.int64)),
            "image_feature": ("image_feature", np.arange(len(f), dtype=np.int64)),
            "image_feature_image_id": ("image_feature", f["image_id"].to_numpy(dtype=object)),
            "image_feature_label": ("image_feature", f["label"].to_numpy(dtype=np.int64)),
            "image_feature_name": ("image_feature", f["name"].astype(str).to_numpy(dtype=object)),
            "image_feature_n_boxes": ("image_feature", f["n_boxes"].to_numpy(dtype=np.int64)),
        }

    def key(self) -> str:
        """Identity of the layout: equal keys mean blocks can be written in place."""
        return _fingerprint({k: np.asarray(v[1]).tolist() for k, v in self.coords().items()})

    def variables(self) -> dict[str, tuple[tuple[str, ...], np.dtype]]:
        base = ("model", "variant", "method", "layer", "head")
        out: dict[str, tuple[tuple[str, ...], np.dtype]] = {}
        for name in _IMAGE_VARS:
            extra = ("image_id", "percentile") if name == "iou" else ("image_id",)
            out[name] = ((*base, *extra), np.dtype(np.float64))
            out[f"{name}_draw_std"] = (("model", *extra), np.dtype(np.float64))
        for names, dim in ((_BOX_VARS, "box"), (_FEATURE_VARS, "image_feature")):
            for name in names:
                out[name] = ((*base, dim), np.dtype(np.float32))
                out[f"{name}_draw_std"] = (("model", dim), np.dtype(np.float32))
        return out

    def sizes(self) -> dict[str, int]:
        return {"model": len(self.models), "variant": len(self.variants),
                "method": len(self.methods), "layer": len(self.layers),
                "head": len(self.heads), "image_id": len(self.image_ids),
                "percentile": len(self.percentiles), "box": len(self.boxes),
                "image_feature": len(self.features)}

    def chunks(self, dims: tuple[str, ...]) -> tuple[int, ...]:
        one = {"model", "variant", "method"}
        return tuple(1 if d in one else max(1, self.sizes()[d]) for d in dims)


def _attrs(name: str) -> dict[str, Any]:
    base = name[:-len("_draw_std")] if name.endswith("_draw_std") else name
    attrs = dict(METRICS[base].attrs())
    if name.endswith("_draw_std"):
        attrs["long_name"] = f"Std over uniform-baseline draws of: {attrs['long_name']}"
        attrs.pop("direction")
    return attrs


def _template(layout: _Layout, root_attrs: dict[str, Any]) -> xr.Dataset:
    import dask.array as da

    sizes = layout.sizes()
    data_vars = {}
    for name, (dims, dtype) in layout.variables().items():
        shape = tuple(sizes[d] for d in dims)
        arr = da.full(shape, np.nan, dtype=dtype, chunks=layout.chunks(dims))
        data_vars[name] = (dims, arr, _attrs(name))
    return xr.Dataset(data_vars, coords=layout.coords(), attrs=root_attrs)


class _MemorySink:
    """Dense numpy arrays filled block by block (used when nothing is written to disk)."""

    def __init__(self, layout: _Layout) -> None:
        sizes = layout.sizes()
        self.arrays = {name: np.full(tuple(sizes[d] for d in dims), np.nan, dtype=dtype)
                       for name, (dims, dtype) in layout.variables().items()}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]


class _ZarrSink:
    def __init__(self, path: Path) -> None:
        import zarr

        self.group = zarr.open_group(str(path), mode="r+")

    def __getitem__(self, name: str):
        return self.group[name]


# ------------------------------------------------------------------ the entry point
def _scheduler_context(scheduler: Any):
    """``(compute_kwargs, context)`` for dask.compute."""
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
    the Dataset (lazy, opened from ``out`` when written).
    """
    tree, store_path = _open(store)
    percentiles = tuple(float(p) for p in percentiles)
    if data is None:
        data = _decode(tree.attrs.get("dataset"))
        if not data:
            raise ScoreError(f"{store_path or 'store'}: root attr 'dataset' is missing; pass "
                             "data=<WikiChurches root> to score()")
    data = str(data)
    if not Path(data).exists():
        raise ScoreError(f"dataset {data!r} (from the store's 'dataset' attr or data=) does "
                         "not exist; pass data=<WikiChurches root>")
    wc = _dataset(data)
    groups = [n for n, node in sorted(tree.children.items())
              if any(m in node.dataset.data_vars for m in METHODS)]
    if not groups:
        raise ScoreError(f"{store_path or 'store'}: no model group with any of {METHODS}")
    image_ids: list[str] = []
    store_sizes: dict[str, tuple[int, int]] = {}
    for g in groups:
        ds = tree[g].dataset
        if "complete" not in ds:
            raise ScoreError(f"{store_path or 'store'}: group /{g} has no 'complete' "
                             "variable; re-run extraction with ssl_attn.store")
        for i, iid in enumerate(ds["image_id"].values.tolist()):
            if iid not in store_sizes:
                image_ids.append(iid)
                if "height" in ds.coords and "width" in ds.coords:
                    h, w = ds["height"].values[i], ds["width"].values[i]
                    if np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0:
                        store_sizes[iid] = (int(h), int(w))
                store_sizes.setdefault(iid, None)  # type: ignore[arg-type]
    store_sizes = {k: v for k, v in store_sizes.items() if v is not None}
    unknown = sorted(set(image_ids) - set(wc.boxes["image_id"]))
    if unknown:
        warnings.warn(f"{len(unknown)} store image(s) have no boxes in {data} (e.g. "
                      f"{unknown[:3]}); their scores are NaN", UserWarning, stacklevel=2)
    specs, boxes = _image_specs(wc, image_ids, store_sizes)
    onto = wc.ontology
    feats = (boxes.groupby(["image_id", "label"], sort=False).size().rename("n_boxes")
             .reset_index())
    feats["_o"] = feats["image_id"].map({iid: i for i, iid in enumerate(image_ids)})
    feats = feats.sort_values(["_o", "label"]).drop(columns="_o").reset_index(drop=True)
    feats["name"] = [str(onto.at[lab, "name"]) if lab in onto.index else str(lab)
                     for lab in feats["label"]]
    counts = boxes.groupby("image_id").size()
    fcounts = feats.groupby("image_id").size()
    params = _Params(frame=int(resolution), percentiles=percentiles,
                     max_boxes=int(counts.max()) if len(counts) else 0,
                     max_features=int(fcounts.max()) if len(fcounts) else 0)
    param_fp = {"version": SCORES_VERSION, "resolution": params.frame,
                "percentiles": percentiles, "tolerance_px": params.tolerance_px,
                "emd_grid": params.emd_grid, "kl_eps": KL_EPS}

    # ---- jobs: one per (model, variant, method); fingerprints per (model, variant)
    jobs: list[tuple[str, str, str, xr.DataArray]] = []
    fps: dict[str, str] = {}
    variants: list[str] = []
    layers, heads = {-1}, {-1}
    scored_any: set[str] = set()
    for g in groups:
        ds = tree[g].dataset
        for v in ds["variant"].values.tolist():
            if v not in variants:
                variants.append(v)
            done = np.asarray(ds["complete"].sel(variant=v).values, dtype=bool)
            ids = [iid for iid, ok in zip(ds["image_id"].values.tolist(), done) if ok]
            scored_any.update(ids)
            fps[f"{g}/{v}"] = _fingerprint({
                **param_fp, "images": sorted(ids),
                "boxes": [specs[i] for i in sorted(ids)],
                "group": {k: str(ds.attrs.get(k)) for k in
                          ("created", "checkpoint", "revision", "weights", "git_commit")},
                "methods": [m for m in METHODS if m in ds.data_vars]})
            for m in METHODS:
                if m not in ds.data_vars:
                    continue
                if "layer" in ds[m].dims:
                    layers.update(int(x) for x in ds["layer"].values)
                if "head" in ds[m].dims:
                    heads.update(int(x) for x in ds["head"].values)
                jobs.append((g, v, m, ds))
    if "frozen" not in variants and baselines:
        variants.append("frozen")
    base_ids = [iid for iid in image_ids if iid in scored_any]
    models = list(groups)
    methods = [m for m in METHODS if any(j[2] == m for j in jobs)]
    if baselines:
        models += [f"baseline:{b}" for b in BASELINES]
        methods.append(BASELINE_METHOD)
        for b in BASELINES:
            fps[f"baseline:{b}/frozen"] = _fingerprint({
                **param_fp, "baseline": b, "images": base_ids, "n_draws": n_draws,
                "seed": seed, "boxes": [specs[i] for i in base_ids], "data": data,
                "center_sigma": CENTER_SIGMA, "saliency_sigma": SALIENCY_SIGMA})
    layout = _Layout(models, variants, methods, sorted(layers), sorted(heads), image_ids,
                     percentiles, boxes[["image_id", "box_index", "feature", "label"]],
                     feats[["image_id", "label", "name", "n_boxes"]])

    # ---- resume: which (model, variant) blocks are unchanged in an existing output
    write = out is not None or store_path is not None
    out_path = Path(out) if out is not None else (default_scores_path(store_path)
                                                  if store_path else None)
    old = _open_existing(out_path) if write else None
    old_fps = json.loads(old.attrs.get("fingerprints", "{}")) if old is not None else {}
    reuse = {k for k, fp in fps.items() if old_fps.get(k) == fp}
    in_place = old is not None and old.attrs.get("layout") == layout.key()

    # ---- lazy computations for the blocks that need it
    lazies, targets = [], []
    spec_of = {iid: specs[iid] for iid in image_ids}
    for g, v, m, ds in jobs:
        if f"{g}/{v}" in reuse:
            continue
        done = np.asarray(ds["complete"].sel(variant=v).values, dtype=bool)
        pos = np.flatnonzero(done)
        if pos.size == 0:
            continue
        arr = _method_array(ds, m, v, pos).chunk(
            {"image_id": chunk_images, "layer": -1, "head": -1, "y": -1, "x": -1})
        ids = arr["image_id"].values.tolist()
        idx = xr.DataArray(np.arange(len(ids)), dims="image_id",
                           coords={"image_id": arr["image_id"]}).chunk({"image_id": chunk_images})
        res = xr.apply_ufunc(
            _score_block, arr, idx,
            input_core_dims=[["layer", "head", "y", "x"], []],
            output_core_dims=[["layer", "head", "out"]],
            dask="parallelized", output_dtypes=[np.float64],
            dask_gufunc_kwargs={"output_sizes": {"out": params.n_out}},
            kwargs={"specs": tuple(spec_of[i] for i in ids), "params": params})
        lazies.append(res)
        targets.append(("model", g, v, m, ids, arr["layer"].values, arr["head"].values))
    if baselines:
        bspecs = tuple(spec_of[i] for i in base_ids)
        for b in BASELINES:
            if f"baseline:{b}/frozen" in reuse or not base_ids:
                continue
            idx = xr.DataArray(np.arange(len(base_ids)), dims="image_id",
                               coords={"image_id": base_ids}).chunk({"image_id": chunk_images})
            res = xr.apply_ufunc(
                _baseline_block, idx, input_core_dims=[[]],
                output_core_dims=[["stat", "out"]], dask="parallelized",
                output_dtypes=[np.float64],
                dask_gufunc_kwargs={"output_sizes": {"stat": 2, "out": params.n_out}},
                kwargs={"specs": bspecs, "params": params, "name": b, "data": data,
                        "n_draws": n_draws, "seed": seed})
            lazies.append(res)
            targets.append(("baseline", f"baseline:{b}", "frozen", BASELINE_METHOD, base_ids,
                            np.array([-1]), np.array([-1])))
    kwargs, ctx = _scheduler_context(scheduler)
    import dask

    with ctx:
        results = dask.compute(*[r.data for r in lazies], **kwargs) if lazies else ()

    # ---- write
    root_attrs = _root_attrs(tree, store_path, data, params, n_draws, seed, fps, layout)
    if not write:
        sink: Any = _MemorySink(layout)
    else:
        target_path = out_path if in_place else out_path.with_name(out_path.name + ".tmp")
        if not in_place:
            if target_path.exists():
                shutil.rmtree(target_path)
            _template(layout, root_attrs).to_zarr(str(target_path), mode="w", compute=False,
                                                  consolidated=True, zarr_format=3)
        sink = _ZarrSink(target_path)
    for (kind, model, v, m, ids, lays, hds), packed in zip(targets, results):
        _write_block(sink, layout, params, kind, model, v, m, ids, lays, hds, packed)
    if write:
        if old is not None and not in_place:
            for key in reuse:
                _copy_block(sink, layout, old, *key.split("/"))
        # Recomputed (model, variant) blocks of methods that vanished must read NaN again.
        if in_place:
            for key in set(fps) - reuse:
                g, v = key.split("/")
                done_methods = {t[3] for t in targets if t[1] == g and t[2] == v}
                for m in set(layout.methods) - done_methods:
                    _clear_block(sink, layout, g, v, m)
        import zarr

        zarr.open_group(str(target_path), mode="r+").attrs.update(root_attrs)
        zarr.consolidate_metadata(str(target_path))
        if not in_place:
            if out_path.exists():
                shutil.rmtree(out_path)
            os.replace(target_path, out_path)
        res = xr.open_zarr(str(out_path), consolidated=True)
        return res.assign_coords({k: res[k].load() for k in res.coords})  # small: eager
    ds = _template(layout, root_attrs)
    return ds.assign({k: (ds[k].dims, sink[k], ds[k].attrs) for k in ds.data_vars})


def _root_attrs(tree: xr.DataTree, store_path: Path | None, data: str, params: _Params,
                n_draws: int, seed: int, fps: dict[str, str], layout: _Layout
                ) -> dict[str, Any]:
    import ssl_attn

    synthetic = _decode(tree.attrs.get("synthetic", False))
    return {
        "title": "ssl-attn alignment scores",
        "store": str(store_path) if store_path else "",
        "dataset": data,
        "synthetic": bool(synthetic),
        "resolution": params.frame,
        "percentiles": json.dumps(list(params.percentiles)),
        "tolerance_px": params.tolerance_px,
        "emd_grid": params.emd_grid,
        "kl_eps": KL_EPS,
        "n_draws": int(n_draws),
        "seed": int(seed),
        "baselines": json.dumps({
            "uniform": f"i.i.d. U(0,1) per {params.frame}x{params.frame} frame pixel, "
                       f"{n_draws} draws, rng([seed, crc32(image_id)]); mean over draws",
            "center": f"isotropic Gaussian at the image centre, sigma={CENTER_SIGMA} (relative)",
            "saliency": "RGB distance to the mean border-ring colour (blurred image) x centre "
                        f"Gaussian sigma={SALIENCY_SIGMA}",
            "sobel": "Sobel gradient magnitude of the grey image resized to the frame"}),
        "fingerprints": json.dumps(fps, sort_keys=True),
        "layout": layout.key(),
        "ssl_attn_version": ssl_attn.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _open_existing(path: Path | None) -> xr.Dataset | None:
    if path is None or not path.exists():
        return None
    try:
        return xr.open_zarr(str(path), consolidated=True)
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"{path}: existing scores unreadable ({exc}); recomputing everything",
                      UserWarning, stacklevel=3)
        return None


def _write_block(sink: Any, layout: _Layout, params: _Params, kind: str, model: str,
                 variant: str, method: str, ids: list[str], lays: np.ndarray,
                 hds: np.ndarray, packed: np.ndarray) -> None:
    """Unpack one computed block into the output arrays."""
    mi, vi = layout.models.index(model), layout.variants.index(variant)
    me = layout.methods.index(method)
    img = np.array([layout.image_ids.index(i) for i in ids])
    if kind == "baseline":
        std = packed[:, 1]
        packed = packed[:, 0][:, None, None, :]  # (n_img, 1, 1, n_out)
    li = np.searchsorted(layout.layers, lays)
    hi = np.searchsorted(layout.heads, hds)
    n_img_all = len(layout.image_ids)
    full = np.full((n_img_all, len(layout.layers), len(layout.heads), params.n_out), np.nan)
    full[np.ix_(img, li, hi)] = packed
    # (image, layer, head, out) -> (layer, head, image, out)
    full = full.transpose(1, 2, 0, 3)
    j = 0
    for k in IMAGE_METRICS:
        sink[k][mi, vi, me] = full[..., j]
        j += 1
    npc = len(params.percentiles)
    sink["iou"][mi, vi, me] = full[..., j:j + npc]
    j += npc
    box_img = np.array([layout.image_ids.index(i) for i in layout.boxes["image_id"]],
                       dtype=np.int64)
    feat_img = np.array([layout.image_ids.index(i) for i in layout.features["image_id"]],
                        dtype=np.int64)
    box_slot = layout.boxes["box_index"].to_numpy(dtype=np.int64)
    feat_slot = layout.features.groupby("image_id", sort=False).cumcount().to_numpy()
    for names, size, rows, slot in ((_BOX_VARS, params.max_boxes, box_img, box_slot),
                                    (_FEATURE_VARS, params.max_features, feat_img, feat_slot)):
        for name in names:
            vals = full[:, :, rows, j + slot] if rows.size else full[:, :, :0, 0]
            sink[name][mi, vi, me] = vals.astype(np.float32)
            j += size
    if kind == "baseline":
        sfull = np.full((n_img_all, params.n_out), np.nan)
        sfull[img] = std
        j = 0
        for k in IMAGE_METRICS:
            sink[f"{k}_draw_std"][mi] = sfull[:, j]
            j += 1
        sink["iou_draw_std"][mi] = sfull[:, j:j + npc]
        j += npc
        for names, size, rows, slot in ((_BOX_VARS, params.max_boxes, box_img, box_slot),
                                        (_FEATURE_VARS, params.max_features, feat_img,
                                         feat_slot)):
            for name in names:
                vals = sfull[rows, j + slot] if rows.size else sfull[:0, 0]
                sink[f"{name}_draw_std"][mi] = vals.astype(np.float32)
                j += size


def _clear_block(sink: Any, layout: _Layout, model: str, variant: str, method: str) -> None:
    mi, vi = layout.models.index(model), layout.variants.index(variant)
    me = layout.methods.index(method)
    for name, (dims, dtype) in layout.variables().items():
        if dims[:3] == ("model", "variant", "method"):
            shape = tuple(layout.sizes()[d] for d in dims[3:])
            sink[name][mi, vi, me] = np.full(shape, np.nan, dtype=dtype)


def _positions(new: list[Any], old: list[Any]) -> np.ndarray:
    """For each new key, its position among the old keys (-1 when absent)."""
    where = {k: i for i, k in enumerate(old)}
    return np.array([where.get(k, -1) for k in new], dtype=np.int64)


def _copy_block(sink: Any, layout: _Layout, old: xr.Dataset, model: str, variant: str
                ) -> None:
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
