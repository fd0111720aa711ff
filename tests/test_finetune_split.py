"""The fine-tuning split (stratified, seeded, hashed, saved once, never an annotated image) and
the StyleImages dataset (eval = extract's preprocessing; train augmentation seeded per
(seed, epoch, index))."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ssl_attn.finetune.split import (
    Split,
    SplitError,
    class_weights,
    load_or_make_split,
    make_split,
)
from ssl_attn.wikichurches import MAIN_STYLES, StyleRule, WikiChurches

N, N_ANNOTATED = 60, 12


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 synthetic churches (one photo each), the first 12 annotated: a pool of 48, 12 per
    style (the generator balances styles in blocks of four)."""
    from ssl_attn import synthetic

    out = tmp_path_factory.mktemp("split_data")
    synthetic.generate(out, n=N, n_annotated=N_ANNOTATED, image_size_range=(64, 96),
                       progress=False)
    return out


@pytest.fixture
def copy(root: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset, for tests that change it."""
    return Path(shutil.copytree(root, tmp_path / "data"))


# ------------------------------------------------------------------ the split
@pytest.mark.parametrize("vf", [0.25, 0.2, 0.4])
def test_split_is_stratified_and_covers_the_pool(root: Path, vf: float) -> None:
    wc = WikiChurches(root)
    pool = wc.training_pool()
    split = make_split(wc, val_fraction=vf, seed=0)
    assert split.classes == MAIN_STYLES
    assert split.class_names == ("Romanesque", "Gothic", "Renaissance", "Baroque")
    assert sorted(split.train + split.val) == sorted(pool["image_id"])
    assert not set(split.train) & set(split.val)
    assert list(split.train) == sorted(split.train) and list(split.val) == sorted(split.val)
    style = dict(zip(pool["image_id"], pool["style"], strict=True))
    for iid, k in split.labels.items():
        assert split.classes[k] == style[iid]
    n_class = Counter(pool["style"])
    n_val = Counter(style[i] for i in split.val)
    assert len(n_class) == 4
    for qid, n in n_class.items():
        assert abs(n_val[qid] - vf * n) <= 1, (qid, n_val[qid], n)
    assert split.label_array(split.val).dtype == np.int64
    assert split.label_array(["Q9000012_wd0"]).tolist() == [split.labels["Q9000012_wd0"]]
    with pytest.raises(KeyError, match="Q9000000_wd0"):
        split.label_array(["Q9000000_wd0"])  # annotated: not in the split


def test_split_is_deterministic(root: Path) -> None:
    wc = WikiChurches(root)
    a, b = make_split(wc, seed=3), make_split(WikiChurches(root), seed=3)
    assert (a.digest, a.train, a.val) == (b.digest, b.train, b.val)
    assert a == b
    c = make_split(wc, seed=4)
    assert c.digest != a.digest and c.val != a.val
    assert len(a.digest) == 64 and int(a.digest, 16) >= 0


def test_no_annotated_image_enters_training_or_validation(root: Path) -> None:
    """THE guarantee of Q2: the evaluation images are never trained or validated on."""
    wc = WikiChurches(root)
    annotated = set(wc.images["image_id"])
    assert len(annotated) == N_ANNOTATED
    assert all(Path(p).is_file() for p in wc.images["path"])  # they are there to be picked
    assert len(list(wc.images_dir.glob("*.jpg"))) == N
    for seed in range(5):
        for vf in (0.2, 0.5):
            split = make_split(wc, val_fraction=vf, seed=seed)
            assert not annotated & set(split.train)
            assert not annotated & set(split.val)
            assert len(split.train) + len(split.val) == N - N_ANNOTATED
            assert split.shuffled(seed).labels.keys() == split.labels.keys()


def test_saved_split_with_an_annotated_image_is_refused(root: Path, tmp_path: Path) -> None:
    wc = WikiChurches(root)
    good = make_split(wc)
    bad = Split(good.classes, good.class_names, (*good.train, "Q9000000_wd0"), good.val,
                {**good.labels, "Q9000000_wd0": 0}, "style", good.rule, good.seed,
                good.val_fraction)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(bad.to_json()))  # a valid digest: only the check can catch it
    with pytest.raises(SplitError, match="annotated") as exc:
        load_or_make_split(wc, path)
    assert str(path) in str(exc.value)


def test_written_once_then_reused(root: Path, copy: Path) -> None:
    split, path = load_or_make_split(WikiChurches(copy), seed=2)
    assert path.parent == copy / "splits"
    assert path.name.startswith("style-4styles-first-") and path.name.endswith(
        "-val0.2-seed2.json")
    data = json.loads(path.read_text())
    assert data["digest"] == split.digest
    assert data["rule"] == {"main_styles": list(MAIN_STYLES), "multi": "first"}
    assert (data["seed"], data["val_fraction"], data["labels_kind"]) == (2, 0.2, "style")
    mtime = path.stat().st_mtime_ns
    again, path2 = load_or_make_split(WikiChurches(copy), seed=2)
    assert path2 == path and again == split and again.digest == split.digest
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left over
    assert make_split(WikiChurches(copy), seed=2).digest == split.digest


def test_tampered_file_is_refused(root: Path, tmp_path: Path) -> None:
    wc = WikiChurches(root)
    path = tmp_path / "s.json"
    split, _ = load_or_make_split(wc, path)
    data = json.loads(path.read_text())
    iid = split.train[0]
    data["labels"][iid] = (data["labels"][iid] + 1) % 4
    path.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="digest") as exc:
        load_or_make_split(wc, path)
    assert str(path) in str(exc.value)
    path.write_text("{not json")
    with pytest.raises(SplitError, match="cannot read"):
        load_or_make_split(wc, path)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"seed": 1}, "seed"),
    ({"val_fraction": 0.3}, "val_fraction"),
    ({"rule": StyleRule(multi="priority")}, "rule"),
])
def test_parameter_mismatch_is_refused(root: Path, tmp_path: Path, kwargs, name) -> None:
    wc = WikiChurches(root)
    path = tmp_path / "s.json"
    load_or_make_split(wc, path)
    with pytest.raises(SplitError, match=f"made with {name}=") as exc:
        load_or_make_split(wc, path, **kwargs)
    assert str(path) in str(exc.value) and "Delete the file" in str(exc.value)


def test_shuffled_control(root: Path) -> None:
    split = make_split(WikiChurches(root))
    sh = split.shuffled(7)
    assert sh.labels_kind == "shuffled" and sh.shuffle_seed == 7
    assert (sh.train, sh.val, sh.classes, sh.rule) == (split.train, split.val, split.classes,
                                                       split.rule)
    ids = sorted(split.labels)
    assert Counter(sh.labels.values()) == Counter(split.labels.values())
    moved = sum(sh.labels[i] != split.labels[i] for i in ids)
    assert moved > len(ids) // 2  # a permutation of 4 balanced classes moves most labels
    assert sh.digest != split.digest
    assert split.shuffled(7) == sh and split.shuffled(7).digest == sh.digest
    assert split.shuffled(8).digest != sh.digest
    assert Split.from_json(json.loads(json.dumps(sh.to_json()))) == sh
    with pytest.raises(SplitError, match="already shuffled"):
        sh.shuffled(1)


def test_dataset_without_style_labels(copy: Path) -> None:
    churches = json.loads((copy / "churches.json").read_text())
    for c in churches.values():
        c["styles"] = ["Q12345"]  # a style that is not a main style
    (copy / "churches.json").write_text(json.dumps(churches))
    with pytest.raises(SplitError, match="no style-labelled training images") as exc:
        make_split(WikiChurches(copy))
    assert str(copy) in str(exc.value) and "no church" in str(exc.value)
    (copy / "churches.json").unlink()
    with pytest.raises(SplitError, match=r"churches\.json is missing") as exc:
        load_or_make_split(WikiChurches(copy))
    assert str(copy) in str(exc.value)


def test_class_with_no_or_one_training_image(root: Path, copy: Path) -> None:
    rule = StyleRule(main_styles=(*MAIN_STYLES, "Q1234567"))
    with pytest.raises(SplitError, match="Q1234567 \\(unnamed\\) has no training images") as e:
        make_split(WikiChurches(root), rule)
    assert f"StyleRule(main_styles={MAIN_STYLES!r})" in str(e.value)
    pool = WikiChurches(copy).training_pool()
    gothic = pool.loc[pool["style"] == "Q176483", "path"].tolist()
    for p in gothic[1:]:
        Path(p).unlink()
    with pytest.raises(SplitError, match="Q176483 \\(Gothic\\) has only 1 training image"):
        make_split(WikiChurches(copy))
    with pytest.raises(SplitError, match="val_fraction"):
        make_split(WikiChurches(root), val_fraction=1.0)


def test_class_weights_by_hand() -> None:
    # 6 labels: class 0 x3, class 1 x2, class 2 x1 -> 6 / (3 * count)
    w = class_weights(np.array([0, 1, 0, 2, 1, 0]), 3)
    np.testing.assert_allclose(w, [6 / 9, 6 / 6, 6 / 3])
    assert w.shape == (3,) and w.dtype == np.float64
    with pytest.raises(SplitError, match=r"\[1\]"):
        class_weights(np.array([0, 0, 2]), 3)


def test_split_module_is_torch_free() -> None:
    code = ("import sys, ssl_attn.finetune.split, ssl_attn.finetune; "
            "ssl_attn.finetune.make_split; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ StyleImages
@pytest.fixture(scope="module")
def spec():
    from ssl_attn.models import get_spec

    return get_spec("dinov2")  # patch 14


def test_eval_sample_is_the_full_image_preprocessed(root: Path, spec) -> None:
    from ssl_attn.finetune.data import StyleImages
    from ssl_attn.models.preprocess import preprocess_images

    wc = WikiChurches(root)
    split = make_split(wc)
    size = (56, 70)
    ds = StyleImages(wc, split.val, split.label_array(split.val), spec, size, train=False)
    assert len(ds) == len(split.val) and ds.max_side == 70
    for i in (0, len(ds) - 1):
        x, y = ds[i]
        assert x.shape == (3, 56, 70) and str(x.dtype) == "torch.float32"
        assert y == split.labels[split.val[i]]
        want, _ = preprocess_images(spec, [wc.load_image(split.val[i], max_side=70)], size)
        np.testing.assert_array_equal(x.numpy(), want[0])
        np.testing.assert_array_equal(ds[i][0].numpy(), want[0])  # cached: the same
    first = ds[0][0]
    ds.set_epoch(5)  # evaluation has no augmentation: the epoch changes nothing
    np.testing.assert_array_equal(ds[0][0].numpy(), first.numpy())


def test_train_samples_are_seeded_per_seed_epoch_index(root: Path, spec) -> None:
    from ssl_attn.finetune.data import StyleImages

    wc = WikiChurches(root)
    split = make_split(wc)
    ids, labels = split.train[:8], split.label_array(split.train[:8])

    def make(**kw):
        return StyleImages(wc, ids, labels, spec, 56, train=True, seed=1, **kw)

    a, b = make(), make(cache=False)
    assert a.max_side == 63  # ceil(56 / sqrt(0.8))
    forward = [a[i][0] for i in range(len(a))]
    backward = {i: b[i][0] for i in reversed(range(len(b)))}  # another process order
    for i, x in enumerate(forward):
        assert x.shape == (3, 56, 56)
        assert np.array_equal(x.numpy(), backward[i].numpy())
    a.set_epoch(1)
    assert all(not np.array_equal(a[i][0].numpy(), forward[i].numpy()) for i in range(len(a)))
    a.set_epoch(0)
    assert np.array_equal(a[3][0].numpy(), forward[3].numpy())  # epoch 0 again: the same
    other_seed = StyleImages(wc, ids, labels, spec, 56, train=True, seed=2)
    assert not np.array_equal(other_seed[0][0].numpy(), forward[0].numpy())


def test_train_sample_is_the_drawn_augmentation_then_preprocessing(root: Path, spec) -> None:
    """Hand check with PIL alone: crop, mirror, brightness, contrast, colour, then resize."""
    from PIL import ImageEnhance, ImageOps

    from ssl_attn.finetune.data import StyleImages
    from ssl_attn.models.preprocess import preprocess_images

    wc = WikiChurches(root)
    split = make_split(wc)
    ds = StyleImages(wc, split.train, split.label_array(split.train), spec, 42, train=True,
                     seed=3, hflip=1.0)
    ds.set_epoch(2)
    img = wc.load_image(split.train[4], max_side=ds.max_side)
    p = ds.augment_params(4, img.width, img.height)
    top, left, h, w = p["crop"]
    assert p["flip"]
    want = ImageOps.mirror(img.crop((left, top, left + w, top + h)))
    for enhance, f in zip((ImageEnhance.Brightness, ImageEnhance.Contrast,
                           ImageEnhance.Color), p["factors"], strict=True):
        want = enhance(want).enhance(f)
    arr, _ = preprocess_images(spec, [want], 42)
    np.testing.assert_array_equal(ds[4][0].numpy(), arr[0])


def test_augmentation_parameters_stay_in_range(root: Path, spec) -> None:
    from ssl_attn.finetune.data import StyleImages

    wc = WikiChurches(root)
    ids = make_split(wc).train
    ds = StyleImages(wc, ids, np.zeros(len(ids), dtype=np.int64), spec, 56, train=True,
                     crop_scale=(0.5, 0.9), jitter=0.3)
    flips = 0
    for i in range(300):
        p = ds.augment_params(i, 90, 60)
        top, left, h, w = p["crop"]
        assert top >= 0 and top + h <= 60 and left >= 0 and left + w <= 90
        if (h, w) != (60, 90):  # not the fallback: area share and aspect ratio as drawn
            assert 0.5 - 0.03 <= h * w / 5400 <= 0.9 + 0.03
            assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
        assert all(0.7 <= f <= 1.3 for f in p["factors"])
        flips += p["flip"]
    assert 120 <= flips <= 180  # p = 0.5 over 300 fixed draws
    with pytest.raises(ValueError, match="crop_scale"):
        StyleImages(wc, ids, np.zeros(len(ids), dtype=np.int64), spec, 56, train=True,
                    crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="labels"):
        StyleImages(wc, ids, np.zeros(3, dtype=np.int64), spec, 56, train=True)
