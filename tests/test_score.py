"""score(): a hand-built store (2 images, 2 layers, 2 heads, 4x4 grids) scored end to end."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from _metrics_fixtures import BOXES, SIZES, model_group, write_dataset, write_store

from ssl_attn.metrics import evaluate, make_target
from ssl_attn.metrics import scoring as scoring_mod
from ssl_attn.metrics.scoring import default_scores_path, score

_BASELINE = scoring_mod._baseline_block

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
    real = scoring_mod._score_block

    def counting(maps, pos, **kw):
        calls.append(maps.shape[0])
        return real(maps, pos, **kw)

    monkeypatch.setattr(scoring_mod, "_score_block", counting)
    monkeypatch.setattr(scoring_mod, "_baseline_block",
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
    monkeypatch.setattr(scoring_mod, "_baseline_block", _BASELINE)
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
