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

#: Root attr holding the store's schema version. A store without it is version 1 (stores made
#: before the attr existed have the version-1 layout).
SCHEMA_ATTR = "ssl_attn_schema"
#: The store schema version this ssl-attn writes, and the newest it reads.
SCHEMA_VERSION = 1


class SchemaVersionError(StoreError):
    """A store was written by a newer ssl-attn (its schema version is above ours).

    ``path``: the store; ``found``: its version; ``supported``: :data:`SCHEMA_VERSION`.
    """

    def __init__(self, path: object, found: int, supported: int = SCHEMA_VERSION) -> None:
        self.path, self.found, self.supported = path, int(found), int(supported)
        super().__init__(
            f"{path}: the store has schema version {self.found} (root attr {SCHEMA_ATTR!r}), "
            f"but this ssl-attn reads versions up to {self.supported}; upgrade ssl-attn "
            "(pip install -U ssl-attn) to use this store."
        )


def schema_version(attrs: object) -> int:
    """The schema version recorded in a store's root ``attrs`` (a mapping); 1 when absent.

    Raises :class:`StoreError` when the attr is not an integer.
    """
    value = attrs.get(SCHEMA_ATTR, 1) if hasattr(attrs, "get") else 1
    try:
        if isinstance(value, bool) or int(value) != float(value):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise StoreError(f"root attr {SCHEMA_ATTR!r} = {value!r} is not an integer version."
                         ) from None


def check_schema(path: object, attrs: object) -> int:
    """Return the store's schema version; raise :class:`SchemaVersionError` when it is newer
    than :data:`SCHEMA_VERSION` (``path`` only names the store in the message)."""
    found = schema_version(attrs)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(path, found)
    return found
