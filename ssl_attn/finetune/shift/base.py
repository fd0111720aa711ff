"""Constants of the shift analysis and its error (the names every module of the package
shares)."""

from __future__ import annotations

__all__ = [
    "ALPHA",
    "BEST_DIMS",
    "CONTROL_SUFFIX",
    "EFFECT_MEANINGS",
    "FAMILY_DIMS",
    "REFERENCE",
    "REF_BEST_DIMS",
    "TITLE",
    "UNIFORM_MODEL",
    "ShiftError",
]


#: The variant every other is compared with.
REFERENCE = "frozen"
#: Significance level of the effect labels (on Holm-adjusted p).
ALPHA = 0.05
#: ``"<s>" + CONTROL_SUFFIX`` is the default shuffled-label control of variant ``"<s>"``.
CONTROL_SUFFIX = "_shuffled"
#: Dims of the per-layer table; ``holm_family`` names a subset of them (or ``"all"``).
FAMILY_DIMS: tuple[str, ...] = ("model", "variant", "method", "metric", "layer")
#: ``effect`` values and their meanings (the variables' ``flag_values`` / ``flag_meanings``).
EFFECT_MEANINGS: dict[int, str] = {-1: "destroy", 0: "preserve", 1: "enhance"}
#: The uniform baseline's pseudo-model in the scores (``baseline:<name>``, as scoring names it).
UNIFORM_MODEL = "baseline:uniform"
#: Root attr ``title`` of a shift Dataset (how :func:`write_shift` recognises one to replace).
TITLE = "ssl-attn fine-tuning shift"

BEST_DIMS = ("model", "variant", "method", "metric")
REF_BEST_DIMS = ("model", "method", "metric")


class ShiftError(ValueError):
    """The scores (or the arguments) cannot give a shift table; the message says what to fix."""
