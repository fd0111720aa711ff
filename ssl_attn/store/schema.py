"""Names, dims and dtypes of the attention store (docs/SCHEMA.md, "Attention store")."""

from __future__ import annotations

VARIANT_DIM = "variant"
IMAGE_DIM = "image_id"
#: Per-image dims (after ``variant, image_id``) of every variable the attention methods produce.
VARIABLE_DIMS: dict[str, tuple[str, ...]] = {
    "cls": ("layer", "head", "y", "x"),
    "register_mass": ("layer", "head"),
    "cls_self": ("layer", "head"),
    "rollout": ("layer", "y", "x"),
    "mean_received": ("layer", "head", "y", "x"),
    "probe": ("head", "y", "x"),
    "gradcam": ("layer", "y", "x"),
    "embedding": ("y", "x", "channel"),
}
#: Stored dtype per variable; anything not listed is float32.
VARIABLE_DTYPES: dict[str, str] = {"embedding": "float16"}
#: Store variables that are attention maps, in the one order every consumer lists them (the
#: scores' ``method`` dim, the dashboard's method menu). ``register_mass`` / ``cls_self`` are
#: per-head scalars and ``embedding`` is features, so none of them is a map.
MAP_METHODS: tuple[str, ...] = ("cls", "rollout", "mean_received", "probe", "gradcam")
COMPLETE = "complete"
IMAGE_COORDS = ("style", "width", "height")
_KNOWN_DIMS = ("layer", "head", "y", "x", "channel")


class StoreError(ValueError):
    """A store on disk does not match what a caller asked for (wrong group, shape, variant...)."""
