"""The shift analysis of Q2: how fine-tuning moves attention, against the frozen model.

One owner of the Q2 numbers: :func:`shift_table` turns a scores Dataset
(:func:`ssl_attn.metrics.score`, docs/SCHEMA.md "Scores") into the shift Dataset
(docs/SCHEMA.md "Shift"); ``ssl-attn shift``, the dashboard's Q2 view and the notebook all
call it, and :func:`write_shift` / :func:`open_shift` store it beside the scores
(``X.zarr`` → ``X.shift.zarr``, :func:`ssl_attn.store.shift_path`).

What is computed (every statistic is :mod:`ssl_attn.stats`'s, with its convention:
:data:`~ssl_attn.stats.N_BOOT` resamples, :data:`~ssl_attn.stats.SEED`,
:data:`~ssl_attn.stats.CI`; recorded in the attrs):

* **Per layer** — for each model × non-reference variant × method × metric × layer (every
  layer the scores hold; head = the head-mean, ``head = -1``): the per-image paired difference
  ``variant − reference``, its mean ``delta`` with the bootstrap CI, the paired t-test p
  (``p_value``), the Wilcoxon p (``p_wilcoxon``), Cohen's d_z, ``n`` and both means; ``p_holm``
  is Holm within the family the caller names (``holm_family``, recorded in the attrs), and
  ``effect`` labels the cell: 0 *preserve* when ``p_holm ≥ alpha`` (or untestable), else +1
  *enhance* / −1 *destroy* by the sign of the improvement (the metric's direction: for a
  lower-is-better metric a negative Δ enhances).
* **Beyond control** — a style-trained variant ``V`` against its shuffled-label control ``C``
  (default: ``"<s>_shuffled"`` is the control of ``"<s>"``), per image
  ``(V − ref) − (C − ref) = V − C``, on the images where all three have values: the same
  statistics, with their own Holm correction over the same family rule.
* **Best layers** — each variant at its own best layer against the reference at *its* own best
  layer (the rule of :func:`ssl_attn.stats.bests_from_values`, by the metric's direction), so
  that a model's poor last layer is never compared with its good one; both best layers, their
  means and CIs, the paired Δ with CI/p/Holm/effect, and both means relative to the uniform
  baseline (``mean − uniform mean``).
* **Per style / per feature type** — the best-layer Δ (the same two layers) split by the images'
  style (the store's ``style`` coordinate) and by feature type (the feature-level metric
  ``feature_<metric>`` over the ``image_feature`` rows of each type). Only at the best layers:
  at every layer these tables would cost styles × feature types × layers tests for a view
  nobody reads at that size; the per-layer picture is the main table.
* **Accuracy** — the validation accuracy of each (model, variant) beside the shift, from the
  store group's ``variant_provenance`` (``best_val_acc``); NaN when absent.

Imports no torch (numpy, pandas, xarray, scipy through :mod:`ssl_attn.stats`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ssl_attn import stats
from ssl_attn.metrics.registry import METRICS
from ssl_attn.metrics.scoring import BASELINE_METHOD
from ssl_attn.store import decode_attr, decode_attrs, encode_attrs, open_store

__all__ = [
    "ALPHA",
    "CONTROL_SUFFIX",
    "EFFECT_MEANINGS",
    "FAMILY_DIMS",
    "REFERENCE",
    "ShiftError",
    "format_shift",
    "open_shift",
    "shift_frame",
    "shift_table",
    "store_accuracy",
    "store_styles",
    "write_shift",
]

#: The variant every other is compared with.
REFERENCE = "frozen"
#: Significance level of the effect labels (on Holm-adjusted p).
ALPHA = 0.05
#: ``"<s>" + CONTROL_SUFFIX`` is the default shuffled-label control of variant ``"<s>"``.
CONTROL_SUFFIX = "_shuffled"
#: Dims of the per-layer table; ``holm_family`` names a subset of them (or ``"all"``).
FAMILY_DIMS: tuple[str, ...] = ("model", "variant", "method", "metric", "layer")
#: ``effect`` values and their meanings (the variables' ``flag_values`` / ``flag_meanings``).
EFFECT_MEANINGS: dict[int, str] = {-1: "destroy", 0: "preserve", 1: "enhance"}
#: The uniform baseline's pseudo-model in the scores (``baseline:<name>``, as scoring names it).
UNIFORM_MODEL = "baseline:uniform"
#: Root attr ``title`` of a shift Dataset (how :func:`write_shift` recognises one to replace).
TITLE = "ssl-attn fine-tuning shift"

_BEST_DIMS = ("model", "variant", "method", "metric")
_REF_BEST_DIMS = ("model", "method", "metric")


class ShiftError(ValueError):
    """The scores (or the arguments) cannot give a shift table; the message says what to fix."""


# ------------------------------------------------------------------ store facts
def _tree(store: Any) -> xr.DataTree:
    return store if isinstance(store, xr.DataTree) else open_store(store)


def _group_datasets(tree: xr.DataTree) -> dict[str, xr.Dataset]:
    return {name: tree[name].dataset for name in sorted(tree.children)}


def store_styles(store: str | os.PathLike | xr.DataTree) -> dict[str, str]:
    """``image_id → style`` (a style QID) from a store's per-image ``style`` coordinate, over
    all model groups (images without a style — stored as ``""`` — are left out)."""
    out: dict[str, str] = {}
    for ds in _group_datasets(_tree(store)).values():
        if "style" not in ds.coords or "image_id" not in ds.coords:
            continue
        for iid, style in zip(ds["image_id"].values.tolist(), ds["style"].values.tolist(),
                              strict=True):
            if style and str(style) != "nan":
                out.setdefault(str(iid), str(style))
    return out


def _find(attrs: Mapping[str, Any], key: str) -> Any:
    """``attrs[key]``, or the first ``key`` inside a (JSON-encoded) mapping among the values."""
    if key in attrs:
        return decode_attr(attrs[key])
    for value in attrs.values():
        value = decode_attr(value)
        if isinstance(value, Mapping) and key in value:
            return value[key]
    return None


def store_accuracy(store: str | os.PathLike | xr.DataTree) -> dict[tuple[str, str], float]:
    """``(model, variant) → best validation accuracy`` from each store group's
    ``variant_provenance`` (JSON ``{variant: attrs}``; the key ``best_val_acc``, at the top of a
    variant's attrs or inside one JSON mapping among them). Variants without it are left out."""
    out: dict[tuple[str, str], float] = {}
    for model, ds in _group_datasets(_tree(store)).items():
        per_variant = decode_attr(ds.attrs.get("variant_provenance", "{}"))
        if not isinstance(per_variant, Mapping):
            continue
        for variant, attrs in per_variant.items():
            attrs = decode_attr(attrs)
            acc = _find(attrs, "best_val_acc") if isinstance(attrs, Mapping) else None
            try:
                acc = float(acc)
            except (TypeError, ValueError):
                continue
            if np.isfinite(acc):
                out[(str(model), str(variant))] = acc
    return out


def _accuracy_lookup(accuracy: Any) -> dict[tuple[str, str], float]:
    if accuracy is None:
        return {}
    if isinstance(accuracy, xr.DataTree | str | os.PathLike):
        return store_accuracy(accuracy)
    if not isinstance(accuracy, Mapping):
        raise ShiftError(f"accuracy must be a mapping {{(model, variant): value}} or "
                         f"{{model: {{variant: value}}}}, a store path or a DataTree; got "
                         f"{type(accuracy).__name__}")
    out = {}
    for key, value in accuracy.items():
        if isinstance(value, Mapping):
            out.update({(str(key), str(v)): float(a) for v, a in value.items()})
        elif isinstance(key, tuple) and len(key) == 2:
            out[(str(key[0]), str(key[1]))] = float(value)
        else:
            raise ShiftError(f"accuracy: key {key!r} is not a (model, variant) pair and its "
                             "value is not a {variant: accuracy} mapping")
    return out


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


def _check_metrics(scores: xr.Dataset, metrics: Sequence[str]) -> list[str]:
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ShiftError("metrics: name at least one metric, e.g. ('iou', 'coverage')")
    image_level = [k for k, m in METRICS.items() if m.level == "image"]
    for m in metrics:
        if m not in image_level:
            raise ShiftError(f"metric {m!r} is not an image-level metric; choose from "
                             f"{image_level}")
        if m not in scores.data_vars:
            raise ShiftError(f"the scores hold no variable {m!r} (they have "
                             f"{sorted(scores.data_vars)}); rescore with `ssl-attn score`")
    return list(dict.fromkeys(metrics))


def _select(scores: xr.Dataset, name: str, percentile: float, **sel: Any) -> xr.DataArray:
    """``scores[name]`` at ``head = -1`` (and ``percentile``), then ``sel`` (lists), loaded."""
    da = scores[name]
    if "head" in da.dims:
        if -1 not in da["head"].values.tolist():
            raise ShiftError(f"scores variable {name!r} has no head -1 (the head-mean); rescore "
                             "with `ssl-attn score`")
        da = da.sel(head=-1)
    if "percentile" in da.dims:
        have = [float(p) for p in da["percentile"].values]
        if float(percentile) not in have:
            raise ShiftError(f"scores variable {name!r} has no percentile {percentile} (has "
                             f"{have}); pass one of them")
        da = da.sel(percentile=float(percentile))
    return da.sel(sel).astype(np.float64).load()


# ------------------------------------------------------------------ statistics of many rows
def _paired_rows(a: np.ndarray, b: np.ndarray, *, wilcoxon: bool = True) -> dict[str, np.ndarray]:
    """Paired statistics of ``a − b`` per row of ``(rows, samples)`` arrays (NaN = missing; a
    pair counts where both are finite): ``delta`` (mean) with ``ci_low``/``ci_high``
    (:func:`ssl_attn.stats.mean_ci`, equal to :func:`~ssl_attn.stats.bootstrap_ci` of the row's
    differences), ``n``, ``reference_mean`` (of b) and ``variant_mean`` (of a) over the pairs,
    ``p_value`` (:func:`~ssl_attn.stats.paired_ttest_rows`), ``p_wilcoxon``
    (:func:`~ssl_attn.stats.wilcoxon_rows`), ``dz`` (:func:`~ssl_attn.stats.cohens_dz_rows`):
    each row's numbers equal the scalar functions' on its own pairs."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = np.where(ok, a - b, np.nan)
    rows = d.shape[0]
    if d.shape[1] == 0:
        d = np.full((rows, 1), np.nan)
    delta, lo, hi, n = stats.mean_ci(d)
    out = {"delta": delta, "ci_low": lo, "ci_high": hi, "n": n.astype(np.int64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = ok.sum(axis=1)
        out["reference_mean"] = np.where(cnt > 0, np.where(ok, b, 0).sum(axis=1) / cnt, np.nan)
        out["variant_mean"] = np.where(cnt > 0, np.where(ok, a, 0).sum(axis=1) / cnt, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance rows: scipy's NaN/inf
        p = stats.paired_ttest_rows(a, b)[1]
        dz = stats.cohens_dz_rows(a, b)
        if wilcoxon:
            pw = stats.wilcoxon_rows(a, b)[1]
    out.update(p_value=p, dz=dz)
    if wilcoxon:
        out["p_wilcoxon"] = pw
    return out


def _holm(p: np.ndarray, dims: Sequence[str], family: Sequence[str]) -> np.ndarray:
    """:func:`ssl_attn.stats.holm` of ``p`` (an array over ``dims``) across the ``family`` dims,
    once per combination of the other dims (NaN left out of a family and kept NaN)."""
    fam = [i for i, d in enumerate(dims) if d in family]
    other = [i for i in range(len(dims)) if i not in fam]
    perm = other + fam
    moved = np.transpose(p, perm)
    shape = moved.shape
    flat = moved.reshape(int(np.prod(shape[:len(other)], dtype=np.int64)), -1)
    out = np.stack([stats.holm(row) for row in flat]) if flat.size else flat.copy()
    return np.transpose(out.reshape(shape), np.argsort(perm))


def _effect(delta: np.ndarray, p_holm: np.ndarray, sign: np.ndarray, alpha: float) -> np.ndarray:
    """+1 enhance / −1 destroy where ``p_holm < alpha`` (by the sign of ``delta·sign``, ``sign``
    +1 for higher-is-better metrics, −1 for lower), else 0 preserve."""
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(p_holm) & (p_holm < alpha) & np.isfinite(delta)
        return np.where(sig, np.sign(np.nan_to_num(delta) * sign), 0).astype(np.int8)


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


@dataclass
class _Cube:
    """The scores a shift table reads, as float64 arrays over kept coordinates.

    ``a``: the variants ``(model, variant, method, metric, layer, image)``; ``ref``: the
    reference ``(model, method, metric, layer, image)``; ``b``: ``ref`` broadcast like ``a``."""

    models: list[str]
    variants: list[str]
    methods: list[str]
    metrics: list[str]
    layers: list[int]
    image_ids: list[str]
    a: np.ndarray
    ref: np.ndarray
    directions: dict[str, str]

    @property
    def b(self) -> np.ndarray:
        return np.broadcast_to(self.ref[:, None], self.a.shape)

    @property
    def sign(self) -> np.ndarray:
        """+1 for higher-is-better metrics, −1 for lower, along ``metric``."""
        return np.array([1.0 if self.directions[m] == "higher" else -1.0 for m in self.metrics])

    def shape(self, dims: Sequence[str]) -> tuple[int, ...]:
        sizes = {"model": len(self.models), "variant": len(self.variants),
                 "method": len(self.methods), "metric": len(self.metrics),
                 "layer": len(self.layers)}
        return tuple(sizes[d] for d in dims)

    def at_layer(self, values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """``values (..., layer, sample)`` at the ``chosen`` layer value of each leading cell
        (``chosen (...)``; NaN chooses nothing and gives NaN)."""
        pos = {la: i for i, la in enumerate(self.layers)}
        idx = np.array([pos.get(int(x), 0) if np.isfinite(x) else 0 for x in chosen.ravel()],
                       dtype=np.int64).reshape(chosen.shape)
        out = np.take_along_axis(values, idx[..., None, None], axis=-2)[..., 0, :]
        return np.where(np.isfinite(chosen)[..., None], out, np.nan)


def _present(arr: np.ndarray, axis: int) -> np.ndarray:
    other = tuple(i for i in range(arr.ndim) if i != axis)
    return np.isfinite(arr).any(axis=other)


def _load(scores: xr.Dataset, metrics: list[str], percentile: float, reference: str) -> _Cube:
    """Read the head-mean scores of every non-baseline model, keeping the models with values
    for ``reference`` and another variant, and the variants, methods and layers with values."""
    all_variants = [str(v) for v in scores["variant"].values.tolist()]
    if reference not in all_variants:
        raise ShiftError(f"the scores have no variant {reference!r} (have {all_variants}); "
                         "pass reference= one of them")
    models = [str(m) for m in scores["model"].values.tolist()
              if not str(m).startswith("baseline:")]
    methods = [str(m) for m in scores["method"].values.tolist() if str(m) != BASELINE_METHOD]
    layers = [int(la) for la in scores["layer"].values.tolist()]
    if not models or not methods:
        raise ShiftError("the scores hold no model maps (only baselines); score a store with "
                         "extracted models")
    # (metric, model, variant, method, layer, image)
    raw = np.stack([_select(scores, m, percentile, model=models, variant=all_variants,
                            method=methods, layer=layers)
                    .transpose("model", "variant", "method", "layer", "image_id").values
                    for m in metrics])
    ri = all_variants.index(reference)
    others = [i for i in range(len(all_variants)) if i != ri]
    keep_m = np.flatnonzero(_present(raw[:, :, ri], 1) & _present(raw[:, :, others], 1)) \
        if others else np.array([], np.int64)
    if keep_m.size == 0:
        raise ShiftError(f"no model has scores for {reference!r} and for another variant "
                         f"(variants in the scores: {all_variants}); extract a fine-tuned "
                         "variant (`ssl-attn extract --variant lora --finetuned RUN`) and "
                         "rescore")
    raw = raw[:, keep_m]
    keep_v = [i for i in others if _present(raw, 2)[i]]
    keep_me = np.flatnonzero(_present(raw, 3))
    keep_l = np.flatnonzero(_present(raw, 4))
    raw = raw[:, :, :, keep_me][:, :, :, :, keep_l]
    return _Cube(
        models=[models[i] for i in keep_m], variants=[all_variants[i] for i in keep_v],
        methods=[methods[i] for i in keep_me], metrics=metrics,
        layers=[layers[i] for i in keep_l],
        image_ids=[str(i) for i in scores["image_id"].values.tolist()],
        a=raw[:, :, keep_v].transpose(1, 2, 3, 0, 4, 5),
        ref=raw[:, :, ri].transpose(1, 2, 0, 3, 4),
        directions={m: stats.direction(m) for m in metrics})


def _tested(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...], dims: Sequence[str],
            family: Sequence[str], sign: np.ndarray, alpha: float, *,
            wilcoxon: bool = False) -> dict[str, np.ndarray]:
    """:func:`_paired_rows` of ``a − b`` (``(*shape, sample)``), reshaped to ``shape``, with
    ``p_holm`` (Holm across ``family`` ∩ ``dims``) and ``effect`` (``sign`` broadcast to
    ``shape``)."""
    n = a.shape[-1]
    out = {k: v.reshape(shape) for k, v in
           _paired_rows(a.reshape(-1, n), b.reshape(-1, n), wilcoxon=wilcoxon).items()}
    out["p_holm"] = _holm(out["p_value"], dims, family)
    out["effect"] = _effect(out["delta"], out["p_holm"], sign, alpha)
    return out


def _beyond_control(cube: _Cube, controls: Mapping[str, str], family: Sequence[str],
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
    return _tested(av, ac, cube.shape(FAMILY_DIMS), FAMILY_DIMS, family, sign, alpha)


def _best_layers(cube: _Cube) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each variant's and the reference's own best layer with its mean and CI
    (:func:`ssl_attn.stats.bests_from_values`, by the metric's direction): two dicts of
    ``layer, mean, ci_lo, ci_hi`` over ``(model, variant, method, metric)`` and ``(model,
    method, metric)`` (NaN where there are no values)."""
    out = []
    for values, dims in ((cube.a, _BEST_DIMS), (cube.ref, _REF_BEST_DIMS)):
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


def _groups(a: np.ndarray, b: np.ndarray, masks: np.ndarray, gdim: str, cube: _Cube,
            family: Sequence[str], alpha: float) -> dict[str, np.ndarray]:
    """The best-layer comparison ``a − b`` (``(model, variant, method, metric, sample)``)
    within each group of samples (``masks (G, sample)``) → over ``(..., metric, gdim)``;
    Holm across ``gdim`` and the family's dims of the best table."""
    shape = (*cube.shape(_BEST_DIMS), masks.shape[0])
    if masks.shape[0] == 0 or a.shape[-1] == 0:
        out = {k: np.full(shape, np.nan) for k in ("delta", "ci_low", "ci_high", "p_value",
                                                     "p_holm", "dz", "reference_mean",
                                                     "variant_mean")}
        out.update(n=np.zeros(shape, np.int64), effect=np.zeros(shape, np.int8))
        return out
    aa = np.where(masks, a[..., None, :], np.nan)
    bb = np.where(masks, b[..., None, :], np.nan)
    gfamily = (*[d for d in family if d in _BEST_DIMS], gdim)
    return _tested(aa, bb, shape, (*_BEST_DIMS, gdim), gfamily,
                   cube.sign[None, None, None, :, None], alpha)


def _feature_rows(scores: xr.Dataset, cube: _Cube, reference: str, percentile: float,
                  best_layer: np.ndarray, ref_layer: np.ndarray
                  ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """Feature-level values at the best layers: ``(feature names, masks (F, rows), a, b,
    {metric: feature variable})`` with ``a``, ``b`` over ``(model, variant, method, metric,
    image_feature)`` (NaN for metrics without a ``feature_<metric>`` variable)."""
    variables = {m: f"feature_{m}" for m in cube.metrics
                 if f"feature_{m}" in METRICS and f"feature_{m}" in scores.data_vars}
    if not variables or "image_feature_name" not in scores.coords:
        empty = np.zeros((*cube.shape(_BEST_DIMS), 0))
        return [], np.zeros((0, 0), bool), empty, empty, variables
    names = [str(x) for x in scores["image_feature_name"].values.tolist()]
    labels = (scores["image_feature_label"].values.tolist()
              if "image_feature_label" in scores.coords else [0] * len(names))
    features = list(dict.fromkeys(n for _, n in sorted(zip(map(int, labels), names,
                                                           strict=True))))
    a = np.full((*cube.shape(_BEST_DIMS), len(names)), np.nan)
    b = np.full_like(a, np.nan)
    for k, m in enumerate(cube.metrics):
        if m not in variables:
            continue
        fv = _select(scores, variables[m], percentile, model=cube.models,
                     variant=[reference, *cube.variants], method=cube.methods,
                     layer=cube.layers) \
            .transpose("model", "variant", "method", "layer", "image_feature").values
        a[:, :, :, k] = cube.at_layer(fv[:, 1:], best_layer[:, :, :, k])
        b[:, :, :, k] = cube.at_layer(fv[:, 0], ref_layer[:, :, k])[:, None]
    masks = np.array([[n == f for n in names] for f in features], bool).reshape(-1, len(names))
    return features, masks, a, b, variables


def _uniform_means(scores: xr.Dataset, metrics: list[str], percentile: float,
                   reference: str) -> np.ndarray:
    """Mean of the uniform baseline per metric over its images (NaN when not scored)."""
    out = np.full(len(metrics), np.nan)
    if UNIFORM_MODEL not in scores["model"].values.tolist():
        return out
    for k, m in enumerate(metrics):
        u = _select(scores, m, percentile, model=UNIFORM_MODEL, variant=reference,
                    method=BASELINE_METHOD, layer=-1).values
        if np.isfinite(u).any():
            out[k] = float(np.nanmean(u))
    return out


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
    metrics = _check_metrics(scores, metrics)
    if not 0 < alpha < 1:
        raise ShiftError(f"alpha must lie in (0, 1); got {alpha}")
    cube = _load(scores, metrics, percentile, reference)
    controls = _controls(controls, cube.variants, reference)
    sign = cube.sign
    per_layer = _tested(cube.a, cube.b, cube.shape(FAMILY_DIMS), FAMILY_DIMS, family,
                        sign[None, None, None, :, None], alpha, wilcoxon=True)
    beyond = _beyond_control(cube, controls, family, alpha)
    best_v, best_r = _best_layers(cube)
    a_best = cube.at_layer(cube.a, best_v["layer"])  # (model, variant, method, metric, image)
    b_best = np.broadcast_to(cube.at_layer(cube.ref, best_r["layer"])[:, None], a_best.shape)
    best = _tested(a_best, b_best, cube.shape(_BEST_DIMS), _BEST_DIMS, family,
                   sign[None, None, None], alpha, wilcoxon=True)
    uniform = _uniform_means(scores, metrics, percentile, reference)
    if styles is None and store is not None:
        styles = store_styles(store)
    styles = dict(styles or {})
    style_names = sorted({str(styles[i]) for i in cube.image_ids if styles.get(i)})
    masks = np.array([[styles.get(i) == s for i in cube.image_ids] for s in style_names],
                     bool).reshape(len(style_names), len(cube.image_ids))
    by_style = _groups(a_best, b_best, masks, "style", cube, family, alpha)
    features, fmasks, fa, fb, feature_vars = _feature_rows(
        scores, cube, reference, percentile, best_v["layer"], best_r["layer"])
    by_feature = _groups(fa, fb, fmasks, "feature", cube, family, alpha)
    lookup = _accuracy_lookup(accuracy if accuracy is not None else store)
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
    out["best_layer"] = _var(_BEST_DIMS, best_v["layer"],
                             "the variant's own best layer (NaN: no values)")
    out["best_mean"] = _var(_BEST_DIMS, best_v["mean"], "variant mean at its best layer")
    out["best_mean_ci_low"] = _var(_BEST_DIMS, best_v["ci_lo"], "lower CI bound of best_mean")
    out["best_mean_ci_high"] = _var(_BEST_DIMS, best_v["ci_hi"],
                                    "upper CI bound of best_mean")
    out["reference_best_layer"] = _var(_REF_BEST_DIMS, best_r["layer"],
                                       f"{reference}'s own best layer (NaN: no values)")
    out["reference_best_mean"] = _var(_REF_BEST_DIMS, best_r["mean"],
                                      f"{reference} mean at its best layer")
    out["reference_best_mean_ci_low"] = _var(_REF_BEST_DIMS, best_r["ci_lo"],
                                             "lower CI bound of reference_best_mean")
    out["reference_best_mean_ci_high"] = _var(_REF_BEST_DIMS, best_r["ci_hi"],
                                              "upper CI bound of reference_best_mean")
    best = {k: v for k, v in best.items() if k not in ("reference_mean", "variant_mean")}
    out.update(_stat_vars("best_", best, _BEST_DIMS,
                          f"variant at its best layer − {reference} at its best layer"))
    out["uniform_mean"] = _var(("metric",), uniform,
                               "mean of the uniform baseline over its images")
    out["best_gain_over_uniform"] = _var(_BEST_DIMS, best_v["mean"] - uniform,
                                         "best_mean − uniform_mean")
    out["reference_best_gain_over_uniform"] = _var(
        _REF_BEST_DIMS, best_r["mean"] - uniform, "reference_best_mean − uniform_mean")
    for prefix, d, gdim in (("style_", by_style, "style"), ("feature_", by_feature, "feature")):
        out.update(_stat_vars(prefix, d, (*_BEST_DIMS, gdim),
                              f"best-layer comparison on the samples of one {gdim}",
                              means=(f"{reference} mean at its best layer",
                                     "variant mean at its best layer")))
    out["accuracy"] = _var(("model", "variant"), acc,
                           "best validation accuracy of the fine-tune (NaN: unknown)")
    return out


def _attrs(scores: xr.Dataset, cube: _Cube, reference: str, controls: Mapping[str, str],
           percentile: float, alpha: float, family: Sequence[str],
           feature_vars: Mapping[str, str]) -> dict[str, Any]:
    import ssl_attn

    best_family = [d for d in _BEST_DIMS if d in family]
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


# ------------------------------------------------------------------ storage
_STR_COORDS = ("model", "variant", "control", "method", "metric", "direction", "style",
               "feature")


def write_shift(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write a shift Dataset to Zarr at ``path`` (default place: :func:`ssl_attn.store.shift_path`)
    atomically: into ``<path>.tmp-<pid>``, then swapped in by renames, so a reader sees the old
    table or the new one, never half of one. An existing ``path`` that is not a shift table is
    refused (nothing is deleted). Root attrs are JSON-encoded (:func:`ssl_attn.store.encode_attrs`);
    :func:`open_shift` decodes them. Returns ``path``."""
    path = Path(path)
    if path.exists() and not _is_shift(path):
        raise ShiftError(f"{path}: exists and is not a shift table (no {TITLE!r} zarr.json); "
                         "pass another output path or remove it")
    if not path.parent.is_dir():
        raise ShiftError(f"{path.parent}: no such folder; cannot write the shift table {path}")
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    old = path.with_name(f"{path.name}.old-{os.getpid()}")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    out = ds.copy()
    out.attrs = encode_attrs(ds.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # consolidated-v3 notice
        out.to_zarr(str(tmp), mode="w", consolidated=True, zarr_format=3)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    if old.exists():
        shutil.rmtree(old)
    return path


def _is_shift(path: Path) -> bool:
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("attributes", {}).get("title") == TITLE


def open_shift(path: str | os.PathLike) -> xr.Dataset:
    """Read a shift Dataset written by :func:`write_shift` (loaded; root attrs decoded, e.g.
    ``attrs["holm_family"]`` a list). Raises FileNotFoundError when ``path`` holds none."""
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path}: no shift table here (no zarr.json); run `ssl-attn "
                                "shift --store STORE` after `ssl-attn score`")
    if not _is_shift(path):
        raise ShiftError(f"{path}: a Zarr group but not a shift table (root attr title is not "
                         f"{TITLE!r})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with xr.open_dataset(str(path), engine="zarr", consolidated=None) as raw:
            ds = raw.load()
    ds.attrs = decode_attrs(ds.attrs)
    fix = {c: (ds[c].dims, np.array([str(x) for x in ds[c].values.tolist()], dtype=object))
           for c in _STR_COORDS if c in ds.coords}
    return ds.assign_coords(fix)


# ------------------------------------------------------------------ readable tables
def shift_frame(ds: xr.Dataset, table: str = "layer") -> pd.DataFrame:
    """One table of a shift Dataset as a long DataFrame (rows with data only, ``n > 0``).

    ``table``: ``"layer"`` (per-layer Δ), ``"best"`` (best layers: the variant's ``layer``,
    ``mean``, ``mean_ci_low/high``, ``gain_over_uniform``, the ``reference_best_*`` columns,
    ``uniform_mean`` and ``accuracy`` beside the Δ), ``"beyond_control"`` (only variants with a
    control; plus a ``control`` column), ``"style"`` or ``"feature"``. Columns: the table's
    dims, then its variables without their prefix (``delta, ci_low, ci_high, n, p_value,
    p_holm, dz, effect``, ...)."""
    prefix = {"layer": "", "best": "best_", "beyond_control": "beyond_control_",
              "style": "style_", "feature": "feature_"}
    if table not in prefix:
        raise ShiftError(f"table must be one of {list(prefix)}; got {table!r}")
    pre = prefix[table]
    dims = {"layer": FAMILY_DIMS, "beyond_control": FAMILY_DIMS, "best": _BEST_DIMS,
            "style": (*_BEST_DIMS, "style"), "feature": (*_BEST_DIMS, "feature")}[table]
    names = [k for k in ds.data_vars if tuple(ds[k].dims) == tuple(dims)
             and (k.startswith(pre) if pre else not k.startswith(
                 ("beyond_control_", "best_", "style_", "feature_")))]
    if table == "best":
        names = [k for k in ds.data_vars if set(ds[k].dims) <= set(_BEST_DIMS)
                 and k not in ("accuracy",) and "metric" in ds[k].dims]
    sub = ds[names]
    if table == "best":
        sub = sub.assign(accuracy=ds["accuracy"])
    df = sub.to_dataframe().reset_index()
    df = df[[c for c in df.columns if c in dims or c in names or c == "accuracy"]]
    if pre:
        df = df.rename(columns={k: k[len(pre):] for k in names if k.startswith(pre)})
    if table == "beyond_control":
        df["control"] = df["variant"].map(dict(zip(ds["variant"].values.tolist(),
                                                   ds["control"].values.tolist(), strict=True)))
    return df[df["n"] > 0].reset_index(drop=True)


def _fmt(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:+.3f}"


def _interval(df: pd.DataFrame) -> pd.Series:
    return [f"{_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]"
            for d, lo, hi in zip(df["delta"], df["ci_low"], df["ci_high"], strict=True)]


def _label(e: Any) -> str:
    return EFFECT_MEANINGS.get(int(e), str(e))


def _p(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.3g}"


def format_shift(ds: xr.Dataset, *, all_rows: bool = False) -> str:
    """A compact readable report of a shift Dataset (what ``ssl-attn shift`` prints): the best
    layers first, then the beyond-control lines at each variant's best layer, then the per-layer
    table — only cells labelled enhance/destroy unless ``all_rows``."""
    a = ds.attrs
    ref = a.get("reference", REFERENCE)
    lines = [f"shift against {ref!r}: Δ = variant − {ref} per image, mean [{a.get('ci', 0.95):.0%}"
             f" bootstrap CI, {a.get('stats_n_boot')} resamples, seed {a.get('stats_seed')}]; "
             f"IoU at percentile {a.get('percentile')}",
             str(a.get("holm_family_text", "")), ""]
    best = shift_frame(ds, "best")
    lines.append("best layers (each side at its own best layer; gain = mean − uniform):")
    if best.empty:
        lines.append("  (none)")
    else:
        t = pd.DataFrame({
            "model": best["model"], "variant": best["variant"], "method": best["method"],
            "metric": best["metric"], "ref_layer": best["reference_best_layer"].astype(int),
            "ref_mean": best["reference_best_mean"].map("{:.3f}".format),
            "ref_gain": best["reference_best_gain_over_uniform"].map(_fmt),
            "layer": best["layer"].astype(int), "mean": best["mean"].map("{:.3f}".format),
            "gain": best["gain_over_uniform"].map(_fmt),
            "Δ [CI]": _interval(best), "p_holm": best["p_holm"].map(_p),
            "effect": best["effect"].map(_label), "acc": best["accuracy"].map(
                lambda x: "" if not np.isfinite(x) else f"{x:.3f}")})
        lines += ["  " + s for s in t.to_string(index=False).splitlines()]
    bc = shift_frame(ds, "beyond_control")
    if not bc.empty:
        keys = ["model", "variant", "method", "metric"]
        bc = bc.merge(best[[*keys, "layer"]].rename(columns={"layer": "best_layer"}), on=keys)
        bc = bc[bc["layer"] == bc["best_layer"]]
        lines += ["", "beyond control (variant − its shuffled-label control, per image, at the "
                      "variant's best layer):"]
        t = pd.DataFrame({"model": bc["model"], "variant": bc["variant"],
                          "control": bc["control"], "method": bc["method"],
                          "metric": bc["metric"], "layer": bc["layer"],
                          "Δ [CI]": _interval(bc), "p_holm": bc["p_holm"].map(_p),
                          "effect": bc["effect"].map(_label)})
        lines += ["  " + s for s in t.to_string(index=False).splitlines()]
    per = shift_frame(ds, "layer")
    n_all = len(per)
    if not all_rows:
        per = per[per["effect"] != 0]
    lines += ["", f"per layer ({'all' if all_rows else 'enhance/destroy only'}: {len(per)} of "
                  f"{n_all} cells{'' if all_rows else '; --all lists every cell'}):"]
    if per.empty:
        lines.append("  (none)")
    else:
        t = pd.DataFrame({"model": per["model"], "variant": per["variant"],
                          "method": per["method"], "metric": per["metric"],
                          "layer": per["layer"], "Δ [CI]": _interval(per),
                          "p_holm": per["p_holm"].map(_p), "effect": per["effect"].map(_label)})
        lines += ["  " + s for s in t.to_string(index=False).splitlines()]
    return "\n".join(lines)
