"""The attention store: a resumable Zarr ``xarray.DataTree`` with one group per model key.

Layout (docs/SCHEMA.md, "Attention store"): every group holds one variable per attention method
with dims ``(variant, image_id, <per-image dims>)`` and a ``complete`` flag ``(variant,
image_id)``. Groups are pre-allocated full of NaN (``complete`` False) and chunked one image per
chunk, so writers of disjoint images never touch the same chunk and a crashed run can resume.

Writing protocol (why a map is never readable as complete before it is whole):

1. :func:`init_model_group` creates (or checks, or extends by a variant) the group under an
   exclusive file lock, then re-consolidates the metadata.
2. :func:`write_maps` writes the maps of a batch by region (``to_zarr(region=...)``), and only
   after every map of those images is on disk, flips ``complete`` to True in a separate write.

Everything that changes metadata (group creation, variant append, attrs) happens under the lock
and ends by consolidating the metadata; region writes change no metadata and need no lock.
Unwritten chunks read as the Zarr fill value (NaN, or False for ``complete``), so
pre-allocation writes no map chunk at all.

Reading: :func:`open_store` opens the tree lazily and read-only; :func:`select_map` picks one
``(y, x)`` map; :func:`open_scores` opens the scores next to a store (:func:`scores_path`;
the fine-tuning shift table lies beside them, :func:`shift_path`).
:mod:`.fast` reads many small slices without xarray's per-call overhead: :func:`read_cube`
(every map of one image), :func:`read_map` (one map, equal to :func:`select_map`'s),
:func:`pick_map`, :func:`read_embedding`, on ``open_root`` / ``direct_array`` / ``read_slice``.
:func:`head_mean` is the one head-mean rule; :data:`MAP_METHODS` the one list of map variables.

Submodules: ``schema`` (names, dims, dtypes, map methods), ``attrs`` (JSON attrs,
provenance), ``layout`` (lock, root attrs, pre-allocation), ``write`` (region writes,
completion), ``read`` (opening, selection), ``fast`` (raw Zarr slices), ``maps`` (head-mean
rule, scores and shift paths). Import from :mod:`ssl_attn.store` itself.
"""

from __future__ import annotations

from .attrs import decode_attr, decode_attrs, encode_attrs, provenance
from .fast import (
    direct_array,
    open_root,
    pick_map,
    read_cube,
    read_embedding,
    read_map,
    read_slice,
)
from .layout import (
    add_skipped,
    check_target,
    check_writable,
    init_model_group,
    init_store,
    store_lock,
)
from .maps import head_mean, scores_path, shift_path
from .read import model_groups, open_scores, open_store, select_map
from .schema import (
    COMPLETE,
    IMAGE_COORDS,
    IMAGE_DIM,
    MAP_METHODS,
    SCHEMA_ATTR,
    SCHEMA_VERSION,
    VARIABLE_DIMS,
    VARIABLE_DTYPES,
    VARIANT_DIM,
    SchemaVersionError,
    StoreError,
    check_schema,
)
from .write import completed, write_maps

__all__ = [
    "COMPLETE",
    "IMAGE_COORDS",
    "IMAGE_DIM",
    "MAP_METHODS",
    "SCHEMA_ATTR",
    "SCHEMA_VERSION",
    "VARIABLE_DIMS",
    "VARIABLE_DTYPES",
    "VARIANT_DIM",
    "SchemaVersionError",
    "StoreError",
    "add_skipped",
    "check_schema",
    "check_target",
    "check_writable",
    "completed",
    "decode_attr",
    "decode_attrs",
    "direct_array",
    "encode_attrs",
    "head_mean",
    "init_model_group",
    "init_store",
    "model_groups",
    "open_root",
    "open_scores",
    "open_store",
    "pick_map",
    "provenance",
    "read_cube",
    "read_embedding",
    "read_map",
    "read_slice",
    "scores_path",
    "select_map",
    "shift_path",
    "store_lock",
    "write_maps",
]

