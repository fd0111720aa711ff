"""score(): a hand-built store (2 images, 2 layers, 2 heads, 4x4 grids) scored end to end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from _metrics_fixtures import BOXES, SIZES, model_group, write_dataset, write_store

from ssl_attn.metrics import METRICS, evaluate, make_target
from ssl_attn.metrics import scoring as scoring_mod
from ssl_attn.metrics.scoring import compute as compute_mod
from ssl_attn.metrics.scoring import default_scores_path, score
from ssl_attn.metrics.scoring.layout import Layout, Packing

_BASELINE = compute_mod.baseline_block

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _target(iid: str, frame: int = 224):
    boxes, labels = BOXES[iid]
    return make_target(np.array(boxes), labels=np.array(labels), frame=frame,
                       image_size=SIZES[iid])


def _make_store(tmp_path: Path) -> Path:
    root = write_dataset(tmp_path / "wc")
    groups = {"a": model_group(0),
              "b": model_group(1, complete=(True, False), methods=("probe",))}
    return write_store(tmp_path / "run.zarr", root, groups)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _make_store(tmp_path)


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> tuple[Path, object]:
    """One store scored once (R = 32, 3 uniform draws), shared by the read-only tests."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = _make_store(tmp_path_factory.mktemp("scored"))
        return store, score(store, resolution=32, n_draws=3).load()


def test_scores_equal_the_metric_functions(scored):
    import xarray as xr

    store, ds = scored
    assert default_scores_path(store) == store.with_name("run.scores.zarr")
    assert (store.with_name("run.scores.zarr") / "zarr.json").exists()
    src = xr.open_datatree(str(store), engine="zarr")["a"].dataset
    cls = src["cls"].sel(variant="frozen").values  # (image, layer, head, y, x)
    for i, iid in enumerate(["Q1_wd0", "Q2_wd0"]):
        tgt = _target(iid, 32)
        for layer in (0, 1):
            want = evaluate(cls[i, layer], tgt)  # heads 0, 1
            fused = evaluate(cls[i, layer].mean(axis=0)[None], tgt)  # head = -1
            got = ds.sel({"model": "a", "variant": "frozen", "method": "cls", "layer": layer,
                          "image_id": iid})
            for k in ("coverage", "roc_auc", "pointing_tol", "kl", "emd", "mse"):
                np.testing.assert_allclose(got[k].sel(head=[0, 1]).values, want[k],
                                           rtol=1e-9, err_msg=k)
                np.testing.assert_allclose(got[k].sel(head=-1).values, fused[k][0],
                                           rtol=1e-9, err_msg=k)
            np.testing.assert_array_equal(got["iou"].sel(head=[0, 1]).values, want["iou"])
            np.testing.assert_array_equal(got["iou"].sel(head=-1).values, fused["iou"][0])
            boxes = ds["box_iou"].sel({"model": "a", "method": "cls", "layer": layer,
                                       "head": -1, "variant": "frozen"})
            mine = boxes.where(boxes["box_image_id"] == iid, drop=True).values
            np.testing.assert_allclose(mine, fused["box_iou"][0], rtol=1e-6)
    # Feature unions: image Q1 has labels {0, 1}; its label-0 union holds 2 boxes.
    f = ds["image_feature_n_boxes"].values.tolist()
    assert f == [2, 1, 1]
    assert ds["image_feature_name"].values.tolist()[:2] == ["Portal", "Rose window"]


def test_nan_where_combinations_do_not_exist(scored):
    ds = scored[1]
    sel = {"variant": "frozen"}
    # rollout has no heads: only head -1 exists
    ro = ds["coverage"].sel({**sel, "model": "a", "method": "rollout"})
    assert np.isfinite(ro.sel(head=-1, layer=[0, 1])).all()
    assert np.isnan(ro.sel(head=[0, 1])).all() and np.isnan(ro.sel(layer=-1)).all()
    # model b: probe only (layer -1), image Q2 not complete -> NaN
    pb = ds["coverage"].sel({**sel, "model": "b", "method": "probe", "layer": -1})
    assert np.isfinite(pb.sel(image_id="Q1_wd0")).all()
    assert np.isnan(pb.sel(image_id="Q2_wd0")).all()
    assert np.isnan(ds["coverage"].sel({**sel, "model": "b", "method": "cls"})).all()
    # baselines: method "baseline", layer -1, head -1; uniform has a draw std, others NaN
    bl = ds["iou"].sel({**sel, "method": "baseline", "layer": -1, "head": -1,
                        "percentile": 90.0})
    assert np.isfinite(bl.sel(model=[f"baseline:{b}" for b in
                                     ("uniform", "center", "saliency", "sobel")])).all()
    std = ds["coverage_draw_std"]
    assert (std.sel(model="baseline:uniform") > 0).all()
    assert np.isnan(std.sel(model="a")).all()
    assert ds["iou"].attrs["direction"] == "higher" and ds["kl"].attrs["direction"] == "lower"
    # Uniform noise: the mean IoU@50 over draws is near chance (k / (k + |m| - k·|m|/N)).
    assert 0.0 < float(bl.sel(model="baseline:uniform", image_id="Q2_wd0")) < 0.3


def test_variables_and_root_attrs_follow_the_registry(scored):
    from ssl_attn import stats

    ds = scored[1]
    assert set(ds.data_vars) == set(METRICS) | {f"{k}_draw_std" for k in METRICS}
    for k, m in METRICS.items():
        assert ds[k].dims == ("model", "variant", "method", "layer", "head", *m.dims), k
        assert ds[f"{k}_draw_std"].dims == ("model", *m.dims), k
        assert ds[k].dtype == (np.float64 if m.level == "image" else np.float32), k
    assert ds.attrs["stats_n_boot"] == stats.N_BOOT
    assert ds.attrs["stats_seed"] == getattr(stats, "SEED", 0)
    assert "stats_n_boot" not in ds.attrs["fingerprints"]


def test_evaluate_returns_exactly_the_registry_names():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 4, 4)).astype(np.float32)
    tgt = _target("Q1_wd0", 32)
    for t in (tgt, make_target(np.zeros((0, 4)), frame=32)):  # with boxes, and without
        res = evaluate(maps, t, percentiles=(50, 90))
        assert list(res) == list(METRICS)
        for k, m in METRICS.items():
            width = {"box": t.n_boxes, "feature": t.n_features}
            want = ((3, 2) if m.per_percentile else (3, width[m.level]) if m.level in width
                    else (3,))
            assert res[k].shape == want, k


def test_packed_layout_round_trips():
    rng = np.random.default_rng(1)
    maps = rng.random((5, 4, 4)).astype(np.float32)
    tgt = _target("Q1_wd0", 32)  # 3 boxes of 2 feature types
    res = evaluate(maps, tgt, percentiles=(50, 75, 90))
    packing = Packing(n_percentiles=3, max_boxes=tgt.n_boxes + 2,
                      max_features=tgt.n_features + 1)
    packed = packing.pack(res)
    assert packed.shape == (5, packing.n_out)
    assert packing.n_out == sum(packing.width(k) for k in METRICS)
    # The slices tile the packed axis in registry order.
    stops = [0] + [sl.stop for sl in packing.slices.values()]
    assert [sl.start for sl in packing.slices.values()] == stops[:-1]
    assert stops[-1] == packing.n_out
    back = packing.unpack(packed)
    assert list(back) == list(METRICS)
    for k, v in res.items():
        got = back[k]
        if v.ndim == 2 and METRICS[k].level != "image":
            np.testing.assert_array_equal(got[:, :v.shape[1]], v, err_msg=k)
            assert np.isnan(got[:, v.shape[1]:]).all(), k  # the image's unused slots
        else:
            np.testing.assert_array_equal(got, v, err_msg=k)
    # Leading dims pass through: (2, 5, n_out) unpacks to (2, 5, ...).
    two = packing.unpack(np.stack([packed, packed]))
    np.testing.assert_array_equal(two["iou"][1], res["iou"])


def test_region_rows_address_each_images_own_slots():
    import pandas as pd

    boxes = pd.DataFrame({"image_id": ["b", "b", "a"], "box_index": [0, 1, 0],
                          "feature": ["x", "y", "x"], "label": [0, 1, 0]})
    feats = pd.DataFrame({"image_id": ["b", "b", "a"], "label": [0, 1, 0],
                          "name": ["x", "y", "x"], "n_boxes": [1, 1, 1]})
    layout = Layout(["m"], ["frozen"], ["cls"], [-1], [-1], ["b", "a"], (90.0,), boxes, feats)
    rows, slot = layout.region_rows("box")
    assert rows.tolist() == [0, 0, 1] and slot.tolist() == [0, 1, 0]
    rows, slot = layout.region_rows("feature")
    assert rows.tolist() == [0, 0, 1] and slot.tolist() == [0, 1, 0]


def test_center_baseline_equals_direct_evaluation(scored):
    from ssl_attn.metrics.baselines import center_map

    ds = scored[1]
    want = evaluate(center_map(32)[None], _target("Q2_wd0", 32))
    got = ds.sel({"model": "baseline:center", "variant": "frozen", "method": "baseline",
                  "layer": -1, "head": -1, "image_id": "Q2_wd0"})
    np.testing.assert_allclose(got["roc_auc"].values, want["roc_auc"][0], rtol=1e-9)
    np.testing.assert_array_equal(got["iou"].values, want["iou"][0])


def test_resume_skips_unchanged_groups(store: Path, tmp_path: Path, monkeypatch):
    first = score(store, resolution=16, n_draws=2).load()
    calls: list[int] = []
    real = compute_mod.score_block

    def counting(maps, pos, **kw):
        calls.append(maps.shape[0])
        return real(maps, pos, **kw)

    monkeypatch.setattr(compute_mod, "score_block", counting)
    monkeypatch.setattr(compute_mod, "baseline_block",
                        lambda *a, **k: pytest.fail("baselines must not be recomputed"))
    again = score(store, resolution=16, n_draws=2).load()
    assert calls == []  # nothing recomputed
    np.testing.assert_array_equal(again["coverage"].values, first["coverage"].values)
    # Mark image Q2 complete for model b (new maps): only b is recomputed, in place.
    import xarray as xr

    b = model_group(1, complete=(True, True), methods=("probe",))
    b.attrs["created"] = "later"
    root = xr.open_datatree(str(store), engine="zarr")
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs=dict(root.attrs)),
                                  "/a": root["a"].to_dataset().load(), "/b": b})
    tree.to_zarr(str(store), mode="w", consolidated=True)
    monkeypatch.setattr(compute_mod, "baseline_block", _BASELINE)
    third = score(store, resolution=16, n_draws=2).load()
    assert sum(calls) == 2  # model b's probe maps for its two images, nothing else
    np.testing.assert_array_equal(third["coverage"].sel(model="a").values,
                                  first["coverage"].sel(model="a").values)
    pb = third["coverage"].sel({"model": "b", "variant": "frozen", "method": "probe",
                                "layer": -1})
    assert np.isfinite(pb).all()
    fps = json.loads(third.attrs["fingerprints"])
    assert set(fps) >= {"a/frozen", "b/frozen", "baseline:uniform/frozen"}


def test_in_memory_tree_without_out_returns_dataset(store: Path):
    import xarray as xr

    tree = xr.open_datatree(str(store), engine="zarr")
    ds = score(tree, resolution=16, baselines=False)
    assert "baseline:center" not in ds["model"].values
    assert np.isfinite(ds["coverage"].sel({"model": "a", "method": "cls"})).any()


def test_errors_name_the_problem(tmp_path: Path, store: Path):
    with pytest.raises(FileNotFoundError, match="not an attention store"):
        score(tmp_path / "missing.zarr")
    with pytest.raises(scoring_mod.ScoreError, match="pass data="):
        score(store, data=tmp_path / "nowhere")


@pytest.mark.slow
def test_local_cluster_gives_identical_numbers(store: Path, tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    local = score(store, out=tmp_path / "local.zarr", resolution=16, n_draws=2,
                  chunk_images=1).load()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = score(store, out=tmp_path / "cluster.zarr", resolution=16, n_draws=2,
                       chunk_images=1, scheduler=client).load()
    for k in local.data_vars:
        np.testing.assert_array_equal(local[k].values, remote[k].values, err_msg=k)
