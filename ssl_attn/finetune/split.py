"""The fine-tuning split: stratified, seeded, hashed, written once and reused by every run.

The pool is :meth:`WikiChurches.training_pool` — the images on disk that are **not** annotated,
labelled by their church's styles under an explicit :class:`StyleRule`. It is split into train
and validation by ``sklearn.model_selection.train_test_split(stratify=...)``, so each class keeps
its share (per class, the validation count is within 1 of ``val_fraction * n_class``). The split
is saved as canonical JSON with a sha256 ``digest`` of its content; every run with the same
rule, ``val_fraction`` and ``seed`` loads the same file, so frozen/fine-tuned comparisons are
paired. Annotated images (the evaluation set) never enter train or validation: checked when the
split is made and again whenever a saved file is loaded.

Torch-free: imports numpy, pandas and scikit-learn only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ssl_attn.wikichurches import StyleRule, WikiChurches, WikiChurchesError

__all__ = ["FORMAT", "Split", "SplitError", "class_weights", "default_split_path",
           "load_or_make_split", "make_split"]

FORMAT = "ssl-attn-split"
FORMAT_VERSION = 1
LABELS_KINDS = ("style", "shuffled")


class SplitError(ValueError):
    """The split cannot be made or a saved split is unusable (the message says why and how to
    fix it, naming the folder or file)."""


@dataclass(frozen=True)
class Split:
    """A train/validation split of the training pool, with one integer label per image.

    Attributes:
        classes: style QIDs, in ``rule.main_styles`` order (every one has images).
        class_names: their names (``WikiChurches.style_names``; the QID when unnamed).
        train, val: image ids (file stems like ``"Q9000200_wd0"``), sorted, disjoint.
        labels: image id -> class index (0..len(classes)-1), for every train and val id.
        labels_kind: ``"style"`` (the church's style) or ``"shuffled"`` (the control).
        rule: the :class:`StyleRule` that picked each label.
        seed: seed of the stratified split; val_fraction: its validation share in (0, 1).
        shuffle_seed: seed of the label permutation for ``"shuffled"``; None for ``"style"``.
        digest: sha256 hex of the canonical JSON of everything above (computed, not passed).
    """

    classes: tuple[str, ...]
    class_names: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]
    labels: Mapping[str, int]
    labels_kind: str
    rule: StyleRule
    seed: int
    val_fraction: float
    shuffle_seed: int | None = None
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "classes", tuple(str(c) for c in self.classes))
        s(self, "class_names", tuple(str(c) for c in self.class_names))
        s(self, "train", tuple(sorted(str(i) for i in self.train)))
        s(self, "val", tuple(sorted(str(i) for i in self.val)))
        s(self, "labels", MappingProxyType({str(k): int(v) for k, v in self.labels.items()}))
        s(self, "seed", int(self.seed))
        s(self, "val_fraction", float(self.val_fraction))
        if self.shuffle_seed is not None:
            s(self, "shuffle_seed", int(self.shuffle_seed))
        problems = []
        if len(self.class_names) != len(self.classes) or not self.classes:
            problems.append("classes and class_names must be non-empty and of equal length")
        if self.labels_kind not in LABELS_KINDS:
            problems.append(f"labels_kind must be one of {LABELS_KINDS}, not "
                            f"{self.labels_kind!r}")
        if set(self.train) & set(self.val):
            problems.append(f"{len(set(self.train) & set(self.val))} id(s) in both train and val")
        if set(self.labels) != set(self.train) | set(self.val):
            problems.append("labels must cover exactly the train and val ids")
        bad = [k for k, v in self.labels.items() if not 0 <= v < len(self.classes)]
        if bad:
            problems.append(f"label outside 0..{len(self.classes) - 1} for {bad[:5]}")
        if problems:
            raise SplitError("inconsistent split: " + "; ".join(problems))
        s(self, "digest", _sha256(self._content()))

    def __hash__(self) -> int:
        return hash(self.digest)

    def _content(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "classes": list(self.classes), "class_names": list(self.class_names),
            "train": list(self.train), "val": list(self.val), "labels": dict(self.labels),
            "labels_kind": self.labels_kind,
            "rule": {"main_styles": list(self.rule.main_styles), "multi": self.rule.multi},
            "seed": self.seed, "val_fraction": self.val_fraction,
            "shuffle_seed": self.shuffle_seed,
        }

    def label_array(self, ids: Sequence[str]) -> np.ndarray:
        """Labels of ``ids`` as an int64 array of shape (len(ids),)."""
        missing = [i for i in ids if i not in self.labels]
        if missing:
            raise KeyError(f"image id(s) not in this split: {missing[:5]}")
        return np.asarray([self.labels[i] for i in ids], dtype=np.int64)

    def shuffled(self, seed: int) -> Split:
        """The shuffled-label control: the labels of train ∪ val permuted (numpy Generator
        seeded by ``seed``), so each class keeps its size; ids, classes and rule unchanged."""
        if self.labels_kind != "style":
            raise SplitError("this split's labels are already shuffled; shuffle the style split")
        ids = sorted(self.labels)
        values = np.asarray([self.labels[i] for i in ids])
        perm = np.random.default_rng(int(seed)).permutation(len(ids))
        return Split(self.classes, self.class_names, self.train, self.val,
                     dict(zip(ids, values[perm].tolist(), strict=True)), "shuffled", self.rule,
                     self.seed, self.val_fraction, shuffle_seed=int(seed))

    def to_json(self) -> dict[str, Any]:
        """The JSON object saved on disk: the canonical content plus ``digest``."""
        return {**self._content(), "digest": self.digest}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], path: str | Path | None = None) -> Split:
        """Rebuild a split from :meth:`to_json` output; raise :class:`SplitError` (naming
        ``path`` when given) when a field is missing or the content does not match ``digest``.
        """
        where = f"{path}: " if path is not None else ""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise SplitError(f"{where}not an {FORMAT} file (field 'format' must be {FORMAT!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise SplitError(f"{where}format_version {d.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}; delete the file to make the split again")
        try:
            split = cls(d["classes"], d["class_names"], d["train"], d["val"], d["labels"],
                        d["labels_kind"], StyleRule(tuple(d["rule"]["main_styles"]),
                                                    d["rule"]["multi"]),
                        d["seed"], d["val_fraction"], d.get("shuffle_seed"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SplitError(f"{where}malformed split ({type(exc).__name__}: {exc}); delete "
                             "the file to make the split again") from exc
        if d.get("digest") != split.digest:
            raise SplitError(f"{where}content does not match its digest {d.get('digest')!r} "
                             f"(recomputed {split.digest}): the file was edited or corrupted. "
                             "Delete it to make the split again, or restore the original.")
        return split


def _sha256(content: dict[str, Any]) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _class_label(wc: WikiChurches, qid: str) -> str:
    return f"{qid} ({wc.style_names.get(qid, 'unnamed')})"


def _pool(wc: WikiChurches, rule: StyleRule):
    """The training pool, with :class:`SplitError` for a dataset without style labels."""
    churches_path = wc.root / "churches.json"
    if not churches_path.is_file():
        raise SplitError(f"{wc.root}: no style labels: {churches_path.name} is missing. "
                         "Fine-tuning needs it (church QID -> styles); download it with "
                         "ssl_attn.wikichurches.download() or use a synthetic dataset.")
    try:
        pool = wc.training_pool(rule)
        churches = wc.churches
    except WikiChurchesError as exc:
        raise SplitError(f"cannot read the training pool of {wc.root}: {exc}") from exc
    if len(pool) == 0:
        n_styled = sum(rule.label(s) is not None for s in churches["styles"])
        why = (f"no church in {churches_path} has one of the styles {list(rule.main_styles)}"
               if n_styled == 0 else
               f"none of the {n_styled} churches with one of the styles "
               f"{list(rule.main_styles)} has an image under {wc.images_dir} that is not "
               "annotated")
        raise SplitError(f"{wc.root}: no style-labelled training images: {why}. Fine-tuning "
                         "trains on the images that are not annotated; add them (the full "
                         "images.zip) or pass another StyleRule(main_styles=...).")
    annotated = set(wc.image_ids) & set(pool["image_id"])
    if annotated:  # the invariant of the whole project: never train on the evaluation set
        raise SplitError(f"{wc.root}: annotated images in the training pool: "
                         f"{sorted(annotated)[:5]}")
    return pool


def make_split(wc: WikiChurches, rule: StyleRule | None = None, *, val_fraction: float = 0.2,
               seed: int = 0) -> Split:
    """Split the training pool of ``wc`` (labels by ``rule``, default ``wc.rule``) into train
    and validation, stratified by class, with ``seed`` (sklearn ``train_test_split``).

    Raises :class:`SplitError` when the dataset has no style labels, a class of
    ``rule.main_styles`` has no training image or too few to stratify (< 2), or the validation
    or train part would be smaller than the number of classes.
    """
    from sklearn.model_selection import train_test_split

    rule = rule or wc.rule
    if not 0.0 < float(val_fraction) < 1.0:
        raise SplitError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
    pool = _pool(wc, rule)
    counts = pool["style"].value_counts()
    for qid in rule.main_styles:
        n = int(counts.get(qid, 0))
        if n < 2:
            rest = tuple(q for q in rule.main_styles if q != qid)
            what = "no training images" if n == 0 else "only 1 training image"
            raise SplitError(
                f"{wc.root}: style {_class_label(wc, qid)} has {what} (images under "
                f"{wc.images_dir} that are not annotated); a stratified split needs >= 2 per "
                f"class. Add images, or leave the style out: StyleRule(main_styles={rest!r}).")
    classes = tuple(rule.main_styles)
    index = {q: k for k, q in enumerate(classes)}
    ids = pool["image_id"].tolist()
    y = np.asarray([index[q] for q in pool["style"]])
    try:
        train, val = train_test_split(ids, test_size=float(val_fraction), stratify=y,
                                      random_state=int(seed), shuffle=True)
    except ValueError as exc:
        raise SplitError(f"{wc.root}: cannot stratify {len(ids)} images of {len(classes)} "
                         f"classes with val_fraction={val_fraction}: {exc}. Change "
                         "val_fraction or add images.") from exc
    labels = dict(zip(ids, y.tolist(), strict=True))
    names = tuple(wc.style_names.get(q, q) for q in classes)
    return Split(classes, names, train, val, labels, "style", rule, int(seed), val_fraction)


def _rule_tag(rule: StyleRule) -> str:
    content = {"main_styles": list(rule.main_styles), "multi": rule.multi}
    return f"{len(rule.main_styles)}styles-{rule.multi}-{_sha256(content)[:6]}"


def default_split_path(wc: WikiChurches, rule: StyleRule | None = None, *,
                       val_fraction: float = 0.2, seed: int = 0) -> Path:
    """``<wc.root>/splits/style-<rule tag>-val<val_fraction>-seed<seed>.json``; when that file
    does not exist and ``wc.root`` is not writable, the same name under ``data/splits/<root
    name>-<hash of its path>/`` in the current directory."""
    name = f"style-{_rule_tag(rule or wc.rule)}-val{float(val_fraction):g}-seed{int(seed)}.json"
    path = wc.root / "splits" / name
    folder = path.parent if path.parent.is_dir() else wc.root
    if path.exists() or os.access(folder, os.W_OK):
        return path
    tag = hashlib.sha256(str(wc.root.resolve()).encode()).hexdigest()[:6]
    return Path("data") / "splits" / f"{wc.root.name}-{tag}" / name


def _write_atomic(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _verify(split: Split, wc: WikiChurches, path: Path, asked: dict[str, Any]) -> None:
    """Raise :class:`SplitError` naming ``path`` when ``split`` was made with other
    parameters or no longer fits the dataset (annotated, missing or relabelled images)."""
    fix = "Delete the file to make a new split, or pass another path (split_file)."
    for name, want in asked.items():
        have = getattr(split, name)
        if have != want:
            raise SplitError(f"{path}: this split was made with {name}={have!r}, but "
                             f"{name}={want!r} was asked. {fix}")
    ids = split.train + split.val
    annotated = sorted(set(ids) & set(wc.image_ids))
    if annotated:
        raise SplitError(f"{path}: {len(annotated)} id(s) of the split are annotated "
                         f"evaluation images ({annotated[:5]}) and must never be trained on. "
                         f"{fix}")
    try:
        missing = [i for i in ids if not wc.image_path(i).is_file()]
    except WikiChurchesError as exc:
        raise SplitError(f"{path}: {exc}. {fix}") from exc
    if missing:
        raise SplitError(f"{path}: {len(missing)} image(s) of the split are not under "
                         f"{wc.images_dir} ({missing[:5]}); is this the right dataset? {fix}")
    pool = _pool(wc, split.rule).set_index("image_id")["style"]
    if split.labels_kind == "style":
        moved = [i for i in ids if pool.get(i) != split.classes[split.labels[i]]]
        if moved:
            raise SplitError(f"{path}: the style of {len(moved)} image(s) differs from "
                             f"{wc.root / 'churches.json'} now ({moved[:5]}). {fix}")


def load_or_make_split(wc: WikiChurches, path: str | Path | None = None,
                       rule: StyleRule | None = None, *, val_fraction: float = 0.2,
                       seed: int = 0) -> tuple[Split, Path]:
    """The style split for ``(rule, val_fraction, seed)``, made and saved once, then reused.

    ``path`` defaults to :func:`default_split_path`. A new split is written atomically (a
    temporary file, then ``os.replace``), so concurrent processes agree; an existing file is
    verified — digest recomputed, parameters equal to those asked, no annotated id, every image
    present with the same style — and a :class:`SplitError` naming the file says what differs.
    Returns ``(split, path)``.
    """
    rule = rule or wc.rule
    path = Path(path) if path is not None else default_split_path(
        wc, rule, val_fraction=val_fraction, seed=seed)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SplitError(f"{path}: cannot read the split ({exc}); delete the file to make "
                             "the split again") from exc
        split = Split.from_json(data, path)
        _verify(split, wc, path, {"labels_kind": "style", "rule": rule,
                                  "val_fraction": float(val_fraction), "seed": int(seed)})
        return split, path
    split = make_split(wc, rule, val_fraction=val_fraction, seed=seed)
    _write_atomic(path, split.to_json())
    return split, path


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights ``n / (n_classes * count_c)`` (sklearn ``'balanced'``) for the
    cross-entropy, float64 of shape (n_classes,). ``labels``: int array of class indices.
    Raises :class:`SplitError` when a class has no label (its weight would be infinite)."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels).astype(np.int64, copy=False).ravel()
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise SplitError(f"labels must be in 0..{n_classes - 1}; got {labels.min()}.."
                         f"{labels.max()}")
    absent = sorted(set(range(int(n_classes))) - set(labels.tolist()))
    if absent:
        raise SplitError(f"class(es) {absent} have no training label, so no balanced weight; "
                         "check the split (every class needs training images)")
    classes = np.arange(int(n_classes))
    return compute_class_weight("balanced", classes=classes, y=labels).astype(np.float64)
