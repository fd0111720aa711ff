"""The attention store (ssl_attn.store) on plain NumPy arrays: no models, no dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from ssl_attn import store as st
from ssl_attn.store import write as store_write

IDS = ["Q10_wd0", "Q11_wd0", "Q12_wd1", "Q13_wd0", "Q14_wd0"]
LAYERS = (0, 1, 2)
HEADS = (0, 1)
GRID = (3, 4)  # non-square: catches transposes
VARS = {"cls": st.VARIABLE_DIMS["cls"], "rollout": st.VARIABLE_DIMS["rollout"],
        "register_mass": st.VARIABLE_DIMS["register_mass"]}


def group_kwargs(**over):
    kw = dict(
        image_ids=IDS,
        image_coords={"style": ["Q46261", None, "Q176483", "Q46261", "Q840829"],
                      "width": [640, 800, 1024, 300, 200], "height": [480, 600, 768, 400, 100]},
        layers=LAYERS, heads=HEADS, grid=GRID, variables=VARS, variant="frozen",
        attrs=st.provenance(device="cpu", dtype="float32", synthetic=True, model_key="vit",
                            grid=list(GRID), patch_size=16),
    )  # fmt: skip
    kw.update(over)
    return kw


def batch_maps(seed: int, b: int) -> dict[str, np.ndarray]:
    """Random maps for ``b`` images, shaped as write_maps expects."""
    rng = np.random.default_rng(seed)
    L, H, (gh, gw) = len(LAYERS), len(HEADS), GRID
    return {"cls": rng.random((b, L, H, gh, gw), dtype=np.float32),
            "rollout": rng.random((b, L, gh, gw), dtype=np.float32),
            "register_mass": rng.random((b, L, H), dtype=np.float32)}  # fmt: skip


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "attn.zarr"
    st.init_store(p, synthetic=True, dataset="synthetic-test")
    assert st.init_model_group(p, "vit", **group_kwargs()) is True
    return p


def read_group(path, key="vit") -> xr.Dataset:
    return st.open_store(path)[key].to_dataset().load()


def test_init_preallocates_nan_and_incomplete(path):
    ds = read_group(path)
    assert ds["cls"].dims == ("variant", "image_id", "layer", "head", "y", "x")
    assert ds["cls"].shape == (1, 5, 3, 2, 3, 4)
    assert ds["rollout"].shape == (1, 5, 3, 3, 4)
    assert bool(ds["cls"].isnull().all()) and bool(ds["register_mass"].isnull().all())
    assert not ds["complete"].any()
    assert ds["cls"].dtype == np.float32
    # relative pixel centres of a 3 x 4 grid
    np.testing.assert_allclose(ds["y"], [1 / 6, 0.5, 5 / 6])
    np.testing.assert_allclose(ds["x"], [0.125, 0.375, 0.625, 0.875])
    assert list(ds["style"].values) == ["Q46261", "", "Q176483", "Q46261", "Q840829"]
    assert list(ds["width"].values) == [640, 800, 1024, 300, 200]
    assert st.completed(path, "vit", "frozen") == set()
    # one image per chunk along image_id, whole maps inside a chunk
    meta = json.loads((path / "vit" / "cls" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 3, 2, 3, 4]
    # pre-allocation writes metadata only: no chunk files yet
    assert not (path / "vit" / "cls" / "c").exists()


def test_init_is_idempotent(path):
    before = read_group(path)
    created = before.attrs["created"]
    assert st.init_model_group(path, "vit", **group_kwargs()) is False
    after = read_group(path)
    xr.testing.assert_identical(before, after)
    assert after.attrs["created"] == created


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"grid": (4, 4)}, "grid"),
        ({"heads": (0, 1, 2)}, "'head'"),
        ({"image_ids": [*IDS[:4], "Q99_wd0"]}, "'image_id'"),
        ({"variables": {**VARS, "probe": st.VARIABLE_DIMS["probe"]}}, "variables"),
    ],
)
def test_conflicting_init_raises_naming_the_field(path, over, field):
    # a group holding a complete image is never rebuilt (one without is: test_data_safety.py)
    st.write_maps(path, "vit", "frozen", IDS[:1], batch_maps(0, 1))
    with pytest.raises(st.StoreError, match=field) as info:
        st.init_model_group(path, "vit", **group_kwargs(**over))
    assert "vit" in str(info.value) and str(path) in str(info.value)


def test_region_write_lands_at_the_right_images(path):
    maps = batch_maps(0, 2)
    # out of store order and not contiguous: Q14 is index 4, Q11 index 1
    st.write_maps(path, "vit", "frozen", ["Q14_wd0", "Q11_wd0"], maps)
    ds = read_group(path)
    v = ds.sel(variant="frozen")
    np.testing.assert_array_equal(v["cls"].sel(image_id="Q14_wd0"), maps["cls"][0])
    np.testing.assert_array_equal(v["cls"].sel(image_id="Q11_wd0"), maps["cls"][1])
    np.testing.assert_array_equal(v["rollout"].sel(image_id="Q11_wd0"), maps["rollout"][1])
    np.testing.assert_array_equal(v["register_mass"].sel(image_id="Q14_wd0"),
                                  maps["register_mass"][0])  # fmt: skip
    for other in ("Q10_wd0", "Q12_wd1", "Q13_wd0"):
        assert bool(v["cls"].sel(image_id=other).isnull().all())
    assert list(v["complete"].values) == [False, True, False, False, True]
    assert st.completed(path, "vit", "frozen") == {"Q11_wd0", "Q14_wd0"}


def test_write_rejects_wrong_shapes_and_variables(path):
    maps = batch_maps(0, 1)
    with pytest.raises(st.StoreError, match=r"missing: \[.rollout.\]"):
        st.write_maps(path, "vit", "frozen", ["Q10_wd0"],
                      {k: maps[k] for k in ("cls", "register_mass")})  # fmt: skip
    bad = {**maps, "cls": maps["cls"][:, :, :, :2]}
    with pytest.raises(st.StoreError, match=r"'cls'.*\(1, 3, 2, 3, 4\)"):
        st.write_maps(path, "vit", "frozen", ["Q10_wd0"], bad)
    with pytest.raises(st.StoreError, match="no image_id"):
        st.write_maps(path, "vit", "frozen", ["Q99_wd0"], maps)
    with pytest.raises(st.StoreError, match="no variant 'lora'"):
        st.write_maps(path, "vit", "lora", ["Q10_wd0"], maps)
    assert st.completed(path, "vit", "frozen") == set()


def test_complete_is_marked_only_after_the_maps(path, monkeypatch):
    order = []
    real_region, real_mark = store_write._write_region, store_write._mark_complete

    def spy_region(path_, key, data, *a):
        order.append(tuple(sorted(data)))
        return real_region(path_, key, data, *a)

    def spy_mark(*a):
        order.append("mark")
        return real_mark(*a)

    monkeypatch.setattr(store_write, "_write_region", spy_region)
    monkeypatch.setattr(store_write, "_mark_complete", spy_mark)
    st.write_maps(path, "vit", "frozen", ["Q10_wd0", "Q13_wd0"], batch_maps(1, 2))
    maps_key = ("cls", "register_mass", "rollout")
    # two runs of maps (indices 0 and 3), then the completion step, which writes only `complete`
    assert order == [maps_key, maps_key, "mark", ("complete",), ("complete",)]


def test_crash_before_marking_leaves_images_incomplete_and_rerun_fixes_it(path, monkeypatch):
    first = batch_maps(2, 2)

    def crash(*a, **k):
        raise KeyboardInterrupt("simulated crash between map write and completion")

    monkeypatch.setattr(store_write, "_mark_complete", crash)
    with pytest.raises(KeyboardInterrupt):
        st.write_maps(path, "vit", "frozen", ["Q12_wd1", "Q13_wd0"], first)
    monkeypatch.undo()
    ds = read_group(path).sel(variant="frozen")
    # the maps reached disk, yet nobody may read them as complete
    np.testing.assert_array_equal(ds["cls"].sel(image_id="Q12_wd1"), first["cls"][0])
    assert st.completed(path, "vit", "frozen") == set()
    # the rerun rewrites them (with what it computes now) and completes
    second = batch_maps(3, 2)
    st.write_maps(path, "vit", "frozen", ["Q12_wd1", "Q13_wd0"], second)
    ds = read_group(path).sel(variant="frozen")
    np.testing.assert_array_equal(ds["cls"].sel(image_id="Q13_wd0"), second["cls"][1])
    assert st.completed(path, "vit", "frozen") == {"Q12_wd1", "Q13_wd0"}


def test_new_variant_is_appended(path):
    frozen = batch_maps(4, 1)
    st.write_maps(path, "vit", "frozen", ["Q10_wd0"], frozen)
    lora_attrs = st.provenance(device="cpu", dtype="float32", synthetic=True, weights="/ckpt/lora")
    assert st.init_model_group(path, "vit", **group_kwargs(variant="lora", attrs=lora_attrs))
    ds = read_group(path)
    assert list(ds["variant"].values) == ["frozen", "lora"]
    assert ds["cls"].shape == (2, 5, 3, 2, 3, 4)
    # the frozen data is untouched, the new variant is empty
    np.testing.assert_array_equal(ds["cls"].sel(variant="frozen", image_id="Q10_wd0"),
                                  frozen["cls"][0])  # fmt: skip
    assert bool(ds["cls"].sel(variant="lora").isnull().all())
    assert st.completed(path, "vit", "lora") == set()
    assert st.completed(path, "vit", "frozen") == {"Q10_wd0"}
    # group attrs survive the append; each variant's provenance is recorded
    assert ds.attrs["model_key"] == "vit"
    per_variant = json.loads(ds.attrs["variant_provenance"])
    assert set(per_variant) == {"frozen", "lora"}
    assert per_variant["lora"]["weights"] == "/ckpt/lora"
    lora = batch_maps(5, 1)
    st.write_maps(path, "vit", "lora", ["Q10_wd0"], lora)
    ds = read_group(path)
    np.testing.assert_array_equal(ds["rollout"].sel(variant="lora", image_id="Q10_wd0"),
                                  lora["rollout"][0])  # fmt: skip
    np.testing.assert_array_equal(ds["rollout"].sel(variant="frozen", image_id="Q10_wd0"),
                                  frozen["rollout"][0])  # fmt: skip


def _zarr_array_behind(da: xr.DataArray):
    """The zarr.Array under xarray's lazy wrappers (MemoryCached → CopyOnWrite → Lazy → Zarr)."""
    data = da.variable._data
    while hasattr(data, "array"):
        data = data.array
    return data._array


def test_open_store_is_lazy_and_read_only(path):
    maps = batch_maps(6, 1)
    st.write_maps(path, "vit", "frozen", ["Q12_wd1"], maps)
    tree = st.open_store(path)
    cls = tree["vit"]["cls"]
    assert not isinstance(cls.variable._data, np.ndarray)  # lazy: nothing read yet
    backing = _zarr_array_behind(cls)
    assert backing.read_only
    with pytest.raises(ValueError, match="read-only"):
        backing[0, 0] = 1.0
    # changing the opened tree in memory never reaches the disk
    loaded = cls.load()
    loaded[:] = 7.0
    again = st.open_store(path)["vit"]["cls"].sel(variant="frozen", image_id="Q12_wd1")
    np.testing.assert_array_equal(again, maps["cls"][0])
    with pytest.raises(FileNotFoundError, match="not an attention store"):
        st.open_store(path.parent / "nope.zarr")


def test_open_store_with_dask_chunks_per_image(path):
    pytest.importorskip("dask")
    tree = st.open_store(path, chunks={})
    assert tree["vit"]["cls"].chunks[1] == (1,) * len(IDS)


def test_select_map_head_mean_and_layers(path):
    maps = batch_maps(7, 1)
    st.write_maps(path, "vit", "frozen", ["Q13_wd0"], maps)
    tree = st.open_store(path)
    fused = st.select_map(tree, "vit", "cls", layer=1, head=-1, image_id="Q13_wd0")
    assert fused.dims == ("y", "x") and fused.shape == GRID
    np.testing.assert_allclose(fused, maps["cls"][0, 1].mean(axis=0), rtol=1e-6)
    one = st.select_map(tree, "vit", "cls", layer=2, head=1, image_id="Q13_wd0")
    np.testing.assert_array_equal(one, maps["cls"][0, 2, 1])
    last = st.select_map(tree, "vit", "rollout", image_id="Q13_wd0")  # layer=None → last layer
    np.testing.assert_array_equal(last, maps["rollout"][0, 2])
    with pytest.raises(KeyError, match="no head 5"):
        st.select_map(tree, "vit", "cls", layer=0, head=5, image_id="Q13_wd0")
    with pytest.raises(KeyError, match="no method 'probe'"):
        st.select_map(tree, "vit", "probe", image_id="Q13_wd0")
    with pytest.raises(KeyError, match="no model group 'mae'"):
        st.select_map(tree, "mae", "cls", image_id="Q13_wd0")


def test_provenance_attrs_are_present_and_json_decodable(path):
    attrs = read_group(path).attrs
    for key in ("ssl_attn_version", "git_commit", "library_versions", "device", "dtype",
                "created", "synthetic"):  # fmt: skip
        assert key in attrs, key
    assert isinstance(attrs["synthetic"], bool) and attrs["synthetic"] is True
    versions = json.loads(attrs["library_versions"])
    assert versions["numpy"] == np.__version__ and versions["xarray"] == xr.__version__
    assert json.loads(attrs["grid"]) == [3, 4]
    assert attrs["patch_size"] == 16 and attrs["dtype"] == "float32"
    assert len(attrs["git_commit"]) == 40 or attrs["git_commit"] == "unknown"
    for value in attrs.values():
        assert isinstance(value, str | int | float | bool)
    from datetime import datetime

    assert datetime.fromisoformat(attrs["created"]).tzinfo is not None


def test_encode_attrs_round_trip():
    enc = st.encode_attrs({"a": (1, 2), "b": {"k": np.float32(0.5)}, "c": None, "d": np.int64(3),
                           "e": "text", "f": True})  # fmt: skip
    assert enc == {"a": "[1, 2]", "b": '{"k": 0.5}', "c": "null", "d": 3, "e": "text", "f": True}
    assert [st.decode_attr(enc[k]) for k in "abcdef"] == [[1, 2], {"k": 0.5}, None, 3, "text",
                                                         True]  # fmt: skip


def test_root_attrs_and_skipped_images(path):
    attrs = st.open_store(path).attrs
    assert attrs["synthetic"] is True and attrs["dataset"] == "synthetic-test"
    assert json.loads(attrs["skipped_images"]) == []
    rec = {"image_id": "Q12_wd1", "model": "vit", "variant": "frozen", "reason": "OSError: bad"}
    st.add_skipped(path, [rec])
    st.add_skipped(path, [{**rec, "reason": "OSError: still bad"}])  # replaces, no duplicate
    skipped = json.loads(st.open_store(path).attrs["skipped_images"])
    assert skipped == [{**rec, "reason": "OSError: still bad"}]
    st.add_skipped(path, [], clear=[rec])
    assert json.loads(st.open_store(path).attrs["skipped_images"]) == []
    with pytest.raises(st.StoreError, match="synthetic"):
        st.init_store(path, synthetic=False, dataset="real")


def test_concurrent_init_from_two_processes(tmp_path):
    """Two processes initialise the same group at once: one creates, one finds it; no error."""
    p = tmp_path / "race.zarr"
    code = (
        "import sys, json; from ssl_attn import store as st; "
        "ids=[f'Q{i}_wd0' for i in range(4)]; "
        "st.init_store(sys.argv[1], synthetic=True, dataset='x'); "
        "print(json.dumps(st.init_model_group(sys.argv[1], 'm', image_ids=ids, layers=(0,), "
        "heads=(0,), grid=(2, 2), variables={'cls': ('layer','head','y','x')})))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err for _, err in results]
    assert sorted(out.strip() for out, _ in results) == ["false", "true"]
    ds = st.open_store(p)["m"].to_dataset()
    assert ds["cls"].shape == (1, 4, 1, 1, 2, 2) and not ds["complete"].any()


def test_import_is_light():
    code = "import sys, ssl_attn.store; print(sorted({'torch', 'dask'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ fast read API
def _builder():
    try:  # tests/ as a plain folder: pytest puts it on sys.path
        import _store_builder
    except ModuleNotFoundError:  # tests/ as a package
        from tests import _store_builder
    return _store_builder


def _selections(ds, method):
    """Every (layer, head) a caller may ask for: each coordinate, plus None / -1 defaults."""
    var = ds[method]
    layers = [int(v) for v in var["layer"].values] + [None] if "layer" in var.dims else [None, -1]
    heads = [int(v) for v in var["head"].values] + [-1, None] if "head" in var.dims else [None, -1]
    return [(la, h) for la in layers for h in heads]


def _assert_fast_equals_select_map(path):
    tree = st.open_store(path)
    root = st.open_root(path)
    n = 0
    for model in st.model_groups(tree):
        ds = tree[model].dataset
        for method in [m for m in st.MAP_METHODS if m in ds.data_vars]:
            for variant in [str(v) for v in ds["variant"].values]:
                for image_id in [str(v) for v in ds["image_id"].values]:
                    cube = st.read_cube(root, ds, model, method, variant, image_id)
                    assert cube.dtype == np.float32
                    want_dims = [d for d in ("layer", "head", "y", "x") if d in ds[method].dims]
                    np.testing.assert_array_equal(
                        cube, ds[method].sel(variant=variant, image_id=image_id)
                        .transpose(*want_dims).values)
                    for layer, head in _selections(ds, method):
                        ref = st.select_map(tree, model, method, variant=variant, layer=layer,
                                            head=head, image_id=image_id)
                        got = st.read_map(root, ds, model, method, variant, image_id,
                                          layer, head)
                        assert got.dtype == ref.dtype == np.float32
                        # bit-identical, NaN where NaN (assert_array_equal treats NaN == NaN)
                        np.testing.assert_array_equal(got, ref.values, strict=True)
                        n += 1
    return n


def test_fast_read_equals_select_map_for_every_selection(tmp_path):
    """read_cube / read_map (the dashboard's path) and select_map (the lazy xarray path) give
    the same bits for every model, method, variant, layer, head (incl. the head-mean) and
    image of the explorer's test store."""
    b = _builder()
    store = b.build_store(tmp_path / "t.zarr", content="random")
    n = _assert_fast_equals_select_map(store)
    assert n > 300


def test_fast_read_head_mean_propagates_nan_like_select_map(path):
    maps = batch_maps(8, 2)
    maps["cls"][0, 1, 0, 2, 3] = np.nan  # one head of one pixel missing
    st.write_maps(path, "vit", "frozen", ["Q10_wd0", "Q11_wd0"], maps)
    _assert_fast_equals_select_map(path)  # also covers the never-written (all-NaN) images
    tree, root = st.open_store(path), st.open_root(path)
    ds = tree["vit"].dataset
    fused = st.read_map(root, ds, "vit", "cls", "frozen", "Q10_wd0", 1, -1)
    assert np.isnan(fused[2, 3]) and np.isnan(fused).sum() == 1  # NaN-propagating, not nanmean
    want = st.head_mean(maps["cls"][0, 1], axis=0)
    np.testing.assert_array_equal(fused, want)
    assert want.dtype == np.float32
    assert np.isnan(st.read_map(root, ds, "vit", "cls", "frozen", "Q12_wd1", 0, 1)).all()


def test_fast_read_errors_name_what_is_missing(path):
    tree, root = st.open_store(path), st.open_root(path)
    ds = tree["vit"].dataset
    with pytest.raises(KeyError, match="no method 'probe'"):
        st.read_cube(root, ds, "vit", "probe", "frozen", "Q10_wd0")
    with pytest.raises(KeyError, match="no method 'complete'"):
        st.read_cube(root, ds, "vit", "complete", "frozen", "Q10_wd0")
    with pytest.raises(KeyError, match="no variant 'lora'"):
        st.read_cube(root, ds, "vit", "cls", "lora", "Q10_wd0")
    with pytest.raises(KeyError, match="no image_id 'Q99_wd0'"):
        st.read_map(root, ds, "vit", "cls", "frozen", "Q99_wd0", 0, 0)
    with pytest.raises(KeyError, match=r"vit/cls: no layer 7 \(has \[0, 1, 2\]\)"):
        st.read_map(root, ds, "vit", "cls", "frozen", "Q10_wd0", 7, 0)
    with pytest.raises(KeyError, match=r"vit/cls: no head 5 \(has \[0, 1\]\)"):
        st.read_map(root, ds, "vit", "cls", "frozen", "Q10_wd0", 0, 5)
    cube = np.zeros((3, 4), np.float32)
    with pytest.raises(KeyError, match="m/probe has no layers"):
        st.pick_map(cube, [], [], 2, None, name="m/probe")
    with pytest.raises(KeyError, match="m/rollout has no heads"):
        st.pick_map(cube, [], [], None, 1, name="m/rollout")
    with pytest.raises(KeyError, match="no 'embedding' variable"):
        st.read_embedding(root, ds, "vit", "frozen", "Q10_wd0")


def test_read_embedding_is_the_stored_float16_as_float32(tmp_path):
    b = _builder()
    store = b.build_store(tmp_path / "t.zarr")
    tree, root = st.open_store(store), st.open_root(store)
    ds = tree["vit"].dataset
    got = st.read_embedding(root, ds, "vit", "full", "Q200_wd0")
    want = ds["embedding"].sel(variant="full", image_id="Q200_wd0").transpose(
        "y", "x", "channel").values
    assert got.dtype == np.float32 and want.dtype == np.float16
    np.testing.assert_array_equal(got, want.astype(np.float32))
