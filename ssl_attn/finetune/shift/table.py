"""The shift table: :func:`shift_table` and the Dataset it builds (variables and attrs,
docs/SCHEMA.md "Shift")."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ssl_attn import stats

from .base import (
    ALPHA,
    BEST_DIMS,
    CONTROL_SUFFIX,
    EFFECT_MEANINGS,
    FAMILY_DIMS,
    REF_BEST_DIMS,
    REFERENCE,
    TITLE,
    ShiftError,
)
from .cube import Cube, check_metrics, feature_rows, load_cube, uniform_means
from .readers import accuracy_lookup, store_styles
from .rows import tested

__all__ = ["shift_table"]


# ------------------------------------------------------------------ arguments
def _family(holm_family: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(holm_family, str):
        holm_family = FAMILY_DIMS if holm_family == "all" else (holm_family,)
    family = tuple(dict.fromkeys(str(d) for d in holm_family))
    bad = [d for d in family if d not in FAMILY_DIMS]
    if bad or not family:
        raise ShiftError(f"holm_family: {bad or 'nothing'} is not a dim of the shift table; name "
                         f"dims among {list(FAMILY_DIMS)} or pass 'all'")
    return tuple(d for d in FAMILY_DIMS if d in family)


def _family_text(family: Sequence[str], dims: Sequence[str]) -> str:
    within = [d for d in dims if d not in family]
    fam = [d for d in dims if d in family]
    if not fam:
        return "no correction: every test is its own family (p_holm = p_value)"
    each = (" separately for each " + " × ".join(within)) if within else " (one family)"
    return f"Holm–Bonferroni across {' × '.join(fam)}{each}"


# ------------------------------------------------------------------ the table
def _controls(controls: Mapping[str, str] | None, variants: list[str],
              reference: str) -> dict[str, str]:
    if controls is None:
        return {v[: -len(CONTROL_SUFFIX)]: v for v in variants
                if v.endswith(CONTROL_SUFFIX) and v[: -len(CONTROL_SUFFIX)] in variants}
    out = {}
    for v, c in controls.items():
        for role, name in (("variant", v), ("control", c)):
            if name not in variants:
                raise ShiftError(f"controls: {role} {name!r} has no scores besides the "
                                 f"reference {reference!r}; variants with scores: {variants}")
        if v == c:
            raise ShiftError(f"controls: variant {v!r} cannot be its own control")
        out[str(v)] = str(c)
    return out


def _beyond_control(cube: Cube, controls: Mapping[str, str], family: Sequence[str],
                    alpha: float) -> dict[str, np.ndarray]:
    """Per layer: variant − its control, on the images where the reference has values too
    (``(V − ref) − (C − ref) = V − C``); NaN (``n = 0``) for variants without a control."""
    a, b = cube.a, cube.b
    mask = np.isfinite(b)
    av = np.full(a.shape, np.nan)
    ac = np.full(a.shape, np.nan)
    for v, c in controls.items():
        vi, ci = cube.variants.index(v), cube.variants.index(c)
        av[:, vi] = np.where(mask[:, vi], a[:, vi], np.nan)
        ac[:, vi] = np.where(mask[:, vi], a[:, ci], np.nan)
    sign = cube.sign[None, None, None, :, None]
    return tested(av, ac, cube.shape(FAMILY_DIMS), FAMILY_DIMS, family, sign, alpha)


def _best_layers(cube: Cube) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each variant's and the reference's own best layer with its mean and CI
    (:func:`ssl_attn.stats.bests_from_values`, by the metric's direction): two dicts of
    ``layer, mean, ci_lo, ci_hi`` over ``(model, variant, method, metric)`` and ``(model,
    method, metric)`` (NaN where there are no values)."""
    out = []
    for values, dims in ((cube.a, BEST_DIMS), (cube.ref, REF_BEST_DIMS)):
        shape = cube.shape(dims)
        found = {k: np.full(shape, np.nan) for k in ("layer", "mean", "ci_lo", "ci_hi")}
        k_axis = dims.index("metric")
        for k, m in enumerate(cube.metrics):
            block = np.take(values, k, axis=k_axis)  # (..., layer, image)
            cells = block.reshape(-1, *block.shape[-2:])
            rows = stats.bests_from_values(list(cells), [cube.layers] * len(cells),
                                           cube.directions[m])
            for j, row in enumerate(rows):
                if row is None:
                    continue
                at = list(np.unravel_index(j, block.shape[:-2]))
                at.insert(k_axis, k)
                for s in found:
                    found[s][tuple(at)] = row[s]
        out.append(found)
    return out[0], out[1]


def _groups(a: np.ndarray, b: np.ndarray, masks: np.ndarray, gdim: str, cube: Cube,
            family: Sequence[str], alpha: float) -> dict[str, np.ndarray]:
    """The best-layer comparison ``a − b`` (``(model, variant, method, metric, sample)``)
    within each group of samples (``masks (G, sample)``) → over ``(..., metric, gdim)``;
    Holm across ``gdim`` and the family's dims of the best table."""
    shape = (*cube.shape(BEST_DIMS), masks.shape[0])
    if masks.shape[0] == 0 or a.shape[-1] == 0:
        out = {k: np.full(shape, np.nan) for k in ("delta", "ci_low", "ci_high", "p_value",
                                                     "p_holm", "dz", "reference_mean",
                                                     "variant_mean")}
        out.update(n=np.zeros(shape, np.int64), effect=np.zeros(shape, np.int8))
        return out
    aa = np.where(masks, a[..., None, :], np.nan)
    bb = np.where(masks, b[..., None, :], np.nan)
    gfamily = (*[d for d in family if d in BEST_DIMS], gdim)
    return tested(aa, bb, shape, (*BEST_DIMS, gdim), gfamily,
                   cube.sign[None, None, None, :, None], alpha)


def shift_table(
    scores: xr.Dataset,
    *,
    metrics: Sequence[str] = ("iou", "coverage"),
    percentile: float = 90,
    reference: str = REFERENCE,
    controls: Mapping[str, str] | None = None,
    holm_family: str | Sequence[str] = ("layer",),
    accuracy: Any = None,
    styles: Mapping[str, str] | None = None,
    store: str | os.PathLike | xr.DataTree | None = None,
    alpha: float = ALPHA,
) -> xr.Dataset:
    """The shift of every fine-tuned variant against ``reference`` (docs/SCHEMA.md "Shift").

    Args:
        scores: the scores Dataset (:func:`ssl_attn.store.open_scores`), dims ``model, variant,
            method, layer, head, image_id`` (+ ``percentile``); read at ``head = -1``.
        metrics: image-level metrics (:data:`ssl_attn.metrics.METRICS`), default IoU and
            coverage; the per-feature table uses ``feature_<metric>`` where it exists.
        percentile: the IoU percentile (default 90).
        reference: the variant every other is compared with (default ``"frozen"``).
        controls: ``{variant: control}`` for the beyond-control table; default: every
            ``"<s>_shuffled"`` with scores is the control of ``"<s>"`` when that has scores too.
        holm_family: the dims one Holm family spans, among ``model, variant, method, metric,
            layer``, or ``"all"``; default ``("layer",)``: one correction per model × variant ×
            method × metric across its layers. The smaller tables (best layers, per style, per
            feature) use the same dims where they have them (per style / feature adding their
            group dim); ``attrs["holm_families"]`` records each.
        accuracy: ``{(model, variant): acc}``, ``{model: {variant: acc}}``, a store (path or
            DataTree) to read it from (:func:`store_accuracy`), or None (then ``store``'s).
        styles: ``{image_id: style}`` for the per-style table; default: ``store``'s
            (:func:`store_styles`), else an empty ``style`` dim.
        store: the attention store of the scores, source of ``styles`` and ``accuracy``.
        alpha: significance level of the effect labels (on ``p_holm``), default 0.05.

    Returns the shift Dataset (loaded, small): dims ``model`` (non-baseline models with
    reference scores), ``variant`` (the other variants with scores), ``method`` (all but
    ``baseline``), ``metric``, ``layer`` (every layer with scores), ``style``, ``feature``.
    Raises :class:`ShiftError` when the scores hold no reference or no other variant, or an
    argument names a metric, percentile, variant or dim they lack.
    """
    family = _family(holm_family)
    metrics = check_metrics(scores, metrics)
    if not 0 < alpha < 1:
        raise ShiftError(f"alpha must lie in (0, 1); got {alpha}")
    cube = load_cube(scores, metrics, percentile, reference)
    controls = _controls(controls, cube.variants, reference)
    sign = cube.sign
    per_layer = tested(cube.a, cube.b, cube.shape(FAMILY_DIMS), FAMILY_DIMS, family,
                        sign[None, None, None, :, None], alpha, wilcoxon=True)
    beyond = _beyond_control(cube, controls, family, alpha)
    best_v, best_r = _best_layers(cube)
    a_best = cube.at_layer(cube.a, best_v["layer"])  # (model, variant, method, metric, image)
    b_best = np.broadcast_to(cube.at_layer(cube.ref, best_r["layer"])[:, None], a_best.shape)
    best = tested(a_best, b_best, cube.shape(BEST_DIMS), BEST_DIMS, family,
                   sign[None, None, None], alpha, wilcoxon=True)
    uniform = uniform_means(scores, metrics, percentile, reference)
    if styles is None and store is not None:
        styles = store_styles(store)
    styles = dict(styles or {})
    style_names = sorted({str(styles[i]) for i in cube.image_ids if styles.get(i)})
    masks = np.array([[styles.get(i) == s for i in cube.image_ids] for s in style_names],
                     bool).reshape(len(style_names), len(cube.image_ids))
    by_style = _groups(a_best, b_best, masks, "style", cube, family, alpha)
    features, fmasks, fa, fb, feature_vars = feature_rows(
        scores, cube, reference, percentile, best_v["layer"], best_r["layer"])
    by_feature = _groups(fa, fb, fmasks, "feature", cube, family, alpha)
    lookup = accuracy_lookup(accuracy if accuracy is not None else store)
    acc = np.array([[lookup.get((m, v), np.nan) for v in cube.variants] for m in cube.models],
                   dtype=np.float64).reshape(cube.shape(("model", "variant")))
    data_vars = _variables(reference, per_layer, beyond, best_v, best_r, best, uniform,
                           by_style, by_feature, acc)
    attrs = _attrs(scores, cube, reference, controls, percentile, alpha, family, feature_vars)
    coords = {
        "model": ("model", np.array(cube.models, dtype=object)),
        "variant": ("variant", np.array(cube.variants, dtype=object)),
        "control": ("variant", np.array([controls.get(v, "") for v in cube.variants],
                                        dtype=object)),
        "method": ("method", np.array(cube.methods, dtype=object)),
        "metric": ("metric", np.array(metrics, dtype=object)),
        "direction": ("metric", np.array([cube.directions[m] for m in metrics], dtype=object)),
        "layer": ("layer", np.array(cube.layers, dtype=np.int64)),
        "style": ("style", np.array(style_names, dtype=object)),
        "feature": ("feature", np.array(features, dtype=object)),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _var(dims: Sequence[str], data: np.ndarray, long_name: str, **extra: Any) -> tuple:
    return (tuple(dims), data, {"long_name": long_name, **extra})


def _stat_vars(prefix: str, d: Mapping[str, np.ndarray], dims: Sequence[str], what: str,
               *, means: tuple[str, str] | None = None) -> dict[str, tuple]:
    """The variables of one tested table: ``<prefix>delta, _ci_low, _ci_high, _n, _p_value,
    _p_holm, _dz, _effect`` (+ ``_p_wilcoxon`` when computed, + the two means)."""
    effect_attrs = {"flag_values": list(EFFECT_MEANINGS),
                    "flag_meanings": " ".join(EFFECT_MEANINGS.values())}
    out = {
        f"{prefix}delta": _var(dims, d["delta"], f"mean paired difference: {what}"),
        f"{prefix}ci_low": _var(dims, d["ci_low"], f"lower bootstrap CI bound of the mean of "
                                                   f"{what}"),
        f"{prefix}ci_high": _var(dims, d["ci_high"], f"upper bootstrap CI bound of the mean of "
                                                     f"{what}"),
        f"{prefix}n": _var(dims, d["n"].astype(np.int64), "pairs (images; 0: no data)"),
        f"{prefix}p_value": _var(dims, d["p_value"], "paired t-test p (two-sided)"),
        f"{prefix}p_holm": _var(dims, d["p_holm"], "Holm-adjusted p_value (attrs holm_families)"),
        f"{prefix}dz": _var(dims, d["dz"], "Cohen's d_z of the paired differences"),
        f"{prefix}effect": _var(dims, d["effect"].astype(np.int8),
                                "-1 destroy, 0 preserve, +1 enhance", **effect_attrs),
    }
    if "p_wilcoxon" in d:
        out[f"{prefix}p_wilcoxon"] = _var(dims, d["p_wilcoxon"],
                                          "Wilcoxon signed-rank p (two-sided)")
    if means:
        out[f"{prefix}reference_mean"] = _var(dims, d["reference_mean"], means[0])
        out[f"{prefix}variant_mean"] = _var(dims, d["variant_mean"], means[1])
    return out


def _variables(reference: str, per_layer: dict, beyond: dict, best_v: dict, best_r: dict,
               best: dict, uniform: np.ndarray, by_style: dict, by_feature: dict,
               acc: np.ndarray) -> dict[str, tuple]:
    pair_means = (f"mean of {reference} over the paired images",
                  "mean of the variant over the paired images")
    out = _stat_vars("", per_layer, FAMILY_DIMS, f"variant − {reference}", means=pair_means)
    out.update(_stat_vars("beyond_control_", beyond, FAMILY_DIMS, "variant − its control"))
    out["best_layer"] = _var(BEST_DIMS, best_v["layer"],
                             "the variant's own best layer (NaN: no values)")
    out["best_mean"] = _var(BEST_DIMS, best_v["mean"], "variant mean at its best layer")
    out["best_mean_ci_low"] = _var(BEST_DIMS, best_v["ci_lo"], "lower CI bound of best_mean")
    out["best_mean_ci_high"] = _var(BEST_DIMS, best_v["ci_hi"],
                                    "upper CI bound of best_mean")
    out["reference_best_layer"] = _var(REF_BEST_DIMS, best_r["layer"],
                                       f"{reference}'s own best layer (NaN: no values)")
    out["reference_best_mean"] = _var(REF_BEST_DIMS, best_r["mean"],
                                      f"{reference} mean at its best layer")
    out["reference_best_mean_ci_low"] = _var(REF_BEST_DIMS, best_r["ci_lo"],
                                             "lower CI bound of reference_best_mean")
    out["reference_best_mean_ci_high"] = _var(REF_BEST_DIMS, best_r["ci_hi"],
                                              "upper CI bound of reference_best_mean")
    best = {k: v for k, v in best.items() if k not in ("reference_mean", "variant_mean")}
    out.update(_stat_vars("best_", best, BEST_DIMS,
                          f"variant at its best layer − {reference} at its best layer"))
    out["uniform_mean"] = _var(("metric",), uniform,
                               "mean of the uniform baseline over its images")
    out["best_gain_over_uniform"] = _var(BEST_DIMS, best_v["mean"] - uniform,
                                         "best_mean − uniform_mean")
    out["reference_best_gain_over_uniform"] = _var(
        REF_BEST_DIMS, best_r["mean"] - uniform, "reference_best_mean − uniform_mean")
    for prefix, d, gdim in (("style_", by_style, "style"), ("feature_", by_feature, "feature")):
        out.update(_stat_vars(prefix, d, (*BEST_DIMS, gdim),
                              f"best-layer comparison on the samples of one {gdim}",
                              means=(f"{reference} mean at its best layer",
                                     "variant mean at its best layer")))
    out["accuracy"] = _var(("model", "variant"), acc,
                           "best validation accuracy of the fine-tune (NaN: unknown)")
    return out


def _attrs(scores: xr.Dataset, cube: Cube, reference: str, controls: Mapping[str, str],
           percentile: float, alpha: float, family: Sequence[str],
           feature_vars: Mapping[str, str]) -> dict[str, Any]:
    import ssl_attn

    best_family = [d for d in BEST_DIMS if d in family]
    boot = stats.bootstrap_settings()
    return {
        "title": TITLE,
        "reference": reference,
        "controls": dict(controls),
        "metrics": list(cube.metrics),
        "directions": dict(cube.directions),
        "percentile": float(percentile),
        "alpha": float(alpha),
        "holm_family": list(family),
        "holm_family_text": (f"p_holm: {_family_text(family, FAMILY_DIMS)} (alpha {alpha}); "
                             "the beyond-control p-values are corrected separately by the "
                             "same rule"),
        "holm_families": {"layer": list(family), "beyond_control": list(family),
                          "best": best_family, "style": [*best_family, "style"],
                          "feature": [*best_family, "feature"]},
        "test": "paired t-test (scipy.stats.ttest_rel, two-sided) of per-image differences; "
                "p_wilcoxon: Wilcoxon signed-rank; head = -1 (head-mean); images where "
                "either side is NaN dropped",
        "effect_rule": f"0 preserve when p_holm >= {alpha} or untestable; else +1 enhance / "
                       "-1 destroy by the sign of delta, flipped for lower-is-better metrics",
        "best_rule": "each side's own best layer by mean (ssl_attn.stats.bests_from_values, "
                     "the metric's direction); best_delta pairs the two layers per image",
        "groups": "style_* / feature_*: the best-layer comparison split by image style (the "
                  "store's style coordinate) and by feature type (feature_<metric> over the "
                  "image_feature rows of that type)",
        "feature_metrics": {m: feature_vars.get(m) for m in cube.metrics},
        "stats_n_boot": boot["n_boot"],
        "stats_seed": boot["seed"],
        "ci": boot["ci"],
        "bootstrap": boot["bootstrap"],
        "scores_store": str(scores.attrs.get("store", "")),
        "ssl_attn_version": ssl_attn.__version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
