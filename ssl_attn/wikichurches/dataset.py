"""The :class:`WikiChurches` reader: tables of boxes, images, churches and the ontology."""

from __future__ import annotations

import os
import warnings
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from .errors import WikiChurchesError
from .images import open_image, read_image
from .parse import (
    ParsedParts,
    image_file_name,
    parse_building_parts,
    parse_churches,
    parse_style_names,
    raise_problems,
    read_json,
)
from .problems import Problem
from .styles import MAIN_STYLE_NAMES, StyleRule, style_labels

__all__ = ["ValidationReport", "WikiChurches"]

SYNTHETIC_MARKER = "synthetic.json"
# validate(decode=True) decodes at this side (JPEG DCT scaling): all scan data is still read.
_CHECK_SIDE = 64


@dataclass
class ValidationReport:
    """Result of :meth:`WikiChurches.validate`.

    ``errors`` are problems that make results wrong or impossible (malformed files, bad boxes
    or keys, boxes wholly outside the frame, missing or unreadable images), as text;
    ``problems`` holds the same as :class:`~ssl_attn.wikichurches.problems.Problem` records
    (one per box, key or image; kind, image id, group, element), except a file that cannot be
    parsed at all, which is only in ``errors``. ``warnings`` are things that were repaired
    (clamped boxes). ``missing_images`` / ``corrupt_images`` list image ids (corrupt includes
    over the decompression-bomb limit). ``ok`` is True when there are no errors.
    """

    root: Path
    errors: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    corrupt_images: list[str] = field(default_factory=list)
    n_images: int = 0
    n_boxes: int = 0

    @property
    def ok(self) -> bool:
        """True when no errors were found."""
        return not self.errors

    def __str__(self) -> str:
        head = (f"WikiChurches at {self.root}: {self.n_images} annotated images, "
                f"{self.n_boxes} boxes, {len(self.errors)} error(s), "
                f"{len(self.warnings)} warning(s)")
        lines = [head] + [f"  ERROR: {e}" for e in self.errors]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def raise_if_errors(self) -> None:
        """Raise :class:`WikiChurchesError` listing every error (no-op when ``ok``)."""
        if self.errors:
            raise WikiChurchesError(str(self))


class WikiChurches:
    """A WikiChurches(-format) dataset folder.

    ``root`` holds ``building_parts.json``, ``churches.json`` (needed only for
    :attr:`churches` and :meth:`training_pool`), optionally ``style_names.txt``, and
    ``images/<QID>_wd<k>.jpg``. A ``synthetic.json`` file marks a synthetic dataset made by
    :mod:`ssl_attn.synthetic`. Tables are read lazily and cached; box coordinates are
    fractions of the image size, origin top-left, y down.

    Parameters
    ----------
    root
        The dataset folder.
    rule
        The :class:`StyleRule` picking each image's training label (default ``StyleRule()``:
        the four main styles, first listed wins).
    strict
        When True (default) a ``building_parts.json`` with problems (bad coordinates or labels,
        bad keys, malformed entries; see :attr:`problems`) raises one
        :class:`WikiChurchesError` listing them all as soon as a table is read. When False the
        tables are built without what is wrong (one warning counts the problems), e.g. to
        describe a dataset before :meth:`validate` lists its problems. Boxes wholly outside the
        frame never raise: they are always left out of :attr:`boxes`, with a warning, and are
        errors of :meth:`validate`.
    """

    def __init__(self, root: str | os.PathLike, rule: StyleRule | None = None, *,
                 strict: bool = True) -> None:
        self.root = Path(root)
        self.rule = rule or StyleRule()
        self.strict = bool(strict)
        if not self.root.is_dir():
            raise WikiChurchesError(
                f"{self.root}: dataset folder not found. Download WikiChurches with "
                "ssl_attn.wikichurches.download() or generate a synthetic one with "
                "ssl_attn.synthetic.generate()."
            )

    def __repr__(self) -> str:
        kind = "synthetic " if self.is_synthetic else ""
        return f"WikiChurches({str(self.root)!r}) [{kind}dataset]"

    # ---------------------------------------------------------------- files
    @property
    def building_parts_path(self) -> Path:
        """Path of ``building_parts.json``."""
        return self.root / "building_parts.json"

    @property
    def images_dir(self) -> Path:
        """Folder of the images (``<root>/images``)."""
        return self.root / "images"

    def image_path(self, image_id: str) -> Path:
        """Path of one image, ``<root>/images/<image_id>.jpg`` (``image_id`` may also be the
        file name); the file may not exist. The one rule from image id to file: every reader
        of images goes through it. Raises :class:`WikiChurchesError` when ``image_id`` is not a
        bare file name (``../``, ``/``, ``\\``, ``:``, NUL...), so no path outside
        ``<root>/images/`` is ever opened."""
        return self.images_dir / image_file_name(image_id)

    @property
    def is_synthetic(self) -> bool:
        """True when the folder carries the ``synthetic.json`` marker of a generated dataset."""
        return (self.root / SYNTHETIC_MARKER).exists()

    # ---------------------------------------------------------------- tables
    @cached_property
    def _parts(self) -> ParsedParts:
        path = self.building_parts_path
        parts = parse_building_parts(read_json(path), path, raise_on_error=False)
        fatal = [p for p in parts.problems if p.kind != "out_of_frame"]
        if fatal and self.strict:
            raise_problems(path, parts.problems)
        if parts.problems:
            shown = "; ".join(p.message for p in parts.problems[:3])
            more = " ..." if len(parts.problems) > 3 else ""
            what = "problem(s)" if fatal else "box(es) wholly outside the image frame"
            warnings.warn(
                f"{path}: left out of the tables: {len(parts.problems)} {what}: {shown}{more}. "
                "See WikiChurches.problems or run WikiChurches.validate() (`ssl-attn info "
                "--validate`).",
                UserWarning,
                stacklevel=3,
            )
        rep = parts.clamp_report
        if len(rep):
            warnings.warn(
                f"{self.building_parts_path}: clamped {int(rep['n_clamped_boxes'].sum())} "
                f"box(es) ({int(rep['n_clamped_edges'].sum())} edge(s)) in {len(rep)} image(s) "
                f"into [0, 1] (largest overshoot {rep['max_overshoot'].max():.4g}); see "
                "WikiChurches.clamp_report",
                UserWarning,
                stacklevel=3,
            )
        return parts

    @property
    def problems(self) -> list[Problem]:
        """Problems of ``building_parts.json`` (:class:`~ssl_attn.wikichurches.problems.Problem`
        records, in file order); whatever they concern is left out of :attr:`boxes` and
        :attr:`images`. Raises like the tables in ``strict`` mode; image files are checked by
        :meth:`validate`."""
        return list(self._parts.problems)

    @property
    def ontology(self) -> pd.DataFrame:
        """Feature types: index ``label`` (feature id = position in ``meta``), columns
        ``name`` (str) and ``parents`` (tuple of feature ids)."""
        return self._parts.ontology

    @property
    def boxes(self) -> pd.DataFrame:
        """One row per expert box, columns ``image_id, box_index, group_index, group_label,
        label, feature, left, top, width, height, clamped`` (coordinates are fractions in
        [0, 1]; ``box_index`` counts the image's elements in file order). Boxes that overhang
        the frame are clamped into it (``clamped``); boxes with a problem, including those
        wholly outside the frame, are not here (see :attr:`problems`), so they are never
        scored."""
        return self._parts.boxes

    @property
    def clamp_report(self) -> pd.DataFrame:
        """Per image with clamped boxes (index ``image_id``): ``n_clamped_boxes``,
        ``n_clamped_edges`` (box edges that lay outside [0, 1]) and ``max_overshoot`` (how far
        the worst edge lay outside, in fractions of the image size). Empty when none."""
        return self._parts.clamp_report

    @property
    def image_ids(self) -> list[str]:
        """Annotated image ids in file order."""
        return list(self._parts.image_files)

    @cached_property
    def images(self) -> pd.DataFrame:
        """One row per annotated image: ``image_id, path`` (str), ``width, height`` (pixels of
        the stored pixel grid, read from the file header, never reduced; <NA> when the file is
        missing or unreadable, including over PIL's decompression-bomb limit — the latter with
        a warning naming the files), ``styles`` (tuple of
        QIDs), ``style`` (training label by :attr:`rule`, or None), ``n_boxes``. Use
        :meth:`validate` to turn missing/corrupt images into errors."""
        parts = self._parts
        counts = parts.boxes.groupby("image_id", sort=False).size()
        recs = []
        unreadable: list[str] = []
        for iid in parts.image_files:
            path = self.image_path(iid)
            w = h = pd.NA
            if path.is_file():
                try:
                    with open_image(path, decode=False) as im:
                        w, h = im.size
                except WikiChurchesError:
                    unreadable.append(str(path))
            recs.append({"image_id": iid, "path": str(path), "width": w, "height": h,
                         "styles": parts.image_styles[iid], "n_boxes": int(counts.get(iid, 0))})
        if unreadable:
            more = " ..." if len(unreadable) > 10 else ""
            warnings.warn(
                f"{len(unreadable)} annotated image(s) have an unreadable header (width/height "
                f"set to <NA>): {', '.join(unreadable[:10])}{more}. Run WikiChurches.validate() "
                "for the reason of each (corrupt or truncated files: extract them again from "
                "images.zip; over PIL's decompression-bomb limit: skipped).",
                UserWarning,
                stacklevel=3,
            )
        df = pd.DataFrame.from_records(
            recs, columns=["image_id", "path", "width", "height", "styles", "n_boxes"])
        df["width"] = df["width"].astype("Int64")
        df["height"] = df["height"].astype("Int64")
        df["styles"] = df["styles"].astype(object)
        df.insert(5, "style", style_labels(df, self.rule))
        df["n_boxes"] = df["n_boxes"].astype("int64")
        return df

    @cached_property
    def churches(self) -> pd.DataFrame:
        """Churches from ``churches.json``, indexed by QID: ``name, built_year, styles,
        country, location``."""
        path = self.root / "churches.json"
        return parse_churches(read_json(path), path)

    @cached_property
    def style_names(self) -> dict[str, str]:
        """QID -> style name, from ``style_names.txt`` when present, else the four main
        styles."""
        path = self.root / "style_names.txt"
        if path.is_file():
            return parse_style_names(path)
        return dict(MAIN_STYLE_NAMES)

    def training_pool(self, rule: StyleRule | None = None) -> pd.DataFrame:
        """Style-labelled images for fine-tuning: those on disk under ``images/`` that are
        **not** annotated, labelled by their church's styles (``Q123_wd0.jpg`` belongs to
        church ``Q123`` in ``churches.json``).

        Returns a DataFrame sorted by ``image_id`` with columns ``image_id, path, style`` and,
        for reference, ``church`` (QID) and ``styles`` (the church's full style tuple). Images
        whose church is unknown or has no label under ``rule`` (default :attr:`rule`) are
        left out.
        """
        rule = rule or self.rule
        annotated = set(self._parts.image_files)
        churches = self.churches
        recs = []
        if self.images_dir.is_dir():
            for p in sorted(self.images_dir.glob("*.jpg")):
                iid = p.stem
                if iid in annotated:
                    continue
                qid = iid.rsplit("_wd", 1)[0]
                if qid not in churches.index:
                    continue
                styles = churches.at[qid, "styles"]
                label = rule.label(styles)
                if label is not None:
                    recs.append((iid, str(p), label, qid, styles))
        df = pd.DataFrame.from_records(
            recs, columns=["image_id", "path", "style", "church", "styles"])
        return df.astype({"image_id": object, "path": object, "style": object,
                          "church": object, "styles": object})

    # ---------------------------------------------------------------- images
    def load_image(self, image_id: str, max_side: int | None = None):
        """Load one image as an RGB ``PIL.Image`` of the stored pixel grid.

        ``max_side=None`` (default) decodes the full grid (``.size`` equals :attr:`images`'
        width/height). An int decodes it reduced for a consumer that resamples to at most
        ``max_side`` pixels per side: by the largest factor keeping both sides
        ``>= max_side`` (JPEG DCT scaling via ``draft``: 1/2, 1/4 or 1/8, so a 108-Mpx photo
        allocates only 1/64 of its pixels; other formats ``Image.reduce``). The box fractions hold
        on the reduced grid too (same frame, scaled); pixels differ slightly from a full decode.

        EXIF orientation is deliberately **not** applied: the expert boxes are fractions of
        the stored pixel grid (the same grid whose size :attr:`images` reports), so rotating
        the image by its EXIF tag would move it away from its boxes. Raises
        :class:`MissingImageError` when the file is absent and :class:`WikiChurchesError`
        (naming the file) when it cannot be decoded or exceeds PIL's decompression-bomb limit
        (whatever ``max_side``; see :mod:`ssl_attn.wikichurches.images`), or when
        ``image_id`` is not a bare file name.
        """
        return read_image(self.image_path(image_id), max_side=max_side)

    def boxes_of(self, image_id: str) -> pd.DataFrame:
        """Boxes of one image (rows of :attr:`boxes`, in ``box_index`` order)."""
        b = self.boxes
        return b[b["image_id"] == image_id].reset_index(drop=True)

    # ---------------------------------------------------------------- ontology
    def _feature_id(self, label: int | str) -> int:
        onto = self.ontology
        if isinstance(label, str):
            hits = onto.index[onto["name"] == label]
            if len(hits) == 0:
                raise KeyError(f"no feature named {label!r} in the ontology of "
                               f"{self.building_parts_path}")
            return int(hits[0])
        if not 0 <= int(label) < len(onto):
            raise KeyError(f"feature id {label} outside the ontology (0..{len(onto) - 1})")
        return int(label)

    def _walk(self, start: int, step) -> set[int]:
        seen: set[int] = set()
        todo = deque(step(start))
        while todo:
            f = todo.popleft()
            if f not in seen:
                seen.add(f)
                todo.extend(step(f))
        seen.discard(start)
        return seen

    def ancestors(self, label: int | str) -> set[int]:
        """All transitive parents of a feature (id or name), not including itself."""
        parents = self.ontology["parents"]
        return self._walk(self._feature_id(label), lambda f: parents.iat[f])

    def descendants(self, label: int | str) -> set[int]:
        """All transitive children of a feature (id or name), not including itself."""
        children: dict[int, list[int]] = {}
        for child, ps in self.ontology["parents"].items():
            for p in ps:
                children.setdefault(p, []).append(int(child))
        return self._walk(self._feature_id(label), lambda f: children.get(f, []))

    # ---------------------------------------------------------------- checks
    def validate(self, *, check_images: bool = True, decode: bool = False,
                 raise_on_error: bool = True) -> ValidationReport:
        """Check the dataset and report every problem found (not just the first).

        Checks ``building_parts.json`` (JSON syntax, keys, boxes, labels, boxes wholly outside
        the frame, annotation keys that are not bare file names), ``churches.json`` and
        ``style_names.txt`` when present, and with ``check_images`` (default) that every
        annotated image exists and its header reads (size within PIL's decompression-bomb
        limit); with ``decode`` every present image is also decoded (JPEG at a reduced DCT
        scale: every byte of the scan is still read, so truncation is caught). Works whether
        or not the dataset is ``strict``. Clamped boxes are warnings. Raises
        :class:`WikiChurchesError` listing all errors when ``raise_on_error`` (default);
        otherwise returns the :class:`ValidationReport`.
        """
        rep = ValidationReport(root=self.root)
        parts = None
        try:
            data = read_json(self.building_parts_path)
            parts = parse_building_parts(data, self.building_parts_path, raise_on_error=False)
            rep.problems += parts.problems
            rep.errors += [str(p) for p in parts.problems]
        except WikiChurchesError as exc:
            rep.errors.append(str(exc))
        for name, parse in (("churches.json", parse_churches), ("style_names.txt", None)):
            path = self.root / name
            if not path.is_file():
                continue
            try:
                parse_style_names(path) if parse is None else parse(read_json(path), path)
            except WikiChurchesError as exc:
                rep.problems.append(Problem("bad_file", str(exc)))
                rep.errors.append(str(exc))
        if parts is not None:
            rep.n_images = len(parts.image_files)
            rep.n_boxes = len(parts.boxes)
            for r in parts.clamp_report.itertuples():
                rep.warnings.append(
                    f"image {r.Index!r}: {int(r.n_clamped_boxes)} box(es) clamped into [0, 1] "
                    f"(overshoot up to {r.max_overshoot:.4g})")
            if check_images:
                self._check_images(parts, rep, decode)
        if raise_on_error:
            rep.raise_if_errors()
        return rep

    def _check_images(self, parts: ParsedParts, rep: ValidationReport, decode: bool) -> None:
        for iid in parts.image_files:
            path = self.image_path(iid)
            if not path.is_file():
                rep.missing_images.append(iid)
                rep.problems.append(Problem("missing_image", f"{path}: image not found",
                                            path=str(path), image_id=iid))
                continue
            try:
                if decode:
                    read_image(path, max_side=_CHECK_SIDE).close()
                else:
                    open_image(path).close()
            except WikiChurchesError as exc:
                rep.corrupt_images.append(iid)
                rep.problems.append(Problem("unreadable_image", str(exc), image_id=iid))
                rep.errors.append(str(exc))
        if rep.missing_images:
            rep.errors.append(
                f"{self.images_dir}: {len(rep.missing_images)} annotated image(s) missing: "
                f"{', '.join(rep.missing_images)}. Extract them from images.zip with "
                "ssl_attn.wikichurches.extract_annotated_images()."
            )
