"""Problem records: one per thing wrong with a WikiChurches dataset, collected, never raised one
at a time.

The parser (:func:`~ssl_attn.wikichurches.parse.parse_building_parts`) and
:meth:`WikiChurches.validate <ssl_attn.wikichurches.WikiChurches.validate>` return lists of
:class:`Problem`; ``str(problem)`` is the human-readable message (it names the image, group and
element, or the key, or the file). Whatever a problem concerns is left out of the tables
(``WikiChurches.boxes`` / ``.images``), so nothing wrong is ever scored.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROBLEM_KINDS", "Problem"]

#: Kinds of :class:`Problem`, and what is left out of the tables for each.
PROBLEM_KINDS = {
    "structure": "a malformed part of building_parts.json (meta, an annotation entry, a "
                 "group); what it holds is left out",
    "duplicate": "a second annotation key for an image id already seen; the second is left out",
    "bad_key": "an annotation key that is not a bare file name ('../', '/', '\\', ':', control "
               "characters, empty, '.' or '..'); the whole image is left out",
    "bad_coordinate": "a box coordinate that is not a finite number, or a negative width/height; "
                      "the box is left out",
    "bad_label": "a group or box label outside the ontology; the box (or group) is left out",
    "out_of_frame": "a box wholly outside the image frame (see parse.box_outside_frame); the box "
                    "is left out (boxes that only overhang are clamped and kept)",
    "missing_image": "an annotated image that is not on disk",
    "unreadable_image": "an annotated image whose file cannot be read: corrupt, truncated, not "
                        "an image, or over PIL's decompression-bomb limit",
    "bad_file": "churches.json or style_names.txt is malformed",
}


@dataclass(frozen=True)
class Problem:
    """One problem of a dataset.

    ``kind`` is a key of :data:`PROBLEM_KINDS`; ``message`` is the readable text (without the
    file name, which is ``path``). ``image_id``, ``group`` (index into the image's
    ``bbox_groups``), ``element`` (index into that group's ``elements``) and ``key`` (the raw
    annotation key) locate it where they apply, else None.
    """

    kind: str
    message: str
    path: str | None = None
    image_id: str | None = None
    group: int | None = None
    element: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}; one of {sorted(PROBLEM_KINDS)}")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message
