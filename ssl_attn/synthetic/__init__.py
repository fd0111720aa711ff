"""Synthetic WikiChurches-format dataset: drawn church facades with exact boxes.

Each photo is a stylised church whose architectural style (Romanesque, Gothic, Renaissance,
Baroque) is carried only by its *diagnostic parts* (round arch portals and windows, blind
arcades; pointed arch windows, rose windows, buttresses and pinnacles; triangular pediments,
pilasters, column portals; volutes, segmental and broken pediments, domes). Every drawn part
gets the tight box of its visible pixels. The folder layout and JSON schema are those of
WikiChurches, so :class:`ssl_attn.wikichurches.WikiChurches` reads it unchanged; a
``synthetic.json`` marker labels it synthetic.

>>> from ssl_attn.synthetic import generate                     # doctest: +SKIP
>>> print(generate("data/synthetic", n=300, seed=0))            # doctest: +SKIP

Imports only numpy, Pillow and (when generating) tqdm.
"""

from __future__ import annotations

from .dataset import (
    GENERATOR,
    JPEG_QUALITY,
    MARKER,
    QID_BASE,
    VERSION,
    SyntheticSummary,
    church_styles,
    generate,
    image_file,
)
from .ontology import FEATURE_ID, FEATURES, STYLE_FEATURES, STYLE_QID, STYLES, meta
from .scene import BLANK, Rendered, draw_single_part, render_church

__all__ = [
    "BLANK",
    "FEATURES",
    "FEATURE_ID",
    "GENERATOR",
    "JPEG_QUALITY",
    "MARKER",
    "QID_BASE",
    "STYLES",
    "STYLE_FEATURES",
    "STYLE_QID",
    "VERSION",
    "Rendered",
    "SyntheticSummary",
    "church_styles",
    "draw_single_part",
    "generate",
    "image_file",
    "meta",
    "render_church",
]
