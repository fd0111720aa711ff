"""Write a synthetic dataset in the exact on-disk layout of WikiChurches.

Layout (``out_dir``)::

    synthetic.json        marker: generator, version, seed, n, n_annotated, note (written first)
    images/Q<id>_wd0.jpg  every church's photo
    building_parts.json   {"meta": [...], "annotations": {file name: {styles, bbox_groups}}}
    churches.json         {QID: {name, built_year, styles, country, location}}
    style_names.txt       "QID name" lines of the four main styles
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .ontology import FEATURE_ID, STYLE_QID, STYLES, meta
from .scene import render_church

GENERATOR = "ssl_attn.synthetic"
#: Bump when the drawings, JSON content or the random stream change.
VERSION = "1"
MARKER = "synthetic.json"
JPEG_QUALITY = 90
QID_BASE = 9_000_000
#: Share of churches that carry two main styles.
MULTI_STYLE_P = 0.05
_STYLE_ORDER = tuple(STYLES.values())  # Romanesque, Gothic, Renaissance, Baroque
_YEARS = {"Romanesque": (1000, 1200), "Gothic": (1140, 1520), "Renaissance": (1420, 1620),
          "Baroque": (1600, 1780)}
_SAINTS = ("St. Mary", "St. Peter", "St. Paul", "St. Martin", "St. Nicholas", "St. John",
           "St. Michael", "St. Stephen", "St. George", "St. Andrew", "St. Lawrence", "St. Anne",
           "St. Catherine", "St. James", "Holy Cross", "Holy Trinity", "St. Margaret", "St. Giles")
_KINDS = ("Church", "Church", "Church", "Abbey Church", "Cathedral", "Chapel", "Basilica",
          "Parish Church", "Collegiate Church")
_COUNTRIES = (("Germany", 51.0, 10.0), ("France", 46.5, 2.5), ("Italy", 43.0, 12.0),
              ("Spain", 40.0, -3.5), ("Austria", 47.5, 14.0), ("Belgium", 50.6, 4.6),
              ("Poland", 52.0, 19.0), ("Czechia", 49.8, 15.5), ("Netherlands", 52.2, 5.5),
              ("United Kingdom", 52.5, -1.5))


@dataclass
class SyntheticSummary:
    """What :func:`generate` wrote.

    Attributes:
        out_dir: the dataset folder.
        n_images: photos written (all churches).
        n_annotated: photos with boxes in ``building_parts.json``.
        images_per_style: style name -> number of photos carrying that style (a two-style
            photo counts for both).
        boxes_per_feature: feature name -> number of boxes (annotated photos only).
        n_boxes: total boxes.
        n_multi_style: photos that carry two main styles.
        seed: the seed used.
    """

    out_dir: Path
    n_images: int
    n_annotated: int
    images_per_style: dict[str, int] = field(default_factory=dict)
    boxes_per_feature: dict[str, int] = field(default_factory=dict)
    n_boxes: int = 0
    n_multi_style: int = 0
    seed: int = 0

    def __str__(self) -> str:
        lines = [
            f"Synthetic WikiChurches-format dataset (SYNTHETIC DATA, seed {self.seed})",
            f"  folder       {self.out_dir}",
            f"  images       {self.n_images}  (annotated {self.n_annotated}, "
            f"fine-tuning pool {self.n_images - self.n_annotated}, "
            f"two-style {self.n_multi_style})",
            f"  boxes        {self.n_boxes}",
            "",
            f"  {'style':<22}{'images':>8}",
        ]
        lines += [f"  {k:<22}{v:>8}" for k, v in self.images_per_style.items()]
        lines += ["", f"  {'feature':<22}{'boxes':>8}"]
        lines += [f"  {k:<22}{v:>8}" for k, v in self.boxes_per_feature.items()]
        return "\n".join(lines)


def image_file(i: int) -> str:
    """File name of the ``i``-th synthetic photo, e.g. ``Q9000000_wd0.jpg``."""
    return f"Q{QID_BASE + i}_wd0.jpg"


def church_styles(seed: int, i: int) -> list[str]:
    """Style names of church ``i``: balanced in blocks of four, a few with a second style.

    Depends only on ``(seed, i)``, so the first churches are the same whatever ``n`` is.
    """
    block = np.random.default_rng([seed, i // 4, 1]).permutation(len(_STYLE_ORDER))
    main = _STYLE_ORDER[int(block[i % 4])]
    rng = np.random.default_rng([seed, i, 2])
    if rng.random() < MULTI_STYLE_P:
        others = [s for s in _STYLE_ORDER if s != main]
        return [main, others[int(rng.integers(len(others)))]]
    return [main]


def _image_size(rng: np.random.Generator, size_range: tuple[int, int],
                aspect_range: tuple[float, float]) -> tuple[int, int]:
    """(width, height): the longer side uniform in ``size_range``, width/height log-uniform."""
    long_side = int(rng.integers(size_range[0], size_range[1] + 1))
    aspect = float(np.exp(rng.uniform(np.log(aspect_range[0]), np.log(aspect_range[1]))))
    if aspect >= 1:
        return long_side, max(16, round(long_side / aspect))
    return max(16, round(long_side * aspect)), long_side


def _church_record(rng: np.random.Generator, i: int, styles: list[str]) -> dict:
    country, lat, lon = _COUNTRIES[int(rng.integers(len(_COUNTRIES)))]
    lo, hi = _YEARS[styles[0]]
    saint = _SAINTS[int(rng.integers(len(_SAINTS)))]
    kind = _KINDS[int(rng.integers(len(_KINDS)))]
    return {
        "name": f"{saint} {kind} (synthetic #{i})",
        "built_year": int(rng.integers(lo, hi + 1)),
        "styles": [STYLE_QID[s] for s in styles],
        "country": country,
        "location": [round(lat + float(rng.uniform(-2, 2)), 4),
                     round(lon + float(rng.uniform(-3, 3)), 4)],
    }


def _check_out_dir(out: Path) -> None:
    """Refuse to write into a folder that holds something other than a synthetic dataset."""
    if not out.exists():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder; pick another out_dir")
    if any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(
            f"{out}: folder is not empty and has no {MARKER} marker, so it may hold the real "
            "WikiChurches data or other files; generate into an empty or new folder instead")


def _dump(path: Path, obj: object, indent: int | None = None) -> None:
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def generate(out_dir: str | Path, n: int = 300, seed: int = 0, n_annotated: int | None = None,
             image_size_range: tuple[int, int] = (256, 512), progress: bool = True, *,
             aspect_range: tuple[float, float] = (0.6, 1.6)) -> SyntheticSummary:
    """Generate ``n`` synthetic church photos with WikiChurches-format annotations.

    Args:
        out_dir: folder to write (created; a previous synthetic dataset there is replaced,
            a non-empty folder without the ``synthetic.json`` marker is refused).
        n: number of churches (one photo each, ``images/Q<9000000+i>_wd0.jpg``).
        seed: random seed; the same seed gives byte-identical JSON and images.
        n_annotated: how many of the first photos get boxes in ``building_parts.json``;
            default ``min(n, 139)`` as in the real dataset. The rest form the style-labelled
            fine-tuning pool (in ``churches.json`` and ``images/`` only).
        image_size_range: (min, max) length in pixels of the longer image side.
        progress: show a tqdm progress bar.
        aspect_range: (min, max) width/height ratio (log-uniform).

    Returns:
        A :class:`SyntheticSummary` (``print`` it for a table).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    n_annotated = min(n, 139) if n_annotated is None else int(n_annotated)
    if not 0 <= n_annotated <= n:
        raise ValueError(f"n_annotated must be within 0..n={n}, got {n_annotated}")
    lo, hi = image_size_range
    if not 32 <= lo <= hi:
        raise ValueError(f"image_size_range must be (min, max) with 32 <= min <= max, got "
                         f"{image_size_range}")
    if not 0 < aspect_range[0] <= aspect_range[1]:
        raise ValueError(f"aspect_range must be (min, max) with 0 < min <= max, got "
                         f"{aspect_range}")
    out = Path(out_dir)
    _check_out_dir(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    # The marker goes first, so that even a half-written folder is never taken for real data.
    _dump(out / MARKER, indent=1, obj={
        "generator": GENERATOR, "version": VERSION, "seed": int(seed), "n": int(n),
        "n_annotated": n_annotated, "image_size_range": [int(lo), int(hi)],
        "aspect_range": [float(a) for a in aspect_range],
        "note": "SYNTHETIC DATA: drawn church facades made by ssl_attn.synthetic, not "
                "photographs and not expert annotations. Boxes are the exact extents of the "
                "drawn diagnostic parts. Results on it say nothing about real churches.",
    })

    from tqdm.auto import tqdm

    annotations: dict[str, dict] = {}
    churches: dict[str, dict] = {}
    per_style: Counter[str] = Counter()
    per_feature: Counter[str] = Counter()
    written = set()
    for i in tqdm(range(n), desc="synthetic churches", disable=not progress):
        styles = church_styles(seed, i)
        rng = np.random.default_rng([seed, i, 3])
        w, h = _image_size(rng, (lo, hi), aspect_range)
        rendered = render_church(rng, styles, w, h)
        fname = image_file(i)
        rendered.image.save(images / fname, format="JPEG", quality=JPEG_QUALITY)
        written.add(fname)
        qid = fname.split("_")[0]
        churches[qid] = _church_record(np.random.default_rng([seed, i, 4]), i, styles)
        per_style.update(styles)
        if i < n_annotated:
            groups = []
            for label, boxes in rendered.groups:
                elements = [{**b.fractions(w, h), "label": FEATURE_ID[b.feature]} for b in boxes]
                groups.append({"group_label": FEATURE_ID[label], "elements": elements})
                per_feature.update(b.feature for b in boxes)
            annotations[fname] = {"styles": [STYLE_QID[s] for s in styles], "bbox_groups": groups}
    for stale in images.glob("Q*_wd*.jpg"):  # photos of an earlier, larger run
        if stale.name not in written:
            stale.unlink()

    _dump(out / "building_parts.json", {"meta": meta(), "annotations": annotations})
    _dump(out / "churches.json", churches)
    (out / "style_names.txt").write_text(
        "".join(f"{q} {name}\n" for q, name in STYLES.items()), encoding="utf-8")
    return SyntheticSummary(
        out_dir=out, n_images=n, n_annotated=n_annotated,
        images_per_style={s: per_style[s] for s in _STYLE_ORDER},
        boxes_per_feature={f: per_feature[f] for f in sorted(per_feature, key=FEATURE_ID.get)},
        n_boxes=sum(per_feature.values()),
        n_multi_style=sum(len(c["styles"]) > 1 for c in churches.values()),
        seed=int(seed),
    )
