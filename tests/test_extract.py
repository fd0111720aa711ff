"""The extraction driver (ssl_attn.extract) end to end with tiny random models.

Uses the session fixtures of conftest.py: ``synthetic_root`` (8 annotated images) and
``tiny_weights`` (``<dir>/<key>/`` checkpoints written by ``save_random_model``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from ssl_attn import extract as ex
from ssl_attn import store as st
from ssl_attn.models import get_spec, list_models
from ssl_attn.store.write import GroupWriter


def _first(wanted) -> str:
    """The first registered model key whose spec satisfies ``wanted``."""
    return next(key for key in list_models() if wanted(get_spec(key)))


# CLS + registers: exercises cls, register_mass, rollout, mean_received
VIT = _first(lambda s: s.n_registers > 0 and "cls" in s.default_methods)
PROBE = _first(lambda s: "probe" in s.default_methods)  # a CLS-free probe model
CNN = _first(lambda s: not s.is_vit)  # Grad-CAM
MODELS = (VIT, PROBE, CNN)


# ------------------------------------------------------------------ no models needed


def test_parse_shard():
    assert ex.parse_shard("0/2") == (0, 2)
    assert ex.parse_shard("3/4") == (3, 4)
    for bad in ("2/2", "-1/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            ex.parse_shard(bad)


def test_shards_are_contiguous_blocks_covering_everything_once():
    ids = [f"Q{i}_wd0" for i in range(10)]
    blocks = [ex.shard_ids(ids, (i, 3)) for i in range(3)]
    assert blocks == [ids[0:3], ids[3:6], ids[6:10]]
    assert ex.shard_ids(ids, (0, 1)) == ids
    # more shards than images: some shards are empty, none overlaps
    few = [ex.shard_ids(ids[:2], (i, 4)) for i in range(4)]
    assert few == [[], [ids[0]], [], [ids[1]]]


def test_import_is_light():
    code = ("import sys, ssl_attn.extract; "
            "print(sorted({'torch', 'dask', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_root, tiny_weights):
    """One in-process run of MODELS over the synthetic set (batch 2), shared by several tests."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    report = ex.extract(path, synthetic_root, MODELS, weights_dir=tiny_weights, batch_size=2,
                        progress=False)
    return path, report


def data_of(path) -> dict[str, xr.Dataset]:
    """Every group's data variables and coordinates, loaded, without attrs (creation times)."""
    tree = st.open_store(path)
    out = {}
    for key in st.model_groups(tree):
        ds = tree[key].to_dataset().load()
        ds.attrs = {}
        out[key] = ds
    return out


def assert_same_data(a, b, keys=MODELS):
    da, db = data_of(a), data_of(b)
    assert sorted(da) == sorted(keys)
    for key in keys:
        xr.testing.assert_equal(da[key], db[key])


# ------------------------------------------------------------------ integration


def test_full_extract_writes_complete_maps_with_the_right_grids(reference, synthetic_root,
                                                               tiny_weights):
    from ssl_attn.models import load_model
    from ssl_attn.wikichurches import WikiChurches

    path, report = reference
    ids = sorted(WikiChurches(synthetic_root).images["image_id"])
    assert len(ids) == 8
    assert report.skipped == []
    tree = st.open_store(path)
    assert tree.attrs["synthetic"] is True
    assert st.model_groups(tree) == sorted(MODELS)
    for key in MODELS:
        assert report.models[key].n_computed == 8 and report.models[key].n_done_before == 0
        ds = tree[key].to_dataset()
        assert list(ds["image_id"].values) == ids
        assert bool(ds["complete"].all())
        loaded = load_model(key, weights_dir=tiny_weights)
        batch = loaded.preprocess([WikiChurches(synthetic_root).load_image(ids[0])])
        h, w = batch.pixel_values.shape[-2:]
        if key == CNN:
            assert set(ds.data_vars) == {"gradcam", "complete"}
            assert list(ds["layer"].values) == [1, 2, 3, 4]
        else:
            patch = loaded.spec.patch_size
            assert (ds.sizes["y"], ds.sizes["x"]) == (h // patch, w // patch)
            assert ds.sizes["head"] == loaded.spec.n_heads
            assert json.loads(ds.attrs["grid"]) == [h // patch, w // patch]
        for name, var in ds.data_vars.items():
            if name != "complete":
                assert not bool(var.isnull().any()), f"{key}/{name} has NaN after a full run"
        assert ds.attrs["model_key"] == key and ds.attrs["synthetic"] is True
    dino = tree[VIT].to_dataset()
    # CLS attention is a softmax row: patches + registers + CLS itself sum to 1 per head
    total = dino["cls"].sum(("y", "x")) + dino["register_mass"] + dino["cls_self"]
    np.testing.assert_allclose(total, 1.0, rtol=1e-4)
    assert "probe" in tree[PROBE] and "cls" not in tree[PROBE]


def test_stored_map_equals_extract_maps_on_the_same_image(reference, synthetic_root,
                                                          tiny_weights):
    from ssl_attn.attention import extract_maps
    from ssl_attn.models import load_model
    from ssl_attn.wikichurches import WikiChurches

    path, _ = reference
    wc = WikiChurches(synthetic_root)
    iid = sorted(wc.images["image_id"])[5]
    loaded = load_model(VIT, weights_dir=tiny_weights)
    maps = extract_maps(loaded, loaded.preprocess([wc.load_image(iid)]).pixel_values)
    ds = st.open_store(path)[VIT].to_dataset().sel(variant="frozen", image_id=iid)
    assert set(maps) == set(ds.data_vars) - {"complete"}
    for name in maps:
        np.testing.assert_allclose(ds[name].values, ex._to_numpy(maps[name])[0], rtol=1e-5,
                                   atol=1e-7, err_msg=name)


def test_resume_after_a_crash_computes_only_what_is_missing(
    tmp_path, monkeypatch, reference, synthetic_root, tiny_weights
):
    import ssl_attn.attention as attention

    path = tmp_path / "resume.zarr"
    calls: list[int] = []
    real_extract_maps, real_write = attention.extract_maps, GroupWriter.write

    def counting(loaded, pixel_values, **kw):
        calls.append(int(pixel_values.shape[0]))
        return real_extract_maps(loaded, pixel_values, **kw)

    def crash_after_first_batch(writer, ids, maps):
        if st.completed(writer.path, writer.model_key, writer.variant):
            raise RuntimeError("simulated crash while writing the second batch")
        return real_write(writer, ids, maps)

    monkeypatch.setattr(attention, "extract_maps", counting)
    monkeypatch.setattr(GroupWriter, "write", crash_after_first_batch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, batch_size=2,
                   progress=False)
    assert len(st.completed(path, VIT, "frozen")) == 2
    monkeypatch.setattr(GroupWriter, "write", real_write)
    calls.clear()
    report = ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, batch_size=2,
                        progress=False)
    assert calls == [2, 2, 2]  # 6 missing images in 3 batches, the first 2 not recomputed
    assert report.models[VIT].n_done_before == 2 and report.models[VIT].n_computed == 6
    # a third run has nothing to do and does not even load the model
    calls.clear()
    again = ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, progress=False)
    assert calls == [] and again.models[VIT].n_computed == 0
    xr.testing.assert_equal(data_of(path)[VIT], data_of(reference[0])[VIT])


def test_the_group_is_opened_once_per_model(tmp_path, monkeypatch, synthetic_root, tiny_weights):
    """One GroupWriter per model: the group's layout is read once, not on every batch."""
    from ssl_attn.store import write as store_write

    opened: list[str] = []
    real_locate = store_write._locate

    def counting(path, key, variant, ids):
        opened.append(key)
        return real_locate(path, key, variant, ids)

    monkeypatch.setattr(store_write, "_locate", counting)
    report = ex.extract(tmp_path / "once.zarr", synthetic_root, VIT, weights_dir=tiny_weights,
                        batch_size=2, progress=False)  # fmt: skip
    assert report.models[VIT].n_computed == 8  # 4 batches
    assert opened == [VIT]


@pytest.mark.filterwarnings("ignore:.*unreadable header:UserWarning")
def test_corrupt_image_is_skipped_and_reported(tmp_path, synthetic_root, tiny_weights):
    from ssl_attn.wikichurches import WikiChurches

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data)
    ids = sorted(WikiChurches(data).images["image_id"])
    bad = ids[3]
    (data / "images" / f"{bad}.jpg").write_bytes(b"this is not a JPEG" * 10)
    path = tmp_path / "skip.zarr"
    report = ex.extract(path, data, VIT, weights_dir=tiny_weights, batch_size=3, progress=False)
    assert [s["image_id"] for s in report.skipped] == [bad]
    assert report.skipped[0]["model"] == VIT and bad in report.skipped[0]["reason"]
    assert report.models[VIT].n_computed == 7 and report.models[VIT].n_skipped == 1
    assert st.completed(path, VIT, "frozen") == set(ids) - {bad}
    tree = st.open_store(path)
    recorded = json.loads(tree.attrs["skipped_images"])
    assert [(r["image_id"], r["model"]) for r in recorded] == [(bad, VIT)]
    ds = tree[VIT].to_dataset()
    assert bool(ds["cls"].sel(image_id=bad).isnull().all())
    assert int(ds["width"].sel(image_id=bad)) == -1  # unknown size until the file reads
    # the file is repaired: a rerun computes just that image and clears the record
    shutil.copy(synthetic_root / "images" / f"{bad}.jpg", data / "images" / f"{bad}.jpg")
    fixed = ex.extract(path, data, VIT, weights_dir=tiny_weights, progress=False)
    assert fixed.models[VIT].n_computed == 1 and fixed.skipped == []
    tree = st.open_store(path)
    assert json.loads(tree.attrs["skipped_images"]) == []
    assert int(tree[VIT]["width"].sel(image_id=bad)) > 0
    assert st.completed(path, VIT, "frozen") == set(ids)


SHARD_SCRIPT = textwrap.dedent(
    """
    import sys
    from ssl_attn.extract import extract, parse_shard
    store, data, weights, shard = sys.argv[1:5]
    report = extract(store, data, {models!r}, weights_dir=weights, batch_size=2,
                     shard=parse_shard(shard), progress=False)
    print(report.n_computed)
    """
)


@pytest.mark.slow
def test_two_shard_processes_equal_one_run(tmp_path, reference, synthetic_root, tiny_weights):
    path = tmp_path / "sharded.zarr"
    keys = (VIT,)  # one model keeps the two subprocesses' start-up (torch, transformers) short
    script = SHARD_SCRIPT.format(models=list(keys))
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), str(synthetic_root),
                          str(tiny_weights), f"{i}/2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    assert [out.strip() for out, _ in outs] == ["4", "4"]  # 4 images each
    ref = {k: v for k, v in data_of(reference[0]).items() if k in keys}
    got = data_of(path)
    assert sorted(got) == sorted(ref)
    for key in keys:
        xr.testing.assert_equal(got[key], ref[key])


@pytest.mark.slow
def test_dask_cluster_run_equals_one_run(tmp_path, reference, synthetic_root, tiny_weights):
    distributed = pytest.importorskip("distributed")
    path = tmp_path / "dask.zarr"
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        reports = ex.extract_on_cluster(
            client, path, synthetic_root, MODELS, weights_dir=tiny_weights, batch_size=2,
            device="auto",
        )
    assert [r.shard for r in reports] == [(0, 2), (1, 2)]
    assert sum(r.n_computed for r in reports) == 8 * len(MODELS)
    assert_same_data(path, reference[0])
