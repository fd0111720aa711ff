"""The :class:`WikiChurches` reader: tables of boxes, images, churches and the ontology."""

from __future__ import annotations

import os
import warnings
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from .errors import MissingImageError, WikiChurchesError
from .parse import (
    ParsedParts,
    parse_building_parts,
    parse_churches,
    parse_style_names,
    read_json,
)
from .styles import MAIN_STYLE_NAMES, StyleRule, style_labels

__all__ = ["ValidationReport", "WikiChurches"]

SYNTHETIC_MARKER = "synthetic.json"


def _open_image(path: Path, *, decode: bool):
    """Open an image lazily (header only) or fully decoded; errors name the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingImageError(
            f"{path}: image not found. Extract it from images.zip with "
            "ssl_attn.wikichurches.extract_annotated_images() (or `ssl-attn extract`)."
        )
    try:
        im = Image.open(path)
        if decode:
            im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise WikiChurchesError(
            f"{path}: cannot read image ({type(exc).__name__}: {exc}). The file is corrupt "
            "or truncated; extract it again from images.zip."
        ) from exc
    return im


@dataclass
class ValidationReport:
    """Result of :meth:`WikiChurches.validate`.

    ``errors`` are problems that make results wrong or impossible (malformed files, bad boxes,
    missing or corrupt images); ``warnings`` are things that were repaired (clamped boxes).
    ``missing_images`` / ``corrupt_images`` list image ids. ``ok`` is True when there are no
    errors.
    """

    root: Path
    errors: list[str] = field(default_factory=list)
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
    """

    def __init__(self, root: str | os.PathLike, rule: StyleRule | None = None) -> None:
        self.root = Path(root)
        self.rule = rule or StyleRule()
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
        """Path of one image (``<root>/images/<image_id>.jpg``); the file may not exist."""
        name = image_id if image_id.lower().endswith(".jpg") else f"{image_id}.jpg"
        return self.images_dir / name

    @property
    def is_synthetic(self) -> bool:
        """True when the folder carries the ``synthetic.json`` marker of a generated dataset."""
        return (self.root / SYNTHETIC_MARKER).exists()

    # ---------------------------------------------------------------- tables
    @cached_property
    def _parts(self) -> ParsedParts:
        parts = parse_building_parts(read_json(self.building_parts_path),
                                     self.building_parts_path)
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
    def ontology(self) -> pd.DataFrame:
        """Feature types: index ``label`` (feature id = position in ``meta``), columns
        ``name`` (str) and ``parents`` (tuple of feature ids)."""
        return self._parts.ontology

    @property
    def boxes(self) -> pd.DataFrame:
        """One row per expert box, columns ``image_id, box_index, group_index, group_label,
        label, feature, left, top, width, height, clamped`` (coordinates are fractions in
        [0, 1]; ``box_index`` counts within the image in file order)."""
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
        the stored pixel grid, read from the file header; <NA> when the file is missing or its
        header unreadable — the latter with a warning naming the files), ``styles`` (tuple of
        QIDs), ``style`` (training label by :attr:`rule`, or None), ``n_boxes``. Use
        :meth:`validate` to turn missing/corrupt images into errors."""
        parts = self._parts
        counts = parts.boxes.groupby("image_id", sort=False).size()
        recs = []
        unreadable: list[str] = []
        for iid, fname in parts.image_files.items():
            path = self.images_dir / fname
            w = h = pd.NA
            if path.is_file():
                try:
                    with _open_image(path, decode=False) as im:
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
                "for details; extract them again from images.zip.",
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
    def load_image(self, image_id: str):
        """Load one image as an RGB ``PIL.Image`` of the stored pixel grid.

        EXIF orientation is deliberately **not** applied: the expert boxes are fractions of
        the stored pixel grid (the same grid whose size :attr:`images` reports), so rotating
        the image by its EXIF tag would move it away from its boxes. Raises
        :class:`MissingImageError` when the file is absent and :class:`WikiChurchesError`
        (naming the file) when it cannot be decoded.
        """
        path = self.image_path(image_id)
        im = _open_image(path, decode=True)
        try:
            return im.convert("RGB") if im.mode != "RGB" else im
        except OSError as exc:  # pragma: no cover - decode errors surface in load() above
            raise WikiChurchesError(f"{path}: cannot convert image to RGB ({exc})") from exc

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

        Checks ``building_parts.json`` (JSON syntax, keys, boxes, labels), ``churches.json``
        and ``style_names.txt`` when present, and with ``check_images`` (default) that every
        annotated image exists; with ``decode`` every present image is fully decoded (slow on
        the real dataset). Clamped boxes are warnings. Raises :class:`WikiChurchesError`
        listing all errors when ``raise_on_error`` (default); otherwise returns the
        :class:`ValidationReport`.
        """
        rep = ValidationReport(root=self.root)
        parts = None
        try:
            data = read_json(self.building_parts_path)
            parts = parse_building_parts(data, self.building_parts_path, raise_on_error=False)
            rep.errors += [f"{self.building_parts_path}: {p}" for p in parts.problems]
        except WikiChurchesError as exc:
            rep.errors.append(str(exc))
        for name, parse in (("churches.json", parse_churches), ("style_names.txt", None)):
            path = self.root / name
            if not path.is_file():
                continue
            try:
                parse_style_names(path) if parse is None else parse(read_json(path), path)
            except WikiChurchesError as exc:
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
        for iid, fname in parts.image_files.items():
            path = self.images_dir / fname
            if not path.is_file():
                rep.missing_images.append(iid)
                continue
            try:
                with _open_image(path, decode=decode):
                    pass
            except WikiChurchesError as exc:
                rep.corrupt_images.append(iid)
                rep.errors.append(str(exc))
        if rep.missing_images:
            rep.errors.append(
                f"{self.images_dir}: {len(rep.missing_images)} annotated image(s) missing: "
                f"{', '.join(rep.missing_images)}. Extract them from images.zip with "
                "ssl_attn.wikichurches.extract_annotated_images()."
            )
