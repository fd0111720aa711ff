"""Read-only data access for the explorer: the attention store, its scores and the dataset.

Everything is opened lazily once and read through small, cached slices:

* maps: one ``(variant, image_id)`` cube per model/method (``[layer,] [head,] y, x``; one Zarr
  chunk, a few hundred KB) is read once by the store's fast path
  (:func:`ssl_attn.store.read_cube`) and cached (``functools.lru_cache``); layer and head
  changes are then :func:`ssl_attn.store.pick_map` on the cached cube (the head-mean is
  :func:`ssl_attn.store.head_mean`, so the map drawn is the map scored);
* scores (:mod:`ssl_attn.explorer.scores`): one metric's ``(layer, head, image_id)`` block per
  model/variant/method, or its ``(model, method, layer, image_id)`` table for the per-layer
  curves, cached per key;
* photos: decoded once per image at display size (JPEG draft mode for speed), cached.

All of this is shared by the sessions of one server process: :func:`shared_data` returns one
:class:`ExplorerData` per store (keyed by the resolved store, scores and dataset paths and the
store's on-disk signature, :func:`store_signature`), so the opened tree, the scores Dataset, the
dataset tables, the image table, decoded photos/thumbnails, cubes, score blocks and the
per-layer summaries are read once per process, not once per browser tab. Every cache is bounded
(LRU by entry count) and every cached array is read-only; the instance holds no per-session
state (selections and Bokeh models live in :class:`~ssl_attn.explorer.state.ExplorerState` and
the views).

Reading the schema is the store's job (:mod:`ssl_attn.store`: opening, map variables, attrs,
scores path, head-mean); this module only caches and adapts it to the views. Nothing here
writes: stores are opened read-only and no cache is ever written to disk.
"""

from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ssl_attn.explorer.scores import ScoresMixin, fallback_method
from ssl_attn.explorer.text import error_line, md_code, md_escape, scrub, shorten, show_path
from ssl_attn.store import (
    MAP_METHODS,
    decode_attrs,
    model_groups,
    open_root,
    open_scores,
    pick_map,
    read_cube,
    read_embedding,
    scores_path,
    shift_path,
)

__all__ = [
    "ExplorerData",
    "PathRejectedError",
    "resolve_store_path",
]


class PathRejectedError(ValueError):
    """A store path requested from outside (e.g. a URL parameter) is not allowed. The message
    quotes the request (shortened) and never names a server path."""


#: Longest ``?store=`` value considered (characters); longer requests are refused unopened.
MAX_REQUEST_CHARS = 1024


def resolve_store_path(requested: str | os.PathLike, data_dir: str | os.PathLike) -> Path:
    """Resolve a store path requested by a client (``?store=...``) strictly inside ``data_dir``.

    Relative paths are taken relative to ``data_dir``; symlinks and ``..`` are resolved first.
    Raises :class:`PathRejectedError` when the result lies outside ``data_dir`` (absolute paths
    elsewhere, ``../`` escapes, symlinks pointing out), so a URL can never open other files, and
    for requests the file system cannot take (over :data:`MAX_REQUEST_CHARS` characters, a name
    over 255 bytes, NUL, any ``OSError`` while resolving). Messages quote the request shortened
    (:func:`~ssl_attn.explorer.text.shorten`) and name no server path.
    """
    base = Path(data_dir).resolve()
    text = str(requested).strip()
    quoted = repr(shorten(scrub(text, base), 80))  # the request, without server paths
    if not text or "\x00" in text:
        raise PathRejectedError(f"store parameter {quoted} is empty or malformed")
    p = Path(text)
    if len(text) > MAX_REQUEST_CHARS or any(len(os.fsencode(part)) > 255 for part in p.parts):
        raise PathRejectedError(f"store parameter {quoted} is too long ({len(text):,} characters)")
    try:
        candidate = (p if p.is_absolute() else base / p).resolve()
    except (OSError, RuntimeError) as exc:  # e.g. a symlink loop
        raise PathRejectedError(f"store {quoted} cannot be resolved "
                                f"({type(exc).__name__})") from None
    if not candidate.is_relative_to(base):
        raise PathRejectedError(
            f"store {quoted} is outside the data directory; only stores under the data "
            "directory can be opened from a URL")
    return candidate


class ExplorerData(ScoresMixin):
    """Lazy, read-only access to one store, its scores and its dataset.

    Parameters
    ----------
    store : path of the attention store (``X.zarr``).
    scores : path of the scores (default :func:`ssl_attn.store.scores_path` of the store,
        ``X.scores.zarr`` next to it); optional.
    data : the WikiChurches(-format) dataset folder for photos and boxes (default: the store's
        root attr ``dataset``); optional — without it maps are drawn without photo and boxes.
    dataset : an already opened dataset object (``.images``, ``.boxes``, ``.load_image``,
        ``.is_synthetic``), instead of ``data``.
    photo_size : longest side (px) of the displayed photos (they are downscaled copies; the plot
        frame stays in full-size pixels).
    data_dir : the served data directory: messages show paths relative to it (default: the
        working directory), never absolute (:func:`ssl_attn.explorer.text.show_path`).

    ``problems`` lists messages about what is missing, as Markdown whose paths and exception
    texts are escaped (:func:`ssl_attn.explorer.text.md_code` / ``md_escape``), for the
    explorer's banners; ``ok`` is False when the store itself cannot be opened.
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
        data_dir: str | os.PathLike | None = None,
    ) -> None:
        self.store_path = Path(store)
        self.data_dir = data_dir
        self.scores_path = Path(scores) if scores is not None else scores_path(store)
        self.shift_path = shift_path(store)
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
        # Per-instance caches (a method-level functools.cache would keep every session's
        # ExplorerData alive in a long-running server).
        self._coords = functools.cache(self._read_coords)
        self._methods = functools.cache(self._read_methods)
        self._boxes_of = functools.lru_cache(maxsize=512)(self._read_boxes)
        self._open_store()
        if self.tree is not None:
            self._open_scores()
            if self.dataset is None:
                self._open_dataset(data)

    # ------------------------------------------------------------------ opening
    def _path(self, path: str | os.PathLike) -> str:
        """A path for a message: relative to the data directory, as a code span."""
        return md_code(show_path(path, self.data_dir))

    def _reason(self, exc: BaseException) -> str:
        """An exception for a message: one escaped line, server paths scrubbed."""
        return md_escape(error_line(exc, self.data_dir), limit=None)

    def _exists(self, path: Path) -> bool:
        try:
            return path.exists()
        except OSError:  # e.g. a name too long: not there
            return False

    def _open_store(self) -> None:
        from ssl_attn.store import SchemaVersionError, open_store

        if not self._exists(self.store_path):
            self.problems.append(
                f"No attention store at {self._path(self.store_path)}. Create one with "
                "`make demo-data` (synthetic demo) or `ssl-attn extract --store PATH`, or pass "
                "`--store PATH` / `SSL_ATTN_STORE`.")
            return
        try:
            self.tree = open_store(self.store_path)
        except SchemaVersionError as exc:  # a newer ssl-attn wrote it: say so, not "unreadable"
            self.problems.append(
                f"The store {self._path(self.store_path)} has schema version "
                f"{md_escape(str(exc.found))}, newer than this ssl-attn reads (up to "
                f"{exc.supported}). Upgrade ssl-attn to open it.")
            return
        except Exception as exc:  # report any unreadable store as a message, never crash the app
            self.problems.append(f"Cannot open the store {self._path(self.store_path)}: "
                                 f"{self._reason(exc)}")
            return
        if not self.models:
            self.problems.append(f"The store {self._path(self.store_path)} has no model groups "
                                 "yet; run `ssl-attn extract` first.")

    #: Dims of the scores that must carry coordinate values (they are looked up by value).
    SCORE_COORDS = ("model", "variant", "method", "layer", "head", "image_id")

    def _open_scores(self) -> None:
        if not self._exists(self.scores_path):
            command = f"ssl-attn score --store {show_path(self.store_path, self.data_dir)}"
            self.problems.append(
                f"No scores at {self._path(self.scores_path)}: the layer×head grid, curves and "
                "leaderboard need them. Run "
                f"{md_code(command)}.")
            return
        try:
            self.scores = open_scores(self.scores_path)
        except Exception as exc:  # unreadable scores: report, keep the maps usable
            self.problems.append(f"Cannot open the scores {self._path(self.scores_path)}: "
                                 f"{self._reason(exc)}")
            return
        lacking = [d for d in self.SCORE_COORDS
                   if d in self.scores.dims and d not in self.scores.coords]
        if lacking:  # looked up by value everywhere: unusable, keep the maps
            self.scores = None
            self.problems.append(
                f"The scores {self._path(self.scores_path)} lack the coordinate(s) "
                f"{md_escape(', '.join(lacking))}: they are not shown. Rerun `ssl-attn score`.")

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
            if self._exists(cand) and cand.is_dir():
                from ssl_attn.wikichurches import WikiChurches

                try:
                    self.dataset = WikiChurches(cand)
                    _ = self.dataset.boxes
                except Exception as exc:  # unreadable dataset: report, keep maps usable
                    self.dataset = None
                    self.problems.append(f"Cannot read the dataset {self._path(cand)}: "
                                         f"{self._reason(exc)}")
                return
        self.problems.append(f"Dataset folder {self._path(root)} not found: photos and boxes are "
                             "not shown. Pass --data PATH.")

    @functools.cached_property
    def _shift(self) -> tuple[xr.Dataset | None, str | None]:
        from ssl_attn.explorer.finetune_view import load_shift

        if not self._exists(self.shift_path):
            return None, None
        try:
            return load_shift(self.shift_path), None
        except Exception as exc:  # unreadable shift table: report it in its tab
            return None, (f"Cannot open the shift table {self._path(self.shift_path)}: "
                          f"{self._reason(exc)}")

    @property
    def shift(self) -> xr.Dataset | None:
        """The Q2 shift table (``X.shift.zarr`` beside the store) in the fine-tuning view's
        names (:func:`ssl_attn.explorer.finetune_view.load_shift`), opened on first use and
        shared by every session; None when absent or unreadable (:attr:`shift_problem`)."""
        return self._shift[0]

    @property
    def shift_problem(self) -> str | None:
        """Why the shift table cannot be shown (Markdown, escaped), or None."""
        return self._shift[1]

    @property
    def ok(self) -> bool:
        """True when the store is open and has at least one model group."""
        return self.tree is not None and bool(self.models)

    # ------------------------------------------------------------------ store facts
    @functools.cached_property
    def root_attrs(self) -> dict[str, Any]:
        """The store's root attrs (JSON attrs decoded by :func:`ssl_attn.store.decode_attrs`)."""
        if self.tree is None:
            return {}
        return decode_attrs(self.tree.attrs)

    @property
    def synthetic(self) -> bool:
        """True when the store (root attr ``synthetic``) or the dataset is synthetic."""
        flag = bool(self.root_attrs.get("synthetic", False))
        ds_flag = bool(getattr(self.dataset, "is_synthetic", False))
        return flag or ds_flag

    def model_attrs(self, model: str) -> dict[str, Any]:
        """A model group's attrs (JSON attrs decoded by :func:`ssl_attn.store.decode_attrs`)."""
        return decode_attrs(self._group(model).attrs)

    @functools.cached_property
    def models(self) -> list[str]:
        """Model group names, sorted."""
        return model_groups(self.tree) if self.tree is not None else []

    @functools.cached_property
    def _groups(self) -> dict[str, xr.Dataset]:
        return {m: self.tree[m].to_dataset() for m in self.models}

    def _group(self, model: str) -> xr.Dataset:
        try:
            return self._groups[model]
        except KeyError:
            raise KeyError(f"{self.store_path}: no model group {model!r} "
                           f"(has {self.models})") from None

    def _read_coords(self, model: str, method: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        da = self._group(model)[method]
        layers = tuple(int(v) for v in da["layer"].values) if "layer" in da.dims else ()
        heads = tuple(int(v) for v in da["head"].values) if "head" in da.dims else ()
        return layers, heads

    def _read_methods(self, model: str) -> tuple[str, ...]:
        ds = self._group(model)
        return tuple(m for m in MAP_METHODS if m in ds.data_vars)

    def methods(self, model: str) -> list[str]:
        """Map variables of a model group, in :data:`MAP_METHODS` order."""
        return list(self._methods(model))

    def primary_method(self, model: str, preferred: str | None = None) -> str | None:
        """``preferred`` when the model has it, else its first method in a fixed order."""
        return fallback_method(self.methods(model), preferred)

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
                         "features": tuple(f), "n_boxes": len(self._box_rows.get(iid, ()))})
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
    def _box_rows(self) -> dict[str, np.ndarray]:
        """image_id → row positions of its boxes in the dataset's boxes table, in
        ``box_index`` order (one groupby pass; the per-image tables are built on demand)."""
        if self.dataset is None:
            return {}
        b = self.dataset.boxes
        bidx = b["box_index"].to_numpy()
        return {str(k): pos[np.argsort(bidx[pos], kind="stable")]
                for k, pos in b.groupby("image_id", sort=False).indices.items()}

    def _read_boxes(self, image_id: str) -> pd.DataFrame:
        return self.dataset.boxes.iloc[self._box_rows[image_id]].reset_index(drop=True)

    def boxes(self, image_id: str) -> pd.DataFrame:
        """The expert boxes of one image (dataset rows, ``box_index`` order); empty if none."""
        if image_id not in self._box_rows:
            return pd.DataFrame(columns=["image_id", "box_index", "label", "feature", "left",
                                         "top", "width", "height"])
        return self._boxes_of(image_id)

    # ------------------------------------------------------------------ maps
    @functools.cached_property
    def _root(self):
        return open_root(self.store_path)

    def _read_cube(self, model: str, variant: str, method: str, image_id: str) -> np.ndarray:
        ds = self._group(model)
        try:
            out = read_cube(self._root, ds, model, method, variant, image_id)
        except KeyError as exc:  # name the store too, as every other message here does
            raise KeyError(f"{self.store_path}: {exc.args[0]}") from None
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
        """One map ``(gh, gw)`` (float32; row 0 = top of the photo; read-only).

        ``layer``: a layer coordinate value (required for methods with layers; ignored, may be
        ``None``/``-1``, for methods without). ``head``: a head coordinate value, or
        ``-1``/``None`` for :func:`ssl_attn.store.head_mean` (NaN-propagating float32 mean: a
        map with any NaN head is NaN there; ignored for methods without heads). The values are
        :func:`ssl_attn.store.read_map`'s (and so ``select_map``'s) for that selection. Raises
        ``KeyError`` naming what is missing.
        """
        cube = self.cube(model, variant, method, image_id)
        layers = self.layers(model, method)
        heads = self.heads(model, method)
        if layers and layer is None:  # the views always name a layer; no silent "last layer"
            raise KeyError(f"{model}/{method}: no layer None (has {layers})")
        return pick_map(cube, layers, heads, layer if layers else None,
                        head if heads else None, name=f"{model}/{method}")

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
        emb = read_embedding(self._root, self._group(model), model, variant, image_id)
        emb.setflags(write=False)
        return emb

    def embedding(self, model: str, variant: str, image_id: str) -> np.ndarray | None:
        """Final-layer patch embeddings ``(gh, gw, C)`` float32, or None if not stored."""
        return self._embedding(model, variant, image_id)

    # ------------------------------------------------------------------ photos
    def _load_pil(self, image_id: str, size: int):
        """The photo as an RGB ``PIL.Image`` whose longest side is at most ``size`` px.

        Decoded by the dataset's own loader (``WikiChurches.load_image(max_side=size)``: JPEG
        DCT scaling before decoding, the one owner of the image-id → path rule and of the
        decompression-bomb limit), then shrunk with ``thumbnail``. A dataset object whose
        loader takes no ``max_side`` is decoded in full. EXIF orientation is not applied
        (boxes refer to the stored pixel grid).
        """
        load = self.dataset.load_image
        if "max_side" in inspect.signature(load).parameters:
            im = load(image_id, max_side=size)
        else:
            im = load(image_id)
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
