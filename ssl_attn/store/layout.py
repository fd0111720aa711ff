"""Creating and extending the store: the lock, root attrs, and NaN-filled model groups.

Everything here changes metadata, so it runs under the store's exclusive lock and ends by
re-consolidating the metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from .attrs import decode_attr, encode_attrs
from .schema import (
    _KNOWN_DIMS,
    COMPLETE,
    IMAGE_COORDS,
    IMAGE_DIM,
    SCHEMA_ATTR,
    SCHEMA_VERSION,
    VARIABLE_DTYPES,
    VARIANT_DIM,
    StoreError,
    check_schema,
)

_LOCK_NAME = ".lock"
_LOCK_TIMEOUT_S = 600.0


@contextmanager
def store_lock(path: str | os.PathLike, timeout: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the store's exclusive inter-process lock (``<store>/.lock``) for a block.

    The lock is not re-entrant across calls: functions in this module take it once, at their
    top level. Uses the ``filelock`` package (``fcntl.flock`` on POSIX), so it also excludes
    threads of one process that open their own lock.
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path / _LOCK_NAME), thread_local=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout as exc:
        raise TimeoutError(
            f"{path}: could not take the store lock {path / _LOCK_NAME} within {timeout:.0f} s; "
            "another process is writing metadata. If none is, delete the lock file."
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _consolidate(path: Path) -> None:
    """Rewrite the consolidated metadata (call under the lock, after any metadata change)."""
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 spec (xarray reads it fine)
        # and that the lock file is not a zarr node; both are expected here.
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def _has_zarr_root(path: Path) -> bool:
    return (path / "zarr.json").is_file()


def _root_attrs(path: Path) -> dict[str, Any]:
    """The root attrs as stored in ``zarr.json`` (read directly: no write access needed)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: unreadable zarr.json ({exc}); not an attention store?"
                         ) from None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        raise StoreError(f"{path}: zarr.json is not a Zarr v3 group; not an attention store.")
    attrs = meta.get("attributes") or {}
    return attrs if isinstance(attrs, dict) else {}


def check_target(path: str | os.PathLike) -> None:
    """Refuse to write a store at ``path`` when something else is there, before anything is
    written or computed.

    Fine: no such path, an empty folder (or one holding only the lock file), or a store
    (``zarr.json`` present) whose schema version this ssl-attn reads. Anything else — a file,
    or a non-empty folder without ``zarr.json`` — raises :class:`StoreError` naming it;
    a newer store raises :class:`~.schema.SchemaVersionError`.
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise StoreError(f"{path}: exists and is not a folder; --store needs a *.zarr folder "
                         "(new or made by ssl-attn).")
    if _has_zarr_root(path):
        check_schema(path, _root_attrs(path))
        return
    other = sorted(p.name for p in path.iterdir() if p.name != _LOCK_NAME)
    if other:
        raise StoreError(
            f"{path}: this folder is not an attention store (no zarr.json) and is not empty "
            f"(holds {other[:3]}{' ...' if len(other) > 3 else ''}); refusing to write into it. "
            "Pass a new path (e.g. results/maps.zarr) or an existing store."
        )


def check_writable(path: str | os.PathLike) -> None:
    """Raise PermissionError naming ``path`` (a store, or the folder a new one goes in) when
    this process cannot write there; call before computing anything."""
    path = Path(path)
    where = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if not os.access(where, os.W_OK | os.X_OK):
        raise PermissionError(f"{where}: not writable; cannot write the store {path} here.")


def init_store(path: str | os.PathLike, *, synthetic: bool, dataset: str) -> None:
    """Create the store root (attrs ``synthetic``, ``dataset``, ``skipped_images`` and
    ``ssl_attn_schema``) if absent.

    Refuses (:class:`StoreError`) a path that is neither new, empty nor a store
    (:func:`check_target`), and a store of a newer schema version. An existing root is checked:
    mixing synthetic and real data in one store raises :class:`StoreError`. ``dataset`` of an
    existing store is kept. A complete existing root is only read (no lock, no write access).
    """
    path = Path(path)
    check_target(path)

    def check(attrs: Mapping[str, Any]) -> bool:
        """True when the root is complete; raises on a synthetic/real mix."""
        have = attrs.get("synthetic")
        if have is not None and bool(have) != bool(synthetic):
            raise StoreError(
                f"{path}: the store holds {'synthetic' if have else 'real'} data (root attr "
                f"'synthetic' = {have}) but this run is {'synthetic' if synthetic else 'real'}"
                "; write to another store path."
            )
        return have is not None

    if _has_zarr_root(path) and check(_root_attrs(path)):
        return  # nothing to write: no lock, so a read-only store with nothing to do works
    with store_lock(path):
        if _has_zarr_root(path):
            root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
            check_schema(path, root.attrs)
            if check(root.attrs):
                return
        else:
            root = zarr.open_group(str(path), mode="a", zarr_format=3)
        root.attrs.update(
            encode_attrs({"synthetic": bool(synthetic), "dataset": str(dataset),
                          "skipped_images": [], SCHEMA_ATTR: SCHEMA_VERSION})
        )  # fmt: skip
        _consolidate(path)


def add_skipped(path: str | os.PathLike, records: Sequence[Mapping[str, str]],
                clear: Sequence[Mapping[str, str]] = ()) -> list[dict[str, str]]:  # fmt: skip
    """Merge skipped-image records into the root attr ``skipped_images`` (under the lock).

    Each record is ``{image_id, model, reason}`` (``variant`` optional); a record replaces an
    older one for the same ``(image_id, model, variant)``. Records in ``clear`` (same keys, no
    reason needed) are removed, e.g. images that a later run computed. Returns the new list.
    """
    path = Path(path)

    def key(r: Mapping[str, str]) -> tuple[str, str, str]:
        return (str(r["image_id"]), str(r.get("model", "")), str(r.get("variant", "")))

    with store_lock(path):
        root = zarr.open_group(str(path), mode="a", use_consolidated=False)
        merged = {key(r): dict(r) for r in decode_attr(root.attrs.get("skipped_images", "[]"))}
        for r in clear:
            merged.pop(key(r), None)
        for r in records:
            merged[key(r)] = {k: str(v) for k, v in r.items()}
        new = [merged[k] for k in sorted(merged)]
        root.attrs["skipped_images"] = json.dumps(new)
        _consolidate(path)
    return new


# --------------------------------------------------------------------------------------------
# pre-allocation


def _per_image_dims(name: str, dims: Sequence[str]) -> tuple[str, ...]:
    dims = tuple(d for d in dims if d not in (VARIANT_DIM, IMAGE_DIM))
    unknown = [d for d in dims if d not in _KNOWN_DIMS]
    if unknown:
        raise StoreError(
            f"variable {name!r}: unknown dims {unknown}; allowed per-image dims are "
            f"{list(_KNOWN_DIMS)} (after 'variant', 'image_id')."
        )
    return dims


def _empty_group(
    *,
    image_ids: Sequence[str],
    image_coords: Mapping[str, Sequence[Any]],
    layers: Sequence[int],
    heads: Sequence[int],
    grid: tuple[int, int],
    channels: int | None,
    variables: Mapping[str, tuple[str, ...]],
    variant: str,
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """The NaN-filled Dataset of a new group (one variant) and its zarr encoding."""
    gh, gw = (int(g) for g in grid)
    n = len(image_ids)
    sizes = {"layer": len(layers), "head": len(heads), "y": gh, "x": gw}
    if channels is not None:
        sizes["channel"] = int(channels)
    coords: dict[str, Any] = {
        VARIANT_DIM: np.array([variant], dtype=object),
        IMAGE_DIM: np.array(list(image_ids), dtype=object),
        "layer": np.asarray(list(layers), dtype=np.int64),
        "head": np.asarray(list(heads), dtype=np.int64),
        "y": (np.arange(gh) + 0.5) / gh,
        "x": (np.arange(gw) + 0.5) / gw,
    }
    if channels is not None:
        coords["channel"] = np.arange(int(channels), dtype=np.int64)
    for name, values in image_coords.items():
        values = list(values)
        if len(values) != n:
            raise StoreError(
                f"image coordinate {name!r} has {len(values)} values for {n} image_ids."
            )
        if name == "style" or any(isinstance(v, str) or v is None for v in values):
            coords[name] = (IMAGE_DIM, np.array(["" if v is None else str(v) for v in values],
                                                dtype=object))  # fmt: skip
        else:
            coords[name] = (IMAGE_DIM, np.asarray(values, dtype=np.int64))
    data_vars: dict[str, Any] = {}
    encoding: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name, dims in variables.items():
        missing = [d for d in dims if d not in sizes]
        if missing:
            raise StoreError(f"variable {name!r} needs dim(s) {missing}: pass channels=.")
        shape = (1, n, *(sizes[d] for d in dims))
        dtype = np.dtype(VARIABLE_DTYPES.get(name, "float32"))
        # A broadcast view costs no memory; zarr skips chunks equal to the fill value (NaN), so
        # pre-allocation writes metadata only.
        data = np.broadcast_to(dtype.type(np.nan), shape)
        data_vars[name] = ((VARIANT_DIM, IMAGE_DIM, *dims), data)
        encoding[name] = {"chunks": (1, 1, *shape[2:]), "fill_value": dtype.type(np.nan)}
        used.update(dims)
    data_vars[COMPLETE] = ((VARIANT_DIM, IMAGE_DIM), np.broadcast_to(np.False_, (1, n)))
    encoding[COMPLETE] = {"chunks": (1, 1)}
    coords = {k: v for k, v in coords.items() if k not in _KNOWN_DIMS or k in used}
    return xr.Dataset(data_vars, coords=coords), encoding


def _open_group_ds(path: Path, model_key: str) -> xr.Dataset | None:
    """The group as stored (actual, not consolidated, metadata), lazily; None if absent."""
    if not (path / model_key / "zarr.json").is_file():
        return None
    return xr.open_zarr(str(path), group=model_key, consolidated=False, chunks=None)


def _preview(values: np.ndarray) -> list[Any]:
    return [*values[:5].tolist(), *(["..."] if len(values) > 5 else [])]


def _check_matches(path: Path, model_key: str, have: xr.Dataset, want: xr.Dataset) -> None:
    """Raise StoreError naming the first field where an existing group differs from a request."""
    fix = (
        f"Use the same settings as the run that created it, write to a new store, or delete "
        f"the group ({path / model_key}) to start it again."
    )

    def fail(field: str, a: Any, b: Any) -> None:
        raise StoreError(
            f"{path}: group {model_key!r} exists with {field} = {a}, but this call asks for "
            f"{b}. {fix}"
        )

    have_grid = (have.sizes.get("y"), have.sizes.get("x"))
    want_grid = (want.sizes.get("y"), want.sizes.get("x"))
    if have_grid != want_grid:
        fail("grid (gh, gw)", have_grid, want_grid)
    have_vars = {k: tuple(v.dims) for k, v in have.data_vars.items()}
    want_vars = {k: tuple(v.dims) for k, v in want.data_vars.items()}
    if have_vars != want_vars:
        fail("variables", have_vars, want_vars)
    for name in (IMAGE_DIM, "layer", "head", "y", "x", "channel"):
        if (name in have.coords) != (name in want.coords):
            fail(f"coordinate {name!r} presence", name in have.coords, name in want.coords)
        if name not in have.coords:
            continue
        a, b = have[name].values, want[name].values
        if a.dtype.kind in "OUT" or b.dtype.kind in "OUT":  # StringDType has kind "T"
            a, b = (np.array([str(x) for x in v.tolist()], dtype=object) for v in (a, b))
        if a.shape != b.shape or not np.array_equal(a, b):
            fail(f"coordinate {name!r} (n={a.size})", _preview(a), f"{_preview(b)} (n={b.size})")


def _is_unknown(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, int | np.integer) and value < 0)


def _merge_image_coords(path: Path, model_key: str, have: xr.Dataset, want: xr.Dataset) -> None:
    """Fill per-image coords the group stored as unknown (-1 / "") with newly known values.

    An image whose file was unreadable when the group was created gets size -1; once a later
    run can read it, its size is filled in. Two different known values raise StoreError.
    """
    for name in IMAGE_COORDS:
        if name not in have.coords or name not in want.coords:
            continue
        old, new = have[name].values.tolist(), want[name].values.tolist()
        merged = list(old)
        for k, (a, b) in enumerate(zip(old, new, strict=True)):
            if a == b or _is_unknown(b):
                continue
            if not _is_unknown(a):
                raise StoreError(
                    f"{path}: group {model_key!r} stores {name} = {a!r} for image "
                    f"{have[IMAGE_DIM].values[k]!s} but this call has {b!r}; the dataset "
                    "changed since the store was made. Write to a new store."
                )
            merged[k] = b
        if merged != old:
            array = zarr.open_array(str(path / model_key / name), mode="r+")
            array[:] = np.asarray(merged, dtype=object if name == "style" else np.int64)


def _any_complete(path: Path, model_key: str) -> bool:
    """True when the group's ``complete`` array exists and flags any image of any variant."""
    try:
        flags = zarr.open_array(str(path / model_key / COMPLETE), mode="r")
        return bool(np.any(flags[...]))
    except Exception:  # absent or unreadable: no image is known to be complete
        return False


def _usable_group(path: Path, model_key: str, want: xr.Dataset) -> xr.Dataset | None:
    """The existing group (None if absent), checked against ``want``.

    A group that does not match or cannot even be read, but holds no complete image in any
    variant, is what a run killed while creating it leaves behind: it holds nothing, so it is
    deleted (None returned: the caller creates it again). With complete images the mismatch
    raises :class:`StoreError` naming the field. Call under the lock.
    """
    group_dir = path / model_key
    if not group_dir.exists():
        return None
    try:
        have = _open_group_ds(path, model_key)
        if have is None:
            raise StoreError(f"{group_dir}: no zarr.json")
        _check_matches(path, model_key, have, want)
        return have
    except Exception:
        if _any_complete(path, model_key):
            raise
    warnings.warn(f"{group_dir}: half-created group with no complete image (a run was killed "
                  "while creating it); creating it again.", UserWarning, stacklevel=3)
    shutil.rmtree(group_dir)
    return None


def init_model_group(
    path: str | os.PathLike,
    model_key: str,
    *,
    image_ids: Sequence[str],
    image_coords: Mapping[str, Sequence[Any]] | None = None,
    layers: Sequence[int] = (),
    heads: Sequence[int] = (),
    grid: tuple[int, int],
    variables: Mapping[str, Sequence[str]],
    variant: str = "frozen",
    attrs: Mapping[str, Any] | None = None,
    channels: int | None = None,
) -> bool:
    """Pre-allocate (or check, or extend by a variant) the group of one model.

    Args:
        path: the store directory (``*.zarr``); created if absent.
        model_key: group name, e.g. ``"dinov2"``.
        image_ids: every image the store holds, in store order (sorted, by convention).
        image_coords: per-image coordinates aligned with ``image_ids``: ``style`` (str; None
            is stored as ``""``), ``width``, ``height`` (pixels).
        layers: values of the ``layer`` coordinate (e.g. ``range(12)``, or 1..4 for Grad-CAM).
        heads: values of the ``head`` coordinate (e.g. ``range(12)``).
        grid: ``(gh, gw)`` patch grid of the maps; ``y``/``x`` are relative pixel centres.
        variables: ``{name: per-image dims}``, e.g. ``{"cls": ("layer", "head", "y", "x")}``
            (``variant, image_id`` are prepended; see :data:`VARIABLE_DIMS`).
        variant: ``frozen``, ``linear_probe``, ``lora``, ``full``, ...
        attrs: group attrs (model facts and :func:`provenance`); encoded with
            :func:`encode_attrs`. Kept from the first call; every variant's attrs are also
            recorded in the group attr ``variant_provenance`` (JSON ``{variant: attrs}``).
        channels: size of the ``channel`` dim (needed with ``embedding``).

    Every variable is NaN and ``complete`` False until written, chunked one image per chunk.
    Idempotent: with the same arguments a second call changes nothing; a variant the group
    lacks is appended along ``variant``; any other difference raises :class:`StoreError`,
    except in a group with no complete image in any variant (e.g. half-created by a killed
    run), which is deleted and created again. Refuses a path that is not a store
    (:func:`check_target`) and a store of a newer schema version.
    Runs under the store lock, so concurrent first calls from several processes are safe.

    Returns:
        True if this call created the group or appended the variant, False if nothing changed.
    """
    path = Path(path)
    variables = {name: _per_image_dims(name, dims) for name, dims in variables.items()}
    if not variables:
        raise StoreError(f"{path}: group {model_key!r}: no variables given.")
    want, encoding = _empty_group(
        image_ids=image_ids, image_coords=image_coords or {}, layers=layers, heads=heads,
        grid=grid, channels=channels, variables=variables, variant=variant,
    )  # fmt: skip
    attrs = encode_attrs(dict(attrs or {}))
    check_target(path)
    with store_lock(path):
        if not _has_zarr_root(path):
            root = zarr.open_group(str(path), mode="a", zarr_format=3)
            root.attrs[SCHEMA_ATTR] = SCHEMA_VERSION
        check_schema(path, _root_attrs(path))
        have = _usable_group(path, model_key, want)
        changed = True
        if have is None:
            want.attrs = {**attrs, "variant_provenance": json.dumps({variant: attrs})}
            want.to_zarr(str(path), group=model_key, mode="w-", encoding=encoding,
                         consolidated=False, zarr_format=3)  # fmt: skip
        else:
            _merge_image_coords(path, model_key, have, want)
            variants = [str(v) for v in have[VARIANT_DIM].values]
            if variant in variants:
                changed = False
            else:
                extension = want[[*variables, COMPLETE]].drop_vars(
                    [c for c in want.coords if c != VARIANT_DIM]
                )
                # to_zarr(mode="a") replaces the group attrs: carry the existing ones over.
                per_variant = decode_attr(have.attrs.get("variant_provenance", "{}"))
                per_variant[variant] = attrs
                extension.attrs = {**have.attrs, "variant_provenance": json.dumps(per_variant)}
                extension.to_zarr(str(path), group=model_key, mode="a", append_dim=VARIANT_DIM,
                                  consolidated=False)  # fmt: skip
        # Always re-consolidate: also repairs metadata left stale by a crash mid-init.
        _consolidate(path)
    return changed
