"""Tests of the synthetic WikiChurches-format dataset generator (ssl_attn.synthetic)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_attn import synthetic
from ssl_attn.synthetic.canvas import Canvas

# seed 22 puts four two-style churches among the first 12 (see test_two_style_churches).
SEED, N, N_ANNOTATED = 22, 16, 12
MAIN = {"Q46261": "Romanesque", "Q176483": "Gothic", "Q236122": "Renaissance",
        "Q840829": "Baroque"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "data"
    summary = synthetic.generate(out, n=N, seed=SEED, n_annotated=N_ANNOTATED, progress=False)
    (out / "_summary.json").write_text(json.dumps({
        "n_images": summary.n_images, "n_annotated": summary.n_annotated,
        "images_per_style": summary.images_per_style,
        "boxes_per_feature": summary.boxes_per_feature, "n_boxes": summary.n_boxes,
        "n_multi_style": summary.n_multi_style, "str": str(summary)}))
    return out


@pytest.fixture(scope="module")
def parts(root: Path) -> dict:
    return json.loads((root / "building_parts.json").read_text())


def _elements(parts: dict, fname: str) -> list[dict]:
    return [e for g in parts["annotations"][fname]["bbox_groups"] for e in g["elements"]]


# -- determinism -------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synthetic.generate(a, n=5, seed=7, n_annotated=3, progress=False)
    synthetic.generate(b, n=5, seed=7, n_annotated=3, progress=False)
    synthetic.generate(c, n=5, seed=8, n_annotated=3, progress=False)
    for name in ("building_parts.json", "churches.json", "synthetic.json", "style_names.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    files = sorted(p.name for p in (a / "images").iterdir())
    assert files == [f"Q{9000000 + i}_wd0.jpg" for i in range(5)]
    for f in files:
        assert (a / "images" / f).read_bytes() == (b / "images" / f).read_bytes(), f
    assert (a / "building_parts.json").read_bytes() != (c / "building_parts.json").read_bytes()
    assert all((a / "images" / f).read_bytes() != (c / "images" / f).read_bytes() for f in files)


def test_first_images_do_not_depend_on_n(tmp_path: Path) -> None:
    synthetic.generate(tmp_path / "small", n=3, seed=7, progress=False)
    synthetic.generate(tmp_path / "big", n=6, seed=7, progress=False)
    for i in range(3):
        f = synthetic.image_file(i)
        assert (tmp_path / "small/images" / f).read_bytes() == \
            (tmp_path / "big/images" / f).read_bytes()
    small = json.loads((tmp_path / "small/building_parts.json").read_text())["annotations"]
    big = json.loads((tmp_path / "big/building_parts.json").read_text())["annotations"]
    assert all(small[f] == big[f] for f in small)


def test_rerun_in_same_folder_replaces_dataset(tmp_path: Path) -> None:
    synthetic.generate(tmp_path, n=6, seed=1, progress=False)
    synthetic.generate(tmp_path, n=3, seed=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == \
        [synthetic.image_file(i) for i in range(3)]
    assert len(json.loads((tmp_path / "churches.json").read_text())) == 3


# -- layout and schema -------------------------------------------------------------------------
def test_files_marker_and_style_names(root: Path) -> None:
    assert (root / "style_names.txt").read_text().splitlines() == [
        "Q46261 Romanesque", "Q176483 Gothic", "Q236122 Renaissance", "Q840829 Baroque"]
    marker = json.loads((root / "synthetic.json").read_text())
    assert marker["generator"] == "ssl_attn.synthetic"
    assert (marker["seed"], marker["n"], marker["n_annotated"]) == (SEED, N, N_ANNOTATED)
    assert marker["version"] == synthetic.VERSION
    assert "synthetic" in marker["note"].lower()


def test_annotations_match_images_and_churches(root: Path, parts: dict) -> None:
    images = sorted(p.name for p in (root / "images").iterdir())
    assert images == [f"Q{9000000 + i}_wd0.jpg" for i in range(N)]
    # only the first n_annotated photos are annotated; every key names an image file
    assert list(parts["annotations"]) == images[:N_ANNOTATED]
    churches = json.loads((root / "churches.json").read_text())
    assert list(churches) == [f.split("_")[0] for f in images]
    for qid, c in churches.items():
        assert set(c) == {"name", "built_year", "styles", "country", "location"}, qid
        assert 1 <= len(c["styles"]) <= 2 and set(c["styles"]) <= set(MAIN)
        assert isinstance(c["built_year"], int) and len(c["location"]) == 2
    for fname, ann in parts["annotations"].items():
        assert ann["styles"] == churches[fname.split("_")[0]]["styles"]


def test_meta_hierarchy_uses_wikichurches_names(parts: dict) -> None:
    meta = parts["meta"]
    names = [m["name"] for m in meta]
    assert len(set(names)) == len(names)
    parents = {m["name"]: {names[p] for p in m["parents"]} for m in meta}
    assert parents["Blind Arcade"] == {"Arcade", "Blind"}
    assert parents["Round Arch Window"] == {"Window", "Round Arch"}
    assert parents["Pointed Arch Window"] == {"Window", "Pointed Arch"}
    assert parents["Triangular Pediment"] == {"Pediment"}
    assert parents["Column Portal"] == {"Portal", "Column"}
    for needed in ("Round Arch Portal", "Rose Window", "Pinnacle", "Buttress", "Pilaster",
                   "Volute", "Segmental Pediment", "Broken Pediment", "Dome"):
        assert needed in names
    for i, m in enumerate(meta):  # parents precede children: the hierarchy is acyclic
        assert all(0 <= p < i for p in m["parents"]), m


def test_boxes_are_valid_fractions_with_known_labels(parts: dict) -> None:
    n_meta = len(parts["meta"])
    for fname, ann in parts["annotations"].items():
        assert ann["bbox_groups"], f"{fname} has no boxes"
        for g in ann["bbox_groups"]:
            assert 0 <= g["group_label"] < n_meta and g["elements"]
            for e in g["elements"]:
                assert set(e) == {"left", "top", "width", "height", "label"}
                assert 0 <= e["label"] < n_meta
                assert e["left"] >= 0 and e["top"] >= 0, (fname, e)
                assert e["width"] > 0 and e["height"] > 0, (fname, e)
                assert e["left"] + e["width"] <= 1 and e["top"] + e["height"] <= 1, (fname, e)


def test_boxes_are_the_styles_diagnostic_parts(parts: dict) -> None:
    names = [m["name"] for m in parts["meta"]]
    seen_styles = set()
    for fname, ann in parts["annotations"].items():
        styles = [MAIN[q] for q in ann["styles"]]
        features = {names[e["label"]] for e in _elements(parts, fname)}
        allowed = set().union(*(synthetic.STYLE_FEATURES[s] for s in styles))
        assert features <= allowed, (fname, styles, features - allowed)
        for s in styles:  # every style of the church is visible in its boxes
            assert features & set(synthetic.STYLE_FEATURES[s]), (fname, s)
        seen_styles.update(styles)
    assert seen_styles == set(MAIN.values())


def test_two_style_churches(parts: dict) -> None:
    multi = [f for f, a in parts["annotations"].items() if len(a["styles"]) == 2]
    assert multi == ["Q9000001_wd0.jpg", "Q9000004_wd0.jpg", "Q9000007_wd0.jpg",
                     "Q9000010_wd0.jpg"]


def test_styles_are_balanced_in_blocks_of_four() -> None:
    mains = Counter(synthetic.church_styles(0, i)[0] for i in range(400))
    assert mains == {"Romanesque": 100, "Gothic": 100, "Renaissance": 100, "Baroque": 100}
    n_multi = sum(len(synthetic.church_styles(0, i)) == 2 for i in range(400))
    assert 4 <= n_multi <= 40  # about 5 % of 400


def test_image_sizes_and_aspect(root: Path) -> None:
    for p in (root / "images").iterdir():
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            w, h = im.size
        assert 256 <= max(w, h) <= 512, (p.name, w, h)
        assert 0.59 <= w / h <= 1.61, (p.name, w, h)


# -- boxes are tight around drawn pixels -------------------------------------------------------
def test_canvas_box_of_a_rectangle_hand_computed() -> None:
    cv = Canvas(64, 48, (255, 255, 255))
    with cv.part("Pilaster"):
        cv.rectangle((10, 20, 30, 40), (0, 0, 0))
    # At 2x the polygon spans pixel columns 20..60 and rows 40..80 inclusive, i.e. output
    # columns 10..30 and rows 20..40: box x0=10, x1=31 (exclusive), y0=20, y1=41.
    [(label, [box])] = cv.boxes()
    assert label == "Pilaster" and (box.x0, box.y0, box.x1, box.y1) == (10, 20, 31, 41)
    assert box.fractions(64, 48) == {"left": round(10 / 64, 6), "top": round(20 / 48, 6),
                                     "width": round(21 / 64, 6), "height": round(21 / 48, 6)}
    dark = np.flatnonzero((np.asarray(cv.image())[..., 0] < 255).any(axis=0))
    assert (dark[0], dark[-1] + 1) == (10, 31)


def test_canvas_box_shrinks_when_occluded_and_groups_collect_parts() -> None:
    cv = Canvas(64, 64)
    with cv.group("Buttress"):
        with cv.part("Buttress"):
            cv.rectangle((10, 10, 30, 50), (200, 200, 200))
        with cv.part("Pinnacle"):
            cv.rectangle((14, 2, 26, 10), (150, 150, 150))
    cv.rectangle((20, 0, 40, 64), (0, 128, 0))  # unannotated tree covers the right part
    [(label, boxes)] = cv.boxes()
    assert label == "Buttress"
    assert [(b.feature, b.x0, b.y0, b.x1, b.y1) for b in boxes] == [
        # The pinnacle overwrites the buttress's top row only at columns 14..26, so row 10
        # stays visible at columns 10..13; the tree hides every column from 20 on.
        ("Buttress", 10, 10, 20, 51),
        ("Pinnacle", 14, 2, 20, 11)]


@pytest.mark.parametrize("feature", sorted(set().union(*synthetic.STYLE_FEATURES.values())))
def test_single_part_box_is_tight_around_drawn_pixels(feature: str) -> None:
    img, boxes = synthetic.draw_single_part(feature, size=(96, 128), seed=3)
    assert [b.feature for b in boxes] == [feature]
    drawn = (np.asarray(img) != np.array(synthetic.BLANK, np.uint8)).any(axis=2)
    rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
    b = boxes[0]
    assert (b.x0, b.y0, b.x1, b.y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    assert drawn.sum() > 20  # the part is really there


def _contrast(im: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    """Sum over RGB of |mean inside the box - mean of a ring just outside it|."""
    H, W, _ = im.shape
    m = max(2, int(0.15 * max(x1 - x0, y1 - y0)))
    X0, Y0, X1, Y1 = max(0, x0 - m), max(0, y0 - m), min(W, x1 + m), min(H, y1 + m)
    ring = im[Y0:Y1, X0:X1].copy()
    ring[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0] = np.nan
    inside = im[y0:y1, x0:x1].reshape(-1, 3).mean(0)
    return float(np.abs(inside - np.nanmean(ring.reshape(-1, 3), 0)).sum())


def test_boxes_sit_on_visible_parts_in_the_jpegs(root: Path, parts: dict) -> None:
    rng = np.random.default_rng(0)
    part, control = [], []
    for fname in parts["annotations"]:
        im = np.asarray(Image.open(root / "images" / fname).convert("RGB"), np.float64)
        H, W, _ = im.shape
        for e in _elements(parts, fname):
            x0, y0 = round(e["left"] * W), round(e["top"] * H)
            w, h = max(1, round(e["width"] * W)), max(1, round(e["height"] * H))
            part.append(_contrast(im, x0, y0, x0 + w, y0 + h))
            rx, ry = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
            control.append(_contrast(im, rx, ry, rx + w, ry + h))
    part_, control_ = np.array(part), np.array(control)
    assert (part_ > 10).mean() >= 0.8
    assert np.median(part_) > 2 * np.median(control_)


# -- the reader reads it unchanged -------------------------------------------------------------
def test_round_trip_through_wikichurches_reader(root: Path, parts: dict) -> None:
    from ssl_attn.wikichurches import WikiChurches

    wc = WikiChurches(root)
    assert wc.is_synthetic
    names = [m["name"] for m in parts["meta"]]
    assert list(wc.ontology["name"]) == names
    assert [tuple(p) for p in wc.ontology["parents"]] == [tuple(m["parents"])
                                                          for m in parts["meta"]]
    rows = []
    for fname, ann in parts["annotations"].items():
        for gi, g in enumerate(ann["bbox_groups"]):
            for e in g["elements"]:
                rows.append((fname[:-4], gi, g["group_label"], e["label"], names[e["label"]],
                             e["left"], e["top"], e["width"], e["height"]))
    boxes = wc.boxes
    got = list(zip(boxes.image_id, boxes.group_index, boxes.group_label, boxes.label,
                   boxes.feature, boxes.left, boxes.top, boxes.width, boxes.height))
    assert got == rows
    assert not boxes.clamped.any()
    images = wc.images.set_index("image_id")
    assert list(images.index) == [f[:-4] for f in parts["annotations"]]
    for iid, row in images.iterrows():
        with Image.open(root / "images" / f"{iid}.jpg") as im:
            assert (row.width, row.height) == im.size
        assert tuple(row.styles) == tuple(parts["annotations"][f"{iid}.jpg"]["styles"])
        assert row.n_boxes == len(_elements(parts, f"{iid}.jpg"))
    churches = json.loads((root / "churches.json").read_text())
    assert list(wc.churches.index) == list(churches)
    assert len(wc.training_pool()) == N - N_ANNOTATED
    assert wc.load_image("Q9000000_wd0").size == tuple(images.loc["Q9000000_wd0",
                                                                  ["width", "height"]])


def test_summary_counts_equal_the_json(root: Path, parts: dict) -> None:
    summary = json.loads((root / "_summary.json").read_text())
    names = [m["name"] for m in parts["meta"]]
    per_feature = Counter(names[e["label"]] for f in parts["annotations"]
                          for e in _elements(parts, f))
    assert summary["boxes_per_feature"] == dict(per_feature)
    assert summary["n_boxes"] == sum(per_feature.values())
    churches = json.loads((root / "churches.json").read_text())
    per_style = Counter(MAIN[q] for c in churches.values() for q in c["styles"])
    assert summary["images_per_style"] == dict(per_style)
    assert (summary["n_images"], summary["n_annotated"]) == (N, len(parts["annotations"]))
    assert summary["n_multi_style"] == sum(len(c["styles"]) == 2 for c in churches.values())
    text = summary["str"]
    assert "SYNTHETIC" in text and f"boxes        {summary['n_boxes']}" in text
    for feature, count in per_feature.items():
        assert any(line.split() == [*feature.split(), str(count)] for line in text.splitlines())


# -- bad input ---------------------------------------------------------------------------------
def test_refuses_a_folder_that_is_not_a_synthetic_dataset(tmp_path: Path) -> None:
    (tmp_path / "building_parts.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"no synthetic\.json marker"):
        synthetic.generate(tmp_path, n=2, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be"),
    ({"n": 3, "n_annotated": 4}, "n_annotated"),
    ({"n": 3, "image_size_range": (512, 256)}, "image_size_range"),
])
def test_bad_arguments_are_explained(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        synthetic.generate(tmp_path / "x", progress=False, **kwargs)
