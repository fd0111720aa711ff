"""WikiChurches reader, masks, soft targets, style rule and validation — exact, hand-computed
expectations on a hand-written dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_attn.wikichurches import (
    BOX_TABLE_COLUMNS,
    MissingImageError,
    StyleRule,
    WikiChurches,
    WikiChurchesError,
    box_masks,
    soft_target,
    style_labels,
    union_mask,
)

# The clamp summary warning is expected for this fixture; tests that check it use pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore:.*clamped.*:UserWarning")

ROM, GOT, REN, BAR = "Q46261", "Q176483", "Q236122", "Q840829"

META = [
    {"name": "Arch", "parents": []},
    {"name": "Arcade", "parents": [0]},
    {"name": "Blind", "parents": []},
    {"name": "Blind Arcade", "parents": [1, 2]},
]
# Coordinates are binary fractions so clamped values are exact.
ANNOTATIONS = {
    "Q1_wd0.jpg": {"styles": [ROM, GOT], "bbox_groups": [
        {"group_label": 1, "elements": [
            {"left": 0.125, "top": 0.25, "width": 0.375, "height": 0.5, "label": 3},
            # runs off the left (-0.0625) and the bottom (0.5 + 0.625 = 1.125) edge
            {"left": -0.0625, "top": 0.5, "width": 0.3125, "height": 0.625, "label": 0},
        ]},
        {"group_label": 2, "elements": [
            {"left": 0.5, "top": 0.0, "width": 0.5, "height": 0.25, "label": 2},
        ]},
    ]},
    "Q2_wd1.jpg": {"styles": ["Q999"], "bbox_groups": [
        {"group_label": 0, "elements": [
            {"left": 0.25, "top": 0.25, "width": 0.5, "height": 0.5, "label": 1},
        ]},
    ]},
}
CHURCHES = {
    "Q1": {"name": "St. One", "built_year": 1150, "styles": [ROM, GOT], "country": "Germany",
           "location": [50.0, 8.0]},
    "Q2": {"name": "St. Two", "built_year": None, "styles": ["Q999"], "country": "France",
           "location": None},
    "Q3": {"name": "St. Three", "built_year": 1700, "styles": [BAR, GOT], "country": "Italy",
           "location": None},
    "Q4": {"name": "St. Four", "built_year": 1900, "styles": ["Q12345"], "country": "Spain",
           "location": None},
}


def _jpeg(path: Path, size: tuple[int, int], mode: str = "RGB", exif=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new(mode, size, 128)
    kw = {"exif": exif} if exif is not None else {}
    im.save(path, "JPEG", **kw)


def _write_parts(root: Path, data) -> Path:
    p = root / "building_parts.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _write_parts(tmp_path, {"meta": META, "annotations": ANNOTATIONS})
    (tmp_path / "churches.json").write_text(json.dumps(CHURCHES))
    _jpeg(tmp_path / "images" / "Q1_wd0.jpg", (40, 30))
    _jpeg(tmp_path / "images" / "Q2_wd1.jpg", (20, 10), mode="L")
    for name in ("Q1_wd1", "Q3_wd0", "Q4_wd0", "Q5_wd0"):  # not annotated
        _jpeg(tmp_path / "images" / f"{name}.jpg", (8, 8))
    return tmp_path


@pytest.fixture
def wc(root: Path) -> WikiChurches:
    return WikiChurches(root)


def _quiet_boxes(wc: WikiChurches) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wc.boxes


# ----------------------------------------------------------------------------- reading
def test_ontology_and_hierarchy(wc):
    onto = wc.ontology
    assert onto.index.tolist() == [0, 1, 2, 3]
    assert onto["name"].tolist() == ["Arch", "Arcade", "Blind", "Blind Arcade"]
    assert onto["parents"].tolist() == [(), (0,), (), (1, 2)]
    assert wc.ancestors(3) == {0, 1, 2}
    assert wc.ancestors("Arcade") == {0}
    assert wc.ancestors(0) == set()
    assert wc.descendants(0) == {1, 3}
    assert wc.descendants("Blind") == {3}
    assert wc.descendants(3) == set()
    with pytest.raises(KeyError, match="Spire"):
        wc.ancestors("Spire")


def test_boxes_field_by_field_with_clamping(wc):
    with pytest.warns(UserWarning, match=r"clamped 1 box\(es\) \(2 edge\(s\)\) in 1 image"):
        b = wc.boxes
    assert tuple(b.columns) == BOX_TABLE_COLUMNS
    expected = [
        ("Q1_wd0", 0, 0, 1, 3, "Blind Arcade", 0.125, 0.25, 0.375, 0.5, False),
        ("Q1_wd0", 1, 0, 1, 0, "Arch", 0.0, 0.5, 0.25, 0.5, True),
        ("Q1_wd0", 2, 1, 2, 2, "Blind", 0.5, 0.0, 0.5, 0.25, False),
        ("Q2_wd1", 0, 0, 0, 1, "Arcade", 0.25, 0.25, 0.5, 0.5, False),
    ]
    assert [tuple(r) for r in b.itertuples(index=False)] == expected
    assert b["box_index"].dtype == np.int64 and b["left"].dtype == np.float64
    assert b["clamped"].dtype == bool
    rep = wc.clamp_report
    assert rep.index.tolist() == ["Q1_wd0"]
    assert rep.loc["Q1_wd0", "n_clamped_boxes"] == 1
    assert rep.loc["Q1_wd0", "n_clamped_edges"] == 2
    assert rep.loc["Q1_wd0", "max_overshoot"] == 0.125
    with warnings.catch_warnings():  # the summary is emitted once, not on every access
        warnings.simplefilter("error")
        assert len(wc.boxes) == 4


def test_images_table(wc):
    _quiet_boxes(wc)
    im = wc.images
    assert im.columns.tolist() == ["image_id", "path", "width", "height", "styles", "style",
                                   "n_boxes"]
    assert im["image_id"].tolist() == ["Q1_wd0", "Q2_wd1"]
    assert im["path"].tolist() == [str(wc.root / "images" / "Q1_wd0.jpg"),
                                   str(wc.root / "images" / "Q2_wd1.jpg")]
    assert im["width"].tolist() == [40, 20]
    assert im["height"].tolist() == [30, 10]
    assert im["styles"].tolist() == [(ROM, GOT), ("Q999",)]
    assert im["style"].tolist() == [ROM, None]
    assert im["n_boxes"].tolist() == [3, 1]


def test_churches_style_names_and_synthetic_marker(wc, root):
    c = wc.churches
    assert c.index.name == "qid" and c.index.tolist() == ["Q1", "Q2", "Q3", "Q4"]
    assert c.loc["Q1", "name"] == "St. One"
    assert c.loc["Q1", "built_year"] == 1150
    assert pd.isna(c.loc["Q2", "built_year"])
    assert c.loc["Q3", "styles"] == (BAR, GOT)
    assert c.loc["Q1", "country"] == "Germany"
    assert c.loc["Q1", "location"] == (50.0, 8.0)
    assert wc.style_names == {ROM: "Romanesque", GOT: "Gothic", REN: "Renaissance",
                              BAR: "Baroque"}
    (root / "style_names.txt").write_text("Q46261 Romanesque\n\nQ12345 Brick Gothic\n")
    assert WikiChurches(root).style_names == {ROM: "Romanesque", "Q12345": "Brick Gothic"}
    assert not wc.is_synthetic
    (root / "synthetic.json").write_text("{}")
    assert WikiChurches(root).is_synthetic


def test_training_pool_excludes_annotated(wc):
    pool = wc.training_pool()
    # Q1_wd1: church Q1 [ROM, GOT] -> first = ROM; Q3_wd0: [BAR, GOT] -> BAR;
    # Q4 has no main style, Q5 is not in churches.json, Q1_wd0/Q2_wd1 are annotated.
    assert pool["image_id"].tolist() == ["Q1_wd1", "Q3_wd0"]
    assert pool["style"].tolist() == [ROM, BAR]
    assert pool["path"].tolist() == [str(wc.root / "images" / "Q1_wd1.jpg"),
                                     str(wc.root / "images" / "Q3_wd0.jpg")]
    assert pool["styles"].tolist() == [(ROM, GOT), (BAR, GOT)]
    assert wc.training_pool(StyleRule(multi="priority"))["style"].tolist() == [ROM, GOT]
    assert len(wc.training_pool(StyleRule(multi="drop"))) == 0


def test_load_image_rgb_and_exif_not_applied(wc, root):
    im = wc.load_image("Q2_wd1")  # stored as greyscale
    assert im.mode == "RGB" and im.size == (20, 10)
    assert im.getpixel((3, 4)) == (128, 128, 128)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° CW to display"
    _jpeg(root / "images" / "Q1_wd0.jpg", (40, 30), exif=exif)
    wc2 = WikiChurches(root)
    assert wc2.load_image("Q1_wd0").size == (40, 30)  # stored grid, not the displayed one
    _quiet_boxes(wc2)
    assert wc2.images.loc[0, ["width", "height"]].tolist() == [40, 30]
    with pytest.raises(MissingImageError, match=r"Q9_wd0\.jpg.*not found"):
        wc.load_image("Q9_wd0")


def test_import_is_light():
    code = ("import sys, ssl_attn, ssl_attn.wikichurches; "
            "print(sorted(m for m in ('torch', 'transformers', 'panel', 'dask', 'requests', "
            "'pooch', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- masks
def test_mask_edges_and_half_open_rule():
    # W = 4: columns whose centre c + 0.5 lies in [1, 3) -> c = 1, 2; all rows.
    m = box_masks(np.array([[0.25, 0.0, 0.5, 1.0]]), 3, 4)
    assert m.shape == (1, 3, 4) and m.dtype == bool
    assert m[0].astype(int).tolist() == [[0, 1, 1, 0]] * 3
    # Edges exactly on pixel centres: [1.5, 2.5) holds centre 1.5 but not 2.5 -> column 1.
    m = box_masks([[0.375, 0.375, 0.25, 0.25]], 4, 4)[0]
    assert np.argwhere(m).tolist() == [[1, 1]]
    # Box on pixel boundaries (left edge 0, right edge 0.5 of a 6-wide raster) -> 3 columns.
    m = box_masks([[0.0, 0.5, 0.5, 0.5]], 4, 6)[0]
    assert np.argwhere(m).tolist() == [[r, c] for r in (2, 3) for c in (0, 1, 2)]


def test_mask_whole_frame_and_subpixel_boxes():
    assert box_masks([[0.0, 0.0, 1.0, 1.0]], 5, 7).all()
    # Sub-pixel box: centre (0.34, 0.72) * 10 -> pixel (row 7, col 3), and only that one.
    m = box_masks([[0.33, 0.71, 0.02, 0.02]], 10, 10)[0]
    assert np.argwhere(m).tolist() == [[7, 3]]
    # A zero-size box on the far corner is clipped into the frame.
    assert np.argwhere(box_masks([[1.0, 1.0, 0.0, 0.0]], 10, 10)[0]).tolist() == [[9, 9]]
    # Thin and tall: covers no column centre -> exactly the pixel holding its centre.
    assert np.argwhere(box_masks([[0.31, 0.0, 0.02, 1.0]], 10, 10)[0]).tolist() == [[5, 3]]


def test_masks_of_dataset_boxes_with_clamped_box(wc):
    _quiet_boxes(wc)
    b = wc.boxes_of("Q1_wd0")
    m = box_masks(b, 30, 40)
    assert m.shape == (3, 30, 40)
    # clamped box (0, 0.5, 0.25, 0.5): columns 0..9, rows 15..29
    assert np.argwhere(m[1]).min(0).tolist() == [15, 0]
    assert np.argwhere(m[1]).max(0).tolist() == [29, 9]
    assert m.sum(axis=(1, 2)).tolist() == [15 * 15, 15 * 10, 7 * 20]
    u = union_mask(b, 30, 40)
    assert u.dtype == bool and u.shape == (30, 40)
    assert u.sum() == 225 + 150 + 140 - 5 * 7  # boxes 0 and 1 overlap in 5 x 7 pixels
    assert np.array_equal(u, m.any(0))
    arr = b[["left", "top", "width", "height"]].to_numpy()
    assert np.array_equal(box_masks(arr, 30, 40), m)


def test_masks_empty_and_bad_input():
    assert box_masks(np.zeros((0, 4)), 3, 5).shape == (0, 3, 5)
    assert not union_mask([], 3, 5).any()
    with pytest.raises(ValueError, match="at least one box"):
        soft_target(np.zeros((0, 4)), 3, 5)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        box_masks(np.zeros((2, 3)), 3, 5)
    with pytest.raises(ValueError, match="negative width or height"):
        union_mask([[0, 0, -0.1, 0.2]], 3, 5)
    with pytest.raises(ValueError, match="lacks column"):
        box_masks(pd.DataFrame({"left": [0.0]}), 3, 5)


def test_soft_target_peak_sigma_and_normalisation():
    # Box centre (4, 4) px on an 8x8 raster, w_px = h_px = 4 -> sigma = 1 px.
    t = soft_target([[0.25, 0.25, 0.5, 0.5]], 8, 8)
    assert t.dtype == np.float64 and t.shape == (8, 8)
    assert t.sum() == pytest.approx(1.0, abs=1e-12)
    peak = np.argwhere(t == t.max()).tolist()
    assert peak == [[3, 3], [3, 4], [4, 3], [4, 4]]  # centre falls between four pixels
    # distance 1.5 vs 0.5 px along x at sigma 1: ratio exp(-(1.5² - 0.5²)/2) = exp(-1)
    assert t[3, 2] / t[3, 3] == pytest.approx(np.exp(-1.0), rel=1e-12)
    # Explicit formula on all pixels.
    yy, xx = np.mgrid[0:8, 0:8] + 0.5
    g = np.exp(-0.5 * ((xx - 4) ** 2 + (yy - 4) ** 2))
    np.testing.assert_allclose(t, g / g.sum(), rtol=1e-12)


def test_soft_target_sigma_floor_and_max_over_boxes():
    # Tiny box: sigma would be 0.05 px; the floor makes it 1 px.
    t = soft_target([[0.525, 0.525, 0.01, 0.01]], 20, 20)  # centre 10.6 px -> near pixel 10
    assert t[10, 11] / t[10, 10] == pytest.approx(
        np.exp(-0.5 * ((11.5 - 10.6) ** 2 - (10.5 - 10.6) ** 2)), rel=1e-9)
    # Two boxes with centres on pixel centres: a at (y 1.5, x 1.5) px, sigma 0.5 -> 1 px;
    # b at (y (0.525 + 0.1) * 20 = 12.5, x 14.5) px, sigma_y = 4/4 = 1, sigma_x = 8/4 = 2.
    # Both peaks are 1 before normalisation (pixelwise maximum, not a sum).
    boxes = [[0.025, 0.025, 0.1, 0.1], [0.525, 0.525, 0.4, 0.2]]
    t = soft_target(boxes, 20, 20)
    assert t[1, 1] == t.max() and t[12, 14] == pytest.approx(t.max(), rel=1e-12)
    assert t[12, 16] / t[12, 14] == pytest.approx(np.exp(-0.5), rel=1e-12)  # 2 px = 1 sigma_x
    assert t[13, 14] / t[12, 14] == pytest.approx(np.exp(-0.5), rel=1e-12)  # 1 px = 1 sigma_y
    xs = np.arange(20) + 0.5
    ga = np.exp(-0.5 * ((xs[:, None] - 1.5) ** 2 + (xs[None, :] - 1.5) ** 2))
    gb = np.exp(-0.5 * (((xs[:, None] - 12.5) / 1.0) ** 2 + ((xs[None, :] - 14.5) / 2.0) ** 2))
    g = np.maximum(ga, gb)
    np.testing.assert_allclose(t, g / g.sum(), rtol=1e-12)


# ----------------------------------------------------------------------------- style rule
def test_style_rule_policies():
    styles = ["Q999", GOT, ROM, GOT]
    assert StyleRule().label(styles) == GOT  # first listed main style
    assert StyleRule(multi="priority").label(styles) == ROM  # earliest in MAIN_STYLES
    assert StyleRule(multi="drop").label(styles) is None
    assert StyleRule(multi="drop").label([BAR, BAR]) == BAR  # one distinct main style
    assert StyleRule().label(["Q999"]) is None
    assert StyleRule().label([]) is None and StyleRule().label(None) is None
    assert StyleRule(main_styles=(BAR, GOT), multi="priority").label([GOT, BAR]) == BAR
    with pytest.raises(ValueError, match="multi must be one of"):
        StyleRule(multi="vote")
    with pytest.raises(ValueError, match="distinct"):
        StyleRule(main_styles=(ROM, ROM))


def test_style_labels_on_tables(wc):
    s = style_labels(wc.churches, StyleRule(multi="priority"))
    assert s.index.tolist() == ["Q1", "Q2", "Q3", "Q4"]
    assert s.tolist() == [ROM, None, GOT, None]
    with pytest.raises(ValueError, match="'styles' column"):
        style_labels(pd.DataFrame({"x": [1]}))
    wc_drop = WikiChurches(wc.root, rule=StyleRule(multi="drop"))
    _quiet_boxes(wc_drop)
    assert wc_drop.images["style"].tolist() == [None, None]
    assert wc_drop.images["styles"].tolist() == [(ROM, GOT), ("Q999",)]  # kept in full


# ----------------------------------------------------------------------------- bad input
def _boxes_error(root: Path, data) -> str:
    path = _write_parts(root, data)
    with pytest.raises(WikiChurchesError) as ei:
        _ = WikiChurches(root).boxes
    msg = str(ei.value)
    assert str(path) in msg
    return msg


def _one_element(**el) -> dict:
    valid = {"left": 0.1, "top": 0.1, "width": 0.2, "height": 0.2, "label": 0}
    base = {**valid, **el}
    return {"meta": META, "annotations": {"Q7_wd0.jpg": {"styles": [], "bbox_groups": [
        {"group_label": 0, "elements": [valid, base]}]}}}


def test_malformed_json_names_file_line_and_column(tmp_path):
    msg = _boxes_error(tmp_path, '{"meta": [\n  {"name": "A",, }]}')
    assert "malformed JSON at line 2, column 16" in msg


def test_missing_top_level_keys(tmp_path):
    msg = _boxes_error(tmp_path, {"annotations": {}})
    assert "missing top-level key(s) ['meta']" in msg


def test_non_finite_and_negative_sizes(tmp_path):
    msg = _boxes_error(tmp_path, _one_element(width=float("nan")))
    assert "image 'Q7_wd0' group 0 element 1: field 'width' must be a finite number; got nan" \
        in msg
    msg = _boxes_error(tmp_path, _one_element(height=-0.1))
    assert "image 'Q7_wd0' group 0 element 1: field 'height' is negative (-0.1)" in msg
    msg = _boxes_error(tmp_path, _one_element(left="0.1"))
    assert "field 'left' must be a finite number; got '0.1'" in msg


def test_label_outside_ontology(tmp_path):
    msg = _boxes_error(tmp_path, _one_element(label=7))
    assert ("image 'Q7_wd0' group 0 element 1: label 7 is outside the ontology "
            "(meta has 4 features, valid labels 0..3)") in msg


def test_all_problems_listed_together(tmp_path):
    data = _one_element(label=9)
    data["annotations"]["Q7_wd0.jpg"]["bbox_groups"][0]["elements"][0]["width"] = float("inf")
    msg = _boxes_error(tmp_path, data)
    assert "2 problem(s)" in msg
    assert "element 0: field 'width'" in msg and "element 1: label 9" in msg


def test_validate_lists_all_missing_images(wc, root):
    for name in ("Q1_wd0.jpg", "Q2_wd1.jpg"):
        (root / "images" / name).unlink()
    with pytest.raises(WikiChurchesError, match=r"2 annotated image\(s\) missing: Q1_wd0, "
                                                r"Q2_wd1"):
        wc.validate()
    rep = wc.validate(raise_on_error=False)
    assert not rep.ok and rep.missing_images == ["Q1_wd0", "Q2_wd1"]
    assert rep.n_images == 2 and rep.n_boxes == 4
    assert rep.warnings == ["image 'Q1_wd0': 1 box(es) clamped into [0, 1] (overshoot up to "
                            "0.125)"]
    assert wc.validate(check_images=False).ok
    assert wc.images["width"].isna().tolist() == [True, True]  # sizes unknown, not invented


def test_corrupt_jpeg_named_by_load_and_validate(wc, root):
    bad = root / "images" / "Q1_wd0.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(bad, "JPEG", quality=95)  # scan data dominates the file
    good = bad.read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # truncated: header intact, scan data cut
    assert wc.validate().ok  # header-only check passes
    with pytest.raises(WikiChurchesError, match=r"Q1_wd0\.jpg: cannot read image"):
        wc.load_image("Q1_wd0")
    rep = wc.validate(decode=True, raise_on_error=False)
    assert rep.corrupt_images == ["Q1_wd0"]
    assert any("Q1_wd0.jpg: cannot read image" in e for e in rep.errors)
    (root / "images" / "Q2_wd1.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(WikiChurchesError, match=r"Q2_wd1\.jpg: cannot read image"):
        wc.validate()
    with pytest.warns(UserWarning, match=r"1 annotated image\(s\) have an unreadable header.*"
                                         r"Q2_wd1\.jpg"):
        sizes = wc.images[["width", "height"]]
    assert sizes.iloc[0].tolist() == [40, 30] and sizes.iloc[1].isna().all()


def test_validate_reports_parse_problems_without_raising(tmp_path):
    _write_parts(tmp_path, _one_element(label=-1))
    rep = WikiChurches(tmp_path).validate(check_images=False, raise_on_error=False)
    assert len(rep.errors) == 1 and "label -1 is outside the ontology" in rep.errors[0]
    assert rep.n_boxes == 1  # the valid element is still counted


def test_bad_style_names_and_missing_root(tmp_path, root):
    (root / "style_names.txt").write_text("Q46261 Romanesque\nGothic\n")
    with pytest.raises(WikiChurchesError, match=r"style_names\.txt, line 2: expected 'QID name'"):
        _ = WikiChurches(root).style_names
    with pytest.raises(WikiChurchesError, match="dataset folder not found"):
        WikiChurches(tmp_path / "nope")
