"""Bad dataset input (issue 11, items 6-8 and the `info --validate` part of 12): boxes wholly
outside the frame, decompression bombs, reduced decoding, path-escaping annotation keys, and
one validation report listing every problem — on tiny hand-built datasets."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_attn.wikichurches import (
    Problem,
    WikiChurches,
    WikiChurchesError,
    box_outside_frame,
    read_image,
    union_mask,
)

META = [{"name": "Arch", "parents": []}, {"name": "Tower", "parents": []}]
GOOD = {"left": 0.25, "top": 0.25, "width": 0.25, "height": 0.25, "label": 0}


def _jpeg(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path, "JPEG")
    return path


def _bomb_jpeg(path: Path, size: tuple[int, int] = (15000, 12000)) -> Path:
    """A tiny JPEG whose SOF header claims ``size`` (width, height): 180 Mpx by default, over
    twice PIL's MAX_IMAGE_PIXELS, so PIL refuses it at open without decoding anything."""
    _jpeg(path, (16, 16))
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    w, h = size
    data[sof + 5: sof + 9] = bytes([h >> 8, h & 255, w >> 8, w & 255])  # height, then width
    path.write_bytes(bytes(data))
    return path


def _dataset(root: Path, annotations: dict, images: dict[str, tuple[int, int]] | None = None
             ) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "building_parts.json").write_text(json.dumps({"meta": META,
                                                          "annotations": annotations}))
    for name, size in (images or {}).items():
        _jpeg(root / "images" / name, size)
    return root


def _entry(*elements: dict, group_label: int = 0) -> dict:
    return {"styles": [], "bbox_groups": [{"group_label": group_label,
                                           "elements": list(elements)}]}


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


# ----------------------------------------------------------------------------- item 6
def test_box_outside_frame_rule():
    assert box_outside_frame(1.5, 1.4, 0.2, 0.2)          # the box
    assert box_outside_frame(1.0, 0.2, 0.1, 0.1)          # touches the right edge from outside
    assert box_outside_frame(0.2, 1.0, 0.1, 0.0)
    assert box_outside_frame(-0.3, 0.2, 0.3, 0.1)         # right edge at 0
    assert box_outside_frame(0.2, -0.5, 0.1, 0.2)         # bottom edge above the frame
    assert not box_outside_frame(0.9, 0.9, 0.5, 0.5)      # overhangs: clamped, kept
    assert not box_outside_frame(-0.1, -0.1, 0.2, 0.2)
    assert not box_outside_frame(0.5, 0.5, 0.0, 0.0)      # zero-size inside: not this rule
    assert not box_outside_frame(0.0, 0.0, 1.0, 1.0)


@pytest.mark.filterwarnings("ignore:.*clamped.*:UserWarning")
def test_out_of_frame_box_is_an_error_and_never_scored(tmp_path):
    outside = {"left": 1.5, "top": 1.4, "width": 0.2, "height": 0.3, "label": 1}
    overhang = {"left": 0.875, "top": 0.0, "width": 0.25, "height": 0.5, "label": 1}
    root = _dataset(tmp_path, {"Q1_wd0.jpg": {"styles": [], "bbox_groups": [
        {"group_label": 0, "elements": [GOOD]},
        {"group_label": 1, "elements": [overhang, outside]},
    ]}}, {"Q1_wd0.jpg": (40, 30)})
    wc = WikiChurches(root)
    with pytest.warns(UserWarning, match=r"1 box\(es\) wholly outside the image frame: image "
                                         r"'Q1_wd0' group 1 element 1"):
        boxes = wc.boxes
    # the out-of-frame box is left out; the overhanging one is clamped and kept; box_index
    # keeps file positions
    assert boxes["box_index"].tolist() == [0, 1]
    assert boxes["clamped"].tolist() == [False, True]
    assert boxes.loc[1, ["left", "width"]].tolist() == [0.875, 0.125]
    assert wc.images["n_boxes"].tolist() == [2]
    [p] = wc.problems
    assert (p.kind, p.image_id, p.group, p.element) == ("out_of_frame", "Q1_wd0", 1, 1)

    rep = wc.validate(raise_on_error=False)
    assert not rep.ok and rep.n_boxes == 2
    [err] = rep.errors
    assert "building_parts.json: image 'Q1_wd0' group 1 element 1: box (left 1.5, top 1.4" in err
    assert "wholly outside the image frame" in err
    with pytest.raises(WikiChurchesError, match="wholly outside"):
        wc.validate()

    # what scoring builds from .boxes never sees the box: no pixel in the bottom-right corner
    from ssl_attn.metrics.scoring.compute import target_of
    from ssl_attn.metrics.scoring.layout import Params
    from ssl_attn.metrics.scoring.plan import _image_specs

    specs, table = _image_specs(wc, ["Q1_wd0"], {})
    assert len(table) == 2 and len(specs["Q1_wd0"].boxes) == 2
    target = target_of(specs["Q1_wd0"], Params(frame=32, percentiles=(50.0,), max_boxes=2,
                                                max_features=2))
    assert target.n_boxes == 2
    union = target.union.reshape(32, 32)
    assert not union[-1, -1] and not union[16:, 16:].any()
    assert not union_mask(boxes, 30, 40)[-1, -1]


# ----------------------------------------------------------------------------- item 7
def test_decompression_bomb_is_unreadable_and_the_others_load(tmp_path):
    root = _dataset(tmp_path, {"Q1_wd0.jpg": _entry(GOOD), "Q2_wd0.jpg": _entry(GOOD),
                               "Q3_wd0.jpg": _entry(GOOD)},
                    {"Q1_wd0.jpg": (40, 30), "Q3_wd0.jpg": (20, 10)})
    bomb = _bomb_jpeg(root / "images" / "Q2_wd0.jpg")
    assert bomb.stat().st_size < 2000
    with pytest.raises(Image.DecompressionBombError):  # PIL itself refuses it at open
        Image.open(bomb)
    wc = WikiChurches(root)
    with pytest.warns(UserWarning, match=r"1 annotated image\(s\) have an unreadable header.*"
                                         r"Q2_wd0\.jpg"):
        images = wc.images
    assert images["width"].tolist()[0::2] == [40, 20] and images["width"].isna().tolist() == [
        False, True, False]
    for max_side in (None, 224):  # reduced decoding does not lift the limit
        with pytest.raises(WikiChurchesError, match=r"Q2_wd0\.jpg: cannot read image "
                                                    r"\(DecompressionBombError.*MAX_IMAGE_PIXELS"):
            wc.load_image("Q2_wd0", max_side=max_side)
    assert wc.load_image("Q1_wd0").size == (40, 30)
    assert wc.load_image("Q3_wd0").size == (20, 10)

    for decode in (False, True):
        rep = wc.validate(decode=decode, raise_on_error=False)
        assert rep.corrupt_images == ["Q2_wd0"] and rep.missing_images == []
        [err] = rep.errors
        assert "Q2_wd0.jpg: cannot read image (DecompressionBombError" in err
        assert [(p.kind, p.image_id) for p in rep.problems] == [("unreadable_image", "Q2_wd0")]

    # extract's loader skips it and keeps the others (it reads through load_image)
    from ssl_attn.extract import _load_images

    images, ok, bad = _load_images(wc, ["Q1_wd0", "Q2_wd0", "Q3_wd0"])
    assert ok == ["Q1_wd0", "Q3_wd0"] and [b[0] for b in bad] == ["Q2_wd0"]
    assert "DecompressionBombError" in bad[0][1] and "Q2_wd0.jpg" in bad[0][1]


def test_bomb_limit_zones_follow_pil(tmp_path, monkeypatch):
    """Over MAX_IMAGE_PIXELS PIL warns and the image is read; over twice that it is refused;
    a warning turned into an error makes the image unreadable, naming the file."""
    root = _dataset(tmp_path, {"Q1_wd0.jpg": _entry(GOOD), "Q2_wd0.jpg": _entry(GOOD)},
                    {"Q1_wd0.jpg": (40, 30), "Q2_wd0.jpg": (80, 60)})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 px warns, 4800 px is refused
    wc = WikiChurches(root)
    with pytest.warns(Image.DecompressionBombWarning):
        assert wc.load_image("Q1_wd0").size == (40, 30)
    with pytest.raises(WikiChurchesError, match=r"Q2_wd0\.jpg.*MAX_IMAGE_PIXELS = 1000"):
        wc.load_image("Q2_wd0", max_side=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(WikiChurchesError, match=r"Q1_wd0\.jpg: cannot read image "
                                                    r"\(DecompressionBombWarning"):
            wc.load_image("Q1_wd0")


def test_load_image_reduced_decoding(tmp_path):
    root = _dataset(tmp_path, {"Q1_wd0.jpg": _entry(GOOD), "Q2_wd0.jpg": _entry(GOOD),
                               "Q3_wd0.jpg": _entry(GOOD)},
                    {"Q1_wd0.jpg": (4096, 3072), "Q3_wd0.jpg": (100, 50)})
    # a PNG under a .jpg name (PIL reads by content): reduced by Image.reduce
    png = Image.fromarray(np.arange(600 * 1000 * 3, dtype=np.uint8).reshape(600, 1000, 3))
    png.save(root / "images" / "Q2_wd0.jpg", "PNG")
    wc = WikiChurches(root)
    assert wc.images["width"].tolist() == [4096, 1000, 100]  # header sizes stay full
    assert wc.images["height"].tolist() == [3072, 600, 50]

    full = wc.load_image("Q1_wd0")
    assert full.size == (4096, 3072) and full.mode == "RGB"
    small = wc.load_image("Q1_wd0", max_side=224)  # JPEG draft: 1/8 per side, both >= 224
    assert small.size == (512, 384) and small.mode == "RGB"
    assert small.width * small.height * 64 == full.width * full.height
    assert np.abs(np.asarray(small, float) - np.asarray(full, float)[:1, :1]).max() <= 2
    assert wc.load_image("Q1_wd0", max_side=1500).size == (2048, 1536)  # 1/2: 3072 // 1500
    assert wc.load_image("Q1_wd0", max_side=4000).size == (4096, 3072)  # never below max_side

    reduced = wc.load_image("Q2_wd0", max_side=100)  # min(1000 // 100, 600 // 100) = 6
    assert reduced.size == (167, 100)
    assert reduced.tobytes() == png.reduce(6).tobytes()
    assert wc.load_image("Q3_wd0", max_side=224).size == (100, 50)  # small: decoded whole
    gray = _jpeg(root / "images" / "Q4_wd0.jpg", (800, 800), mode="L")
    assert read_image(gray, max_side=100).mode == "RGB"
    with pytest.raises(ValueError, match="max_side"):
        wc.load_image("Q1_wd0", max_side=0)


def test_reduced_decode_still_catches_truncation(tmp_path):
    root = _dataset(tmp_path, {"Q1_wd0.jpg": _entry(GOOD)})
    path = root / "images" / "Q1_wd0.jpg"
    path.parent.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, "JPEG", quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    wc = WikiChurches(root)
    with pytest.raises(WikiChurchesError, match=r"Q1_wd0\.jpg: cannot read image.*truncated"):
        wc.load_image("Q1_wd0", max_side=64)
    assert wc.validate().ok  # header only
    rep = wc.validate(decode=True, raise_on_error=False)
    assert rep.corrupt_images == ["Q1_wd0"]


# ----------------------------------------------------------------------------- item 8
BAD_KEYS = ["../outside.jpg", "/etc/passwd", "images/../../x.jpg", "a\\b.jpg", "nul\x00.jpg",
            "C:evil.jpg", "..", ".jpg"]


def test_path_escaping_keys_are_rejected_and_never_opened(tmp_path, monkeypatch):
    _jpeg(tmp_path / "outside.jpg", (64, 48))  # what "../outside.jpg" would reach
    root = _dataset(tmp_path / "ds", {**{k: _entry(GOOD) for k in BAD_KEYS},
                                      "Q1_wd0.JPG": _entry(GOOD)}, {"Q1_wd0.jpg": (40, 30)})
    _jpeg(root / "outside.jpg", (64, 48))
    opened: list[Path] = []
    real_open = Image.open

    def spy(fp, *a, **k):
        opened.append(Path(fp))
        return real_open(fp, *a, **k)

    monkeypatch.setattr(Image, "open", spy)
    with pytest.raises(WikiChurchesError) as ei:
        _ = WikiChurches(root).boxes
    msg = str(ei.value)
    assert f"{len(BAD_KEYS)} problem(s)" in msg
    for key in BAD_KEYS:
        assert f"annotations[{key!r}]: the key " in msg

    wc = WikiChurches(root, strict=False)
    with pytest.warns(UserWarning, match=rf"left out of the tables: {len(BAD_KEYS)} problem"):
        images = wc.images
    # one rule from id to file: the '.JPG' key reads images/Q1_wd0.jpg, as load_image does
    assert images["image_id"].tolist() == ["Q1_wd0"]
    assert images["path"].tolist() == [str(root / "images" / "Q1_wd0.jpg")]
    assert images["width"].tolist() == [40]
    assert wc.load_image("Q1_wd0").size == (40, 30)
    rep = wc.validate(decode=True, raise_on_error=False)
    assert [p.key for p in rep.problems] == BAD_KEYS
    assert {p.kind for p in rep.problems} == {"bad_key"}
    assert len(rep.errors) == len(BAD_KEYS) and rep.n_images == 1
    for bad in ("../outside", "../outside.jpg", "/tmp/x", "a\\b", "x\x00", ".."):
        with pytest.raises(WikiChurchesError, match="refusing to open it"):
            wc.load_image(bad)
        with pytest.raises(WikiChurchesError, match="refusing to open it"):
            wc.image_path(bad)
    images_dir = root / "images"
    assert opened and all(p.parent == images_dir for p in opened), opened


# ----------------------------------------------------------------------------- item 12
def test_validate_reports_every_problem_at_once(tmp_path):
    nan = {**GOOD, "left": float("nan")}
    text = {**GOOD, "top": "0.1"}
    negative = {**GOOD, "height": -0.2}
    label = {**GOOD, "label": 7}
    outside = {**GOOD, "left": 1.5, "top": 1.4}
    annotations = {
        "Q1_wd0.jpg": {"styles": [], "bbox_groups": [
            {"group_label": 0, "elements": [GOOD, nan, text]},
            {"group_label": 1, "elements": [negative, label, outside, GOOD]},
        ]},
        "../Q9_wd0.jpg": _entry(GOOD),
        "Q2_wd0.jpg": _entry(GOOD),  # over the bomb limit
        "Q3_wd0.jpg": _entry(GOOD),  # missing
        "Q4_wd0.jpg": _entry(GOOD),  # fine
    }
    root = _dataset(tmp_path, annotations, {"Q1_wd0.jpg": (40, 30), "Q4_wd0.jpg": (20, 20)})
    _bomb_jpeg(root / "images" / "Q2_wd0.jpg")

    rep = WikiChurches(root).validate(decode=True, raise_on_error=False)
    got = [(p.kind, p.image_id, p.group, p.element) for p in rep.problems]
    assert got == [
        ("bad_coordinate", "Q1_wd0", 0, 1),
        ("bad_coordinate", "Q1_wd0", 0, 2),
        ("bad_coordinate", "Q1_wd0", 1, 0),
        ("bad_label", "Q1_wd0", 1, 1),
        ("out_of_frame", "Q1_wd0", 1, 2),
        ("bad_key", None, None, None),
        ("unreadable_image", "Q2_wd0", None, None),
        ("missing_image", "Q3_wd0", None, None),
    ]
    assert all(isinstance(p, Problem) for p in rep.problems)
    text_errors = "\n".join(rep.errors)
    for needle in ("element 1: field 'left' must be a finite number; got nan",
                   "element 2: field 'top' must be a finite number; got '0.1'",
                   "group 1 element 0: field 'height' is negative (-0.2)",
                   "group 1 element 1: label 7 is outside the ontology",
                   "group 1 element 2: box (left 1.5, top 1.4",
                   "annotations['../Q9_wd0.jpg']: the key contains a path separator",
                   "Q2_wd0.jpg: cannot read image (DecompressionBombError",
                   "1 annotated image(s) missing: Q3_wd0"):
        assert needle in text_errors
    assert rep.n_images == 4 and rep.n_boxes == 5  # Q1: 2 good; Q2, Q3, Q4: 1 each
    assert f"{len(rep.errors)} error(s)" in str(rep) and len(rep.errors) == 8

    # strict (default): the tables refuse, listing all annotation problems in one message
    with pytest.raises(WikiChurchesError, match=r"6 problem\(s\)"):
        _ = WikiChurches(root).boxes
    # lenient: the dataset can still be described (what `ssl-attn info` prints)
    from ssl_attn.cli import describe_dataset

    wc = WikiChurches(root, strict=False)
    text = _quiet(lambda: describe_dataset(wc))
    assert "annotated images: 4   boxes: 5" in text
    assert _quiet(lambda: wc.images)["width"].tolist()[::3] == [40, 20]


def test_info_validate_describes_then_lists_every_problem(tmp_path, capsys):
    from ssl_attn import cli

    outside = {**GOOD, "left": 1.5, "top": 1.4}
    annotations = {
        "Q1_wd0.jpg": {"styles": [], "bbox_groups": [
            {"group_label": 0, "elements": [GOOD, {**GOOD, "left": float("nan")}]},
            {"group_label": 1, "elements": [outside, {**GOOD, "label": 7}]},
        ]},
        "Q4_wd0.jpg": _entry(GOOD),
    }
    root = _dataset(tmp_path, annotations, {"Q1_wd0.jpg": (40, 30), "Q4_wd0.jpg": (20, 20)})
    code = cli.main(["info", "--data", str(root), "--validate"])
    out, err = capsys.readouterr()
    assert code == 1
    # The description is printed (bad entries left out and counted), then every problem.
    assert "annotated images: 2" in out and "annotation problems: 3" in out
    for needle in ("group 0 element 1: field 'left' must be a finite number",
                   "group 1 element 0: box (left 1.5, top 1.4",
                   "group 1 element 1: label 7 is outside the ontology"):
        assert needle in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "validation found 3 error(s)" in lines[0], err


def test_extract_decodes_at_reduced_size(tmp_path):
    from ssl_attn.extract import _load_images

    root = _dataset(tmp_path, {"Q1_wd0.jpg": _entry(GOOD), "Q3_wd0.jpg": _entry(GOOD)},
                    {"Q1_wd0.jpg": (4096, 3072), "Q3_wd0.jpg": (100, 50)})
    wc = WikiChurches(root)
    images, ok, bad = _load_images(wc, ["Q1_wd0", "Q3_wd0"], max_side=224)
    assert ok == ["Q1_wd0", "Q3_wd0"] and bad == []
    # The model input is 224: the 4096 x 3072 photo is decoded at 1/8 per side, never below.
    assert [im.size for im in images] == [(512, 384), (100, 50)]
    assert [im.size for im in _load_images(wc, ["Q1_wd0"])[0]] == [(4096, 3072)]
