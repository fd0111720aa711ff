"""Read-only data access for the explorer: the attention store, its scores and the dataset.

Everything is opened lazily once and read through small, cached slices:

* maps: one ``(variant, image_id)`` cube per model/method (``[layer,] [head,] y, x``; one Zarr
  chunk, a few hundred KB) is read once and cached (``functools.lru_cache``); layer and head
  changes are then numpy indexing;
* scores: one metric's ``(model, method, layer, head)`` table for an image, or its
  ``(model, method, layer, image_id)`` table for the per-layer curves, cached per key;
* photos: decoded once per image at display size (JPEG draft mode for speed), cached.

Nothing here writes: stores are opened through ``zarr.storage.LocalStore(read_only=True)`` and
no cache is ever written to disk.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "MAP_METHODS",
    "ExplorerData",
    "PathRejectedError",
    "resolve_store_path",
    "scores_path_for",
]

#: Store variables that are maps (in the order the method menu lists them).
MAP_METHODS = ("cls", "rollout", "mean_received", "probe", "gradcam")
#: The method each model falls back to in all-model views when it lacks the chosen one.
_PRIMARY_ORDER = ("cls", "probe", "mean_received", "rollout", "gradcam")
BASELINE_PREFIX = "baseline:"


class PathRejectedError(ValueError):
    """A store path requested from outside (e.g. a URL parameter) is not allowed."""


def resolve_store_path(requested: str | os.PathLike, data_dir: str | os.PathLike) -> Path:
    """Resolve a store path requested by a client (``?store=...``) strictly inside ``data_dir``.

    Relative paths are taken relative to ``data_dir``; symlinks and ``..`` are resolved first.
    Raises :class:`PathRejectedError` when the result lies outside ``data_dir`` (absolute paths
    elsewhere, ``../`` escapes, symlinks pointing out), so a URL can never open other files.
    """
    base = Path(data_dir).resolve()
    text = str(requested).strip()
    if not text or "\x00" in text:
        raise PathRejectedError(f"store parameter {requested!r} is empty or malformed")
    p = Path(text)
    candidate = (p if p.is_absolute() else base / p).resolve()
    if not candidate.is_relative_to(base):
        raise PathRejectedError(
            f"store {text!r} resolves to {candidate}, outside the data directory {base}; "
            "only stores under the data directory can be opened from a URL")
    return candidate


def scores_path_for(store: str | os.PathLike) -> Path:
    """``X.zarr`` → ``X.scores.zarr`` (the metrics module's output next to the store)."""
    store = Path(store)
    stem = store.name[:-5] if store.name.endswith(".zarr") else store.name
    return store.with_name(f"{stem}.scores.zarr")


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _open_scores(path: Path) -> xr.Dataset:
    import zarr

    store = zarr.storage.LocalStore(str(path), read_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # consolidated-v3 notice
        return xr.open_dataset(store, engine="zarr", chunks=None)


def _bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap CI of the finite entries of a 1-D array.

    Hand-written (a few lines of numpy) because it runs once per curve point in a hot path and
    needs NaN-dropping and a fixed seed; returns ``(nan, nan, nan)`` for no finite values.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    if v.size == 1:
        return (float(v[0]), float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return (float(v.mean()), float(lo), float(hi))


class ExplorerData:
    """Lazy, read-only access to one store, its scores and its dataset.

    Parameters
    ----------
    store : path of the attention store (``X.zarr``).
    scores : path of the scores (default ``X.scores.zarr`` next to the store); optional.
    data : the WikiChurches(-format) dataset folder for photos and boxes (default: the store's
        root attr ``dataset``); optional — without it maps are drawn without photo and boxes.
    dataset : an already opened dataset object (``.images``, ``.boxes``, ``.load_image``,
        ``.is_synthetic``), instead of ``data``.
    photo_size : longest side (px) of the displayed photos (they are downscaled copies; the plot
        frame stays in full-size pixels).

    ``problems`` lists human-readable messages about what is missing; ``ok`` is False when the
    store itself cannot be opened.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        *,
        scores: str | os.PathLike | None = None,
        data: str | os.PathLike | None = None,
        dataset: Any = None,
        photo_size: int = 800,
        cache_size: int = 512,
    ) -> None:
        self.store_path = Path(store)
        self.scores_path = Path(scores) if scores is not None else scores_path_for(store)
        self.photo_size = int(photo_size)
        self.problems: list[str] = []
        self.tree: xr.DataTree | None = None
        self.scores: xr.Dataset | None = None
        self.dataset = dataset
        self._cube = functools.lru_cache(maxsize=cache_size)(self._read_cube)
        self._photo = functools.lru_cache(maxsize=64)(self._read_photo)
        self._thumb = functools.lru_cache(maxsize=1024)(self._read_thumb)
        self._embedding = functools.lru_cache(maxsize=64)(self._read_embedding)
        self._table = functools.lru_cache(maxsize=256)(self._read_block)
        self._open_store()
        if self.tree is not None:
            self._open_scores()
            if self.dataset is None:
                self._open_dataset(data)

    # ------------------------------------------------------------------ opening
    def _open_store(self) -> None:
        from ssl_attn.store import open_store

        if not self.store_path.exists():
            self.problems.append(
                f"No attention store at {self.store_path}. Create one with `make demo-data` "
                "(synthetic demo) or `ssl-attn extract --store PATH`, or pass --store PATH / "
                "SSL_ATTN_STORE.")
            return
        try:
            self.tree = open_store(self.store_path)
        except Exception as exc:  # report any unreadable store as a message, never crash the app
            self.problems.append(f"Cannot open the store {self.store_path}: {exc}")
            return
        if not self.models:
            self.problems.append(f"The store {self.store_path} has no model groups yet; run "
                                 "`ssl-attn extract` first.")

    def _open_scores(self) -> None:
        if not self.scores_path.exists():
            self.problems.append(
                f"No scores at {self.scores_path}: the layer×head grid, curves and leaderboard "
                "need them. Run `ssl-attn score --store {store}`.".replace(
                    "{store}", str(self.store_path)))
            return
        try:
            self.scores = _open_scores(self.scores_path)
        except Exception as exc:  # unreadable scores: report, keep the maps usable
            self.problems.append(f"Cannot open the scores {self.scores_path}: {exc}")

    def _open_dataset(self, data: str | os.PathLike | None) -> None:
        root = data if data is not None else self.root_attrs.get("dataset") or None
        if not root:
            self.problems.append("No dataset folder given and the store names none (root attr "
                                 "`dataset`): photos and boxes are not shown. Pass --data PATH.")
            return
        candidates = [Path(root)]
        if not Path(root).is_absolute():
            candidates.append(self.store_path.parent / root)
        for cand in candidates:
            if cand.is_dir():
                from ssl_attn.wikichurches import WikiChurches

                try:
                    self.dataset = WikiChurches(cand)
                    _ = self.dataset.boxes
                except Exception as exc:  # unreadable dataset: report, keep maps usable
                    self.dataset = None
                    self.problems.append(f"Cannot read the dataset {cand}: {exc}")
                return
        self.problems.append(f"Dataset folder {root} not found: photos and boxes are not shown. "
                             "Pass --data PATH.")

    @property
    def ok(self) -> bool:
        """True when the store is open and has at least one model group."""
        return self.tree is not None and bool(self.models)

    # ------------------------------------------------------------------ store facts
    @functools.cached_property
    def root_attrs(self) -> dict[str, Any]:
        """The store's root attrs (JSON strings decoded)."""
        if self.tree is None:
            return {}
        return {k: _decode(v) for k, v in self.tree.attrs.items()}

    @property
    def synthetic(self) -> bool:
        """True when the store (root attr ``synthetic``) or the dataset is synthetic."""
        flag = bool(self.root_attrs.get("synthetic", False))
        ds_flag = bool(getattr(self.dataset, "is_synthetic", False))
        return flag or ds_flag

    def model_attrs(self, model: str) -> dict[str, Any]:
        """A model group's attrs (JSON strings decoded)."""
        return {k: _decode(v) for k, v in self._group(model).attrs.items()}

    @functools.cached_property
    def models(self) -> list[str]:
        """Model group names, sorted."""
        return sorted(self.tree.children) if self.tree is not None else []

    @functools.cached_property
    def _groups(self) -> dict[str, xr.Dataset]:
        return {m: self.tree[m].to_dataset() for m in self.models}

    def _group(self, model: str) -> xr.Dataset:
        try:
            return self._groups[model]
        except KeyError:
            raise KeyError(f"{self.store_path}: no model group {model!r} "
                           f"(has {self.models})") from None

    @functools.cache  # noqa: B019  (the instance lives as long as the app; few keys)
    def _coords(self, model: str, method: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        da = self._group(model)[method]
        layers = tuple(int(v) for v in da["layer"].values) if "layer" in da.dims else ()
        heads = tuple(int(v) for v in da["head"].values) if "head" in da.dims else ()
        return layers, heads

    @functools.cache  # noqa: B019
    def _methods(self, model: str) -> tuple[str, ...]:
        ds = self._group(model)
        return tuple(m for m in MAP_METHODS if m in ds.data_vars)

    def methods(self, model: str) -> list[str]:
        """Map variables of a model group, in :data:`MAP_METHODS` order."""
        return list(self._methods(model))

    def primary_method(self, model: str, preferred: str | None = None) -> str | None:
        """``preferred`` when the model has it, else its first method in a fixed order."""
        have = self.methods(model)
        if preferred in have:
            return preferred
        return next((m for m in _PRIMARY_ORDER if m in have), None)

    def variants(self, model: str) -> list[str]:
        """Variant names of a model group (``frozen`` first)."""
        vals = [str(v) for v in self._group(model)["variant"].values]
        return sorted(vals, key=lambda v: (v != "frozen", vals.index(v)))

    def layers(self, model: str, method: str) -> list[int]:
        """Layer coordinate values of a method (``[]`` when it has no layer dim)."""
        return list(self._coords(model, method)[0])

    def heads(self, model: str, method: str) -> list[int]:
        """Head coordinate values of a method (``[]`` when it has no head dim)."""
        return list(self._coords(model, method)[1])

    def grid(self, model: str) -> tuple[int, int]:
        """Patch grid ``(gh, gw)`` of a model group."""
        ds = self._group(model)
        return int(ds.sizes["y"]), int(ds.sizes["x"])

    def has_embeddings(self, model: str) -> bool:
        """True when the group holds the optional ``embedding`` variable."""
        return "embedding" in self._group(model).data_vars

    @functools.cached_property
    def image_ids(self) -> list[str]:
        """Image ids present in any model group (store order of the first group, then others)."""
        seen: dict[str, None] = {}
        for m in self.models:
            for v in self._group(m)["image_id"].values:
                seen.setdefault(str(v), None)
        return list(seen)

    @functools.cached_property
    def _sizes(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for m in self.models:
            ds = self._group(m)
            if "width" in ds.coords and "height" in ds.coords:
                for iid, w, h in zip(ds["image_id"].values, ds["width"].values,
                                     ds["height"].values):
                    out.setdefault(str(iid), (int(w), int(h)))
        if self.dataset is not None:
            imgs = self.dataset.images
            for iid, w, h in zip(imgs["image_id"], imgs["width"], imgs["height"]):
                if str(iid) not in out and not (pd.isna(w) or pd.isna(h)):
                    out[str(iid)] = (int(w), int(h))
        return out

    def image_size(self, image_id: str) -> tuple[int, int]:
        """``(width, height)`` in pixels (store coords, else the dataset's header)."""
        try:
            return self._sizes[image_id]
        except KeyError:
            raise KeyError(f"{self.store_path}: no width/height for image {image_id!r} in the "
                           "store coords or the dataset") from None

    @functools.cached_property
    def image_table(self) -> pd.DataFrame:
        """One row per store image: ``image_id, width, height, style, style_name, features``
        (tuple of feature names of its boxes), ``n_boxes``."""
        rows = []
        names = getattr(self.dataset, "style_names", {}) if self.dataset is not None else {}
        styles: dict[str, Any] = {}
        if self.dataset is not None:
            imgs = self.dataset.images.set_index("image_id")
            styles = {str(k): v for k, v in imgs["style"].items()}
            feats = self.dataset.boxes.groupby("image_id")["feature"].agg(
                lambda s: tuple(dict.fromkeys(s)))
        else:
            feats = pd.Series(dtype=object)
        for iid in self.image_ids:
            w, h = self._sizes.get(iid, (0, 0))
            style = styles.get(iid)
            style = None if style is None or (isinstance(style, float) and np.isnan(style)) \
                else str(style)
            f = feats.get(iid, ())
            rows.append({"image_id": iid, "width": w, "height": h, "style": style,
                         "style_name": names.get(style, style) if style else "(none)",
                         "features": tuple(f), "n_boxes": len(self.boxes(iid))})
        return pd.DataFrame(rows, columns=["image_id", "width", "height", "style",
                                           "style_name", "features", "n_boxes"])

    @functools.cached_property
    def features_by_frequency(self) -> list[str]:
        """Feature names of the dataset's boxes, most frequent first (ties by name)."""
        if self.dataset is None:
            return []
        counts = self.dataset.boxes["feature"].astype(str).value_counts()
        return sorted(counts.index, key=lambda f: (-counts[f], f))

    @functools.cached_property
    def _boxes_by_image(self) -> dict[str, pd.DataFrame]:
        if self.dataset is None:
            return {}
        b = self.dataset.boxes
        return {str(k): g.sort_values("box_index").reset_index(drop=True)
                for k, g in b.groupby("image_id", sort=False)}

    def boxes(self, image_id: str) -> pd.DataFrame:
        """The expert boxes of one image (dataset rows, ``box_index`` order); empty if none."""
        got = self._boxes_by_image.get(image_id)
        if got is None:
            return pd.DataFrame(columns=["image_id", "box_index", "label", "feature", "left",
                                         "top", "width", "height"])
        return got

    # ------------------------------------------------------------------ maps
    def _read_cube(self, model: str, variant: str, method: str, image_id: str) -> np.ndarray:
        da = self._group(model)[method]
        for dim, val in (("variant", variant), ("image_id", image_id)):
            if val not in da.indexes[dim]:
                raise KeyError(f"{self.store_path}/{model}: no {dim} {val!r} for {method!r}")
        dims = [d for d in ("layer", "head", "y", "x") if d in da.dims]
        out = da.sel(variant=variant, image_id=image_id).transpose(*dims).values
        out = np.asarray(out, dtype=np.float32)
        out.setflags(write=False)  # cached and shared: make accidental in-place edits fail
        return out

    def cube(self, model: str, variant: str, method: str, image_id: str) -> np.ndarray:
        """All maps of one image: float32 ``([layer,] [head,] y, x)`` as stored (read-only)."""
        return self._cube(model, variant, method, image_id)

    def attention_map(
        self,
        model: str,
        variant: str,
        method: str,
        image_id: str,
        layer: int | None = None,
        head: int | None = -1,
    ) -> np.ndarray:
        """One map ``(gh, gw)`` (float32; row 0 = top of the photo).

        ``layer``: a layer coordinate value (ignored, may be ``None``/``-1``, for methods without
        layers). ``head``: a head coordinate value, or ``-1``/``None`` for the NaN-aware mean over
        heads (ignored for methods without heads). Raises ``KeyError`` naming what is missing.
        """
        cube = self.cube(model, variant, method, image_id)
        layers = self.layers(model, method)
        heads = self.heads(model, method)
        if layers:
            if layer not in layers:
                raise KeyError(f"{model}/{method}: no layer {layer} (has {layers})")
            cube = cube[layers.index(layer)]
        if heads:
            if head is None or head == -1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN maps stay NaN
                    return np.nanmean(cube, axis=0, dtype=np.float64).astype(np.float32)
            if head not in heads:
                raise KeyError(f"{model}/{method}: no head {head} (has {heads})")
            cube = cube[heads.index(head)]
        return cube

    def complete(self, model: str, variant: str, image_id: str) -> bool:
        """The store's ``complete`` flag (False when absent)."""
        ds = self._group(model)
        if "complete" not in ds.data_vars:
            return False
        try:
            return bool(ds["complete"].sel(variant=variant, image_id=image_id).values)
        except KeyError:
            return False

    def _read_embedding(self, model: str, variant: str, image_id: str) -> np.ndarray | None:
        if not self.has_embeddings(model):
            return None
        da = self._group(model)["embedding"].sel(variant=variant, image_id=image_id)
        emb = np.asarray(da.transpose("y", "x", "channel").values, dtype=np.float32)
        emb.setflags(write=False)
        return emb

    def embedding(self, model: str, variant: str, image_id: str) -> np.ndarray | None:
        """Final-layer patch embeddings ``(gh, gw, C)`` float32, or None if not stored."""
        return self._embedding(model, variant, image_id)

    # ------------------------------------------------------------------ photos
    def _load_pil(self, image_id: str, size: int):
        im = self.dataset.load_image(image_id)
        if getattr(im, "format", None) == "JPEG" or hasattr(im, "draft"):
            # JPEG DCT scaling decodes a smaller image directly: much faster for big photos.
            with contextlib.suppress(Exception):  # draft is only an optimisation
                im.draft("RGB", (size, size))
        im = im.convert("RGB")
        im.thumbnail((size, size))
        return im

    def _read_photo(self, image_id: str) -> np.ndarray | None:
        if self.dataset is None:
            return None
        try:
            arr = np.asarray(self._load_pil(image_id, self.photo_size), dtype=np.uint8)
        except Exception:  # missing/undecodable photo: the view says so
            return None
        arr.setflags(write=False)
        return arr

    def photo(self, image_id: str) -> np.ndarray | None:
        """The photo as uint8 ``(h, w, 3)`` downscaled to ``photo_size``; None if unavailable."""
        return self._photo(image_id)

    def _read_thumb(self, image_id: str, size: int) -> bytes | None:
        if self.dataset is None:
            return None
        import io

        try:
            im = self._load_pil(image_id, size)
        except Exception:  # missing photo: no thumbnail
            return None
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
        return buf.getvalue()

    def thumbnail(self, image_id: str, size: int = 96) -> bytes | None:
        """A JPEG thumbnail (longest side ``size`` px) as bytes, or None."""
        return self._thumb(image_id, size)

    # ------------------------------------------------------------------ scores
    @functools.cached_property
    def metrics(self) -> list[str]:
        """Score variables without a ``box`` dim (one value per map)."""
        if self.scores is None:
            return []
        full = {"model", "variant", "method", "layer", "head", "image_id"}
        return [k for k, v in self.scores.data_vars.items()
                if full <= set(v.dims) and "box" not in v.dims]

    @functools.cached_property
    def box_metrics(self) -> list[str]:
        """Per-box score variables (with a ``box`` dim)."""
        if self.scores is None:
            return []
        base = {"model", "variant", "method", "layer", "head", "box"}
        return [k for k, v in self.scores.data_vars.items() if base <= set(v.dims)]

    @functools.cached_property
    def percentiles(self) -> list[int]:
        """Values of the scores' ``percentile`` coord (empty without one)."""
        if self.scores is None or "percentile" not in self.scores.coords:
            return []
        return [round(float(p)) for p in self.scores["percentile"].values]

    def metric_attrs(self, metric: str) -> dict[str, Any]:
        """``direction``, ``range``, ``long_name`` of a score variable (decoded)."""
        attrs = {k: _decode(v) for k, v in self.scores[metric].attrs.items()}
        attrs.setdefault("direction", "higher")
        attrs.setdefault("long_name", metric)
        return attrs

    def metric_label(self, metric: str, percentile: int | None) -> str:
        """``iou@90`` for percentile metrics, else the name."""
        if self.scores is not None and "percentile" in self.scores[metric].dims:
            return f"{metric}@{percentile}"
        return metric

    def _score_sel(self, metric: str, percentile: int | None, **sel: Any) -> xr.DataArray:
        da = self.scores[metric]
        if "percentile" in da.dims:
            p = percentile if percentile in self.percentiles else self.percentiles[-1]
            da = da.sel(percentile=p)
        return da.sel({k: v for k, v in sel.items() if k in da.dims})

    def _read_block(self, metric: str, model: str, variant: str, method: str,
                    percentile: int | None) -> np.ndarray:
        da = self._score_sel(metric, percentile, model=model, variant=variant, method=method)
        dims = [d for d in ("layer", "head", "image_id", "box") if d in da.dims]
        out = np.asarray(da.transpose(*dims).values, dtype=np.float64)
        out.setflags(write=False)
        return out

    def score_block(self, metric: str, model: str, variant: str, method: str,
                    percentile: int | None = None) -> np.ndarray:
        """All scores of one model/variant/method: ``(layer, head, image_id[, box])`` float64,
        read once and cached (image, layer and head changes are then numpy indexing)."""
        if self.scores is None or metric not in self.scores.data_vars:
            raise KeyError(f"{self.scores_path}: no score variable {metric!r}")
        for dim, val in (("model", model), ("variant", variant), ("method", method)):
            if val not in self._score_index[dim]:
                raise KeyError(f"{self.scores_path}: no {dim} {val!r} in the scores")
        return self._table(metric, model, variant, method, percentile)

    @functools.cached_property
    def _score_index(self) -> dict[str, dict]:
        """Coordinate value → position, per scores dim (plain dicts: fast lookups)."""
        return {d: {(str(v) if isinstance(v, str) else int(v)): i
                    for i, v in enumerate(self.scores[d].values)}
                for d in ("model", "variant", "method", "layer", "head", "image_id")}

    def grid_scores(
        self, metric: str, model: str, variant: str, method: str, image_id: str,
        percentile: int | None = None,
    ) -> tuple[list[int], list[int], np.ndarray]:
        """One image's metric over layers × heads: ``(layers, heads, values[L, H])``.

        ``heads`` starts with ``-1`` (the head-mean map) when the scores hold it; rows/columns
        that are NaN for the whole model/method are dropped (other models' layers/heads).
        """
        if self.scores is None or metric not in self.metrics:
            raise KeyError(f"{self.scores_path}: no score variable {metric!r} "
                           f"(has {self.metrics})")
        block = self.score_block(metric, model, variant, method, percentile)
        ii = self._score_index["image_id"].get(image_id)
        if ii is None:
            raise KeyError(f"{self.scores_path}: no image_id {image_id!r} in the scores")
        vals = block[:, :, ii]
        layers = list(self._score_index["layer"])
        heads = list(self._score_index["head"])
        keep_l = ~np.all(np.isnan(vals), axis=1)
        keep_h = ~np.all(np.isnan(vals), axis=0)
        return ([la for la, k in zip(layers, keep_l) if k],
                [h for h, k in zip(heads, keep_h) if k],
                vals[np.ix_(keep_l, keep_h)])

    def cell_score(
        self, metric: str, model: str, variant: str, method: str, image_id: str,
        layer: int, head: int, percentile: int | None = None,
    ) -> float:
        """One score value (NaN when the combination does not exist)."""
        try:
            layers, heads, vals = self.grid_scores(metric, model, variant, method, image_id,
                                                   percentile)
        except KeyError:
            return float("nan")
        if layer not in layers or head not in heads:
            return float("nan")
        return float(vals[layers.index(layer), heads.index(head)])

    @functools.cached_property
    def _box_positions(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """image_id → (positions along the scores' ``box`` dim, their ``box_index``).

        The metrics module numbers boxes globally (``box`` = 0..n_boxes-1 over all images) and
        names each with the coords ``box_image_id`` and ``box_index``; without those coords
        the ``box`` dim is taken as the per-image ``box_index``.
        """
        sc = self.scores
        if sc is None or "box" not in sc.dims:
            return {}
        if "box_image_id" in sc.coords and "box_index" in sc.coords:
            ids = np.array([str(v) for v in sc["box_image_id"].values], dtype=object)
            bidx = np.asarray(sc["box_index"].values, dtype=np.int64)
            return {str(i): (np.flatnonzero(ids == i), bidx[ids == i])
                    for i in np.unique(ids)}
        n = sc.sizes["box"]
        return {iid: (np.arange(n), np.arange(n)) for iid in self._score_index["image_id"]}

    def box_scores(
        self, model: str, variant: str, method: str, image_id: str, layer: int, head: int,
        percentile: int | None = None,
    ) -> pd.DataFrame:
        """Per-box scores of one map: index ``box_index`` (the image's boxes), one column per
        box metric (NaN where missing)."""
        n = len(self.boxes(image_id))
        df = pd.DataFrame(index=pd.RangeIndex(n, name="box_index"))
        if self.scores is None:
            return df
        idx = self._score_index
        li, hi = idx["layer"].get(layer), idx["head"].get(head)
        pos = self._box_positions.get(image_id)
        if li is None or hi is None or pos is None:
            return df
        positions, box_index = pos
        keep = box_index < n
        for metric in self.box_metrics:
            try:
                block = self.score_block(metric, model, variant, method, percentile)
            except KeyError:
                continue
            vals = np.full(n, np.nan)
            if block.ndim == 4:  # (layer, head, image_id, box): a per-image box dim
                ii = idx["image_id"].get(image_id)
                row = block[li, hi, ii] if ii is not None else np.full(0, np.nan)
                vals[: min(n, row.size)] = row[:n]
            else:  # (layer, head, box): the metrics module's global box dim
                vals[box_index[keep]] = block[li, hi, positions[keep]]
            df[metric] = vals
        return df

    def _model_layer_table(
        self, metric: str, variant: str, percentile: int | None
    ) -> tuple[xr.DataArray, bool]:
        """``(model, method, layer, image_id)`` at head −1 (or the mean over heads)."""
        key = ("mli", metric, variant, percentile)
        cached = self._summary_cache.get(key)
        if cached is not None:
            return cached
        da = self._score_sel(metric, percentile, variant=variant)
        heads = [int(h) for h in self.scores["head"].values]
        if -1 in heads:
            out, fused = da.sel(head=-1), True
        else:
            out, fused = da.mean("head", skipna=True), False
        out = out.transpose("model", "method", "layer", "image_id").load()
        self._summary_cache[key] = (out, fused)
        return out, fused

    @functools.cached_property
    def _summary_cache(self) -> dict:
        return {}

    def score_models(self) -> list[str]:
        """Models in the scores that are not baselines."""
        if self.scores is None:
            return []
        return [str(m) for m in self.scores["model"].values
                if not str(m).startswith(BASELINE_PREFIX)]

    def layer_summary(
        self, metric: str, method: str, variant: str = "frozen", percentile: int | None = None,
    ) -> pd.DataFrame:
        """Per model and layer: mean over images and a 95 % percentile-bootstrap CI.

        Each model uses ``method`` when it has scores for it, else its primary method (labelled
        ``model (method)``). Head: ``-1`` (the head-mean map). Rows ``model, method, label,
        layer, mean, lo, hi, n`` (``n`` images with a finite score); NaN-only layers dropped.
        """
        key = ("summary", metric, method, variant, percentile)
        if key in self._summary_cache:
            return self._summary_cache[key]
        rows = []
        if self.scores is not None and metric in self.metrics:
            table, _ = self._model_layer_table(metric, variant, percentile)
            methods = [str(m) for m in table["method"].values]
            layers = [int(v) for v in table["layer"].values]
            for model in self.score_models():
                if model not in table.indexes["model"]:
                    continue
                vals = table.sel(model=model).values  # (method, layer, image)
                have = [m for m, v in zip(methods, vals) if np.isfinite(v).any()]
                if not have:
                    continue
                use = method if method in have else next(
                    (m for m in _PRIMARY_ORDER if m in have), have[0])
                label = model if use == method else f"{model} ({use})"
                mv = vals[methods.index(use)]
                for li, layer in enumerate(layers):
                    if not np.isfinite(mv[li]).any():
                        continue
                    mean, lo, hi = _bootstrap_ci(mv[li], seed=li)
                    rows.append((model, use, label, layer, mean, lo, hi,
                                 int(np.isfinite(mv[li]).sum())))
        df = pd.DataFrame(rows, columns=["model", "method", "label", "layer", "mean", "lo",
                                         "hi", "n"])
        self._summary_cache[key] = df
        return df

    def baselines(self, metric: str, percentile: int | None = None) -> dict[str, float]:
        """Mean over images of each baseline pseudo-model (``baseline:*``) for a metric."""
        if self.scores is None or metric not in self.metrics:
            return {}
        out = {}
        table, _ = self._model_layer_table(metric, "frozen", percentile) \
            if "frozen" in self.scores.indexes["variant"] else (None, None)
        if table is None:
            return {}
        for m in table["model"].values:
            if str(m).startswith(BASELINE_PREFIX):
                vals = table.sel(model=m).values
                finite = vals[np.isfinite(vals)]
                if finite.size:
                    out[str(m)[len(BASELINE_PREFIX):]] = float(finite.mean())
        return out

    def leaderboard(
        self, method: str, variant: str = "frozen", percentile: int | None = None,
        metrics: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Models × metrics at each model's best layer (by the mean; direction-aware), with
        95 % bootstrap CIs over images, plus baseline rows.

        Columns: ``model, method`` then per metric ``<m>``, ``<m> lo``, ``<m> hi``,
        ``<m> layer``. The best layer is picked on the same images it is reported on, so the
        value is optimistic; compare models, not against a held-out number.
        """
        metrics = list(metrics) if metrics is not None else self.metrics
        recs: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            label = self.metric_label(metric, percentile)
            lower = self.metric_attrs(metric)["direction"] == "lower"
            summ = self.layer_summary(metric, method, variant, percentile)
            for model, df in summ.groupby("model", sort=False):
                best = df.loc[df["mean"].idxmin() if lower else df["mean"].idxmax()]
                rec = recs.setdefault(str(model), {"model": str(model),
                                                   "method": str(best["method"])})
                rec[label] = best["mean"]
                rec[f"{label} lo"] = best["lo"]
                rec[f"{label} hi"] = best["hi"]
                rec[f"{label} layer"] = int(best["layer"])
            if self.scores is not None and "frozen" in self.scores.indexes["variant"]:
                table, _ = self._model_layer_table(metric, "frozen", percentile)
                for m in table["model"].values:
                    if not str(m).startswith(BASELINE_PREFIX):
                        continue
                    mean, lo, hi = _bootstrap_ci(np.nanmean(table.sel(model=m).values,
                                                            axis=(0, 1)))
                    if not np.isfinite(mean):
                        continue
                    rec = recs.setdefault(str(m), {"model": str(m), "method": "baseline"})
                    rec[label], rec[f"{label} lo"], rec[f"{label} hi"] = mean, lo, hi
        df = pd.DataFrame(list(recs.values()))
        for c in [c for c in df.columns if c.endswith(" layer")]:
            df[c] = df[c].astype("Int64")  # whole layers; <NA> for baselines
        return df
