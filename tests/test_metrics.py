"""Metric functions on hand-computed cases (ssl_attn.metrics.core / resample / target)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssl_attn.metrics import (
    METRICS,
    PERCENTILES,
    area_precision,
    coverage,
    emd,
    evaluate,
    interpolation_matrix,
    iou,
    kl_divergence,
    make_target,
    pointing,
    roc_auc,
    soft_mse,
    top_region,
    topk_size,
    upsample,
)
from ssl_attn.metrics.baselines import baseline_maps, center_map, sobel_map, uniform_maps


# ------------------------------------------------------------------ upsampling
def test_upsample_2x2_to_4x4_hand_computed():
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    want = np.array([[0.0, 0.25, 0.75, 1.0],
                     [0.5, 0.75, 1.25, 1.5],
                     [1.5, 1.75, 2.25, 2.5],
                     [2.0, 2.25, 2.75, 3.0]])
    np.testing.assert_allclose(upsample(a, 4)[0], want, atol=1e-6)
    np.testing.assert_allclose(interpolation_matrix(2, 4),
                               [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    assert np.array_equal(interpolation_matrix(5, 5), np.eye(5))


def test_upsample_matches_torch_align_corners_false():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    maps = rng.random((3, 14, 16)).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(224, 200),
                                           mode="bilinear", align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(upsample(maps, (224, 200)), want, atol=2e-6)


def test_upsample_does_not_depend_on_batch_size():
    maps = np.random.default_rng(1).random((7, 16, 16)).astype(np.float32)
    whole = upsample(maps, 224)
    for i in range(7):
        assert np.array_equal(upsample(maps[i:i + 1], 224)[0], whole[i])


CONSTANTS = (1 / 196, 1 / 256, 0.3, 1e-6, 7.0)


@pytest.mark.parametrize("grid", [14, 16])
@pytest.mark.parametrize("value", CONSTANTS)
def test_constant_map_stays_exactly_constant(grid, value):
    """(S1/S2) A constant map upsamples to one value (float32 weights used to leave a
    one-ulp ripple that then decided argmax and top-k), so the tie rule decides: argmax 0,
    top-k = the first k pixels; its MSE is NaN (the shortcut formula used to give 0.0)."""
    a = np.full((1, grid, grid), value, np.float32)
    u = upsample(a, 224)
    assert np.unique(u).size == 1 and u[0, 0, 0] == np.float32(value)
    assert u.argmax() == 0
    tgt = make_target(np.array([[0.1, 0.2, 0.3, 0.25]]))
    res = evaluate(a, tgt)
    assert np.isnan(res["mse"]).all()
    assert np.isnan(soft_mse(a, tgt.soft.reshape(224, 224))).all()
    top = top_region(a[0], 90)
    k = topk_size(224 * 224, 90)
    assert top.reshape(-1)[:k].all() and not top.reshape(-1)[k:].any()


def test_issue_reproducer():
    a = np.full((1, 14, 14), 1 / 196, np.float32)
    u = upsample(a, 224)
    assert (np.unique(u).size, u.argmax()) == (1, 0)
    res = evaluate(a, make_target(np.array([[0.1, 0.2, 0.3, 0.25]])))["mse"]
    assert res.shape == (1,) and np.isnan(res[0])


def _mse_brute_force(maps: np.ndarray, soft: np.ndarray) -> np.ndarray:
    up = upsample(maps, soft.shape).reshape(len(maps), -1).astype(np.float64)
    t = soft.reshape(-1) / soft.sum()
    t = (t - t.min()) / (t.max() - t.min())
    a = (up - up.min(axis=1, keepdims=True)) / np.ptp(up, axis=1, keepdims=True)
    return ((a - t) ** 2).mean(axis=1)


@pytest.mark.parametrize("base", [0.3, 7.0, 1e-6, -2.5])
def test_mse_of_near_constant_maps_is_exact(base):
    """A real but tiny range (a few float32 ulps around a large offset) is scaled like any
    other: the direct float64 MSE equals a brute force (the Σa² − 2·lo·Σa + N·lo² shortcut
    cancelled every digit here)."""
    rng = np.random.default_rng(11)
    ulps = rng.integers(0, 4, (3, 14, 14))
    maps = np.full(ulps.shape, base, np.float32)
    for _ in range(3):  # add 0..3 ulps per pixel
        step = ulps > 0
        maps[step] = np.nextafter(maps[step], np.float32(np.inf))
        ulps = ulps - step
    assert np.unique(maps).size > 1
    tgt = make_target(np.array([[0.1, 0.2, 0.3, 0.25], [0.6, 0.5, 0.3, 0.4]]), frame=56)
    soft = tgt.soft.reshape(56, 56)
    want = _mse_brute_force(maps, soft)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(evaluate(maps, tgt)["mse"], want, rtol=1e-12)
    np.testing.assert_allclose(soft_mse(maps, soft), want, rtol=1e-12)


def _tie_heavy_maps(rng: np.random.Generator, grid: int) -> np.ndarray:
    """Maps full of ties: constants, a few plateaus, quantised noise, and plain noise."""
    maps = [np.full((grid, grid), v) for v in (0.0, 1 / 196, 0.3, 7.0)]
    block = max(grid // 4, 1)
    for _ in range(3):
        cells = rng.integers(0, 3, (-(-grid // block),) * 2) / 3.0
        maps.append(np.kron(cells, np.ones((block, block)))[:grid, :grid])
    maps += [np.round(rng.random((grid, grid)) * 3) for _ in range(4)]
    maps += [np.round(rng.random((grid, grid)), 1) - 0.5 for _ in range(2)]  # signed, ties
    maps += [rng.random((grid, grid)) for _ in range(3)]
    return np.stack(maps).astype(np.float32)


@pytest.mark.parametrize("grid", [14, 16])
def test_dashboard_values_and_region_are_the_metrics_own(grid):
    """The upsample of one map (the dashboard's call) is bit for bit the batch's frame
    values in EvalBatch/evaluate; top_region is exactly their top-k under the tie rule, and
    IoU@p of that set with the union is evaluate's IoU@p for every p."""
    from ssl_attn.metrics import EvalBatch

    rng = np.random.default_rng(grid)
    maps = _tie_heavy_maps(rng, grid)
    boxes = np.array([[0.05, 0.1, 0.4, 0.35], [0.5, 0.45, 0.3, 0.5], [0.0, 0.0, 0.2, 0.2]])
    for frame in (224, (112, 96)):
        tgt = make_target(boxes, labels=[1, 2, 1], frame=frame, image_size=(480, 640))
        fh, fw = tgt.frame
        batch = EvalBatch(maps, tgt.frame).flat
        res = evaluate(maps, tgt, batch_size=5)
        union = tgt.union
        for i, m in enumerate(maps):
            one = upsample(m, tgt.frame)[0]
            assert np.array_equal(one.reshape(-1), batch[i], equal_nan=True)
            order = np.lexsort((np.arange(fh * fw), -(batch[i] + np.float32(0.0))))
            for j, p in enumerate(PERCENTILES):
                top = top_region(m, p, tgt.frame)
                k = topk_size(fh * fw, p)
                want = np.zeros(fh * fw, bool)
                want[order[:k]] = True
                np.testing.assert_array_equal(top.reshape(-1), want, err_msg=f"map {i}, p {p}")
                inter = np.count_nonzero(top.reshape(-1) & union)
                got = inter / np.count_nonzero(top.reshape(-1) | union)
                assert got == res["iou"][i, j], (i, p)


def test_top_region_of_a_map_with_nan_is_empty():
    a = np.ones((4, 4), np.float32)
    a[2, 1] = np.nan
    assert not top_region(a, 50, 8).any()
    with pytest.raises(ValueError, match="one \\(gh, gw\\) map"):
        top_region(np.ones((2, 4, 4)), 90)


def test_topk_size_rounds_half_up():
    assert topk_size(50176, 90) == 5018  # 5017.6
    assert topk_size(50176, 85) == 7526  # 7526.4
    assert topk_size(16, 75) == 4
    assert topk_size(10, 95) == 1  # 0.5 rounds up


# ------------------------------------------------------------------ IoU and precision
TIES = np.array([[3, 2, 2, 2],
                 [2, 0, 0, 0],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]], dtype=np.float32)
FIRST_COLUMN = np.zeros((4, 4), bool)
FIRST_COLUMN[:, 0] = True


def test_iou_4x4_with_ties():
    # p=75: k=4 -> the 3 and the three lowest-index 2s = first row; ∩ first column = {0}:
    # IoU = 1/(4+4-1). p=50: k=8 -> the five non-zeros then zeros at 5, 6, 7 = rows 0-1;
    # ∩ = {0, 4}: IoU = 2/(8+4-2).
    got = iou(TIES, FIRST_COLUMN, percentiles=(75, 50))
    np.testing.assert_allclose(got, [[1 / 7, 2 / 10]])


def test_area_precision_uses_the_same_tie_rule():
    np.testing.assert_allclose(area_precision(TIES, FIRST_COLUMN), [0.25])


def test_cut_inside_a_run_of_ties_follows_flat_index_not_mask():
    # Five 1s at flat indices 0-4, zeros elsewhere; the mask is column 1 (pixels 1, 5, 9, 13).
    # Sorting by value alone could put mask pixel 1 first among the tied 1s; the tie rule
    # wants the lower flat index first, so:
    a = np.zeros((4, 4), np.float32)
    a.reshape(-1)[:5] = 1.0
    col = np.zeros((4, 4), bool)
    col[:, 1] = True
    # k = round(16·5/100) = 1: top-1 = pixel 0, not in the mask -> IoU 0 / (1 + 4 - 0).
    np.testing.assert_array_equal(iou(a, col, percentiles=(95, 75)), [[0.0, 1 / 7]])
    # top-|m| = top-4 = pixels 0-3 -> one mask pixel (1).
    np.testing.assert_array_equal(area_precision(a, col), [0.25])
    # U: mask pixel 1 (value 1) beats the 8 non-mask zeros and ties the 4 non-mask 1s (+2);
    # each mask zero ties the 8 non-mask zeros (+4): U = 10 + 3·4 = 22 of 4·12 pairs.
    np.testing.assert_array_equal(roc_auc(a, col), [22 / 48])
    tgt = make_target(np.array([[0.25, 0.0, 0.25, 1.0]]), frame=4)  # the same column
    res = evaluate(a[None], tgt)
    np.testing.assert_array_equal(res["box_iou"], [[1 / 7]])  # k = 4: pixels 0-3, 1 hit
    np.testing.assert_array_equal(res["feature_iou"], [[1 / 7]])


def _reference_ranks(maps: np.ndarray, target) -> dict[str, np.ndarray]:
    """Brute force of the rank metrics (the definitions, not the fast kernels): a full
    lexsort per map (value descending, flat index ascending) and scipy's mid-ranks."""
    from scipy.stats import rankdata

    flat = upsample(maps, target.frame).reshape(len(maps), -1) + np.float32(0.0)
    npix = flat.shape[1]
    union, area = target.union, int(target.union.sum())
    out = {k: [] for k in ("iou", "area_precision", "roc_auc", "region_iou", "top")}
    for v in flat:
        order = np.lexsort((np.arange(npix), -v))
        def hits(k, m, order=order):
            return int(m[order[:k]].sum())
        ks = [topk_size(npix, p) for p in PERCENTILES]
        out["iou"].append([hits(k, union) / (k + area - hits(k, union)) for k in ks])
        out["area_precision"].append(hits(area, union) / area)
        r = rankdata(v)  # ascending, ties get their mean rank
        u = r[union].sum() - area * (area + 1) / 2
        out["roc_auc"].append(u / (area * (npix - area)))
        out["region_iou"].append([hits(m.sum(), m) / (2 * m.sum() - hits(m.sum(), m))
                                  for m in target.regions])
        out["top"].append(order[0])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("kind", ["levels", "signed", "smooth", "frame_noise"])
def test_rank_kernels_equal_brute_force_on_maps_with_ties(kind):
    """Regression for the sort-free-of-index kernels (one uint32 (value, mask-bit) sort):
    IoU@p, precision, AUC and per-region IoU equal a brute-force lexsort bit for bit,
    including mixed runs of ties cut by k, negative values and -0.0."""
    rng = np.random.default_rng({"levels": 1, "signed": 2, "smooth": 3, "frame_noise": 4}[kind])
    boxes = np.array([[0.05, 0.1, 0.4, 0.35], [0.5, 0.45, 0.3, 0.5], [0.3, 0.3, 0.3, 0.2],
                      [0.8, 0.0, 0.2, 0.2]])
    for frame, grid in ((16, 4), (32, 7), (56, 14)):
        tgt = make_target(boxes, labels=[3, 1, 3, 2], frame=frame, image_size=(480, 640))
        if kind == "levels":  # a few levels: long runs of ties crossing box edges
            maps = rng.integers(0, 3, (6, grid, grid)).astype(np.float32)
        elif kind == "signed":
            maps = rng.integers(-2, 3, (6, grid, grid)).astype(np.float32)
            maps[maps == 0] = -0.0
        elif kind == "smooth":  # bilinear plateaus at the borders give the ties
            maps = rng.random((6, grid, grid)).astype(np.float32)
            maps[0] = 0.25  # constant map: one run of N ties
        else:  # maps at frame size with coarse levels (like baselines)
            maps = (rng.integers(0, 40, (6, frame, frame)) / 8).astype(np.float32)
        res = evaluate(maps, tgt, batch_size=4)
        ref = _reference_ranks(maps, tgt)
        np.testing.assert_array_equal(res["iou"], ref["iou"])
        np.testing.assert_array_equal(res["area_precision"], ref["area_precision"])
        np.testing.assert_array_equal(res["roc_auc"], ref["roc_auc"])
        np.testing.assert_array_equal(
            np.concatenate([res["box_iou"], res["feature_iou"]], axis=1), ref["region_iou"])
        np.testing.assert_array_equal(res["pointing"], tgt.union[ref["top"]].astype(float))


def test_emd_reduced_problem_equals_full_ot_emd2():
    """EMD solves W1 on the cells where map and target differ (Kantorovich–Rubinstein);
    the optimum equals POT's ot.emd2 on the full 64x64 problem to solver rounding."""
    ot = pytest.importorskip("ot")
    from ssl_attn.metrics.resample import bin_matrix
    from ssl_attn.metrics.wasserstein import ground_cost

    rng = np.random.default_rng(7)
    boxes = np.array([[0.1, 0.2, 0.3, 0.3], [0.6, 0.5, 0.3, 0.4]])
    tgt = make_target(boxes, frame=32)
    maps = np.concatenate([upsample(rng.random((20, 8, 8)) ** 4, 32),
                           tgt.soft.reshape(1, 32, 32).astype(np.float32)])
    got = evaluate(maps, tgt)["emd"]
    up = maps.astype(np.float64)
    coarse = (bin_matrix(32, 8) @ up @ bin_matrix(32, 8).T).reshape(len(maps), -1)
    want = [ot.emd2(tgt.soft_coarse, h / h.sum(), ground_cost(8)) for h in coarse]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert got[-1] < 1e-3 < got[:-1].min()  # the target itself is (almost) at distance 0


# ------------------------------------------------------------------ coverage
def test_coverage_half_inside_and_negative_clipped():
    left = np.zeros((4, 4), bool)
    left[:, :2] = True
    np.testing.assert_allclose(coverage(np.ones((4, 4)), left), [0.5])
    m = np.array([[2.0, -5.0], [2.0, 0.0]])
    top = np.array([[True, True], [False, False]])
    np.testing.assert_allclose(coverage(m, top), [0.5])  # a+ = [[2, 0], [2, 0]]
    assert np.isnan(coverage(np.zeros((4, 4)), left)[0])


# ------------------------------------------------------------------ pointing
def _peak(shape, r, c):
    a = np.zeros(shape, np.float32)
    a[r, c] = 1.0
    return a


def test_pointing_strict_and_tolerance_at_an_edge():
    peak = _peak((20, 20), 0, 0)  # argmax in the corner of the frame
    m = np.zeros((20, 20), bool)
    m[0, 3] = True  # 3 px right of the argmax
    assert pointing(peak, m)[0] == 0.0
    assert pointing(peak, m, tolerance_px=3, image_size=(20, 20))[0] == 1.0
    # The same 3 image px are only 1.5 frame px in a 40 px wide photo: miss.
    assert pointing(peak, m, tolerance_px=3, image_size=(20, 40))[0] == 0.0
    m2 = np.zeros((20, 20), bool)
    m2[2, 3] = True  # distance sqrt(13) > 3
    assert pointing(peak, m2, tolerance_px=3, image_size=(20, 20))[0] == 0.0
    m3 = np.zeros((20, 20), bool)
    m3[3, 0] = True  # 3 rows down: the ellipse's vertical radius is still 3 frame px
    assert pointing(peak, m3, tolerance_px=3, image_size=(20, 40))[0] == 1.0


def test_pointing_argmax_ties_go_to_lowest_index():
    a = np.zeros((4, 4))
    a[1, 1] = a[3, 3] = 5.0
    m = np.zeros((4, 4), bool)
    m[1, 1] = True
    assert pointing(a, m)[0] == 1.0
    m[:] = False
    m[3, 3] = True
    assert pointing(a, m)[0] == 0.0


def test_evaluate_tolerance_equals_distance_transform_version():
    rng = np.random.default_rng(3)
    boxes = np.array([[0.1, 0.1, 0.2, 0.1], [0.6, 0.5, 0.3, 0.3]])
    tgt = make_target(boxes, frame=32, image_size=(300, 500), tolerance_px=40)
    maps = rng.random((40, 32, 32)).astype(np.float32) ** 8
    res = evaluate(maps, tgt)
    union = tgt.union.reshape(32, 32)
    want = pointing(maps, union, tolerance_px=40, image_size=(300, 500))
    np.testing.assert_array_equal(res["pointing_tol"], want)
    assert 0 < want.sum() < 40  # both hits and misses occur


# ------------------------------------------------------------------ ROC-AUC
def test_roc_auc_perfect_inverted_constant():
    m = np.zeros((8, 8), bool)
    m[2:5, 1:6] = True
    assert roc_auc(m.astype(float), m)[0] == 1.0
    assert roc_auc(1.0 - m, m)[0] == 0.0
    assert roc_auc(np.full((8, 8), 0.3), m)[0] == 0.5


def test_roc_auc_with_ties_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    m = rng.random((16, 16)) < 0.3
    maps = np.round(rng.random((5, 16, 16)), 1)  # many ties
    got = roc_auc(maps, m)
    want = [metrics.roc_auc_score(m.ravel(), a.astype(np.float32).ravel()) for a in maps]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------------------------ soft-target metrics
def test_mse_hand_computed():
    # t̂ = [1, 1, 0, 0], â = [1, 0, 0, 0] -> mean squared difference 1/4.
    np.testing.assert_allclose(soft_mse(np.array([[1.0, 0.0], [0.0, 0.0]]),
                                        np.array([[0.5, 0.5], [0.0, 0.0]])), [0.25])
    assert np.isnan(soft_mse(np.ones((2, 2)), np.array([[0.5, 0.5], [0.0, 0.0]]))[0])


def test_kl_zero_for_identical_distributions_and_positive_otherwise():
    t = np.random.default_rng(0).random((16, 16))
    t /= t.sum()
    assert abs(kl_divergence(t.astype(np.float32), t)[0]) < 1e-6
    assert kl_divergence(np.ones((16, 16)), t)[0] > 0.01


def test_emd_one_cell_shift_equals_cell_spacing():
    target = _peak((8, 8), 2, 3).astype(np.float64)
    np.testing.assert_allclose(emd(_peak((8, 8), 2, 4), target), [1 / 8])
    np.testing.assert_allclose(emd(_peak((8, 8), 3, 4), target), [math.sqrt(2) / 8])
    np.testing.assert_allclose(emd(target, target), [0.0], atol=1e-12)
    # On a 224 frame: blocks of 28 px; a peak moved by one block costs 1/8 as well.
    t224, m224 = np.zeros((224, 224)), np.zeros((224, 224))
    t224[10, 10] = m224[10, 40] = 1.0
    np.testing.assert_allclose(emd(m224, t224), [1 / 8])


# ------------------------------------------------------------------ all at once, edge cases
def test_box_covering_the_whole_image():
    tgt = make_target(np.array([[0.0, 0.0, 1.0, 1.0]]), frame=8)
    res = evaluate(np.random.default_rng(0).random((2, 4, 4)), tgt, percentiles=(90, 50))
    np.testing.assert_allclose(res["iou"], [[6 / 64, 32 / 64]] * 2)  # k/N: round(6.4)=6
    np.testing.assert_allclose(res["coverage"], 1.0)
    np.testing.assert_allclose(res["pointing"], 1.0)
    np.testing.assert_allclose(res["area_precision"], 1.0)
    np.testing.assert_allclose(res["box_iou"], 1.0)
    assert np.isnan(res["roc_auc"]).all()  # no negative pixels


def test_box_smaller_than_a_pixel_gets_its_centre_pixel():
    tgt = make_target(np.array([[0.55, 0.30, 0.001, 0.001]]), labels=[7], frame=4)
    assert tgt.union.reshape(4, 4)[1, 2] and tgt.union.sum() == 1
    res = evaluate(_peak((4, 4), 1, 2), tgt)
    assert res["pointing"][0] == 1.0 and res["box_iou"][0, 0] == 1.0
    assert res["feature_pointing"].shape == (1, 1)
    np.testing.assert_allclose(res["area_precision"], 1.0)


def test_evaluate_equals_single_metric_functions_and_is_batch_invariant():
    rng = np.random.default_rng(5)
    boxes = np.array([[0.1, 0.2, 0.3, 0.3], [0.5, 0.5, 0.2, 0.4], [0.6, 0.1, 0.1, 0.1]])
    tgt = make_target(boxes, labels=[1, 2, 1], frame=56, image_size=(600, 800))
    maps = rng.random((9, 14, 14)).astype(np.float32)
    res = evaluate(maps, tgt, batch_size=4)
    union = tgt.union.reshape(56, 56)
    soft = tgt.soft.reshape(56, 56)
    np.testing.assert_allclose(res["iou"], iou(maps, union))
    np.testing.assert_allclose(res["coverage"], coverage(maps, union), rtol=1e-12)
    np.testing.assert_allclose(res["roc_auc"], roc_auc(maps, union), rtol=1e-12)
    np.testing.assert_allclose(res["area_precision"], area_precision(maps, union))
    np.testing.assert_allclose(res["mse"], soft_mse(maps, soft), rtol=1e-9)
    np.testing.assert_allclose(res["kl"], kl_divergence(maps, soft), rtol=1e-9)
    np.testing.assert_allclose(res["emd"], emd(maps, soft), rtol=1e-9)
    np.testing.assert_array_equal(res["pointing"], pointing(maps, union))
    # Per box / per feature: box IoU with k = the box's area; feature 1 = union of boxes 0, 2.
    masks = tgt.region_masks
    for j in range(5):
        np.testing.assert_allclose(
            np.concatenate([res["box_coverage"], res["feature_coverage"]], 1)[:, j],
            coverage(maps, masks[j]), rtol=1e-12)
        k_pct = 100 - 100 * masks[j].sum() / masks[j].size  # percentile giving k = area
        np.testing.assert_allclose(
            np.concatenate([res["box_iou"], res["feature_iou"]], 1)[:, j],
            iou(maps, masks[j], percentiles=(k_pct,))[:, 0])
    # Batch invariance: order-based metrics are exactly equal; sums through BLAS (coverage,
    # MSE, KL) may differ in the last ulp between batch shapes (gemv vs gemm blocking).
    one_by_one = [evaluate(maps[i:i + 1], tgt) for i in range(9)]
    for k, v in res.items():
        single = np.concatenate([r[k] for r in one_by_one])
        if k.endswith("coverage") or k in ("mse", "kl", "emd"):
            np.testing.assert_allclose(v, single, rtol=1e-12, atol=1e-15, err_msg=k)
        else:
            np.testing.assert_array_equal(v, single, err_msg=k)


def test_profile_reports_wall_and_cpu_seconds_per_family():
    from ssl_attn.metrics import profile

    tgt = make_target(np.array([[0.0, 0.0, 0.5, 0.5]]), frame=16)
    with profile() as t:
        evaluate(np.random.default_rng(0).random((3, 4, 4)), tgt)
    assert {"upsample", "rank", "iou+precision+auc", "regions", "kl", "emd"} <= set(t)
    assert set(t.cpu) == set(t) and all(v >= 0 for v in [*t.values(), *t.cpu.values()])
    before = (dict(t), dict(t.cpu))
    evaluate(np.ones((1, 4, 4)), tgt)  # outside the block: nothing is recorded any more
    assert (dict(t), dict(t.cpu)) == before


def test_nan_maps_give_nan_everywhere():
    maps = np.random.default_rng(0).random((2, 4, 4))
    maps[1, 0, 0] = np.nan
    res = evaluate(maps, make_target(np.array([[0.0, 0.0, 0.5, 0.5]]), frame=8))
    for k, v in res.items():
        assert np.isfinite(v[0]).all() or k == "roc_auc", k
        assert np.isnan(v[1]).all(), k


def test_every_result_has_metadata():
    res = evaluate(np.ones((1, 2, 2)), make_target(np.array([[0.0, 0.0, 0.5, 0.5]]), frame=8))
    for k in res:
        meta = METRICS[k]
        assert meta.direction in ("higher", "lower")
        assert meta.range[0] < meta.range[1]
    assert METRICS["kl"].direction == "lower" and METRICS["iou"].direction == "higher"


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="maps must have shape"):
        upsample(np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="mask must be a 2-D"):
        iou(np.zeros((2, 2)), np.zeros(4, bool))
    with pytest.raises(ValueError, match="labels has 1 entries for 2 boxes"):
        make_target(np.zeros((2, 4)) + 0.1, labels=[1])


# ------------------------------------------------------------------ baselines
def test_baselines_reproducible_from_seed():
    a = uniform_maps("Q1_wd0", 32, n_draws=3, seed=4)
    assert np.array_equal(a, uniform_maps("Q1_wd0", 32, n_draws=3, seed=4))
    assert not np.array_equal(a, uniform_maps("Q1_wd0", 32, n_draws=3, seed=5))
    assert not np.array_equal(a, uniform_maps("Q2_wd0", 32, n_draws=3, seed=4))
    assert a.shape == (3, 32, 32) and a.min() >= 0 and a.max() < 1


def test_center_and_sobel_baselines():
    from PIL import Image

    c = center_map(8)
    assert c[3, 3] == c[4, 4] == c.max() and c[0, 0] == c.min()
    img = np.zeros((40, 40), np.uint8)
    img[:, 20:] = 255  # one vertical edge
    s = sobel_map(Image.fromarray(img).convert("RGB"), 40)
    assert s[:, 19:21].min() > 1.0 and s[:, :15].max() == 0.0
    with pytest.raises(ValueError, match="needs the image"):
        baseline_maps("sobel", "x", frame=8)
