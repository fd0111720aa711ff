"""Metric metadata (Quantus style): every score variable knows its name, direction and range.

``METRICS`` maps each variable name of the scores Dataset to a :class:`Metric`. ``level``
says which dims it has beyond ``model, variant, method, layer, head``: ``image`` (per
``image_id``, IoU also per ``percentile``), ``box`` (per expert box) or ``feature`` (per image
and feature type: the union of that image's boxes of one type).

``METRICS`` is the one list of metrics: :func:`ssl_attn.metrics.evaluate` returns exactly its
keys, and scoring derives its variables, dims and packed layout from it. Adding a metric is one
:class:`Metric` entry here plus its kernel in :func:`ssl_attn.metrics.core._evaluate_batch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LEVEL_DIMS", "METRICS", "REGION_METRICS", "Metric", "names"]

#: The scores dim each level adds after ``(model, variant, method, layer, head)``.
LEVEL_DIMS: dict[str, str] = {"image": "image_id", "box": "box", "feature": "image_feature"}


@dataclass(frozen=True)
class Metric:
    """Metadata of one metric.

    ``direction``: ``"higher"`` or ``"lower"`` is better. ``range``: ``(lo, hi)`` of possible
    values (``math.inf`` when unbounded). ``needs``: inputs besides the map, from ``mask``
    (box pixels), ``soft_target`` and ``image``. ``level``: ``image``, ``box`` or ``feature``
    (see the module doc). ``per_percentile``: one value per IoU percentile (an extra trailing
    ``percentile`` dim; only image-level IoU).
    """

    name: str
    long_name: str
    direction: str
    range: tuple[float, float]
    needs: tuple[str, ...]
    level: str = "image"
    per_percentile: bool = False

    @property
    def dims(self) -> tuple[str, ...]:
        """Dims after ``(model, variant, method, layer, head)``: ``("image_id",)``,
        ``("image_id", "percentile")``, ``("box",)`` or ``("image_feature",)``."""
        return (LEVEL_DIMS[self.level], *(("percentile",) if self.per_percentile else ()))

    def attrs(self) -> dict[str, object]:
        """Attrs for the score variable (``range`` as a 2-list; inf written as a string)."""
        lo, hi = self.range
        rng = [lo if math.isfinite(lo) else "inf", hi if math.isfinite(hi) else "inf"]
        return {"long_name": self.long_name, "direction": self.direction, "range": rng,
                "needs": list(self.needs), "level": self.level}


_M = ("mask",)
_S = ("soft_target",)
_IMAGE = [
    Metric("iou", "IoU of the top-(100-p)% pixels with the union of the boxes", "higher",
           (0.0, 1.0), _M, per_percentile=True),
    Metric("coverage", "Share of the (non-negative) map's energy inside the boxes", "higher",
           (0.0, 1.0), _M),
    Metric("pointing", "Pointing game, strict: the argmax lies inside a box", "higher",
           (0.0, 1.0), _M),
    Metric("pointing_tol", "Pointing game with a 15 px tolerance (image pixels)", "higher",
           (0.0, 1.0), _M),
    Metric("area_precision", "Area-matched precision: share of the top-|boxes| pixels inside",
           "higher", (0.0, 1.0), _M),
    Metric("roc_auc", "ROC-AUC of the map as a score for box pixels", "higher", (0.0, 1.0), _M),
    Metric("mse", "MSE of the min-max-scaled map vs the min-max-scaled soft target", "lower",
           (0.0, 1.0), _S),
    Metric("kl", "KL(soft target || map) in nats, eps 1e-8", "lower", (0.0, math.inf), _S),
    Metric("emd", "Wasserstein-1 between map and soft target on an 8x8 grid (image units)",
           "lower", (0.0, math.sqrt(2.0)), _S),
]
_REGION = {
    "coverage": ("Share of the map's energy inside {}", "higher"),
    "iou": ("IoU of the top-|region| pixels with {}", "higher"),
    "pointing": ("Pointing game, strict, on {}", "higher"),
    "pointing_tol": ("Pointing game with 15 px tolerance, on {}", "higher"),
}

#: Base names of the region metrics; each is stored as ``box_<name>`` and ``feature_<name>``.
REGION_METRICS: tuple[str, ...] = tuple(_REGION)

#: Every score variable's metadata, keyed by variable name (image, then box, then feature).
METRICS: dict[str, Metric] = {m.name: m for m in _IMAGE}
for _level, _what in (("box", "one expert box"),
                      ("feature", "the union of an image's boxes of one feature type")):
    for _name, (_long, _dir) in _REGION.items():
        METRICS[f"{_level}_{_name}"] = Metric(f"{_level}_{_name}", _long.format(_what), _dir,
                                              (0.0, 1.0), _M, _level)


def names(level: str | None = None, *, per_percentile: bool | None = None) -> tuple[str, ...]:
    """Names in ``METRICS`` (registry order), optionally only those of one ``level`` and/or
    with the given ``per_percentile`` flag."""
    return tuple(k for k, m in METRICS.items()
                 if (level is None or m.level == level)
                 and (per_percentile is None or m.per_percentile == per_percentile))
