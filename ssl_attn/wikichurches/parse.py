"""Parse WikiChurches JSON/text files into tidy pandas tables, with precise error messages.

Every problem names the file, the key/element and the field, so a broken download or a
hand-edited file can be fixed quickly. Parsers collect all problems of a file before raising
(one :class:`WikiChurchesError` listing them), so one run shows everything that is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import WikiChurchesError
from .problems import Problem

__all__ = [
    "BOX_TABLE_COLUMNS",
    "ParsedParts",
    "bad_name_reason",
    "box_outside_frame",
    "check_image_id",
    "image_file_name",
    "image_id_of",
    "parse_building_parts",
    "parse_churches",
    "parse_style_names",
    "read_json",
]

BOX_TABLE_COLUMNS = (
    "image_id", "box_index", "group_index", "group_label", "label", "feature",
    "left", "top", "width", "height", "clamped",
)
_COORDS = ("left", "top", "width", "height")
_MAX_LISTED = 25  # problems listed in one error message; the rest are counted


def read_json(path: Path) -> Any:
    """Load a JSON file; raise :class:`WikiChurchesError` naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise WikiChurchesError(
            f"{path}: file not found. Download it with ssl_attn.wikichurches.download() "
            "(or `ssl-attn download`), or point WikiChurches(root) at the folder holding it."
        )
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise WikiChurchesError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}. "
            "The file is truncated or corrupt; download it again."
        ) from exc
    except UnicodeDecodeError as exc:
        raise WikiChurchesError(f"{path}: not UTF-8 text ({exc}); download it again.") from exc


def raise_problems(path: Path, problems: list[str] | list[Problem]) -> None:
    """Raise one :class:`WikiChurchesError` listing ``problems`` (no-op when empty)."""
    if not problems:
        return
    shown = [p.message if isinstance(p, Problem) else p for p in problems[:_MAX_LISTED]]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    raise WikiChurchesError(
        f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(shown) + tail
    )


def image_id_of(key: str) -> str:
    """Image id (file name stem) of an annotation key: ``'Q2034923_wd0.jpg' -> 'Q2034923_wd0'``.

    Folders are dropped (``'images/X.jpg' -> 'X'``); whether the key was a bare file name is
    :func:`bad_name_reason`'s question, asked by the parser before this.
    """
    name = key.replace("\\", "/").rsplit("/", 1)[-1]
    return name[:-4] if name.lower().endswith(".jpg") else name


def bad_name_reason(name: str) -> str | None:
    """Why ``name`` (an annotation key or an image id) is not a safe bare file name, or None.

    A safe name has no path separator (``/``, ``\\``), no ``:`` (drive letters, NTFS
    streams), no control character (NUL included), is not empty and its image id is not ``.``
    or ``..``. Only such names are ever joined to ``<root>/images/``, so no file outside that
    folder is opened (the check is lexical: a symlink placed inside ``images/`` is followed).
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if "/" in name or "\\" in name:
        return "contains a path separator ('/' or '\\'); keys must be bare file names"
    if ":" in name:
        return "contains ':' (a drive letter or stream name); keys must be bare file names"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character (e.g. NUL)"
    stem = name[:-4] if name.lower().endswith(".jpg") else name
    if stem in ("", ".", ".."):
        return "is empty, '.' or '..'"
    return None


def check_image_id(image_id: str) -> str:
    """The image id of ``image_id`` (a stem like ``'Q1_wd0'`` or a file name ``'Q1_wd0.jpg'``);
    raises :class:`WikiChurchesError` naming it when it is not a safe bare file name."""
    reason = bad_name_reason(image_id)
    if reason is not None:
        raise WikiChurchesError(f"image id {image_id!r} {reason}; refusing to open it")
    return image_id_of(image_id)


def image_file_name(image_id: str) -> str:
    """The file name of an image under ``<root>/images/``: ``'<image_id>.jpg'`` (checked by
    :func:`check_image_id`). The one rule from image id to file; the parser, the reader and
    ``extract_annotated_images`` all use it."""
    return f"{check_image_id(image_id)}.jpg"


def box_outside_frame(left: float, top: float, width: float, height: float) -> bool:
    """True when a box (fractions of the frame, width/height >= 0) lies wholly outside the
    frame ``[0, 1]^2``: ``left >= 1 or top >= 1 or left + width <= 0 or top + height <= 0``.

    Such a box has no area inside the frame (clamping it would leave a zero-area box on an
    edge, which the rasteriser would still draw as a 1-pixel box), so it is a problem and left
    out. A box that only overhangs the frame keeps a positive area after clamping; it is
    clamped and kept. Touching an edge from outside (``left == 1``) counts as outside; a
    zero-width box inside the frame does not.
    """
    return left >= 1.0 or top >= 1.0 or left + width <= 0.0 or top + height <= 0.0


def _is_int(v: Any) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


@dataclass
class ParsedParts:
    """Everything read from ``building_parts.json``.

    ``ontology``: DataFrame index = feature id, columns ``name, parents``; ``boxes``: the tidy
    boxes table (see docs/SCHEMA.md); ``image_styles``: image id -> tuple of style QIDs;
    ``image_files``: image id -> file name under ``images/`` (:func:`image_file_name`; images
    with a bad key are not in it); ``clamp_report``: one row per image with at least one
    clamped box; ``problems``: what was wrong, as :class:`Problem` records (empty when valid).
    """

    ontology: pd.DataFrame
    boxes: pd.DataFrame
    image_styles: dict[str, tuple[str, ...]]
    image_files: dict[str, str]
    clamp_report: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)


def _parse_meta(meta: Any, add) -> pd.DataFrame:
    names: list[str] = []
    parents: list[tuple[int, ...]] = []
    if not isinstance(meta, list):
        add("structure", f"'meta' must be a list of {{name, parents}} objects; got "
                         f"{type(meta).__name__}")
        meta = []
    n = len(meta)
    for i, entry in enumerate(meta):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            add("structure", f"meta[{i}]: needs a string 'name' (got {entry!r:.80})")
            names.append(f"<invalid {i}>")
            parents.append(())
            continue
        ps = entry.get("parents", [])
        if not isinstance(ps, list) or not all(_is_int(p) and 0 <= p < n and p != i for p in ps):
            add("structure",
                f"meta[{i}] ({entry['name']!r}): 'parents' must be a list of other feature "
                f"indices in [0, {n}); got {ps!r}")
            ps = [p for p in ps if _is_int(p) and 0 <= p < n and p != i] if isinstance(
                ps, list) else []
        names.append(entry["name"])
        parents.append(tuple(int(p) for p in ps))
    onto = pd.DataFrame({"name": names, "parents": pd.Series(parents, dtype=object)},
                        index=pd.RangeIndex(len(names), name="label"))
    return onto


def parse_building_parts(data: Any, path: Path, *, raise_on_error: bool = True) -> ParsedParts:
    """Parse the content of ``building_parts.json`` (already loaded JSON) into tables.

    Coordinates slightly outside ``[0, 1]`` are clamped (the box is cut at the frame edge, so
    it stays inside the frame) and flagged in the ``clamped`` column and ``clamp_report``.
    Every other problem is recorded as a :class:`~ssl_attn.wikichurches.problems.Problem` in
    ``ParsedParts.problems`` and what it concerns is left out of the tables: non-finite or
    non-numeric coordinates, negative width/height, labels outside the ontology (the box),
    boxes wholly outside the frame (:func:`box_outside_frame`; the box), annotation keys that
    are not bare file names (:func:`bad_name_reason`; the whole image), duplicate image ids and
    malformed entries. A left-out box keeps its ``box_index`` slot (indices count elements in
    file order), so the indices of the other boxes do not depend on what is wrong.

    With ``raise_on_error`` (default) any problem raises one :class:`WikiChurchesError`
    listing all of them; a non-object top level or missing top-level keys always raise (there
    is nothing to describe).
    """
    path = Path(path)
    problems: list[Problem] = []

    def add(kind: str, message: str, **where: Any) -> None:
        problems.append(Problem(kind, message, path=str(path), **where))

    if not isinstance(data, dict):
        raise WikiChurchesError(
            f"{path}: top level must be an object with keys 'meta' and 'annotations'; got "
            f"{type(data).__name__}"
        )
    missing = [k for k in ("meta", "annotations") if k not in data]
    if missing:
        raise WikiChurchesError(
            f"{path}: missing top-level key(s) {missing} (found {sorted(data)[:10]}). This is "
            "not a WikiChurches building_parts.json; download it again."
        )
    onto = _parse_meta(data["meta"], add)
    n_feat = len(onto)
    names = onto["name"].tolist()
    ann = data["annotations"]
    if not isinstance(ann, dict):
        add("structure", f"'annotations' must be an object keyed by image file name; got "
                         f"{type(ann).__name__}")
        ann = {}

    rows: list[tuple] = []
    image_styles: dict[str, tuple[str, ...]] = {}
    image_files: dict[str, str] = {}
    for key, entry in ann.items():
        where = f"annotations[{key!r}]"
        reason = bad_name_reason(key)
        if reason is not None:
            add("bad_key", f"{where}: the key {reason}; the image is left out", key=key)
            continue
        iid = image_id_of(key)
        if iid in image_files:
            add("duplicate", f"{where}: duplicate image id {iid!r}", image_id=iid, key=key)
            continue
        image_files[iid] = image_file_name(iid)
        if not isinstance(entry, dict):
            add("structure", f"{where}: must be an object with 'styles' and 'bbox_groups'",
                image_id=iid, key=key)
            image_styles[iid] = ()
            continue
        styles = entry.get("styles", [])
        if not isinstance(styles, list) or not all(isinstance(s, str) for s in styles):
            add("structure", f"{where}.styles: must be a list of QID strings; got {styles!r}",
                image_id=iid, key=key)
            styles = []
        image_styles[iid] = tuple(styles)
        groups = entry.get("bbox_groups")
        if not isinstance(groups, list):
            add("structure", f"{where}: missing or non-list 'bbox_groups' (got {groups!r:.60})",
                image_id=iid, key=key)
            continue
        box_index = 0
        for gi, group in enumerate(groups):
            gwhere = f"{where}.bbox_groups[{gi}]"
            if not isinstance(group, dict) or not isinstance(group.get("elements"), list):
                add("structure", f"{gwhere}: must be an object with an 'elements' list",
                    image_id=iid, group=gi, key=key)
                continue
            glabel = group.get("group_label")
            if not _is_int(glabel) or not 0 <= glabel < n_feat:
                add("bad_label",
                    f"{gwhere}.group_label: {glabel!r} is not a feature index of the ontology "
                    f"(meta has {n_feat} features, valid labels 0..{n_feat - 1})",
                    image_id=iid, group=gi, key=key)
                glabel = -1
            for ei, el in enumerate(group["elements"]):
                ewhere = f"image {iid!r} group {gi} element {ei}"
                loc = {"image_id": iid, "group": gi, "element": ei, "key": key}
                if not isinstance(el, dict):
                    add("structure", f"{ewhere}: must be an object with left/top/width/height/"
                                     "label", **loc)
                    box_index += 1
                    continue
                bad = False
                vals = []
                for k in _COORDS:
                    v = el.get(k)
                    if not _is_real(v) or not math.isfinite(v):
                        add("bad_coordinate", f"{ewhere}: field {k!r} must be a finite number; "
                                              f"got {v!r}", **loc)
                        bad = True
                    elif k in ("width", "height") and v < 0:
                        add("bad_coordinate", f"{ewhere}: field {k!r} is negative ({v!r}); a "
                                              "box needs width, height >= 0", **loc)
                        bad = True
                    vals.append(v)
                label = el.get("label")
                if not _is_int(label) or not 0 <= label < n_feat:
                    add("bad_label",
                        f"{ewhere}: label {label!r} is outside the ontology (meta has {n_feat} "
                        f"features, valid labels 0..{n_feat - 1})", **loc)
                    bad = True
                if not bad and box_outside_frame(*(float(v) for v in vals)):
                    left, top, width, height = (float(v) for v in vals)
                    add("out_of_frame",
                        f"{ewhere}: box (left {left:.4g}, top {top:.4g}, width {width:.4g}, "
                        f"height {height:.4g}) lies wholly outside the image frame [0, 1]; it "
                        "is left out (never scored)", **loc)
                    bad = True
                if bad:
                    box_index += 1
                    continue
                rows.append((iid, box_index, gi, int(glabel), int(label), names[label],
                             *(float(v) for v in vals)))
                box_index += 1
    if problems and raise_on_error:
        raise_problems(path, problems)

    boxes, report = _clamp_table(rows, image_files)
    return ParsedParts(onto, boxes, image_styles, image_files, report, problems)


def _clamp_table(rows: list[tuple], image_files: dict[str, str]) -> tuple[
        pd.DataFrame, pd.DataFrame]:
    cols = BOX_TABLE_COLUMNS[:-1]
    df = pd.DataFrame.from_records(rows, columns=list(cols))
    df = df.astype({"image_id": object, "box_index": np.int64, "group_index": np.int64,
                    "group_label": np.int64, "label": np.int64, "feature": object,
                    "left": np.float64, "top": np.float64, "width": np.float64,
                    "height": np.float64})
    edges = {}
    clamped = np.zeros(len(df), dtype=bool)
    overshoot = np.zeros(len(df), dtype=np.float64)
    for lo, size in (("left", "width"), ("top", "height")):
        a = df[lo].to_numpy()
        b = a + df[size].to_numpy()
        out_lo = (a < 0) | (a > 1)
        out_hi = (b < 0) | (b > 1)
        edges[lo] = out_lo.astype(np.int64) + out_hi.astype(np.int64)
        overshoot = np.maximum.reduce([overshoot, -a, a - 1, -b, b - 1])
        fix = out_lo | out_hi
        if fix.any():
            na = np.clip(a, 0.0, 1.0)
            nb = np.clip(b, 0.0, 1.0)
            # Only rewrite clamped boxes: recomputing width as (a + w) - a would perturb
            # untouched boxes in the last bit.
            df.loc[fix, lo] = na[fix]
            df.loc[fix, size] = (nb - na)[fix]
        clamped |= fix
    df["clamped"] = clamped
    df = df.loc[:, list(BOX_TABLE_COLUMNS)].reset_index(drop=True)
    per = pd.DataFrame({
        "image_id": df["image_id"],
        "n_clamped_boxes": clamped.astype(np.int64),
        "n_clamped_edges": edges["left"] + edges["top"],
        "max_overshoot": np.where(clamped, overshoot, 0.0),
    })
    report = per[per["n_clamped_boxes"] > 0].groupby("image_id", sort=False).agg(
        n_clamped_boxes=("n_clamped_boxes", "sum"),
        n_clamped_edges=("n_clamped_edges", "sum"),
        max_overshoot=("max_overshoot", "max"),
    )
    return df, report


def parse_churches(data: Any, path: Path) -> pd.DataFrame:
    """Parse ``churches.json`` content into a DataFrame indexed by QID (index name ``qid``).

    Columns: ``name`` (str), ``built_year`` (Int64, <NA> when unknown or not a whole number),
    ``styles`` (tuple of QIDs), ``country``, ``location`` (as given; lists become tuples).
    """
    path = Path(path)
    if not isinstance(data, dict):
        raise WikiChurchesError(f"{path}: top level must be an object keyed by church QID; "
                                f"got {type(data).__name__}")
    problems: list[str] = []
    recs = []
    for qid, c in data.items():
        if not isinstance(c, dict):
            problems.append(f"church {qid!r}: must be an object with name/built_year/styles/"
                            "country/location")
            continue
        styles = c.get("styles") or []
        if not isinstance(styles, list) or not all(isinstance(s, str) for s in styles):
            problems.append(f"church {qid!r}: 'styles' must be a list of QID strings; got "
                            f"{styles!r}")
            styles = []
        year = c.get("built_year")
        loc = c.get("location")
        recs.append({
            "qid": qid,
            "name": c.get("name"),
            "built_year": int(year) if _is_int(year) else pd.NA,
            "styles": tuple(styles),
            "country": c.get("country"),
            "location": tuple(loc) if isinstance(loc, list) else loc,
        })
    raise_problems(path, problems)
    df = pd.DataFrame.from_records(
        recs, columns=["qid", "name", "built_year", "styles", "country", "location"])
    df["built_year"] = df["built_year"].astype("Int64")
    df["styles"] = df["styles"].astype(object)
    return df.set_index("qid")


def parse_style_names(path: Path) -> dict[str, str]:
    """Read ``style_names.txt`` (one ``QID name`` per line; blank lines and ``#`` skipped)."""
    path = Path(path)
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = s.split(None, 1)
            if len(parts) != 2 or not parts[0].startswith("Q"):
                raise WikiChurchesError(
                    f"{path}, line {lineno}: expected 'QID name' (e.g. 'Q46261 Romanesque'); "
                    f"got {s!r}"
                )
            out[parts[0]] = parts[1].strip()
    return out
