"""Planning a scoring run: read the store, the boxes and an existing output; decide what to do.

:func:`make_plan` returns a :class:`Plan`: the output :class:`.layout.Layout`, the task
:class:`.layout.Params`, one :class:`MapJob` per ``(model, variant, method)`` of the store, the
images the baselines score, the resume fingerprints and which ``(model, variant)`` blocks an
existing output already holds (``reuse``). Nothing is computed or written here.

Resume: a fingerprint per ``model/variant`` (and per ``baseline:<name>/frozen``) hashes the
completed image ids, their boxes, the group's provenance and every scoring parameter. A block
whose fingerprint equals the existing output's is reused; when the whole layout is unchanged
(:meth:`.layout.Layout.key`) the output is updated in place.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ...store import (
    MAP_METHODS,
    check_schema,
    decode_attr,
    head_mean,
    open_scores,
    open_store,
    scores_path,
)
from ..baselines import BASELINES, CENTER_SIGMA, SALIENCY_SIGMA
from ..core import KL_EPS
from .layout import Layout, Params, ScoreError, _ImageSpec, fingerprint

#: The ``method`` of the baseline pseudo-models.
BASELINE_METHOD = "baseline"
#: Version of the scores format; part of every fingerprint.
SCORES_VERSION = 1
#: Group attrs whose change means the maps changed (part of the fingerprint).
_PROVENANCE = ("created", "checkpoint", "revision", "weights", "git_commit")


@functools.lru_cache(maxsize=4)
def dataset(root: str):
    """The WikiChurches dataset at ``root`` (cached: boxes for planning, images for baselines)."""
    from ...wikichurches import WikiChurches

    return WikiChurches(root)


@dataclass
class MapJob:
    """One ``(model, variant, method)`` block of stored maps; ``ds`` is the model's group."""

    model: str
    variant: str
    method: str
    ds: xr.Dataset = field(repr=False)

    @property
    def key(self) -> str:
        """``model/variant``: the unit of fingerprints and reuse."""
        return f"{self.model}/{self.variant}"

    def positions(self) -> np.ndarray:
        """int positions (along the group's ``image_id``) of the images marked complete."""
        return np.flatnonzero(np.asarray(self.ds["complete"].sel(variant=self.variant).values,
                                         dtype=bool))

    def maps(self, positions: np.ndarray) -> xr.DataArray:
        """``(image_id, layer, head, y, x)`` maps at ``positions``; ``head = -1`` is the
        head-mean (:func:`ssl_attn.store.head_mean`) and ``layer = -1`` stands in where the
        method has no layer."""
        da = self.ds[self.method].sel(variant=self.variant).isel(image_id=positions)
        if "head" in da.dims:
            da = xr.concat([head_mean(da).expand_dims(head=[-1]), da], dim="head")
        else:
            da = da.expand_dims(head=[-1])
        if "layer" not in da.dims:
            da = da.expand_dims(layer=[-1])
        da = da.transpose("image_id", "layer", "head", "y", "x")
        return da.assign_coords(layer=da["layer"].astype(np.int64),
                                head=da["head"].astype(np.int64))


@dataclass
class Plan:
    """Everything :mod:`.compute` and :mod:`.write` need.

    ``specs``: every store image's :class:`.layout._ImageSpec`; ``jobs``: every map block of
    the store; ``baseline_ids``: images the baselines score (complete in some group; empty
    when ``baselines`` is False); ``fingerprints``: per ``model/variant``; ``reuse``: keys
    whose block ``old`` (the existing output, or None) already holds; ``in_place``: ``old``
    has this very layout and is updated in place; ``out_path``: where to write (None: return
    in memory only).
    """

    tree: xr.DataTree
    store_path: Path | None
    data: str
    params: Params
    layout: Layout
    specs: dict[str, _ImageSpec]
    jobs: list[MapJob]
    baselines: bool
    baseline_ids: list[str]
    n_draws: int
    seed: int
    fingerprints: dict[str, str]
    out_path: Path | None = None
    old: xr.Dataset | None = None
    reuse: set[str] = field(default_factory=set)
    in_place: bool = False

    @property
    def writes(self) -> bool:
        """True when the scores go to disk (and resume applies)."""
        return self.out_path is not None

    def pending(self) -> list[MapJob]:
        """Map jobs whose ``model/variant`` block is not reused."""
        return [j for j in self.jobs if j.key not in self.reuse]

    def pending_baselines(self) -> list[str]:
        """Baselines to compute (none without baseline images)."""
        if not self.baselines or not self.baseline_ids:
            return []
        return [b for b in BASELINES if f"baseline:{b}/frozen" not in self.reuse]


# ------------------------------------------------------------------ reading the store
def open_tree(store: Any) -> tuple[xr.DataTree, Path | None]:
    """A store path (opened lazily with :func:`ssl_attn.store.open_store`) or a DataTree →
    ``(tree, path or None)``."""
    if isinstance(store, xr.DataTree):
        return store, None
    path = Path(store)
    return open_store(path, chunks={}), path


def _dataset_root(tree: xr.DataTree, store_path: Path | None, data: Any) -> str:
    """The WikiChurches root: ``data`` or the store's root attr ``dataset``; must exist."""
    if data is None:
        data = decode_attr(tree.attrs.get("dataset"))
        if not data:
            raise ScoreError(f"{store_path or 'store'}: root attr 'dataset' is missing; pass "
                             "data=<WikiChurches root> to score()")
    data = str(data)
    if not Path(data).exists():
        raise ScoreError(f"dataset {data!r} (from the store's 'dataset' attr or data=) does "
                         "not exist; pass data=<WikiChurches root>")
    return data


def _map_groups(tree: xr.DataTree, store_path: Path | None) -> list[str]:
    """Sorted names of the groups holding any map variable; each must have ``complete``."""
    groups = [n for n, node in sorted(tree.children.items())
              if any(m in node.dataset.data_vars for m in MAP_METHODS)]
    if not groups:
        raise ScoreError(f"{store_path or 'store'}: no model group with any of {MAP_METHODS}")
    for g in groups:
        if "complete" not in tree[g].dataset:
            raise ScoreError(f"{store_path or 'store'}: group /{g} has no 'complete' "
                             "variable; re-run extraction with ssl_attn.store")
    return groups


def _store_images(tree: xr.DataTree, groups: list[str]
                  ) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """Image ids in first-seen order over the groups, and the photo size ``(height, width)``
    the store records for them (first group with finite positive ``height``/``width``)."""
    image_ids: list[str] = []
    sizes: dict[str, tuple[int, int] | None] = {}
    for g in groups:
        ds = tree[g].dataset
        for i, iid in enumerate(ds["image_id"].values.tolist()):
            if iid in sizes:
                continue
            image_ids.append(iid)
            if "height" in ds.coords and "width" in ds.coords:
                h, w = ds["height"].values[i], ds["width"].values[i]
                if np.isfinite(h) and np.isfinite(w) and h > 0 and w > 0:
                    sizes[iid] = (int(h), int(w))
            sizes.setdefault(iid, None)
    return image_ids, {k: v for k, v in sizes.items() if v is not None}


def _image_specs(wc, image_ids: Sequence[str], store_sizes: dict[str, tuple[int, int]]
                 ) -> tuple[dict[str, _ImageSpec], pd.DataFrame]:
    """Per image its :class:`_ImageSpec` (size from the dataset, else the store), and the
    boxes of these images in image order then ``box_index``."""
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


def _feature_table(boxes: pd.DataFrame, image_ids: list[str], ontology: pd.DataFrame
                   ) -> pd.DataFrame:
    """One row per (image, feature label) in image then label order: ``image_id, label,
    n_boxes, name`` (the ontology's name, else the label as text)."""
    feats = (boxes.groupby(["image_id", "label"], sort=False).size().rename("n_boxes")
             .reset_index())
    feats["_o"] = feats["image_id"].map({iid: i for i, iid in enumerate(image_ids)})
    feats = feats.sort_values(["_o", "label"]).drop(columns="_o").reset_index(drop=True)
    feats["name"] = [str(ontology.at[lab, "name"]) if lab in ontology.index else str(lab)
                     for lab in feats["label"]]
    return feats


def _open_existing(path: Path | None) -> xr.Dataset | None:
    """The scores already at ``path`` (dask-backed), or None (absent or unreadable: warns)."""
    if path is None or not path.exists():
        return None
    try:
        return open_scores(path, chunks={})
    except (OSError, ValueError, KeyError) as exc:
        warnings.warn(f"{path}: existing scores unreadable ({exc}); recomputing everything",
                      UserWarning, stacklevel=4)
        return None


# ------------------------------------------------------------------ the plan
def make_plan(store: Any, *, out: str | os.PathLike | None, resolution: int,
              percentiles: Sequence[float], baselines: bool, data: Any, n_draws: int,
              seed: int) -> Plan:
    """Read the store and boxes, lay out the output and decide which blocks to reuse (the
    arguments are :func:`ssl_attn.metrics.score`'s)."""
    tree, store_path = open_tree(store)
    check_schema(store_path or "the store", tree.attrs)  # a DataTree is not checked on opening
    percentiles = tuple(float(p) for p in percentiles)
    data = _dataset_root(tree, store_path, data)
    wc = dataset(data)
    groups = _map_groups(tree, store_path)
    image_ids, store_sizes = _store_images(tree, groups)
    unknown = sorted(set(image_ids) - set(wc.boxes["image_id"]))
    if unknown:
        warnings.warn(f"{len(unknown)} store image(s) have no boxes in {data} (e.g. "
                      f"{unknown[:3]}); their scores are NaN", UserWarning, stacklevel=3)
    specs, boxes = _image_specs(wc, image_ids, store_sizes)
    feats = _feature_table(boxes, image_ids, wc.ontology)
    counts = boxes.groupby("image_id").size()
    fcounts = feats.groupby("image_id").size()
    params = Params(frame=int(resolution), percentiles=percentiles,
                    max_boxes=int(counts.max()) if len(counts) else 0,
                    max_features=int(fcounts.max()) if len(fcounts) else 0)
    param_fp = {"version": SCORES_VERSION, "resolution": params.frame,
                "percentiles": percentiles, "tolerance_px": params.tolerance_px,
                "emd_grid": params.emd_grid, "kl_eps": KL_EPS}

    # One job per (model, variant, method); fingerprints per (model, variant).
    jobs: list[MapJob] = []
    fps: dict[str, str] = {}
    variants: list[str] = []
    layers, heads = {-1}, {-1}
    scored_any: set[str] = set()
    for g in groups:
        ds = tree[g].dataset
        methods_here = [m for m in MAP_METHODS if m in ds.data_vars]
        for v in ds["variant"].values.tolist():
            if v not in variants:
                variants.append(v)
            done = np.asarray(ds["complete"].sel(variant=v).values, dtype=bool)
            ids = [iid for iid, ok in zip(ds["image_id"].values.tolist(), done) if ok]
            scored_any.update(ids)
            fps[f"{g}/{v}"] = fingerprint({
                **param_fp, "images": sorted(ids), "boxes": [specs[i] for i in sorted(ids)],
                "group": {k: str(ds.attrs.get(k)) for k in _PROVENANCE},
                "methods": methods_here})
            for m in methods_here:
                if "layer" in ds[m].dims:
                    layers.update(int(x) for x in ds["layer"].values)
                if "head" in ds[m].dims:
                    heads.update(int(x) for x in ds["head"].values)
                jobs.append(MapJob(g, v, m, ds))
    if "frozen" not in variants and baselines:
        variants.append("frozen")
    base_ids = [iid for iid in image_ids if iid in scored_any] if baselines else []
    models = list(groups)
    methods = [m for m in MAP_METHODS if any(j.method == m for j in jobs)]
    if baselines:
        models += [f"baseline:{b}" for b in BASELINES]
        methods.append(BASELINE_METHOD)
        for b in BASELINES:
            fps[f"baseline:{b}/frozen"] = fingerprint({
                **param_fp, "baseline": b, "images": base_ids, "n_draws": n_draws,
                "seed": seed, "boxes": [specs[i] for i in base_ids], "data": data,
                "center_sigma": CENTER_SIGMA, "saliency_sigma": SALIENCY_SIGMA})
    layout = Layout(models, variants, methods, sorted(layers), sorted(heads), image_ids,
                    percentiles, boxes[["image_id", "box_index", "feature", "label"]],
                    feats[["image_id", "label", "name", "n_boxes"]])
    plan = Plan(tree, store_path, data, params, layout, specs, jobs, baselines, base_ids,
                n_draws, seed, fps)
    _plan_resume(plan, out)
    return plan


def block_chunks(path: Path, models: Sequence[str], variants: Sequence[str]
                 ) -> dict[str, int]:
    """Per ``model/variant`` key, how many chunk files the scores at ``path`` hold for it.

    Reads the Zarr metadata of every array (not the consolidated copy) and counts files under
    ``<var>/c/<model>/<variant>/`` for block variables ``(model, variant, ...)`` and under
    ``<var>/c/<model>/`` for per-model ones (the baselines' ``_draw_std``). Recorded in the root
    attr ``block_chunks`` when written; a resume trusts a block only if the count still matches
    (a chunk of all-NaN values is not stored, so the count is the record, not a fixed number).
    """
    counts = {f"{m}/{v}": 0 for m in models for v in variants}

    def files(folder: Path) -> int:
        return sum(len(f) for _, _, f in os.walk(folder)) if folder.is_dir() else 0

    for meta_file in sorted(path.glob("*/zarr.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        dims = tuple(meta.get("dimension_names") or ())
        if meta.get("node_type") != "array" or dims[:1] != ("model",):
            continue
        chunks = meta_file.parent / "c"
        for mi, m in enumerate(models):
            if dims[1:2] == ("variant",):
                for vi, v in enumerate(variants):
                    counts[f"{m}/{v}"] += files(chunks / str(mi) / str(vi))
            else:
                n = files(chunks / str(mi))
                for v in variants:
                    counts[f"{m}/{v}"] += n
    return counts


def _damage(path: Path, old: xr.Dataset, layout: Layout) -> str | None:
    """Why the existing output at ``path`` cannot be trusted at all (a variable or coordinate
    missing on disk, or one this layout needs that it lacks), else None."""
    lost = [k for k in [*old.variables] if not (path / str(k) / "zarr.json").is_file()]
    lost += [k for k in layout.variables() if k not in old.variables]
    if lost:
        return f"variables {sorted(set(lost))[:5]} are missing"
    return None


def _plan_resume(plan: Plan, out: str | os.PathLike | None) -> None:
    """Set ``out_path`` (``out``, else next to the store, else None), open an existing output
    and mark the blocks whose fingerprint it already has.

    The existing output is verified first: if any variable or coordinate is missing on disk it
    is not trusted at all (everything is recomputed and written afresh); a block is reused only
    if its chunk files are all still there (root attr ``block_chunks``, where recorded).
    """
    if out is not None:
        plan.out_path = Path(out)
    elif plan.store_path is not None:
        plan.out_path = scores_path(plan.store_path)
    plan.old = _open_existing(plan.out_path)
    if plan.old is None:
        return
    why = _damage(plan.out_path, plan.old, plan.layout)
    if why is not None:
        warnings.warn(f"{plan.out_path}: existing scores damaged ({why}); recomputing "
                      "everything", UserWarning, stacklevel=4)
        plan.old = None
        return
    old_fps = json.loads(plan.old.attrs.get("fingerprints", "{}"))
    plan.reuse = {k for k, fp in plan.fingerprints.items() if old_fps.get(k) == fp}
    recorded = decode_attr(plan.old.attrs.get("block_chunks"))
    if isinstance(recorded, dict) and plan.reuse:
        have = block_chunks(plan.out_path, plan.old["model"].values.tolist(),
                            plan.old["variant"].values.tolist())
        lost = {k for k in plan.reuse if recorded.get(k) != have.get(k, 0)}
        if lost:
            warnings.warn(f"{plan.out_path}: chunks of {sorted(lost)} are missing; "
                          "recomputing them", UserWarning, stacklevel=4)
            plan.reuse -= lost
    plan.in_place = plan.old.attrs.get("layout") == plan.layout.key()
