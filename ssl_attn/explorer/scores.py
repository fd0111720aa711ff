"""Score lookups of the explorer (the ``X.scores.zarr`` Dataset, docs/SCHEMA.md "Scores").

:class:`ScoresMixin` holds every score method of :class:`~ssl_attn.explorer.data.ExplorerData`
(split out to keep modules small): one metric's ``(layer, head, image_id[, box])`` block per
model/variant/method is read once and cached, so image, layer and head changes are numpy
indexing; per-layer summaries and the leaderboard are cached per key.

Every number shown — curve means, CI bands, best layers, baseline values — comes from
:mod:`ssl_attn.stats` (:func:`~ssl_attn.stats.curve_from_values`,
:func:`~ssl_attn.stats.best_from_values`) on the numpy arrays read here, with its one bootstrap
choice (``stats.N_BOOT`` resamples, ``stats.SEED``, ``stats.CI``), so the dashboard equals
``stats.layer_curve`` / ``stats.best_layer`` for the same selection. The settings are in the
returned DataFrames' ``.attrs`` (:func:`ssl_attn.stats.bootstrap_settings`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ssl_attn import stats
from ssl_attn.store import decode_attr, direct_array, open_root, read_slice

__all__ = ["BASELINE_PREFIX", "PRIMARY_ORDER", "ScoresMixin", "fallback_method"]

#: The method each model falls back to in all-model views when it lacks the chosen one (a UI
#: choice; the one fallback order of the explorer).
PRIMARY_ORDER = ("cls", "probe", "mean_received", "rollout", "gradcam")
BASELINE_PREFIX = "baseline:"


def fallback_method(have: Sequence[str], method: str | None) -> str | None:
    """``method`` when among ``have`` (the methods with scores), else the first of
    :data:`PRIMARY_ORDER` there, else ``have[0]``; None when ``have`` is empty."""
    if method in have:
        return method
    return next((m for m in PRIMARY_ORDER if m in have), have[0] if have else None)


@dataclass(frozen=True)
class LayerTable:
    """One metric at head −1 (``fused``) or averaged over heads: ``values`` float64
    ``(model, method, layer, image_id)`` with those coordinate values."""

    values: np.ndarray
    models: list[str]
    methods: list[str]
    layers: list[int]
    fused: bool

    def of(self, model: str) -> np.ndarray:
        """``(method, layer, image_id)`` of one model."""
        return self.values[self.models.index(model)]


class ScoresMixin:
    """Score methods of :class:`~ssl_attn.explorer.data.ExplorerData`.

    Needs ``self.scores`` (``xarray.Dataset`` or None), ``self.scores_path``, ``self._table``
    (an ``lru_cache`` of :meth:`_read_block`) and ``self.boxes(image_id)``.
    """

    scores: xr.Dataset | None
    scores_path: Path

    # ------------------------------------------------------------------ scores
    @functools.cached_property
    def metrics(self) -> list[str]:
        """Score variables without a ``box`` dim (one value per map)."""
        if self.scores is None:
            return []
        full = {"model", "variant", "method", "layer", "head", "image_id"}
        return [k for k, v in self.scores.data_vars.items()
                if full <= set(v.dims) and "box" not in v.dims]

    @functools.cached_property
    def box_metrics(self) -> list[str]:
        """Per-box score variables (with a ``box`` dim)."""
        if self.scores is None:
            return []
        base = {"model", "variant", "method", "layer", "head", "box"}
        return [k for k, v in self.scores.data_vars.items() if base <= set(v.dims)]

    @functools.cached_property
    def percentiles(self) -> list[int]:
        """Values of the scores' ``percentile`` coord (empty without one)."""
        if self.scores is None or "percentile" not in self.scores.coords:
            return []
        return [round(float(p)) for p in self.scores["percentile"].values]

    @functools.cached_property
    def resolution(self) -> int:
        """The evaluation frame side ``R`` the scores were computed at (their root attr
        ``resolution``; 224, :func:`ssl_attn.metrics.score`'s default, without scores). The
        outline is drawn in this frame so it is the pixel set the scores counted."""
        if self.scores is None:
            return 224
        return int(self.scores.attrs.get("resolution", 224))

    def metric_attrs(self, metric: str) -> dict[str, Any]:
        """``direction``, ``range``, ``long_name`` of a score variable (decoded)."""
        attrs = {k: decode_attr(v) for k, v in self.scores[metric].attrs.items()}
        attrs.setdefault("direction", "higher")
        attrs.setdefault("long_name", metric)
        return attrs

    def metric_label(self, metric: str, percentile: int | None) -> str:
        """``iou@90`` for percentile metrics, else the name."""
        if self.scores is not None and "percentile" in self.scores[metric].dims:
            return f"{metric}@{percentile}"
        return metric

    @functools.cached_property
    def _scores_root(self):
        return open_root(self.scores_path)

    def _read_scores(self, metric: str, percentile: int | None, dims_out: Sequence[str],
                     **sel: Any) -> np.ndarray:
        """``metric`` at the coordinate values ``sel`` (and ``percentile``, or the last one
        when absent) as a numpy array with dims ``dims_out``
        (:func:`ssl_attn.store.fast.read_slice`)."""
        var = self.scores.variables[metric]
        pos: dict[str, int] = {d: self._score_index[d][v] for d, v in sel.items()
                               if d in var.dims}
        if "percentile" in var.dims:
            p = percentile if percentile in self.percentiles else self.percentiles[-1]
            pos["percentile"] = self.percentiles.index(p)
        arr = direct_array(self._scores_root, None, metric, var)
        return read_slice(var, arr, pos, [d for d in dims_out if d in var.dims])

    def _read_block(self, metric: str, model: str, variant: str, method: str,
                    percentile: int | None) -> np.ndarray:
        out = self._read_scores(metric, percentile, ("layer", "head", "image_id", "box"),
                                model=model, variant=variant, method=method)
        out = np.asarray(out, dtype=np.float64)
        out.setflags(write=False)
        return out

    def score_block(self, metric: str, model: str, variant: str, method: str,
                    percentile: int | None = None) -> np.ndarray:
        """All scores of one model/variant/method: ``(layer, head, image_id[, box])`` float64,
        read once and cached (image, layer and head changes are then numpy indexing)."""
        if self.scores is None or metric not in self.scores.data_vars:
            raise KeyError(f"{self.scores_path}: no score variable {metric!r}")
        for dim, val in (("model", model), ("variant", variant), ("method", method)):
            if val not in self._score_index[dim]:
                raise KeyError(f"{self.scores_path}: no {dim} {val!r} in the scores")
        return self._table(metric, model, variant, method, percentile)

    @functools.cached_property
    def _score_index(self) -> dict[str, dict]:
        """Coordinate value → position, per scores dim (plain dicts: fast lookups)."""
        return {d: {(str(v) if isinstance(v, str) else int(v)): i
                    for i, v in enumerate(self.scores[d].values)}
                for d in ("model", "variant", "method", "layer", "head", "image_id")}

    def grid_scores(
        self, metric: str, model: str, variant: str, method: str, image_id: str,
        percentile: int | None = None,
    ) -> tuple[list[int], list[int], np.ndarray]:
        """One image's metric over layers × heads: ``(layers, heads, values[L, H])``.

        ``heads`` starts with ``-1`` (the head-mean map) when the scores hold it; rows/columns
        that are NaN for the whole model/method are dropped (other models' layers/heads).
        """
        if self.scores is None or metric not in self.metrics:
            raise KeyError(f"{self.scores_path}: no score variable {metric!r} "
                           f"(has {self.metrics})")
        block = self.score_block(metric, model, variant, method, percentile)
        ii = self._score_index["image_id"].get(image_id)
        if ii is None:
            raise KeyError(f"{self.scores_path}: no image_id {image_id!r} in the scores")
        vals = block[:, :, ii]
        layers = list(self._score_index["layer"])
        heads = list(self._score_index["head"])
        keep_l = ~np.all(np.isnan(vals), axis=1)
        keep_h = ~np.all(np.isnan(vals), axis=0)
        return ([la for la, k in zip(layers, keep_l) if k],
                [h for h, k in zip(heads, keep_h) if k],
                vals[np.ix_(keep_l, keep_h)])

    def cell_score(
        self, metric: str, model: str, variant: str, method: str, image_id: str,
        layer: int, head: int, percentile: int | None = None,
    ) -> float:
        """One score value (NaN when the combination does not exist)."""
        try:
            layers, heads, vals = self.grid_scores(metric, model, variant, method, image_id,
                                                   percentile)
        except KeyError:
            return float("nan")
        if layer not in layers or head not in heads:
            return float("nan")
        return float(vals[layers.index(layer), heads.index(head)])

    @functools.cached_property
    def _box_positions(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """image_id → (positions along the scores' ``box`` dim, their ``box_index``).

        The metrics module numbers boxes globally (``box`` = 0..n_boxes-1 over all images) and
        names each with the coords ``box_image_id`` and ``box_index``; without those coords
        the ``box`` dim is taken as the per-image ``box_index``.
        """
        sc = self.scores
        if sc is None or "box" not in sc.dims:
            return {}
        if "box_image_id" in sc.coords and "box_index" in sc.coords:
            codes, ids = pd.factorize(np.asarray(sc["box_image_id"].values, dtype=object))
            bidx = np.asarray(sc["box_index"].values, dtype=np.int64)
            # One stable sort groups the positions by image (in box-dim order within each).
            order = np.argsort(codes, kind="stable")
            groups = np.split(order, np.cumsum(np.bincount(codes, minlength=len(ids)))[:-1])
            return {str(i): (g, bidx[g]) for i, g in zip(ids, groups)}
        n = sc.sizes["box"]
        return {iid: (np.arange(n), np.arange(n)) for iid in self._score_index["image_id"]}

    def box_scores(
        self, model: str, variant: str, method: str, image_id: str, layer: int, head: int,
        percentile: int | None = None,
    ) -> pd.DataFrame:
        """Per-box scores of one map: index ``box_index`` (the image's boxes), one column per
        box metric (NaN where missing)."""
        arrays = self.box_score_arrays(model, variant, method, image_id, layer, head,
                                       percentile)
        n = len(self.boxes(image_id))
        return pd.DataFrame(arrays, index=pd.RangeIndex(n, name="box_index"))

    def box_score_arrays(
        self, model: str, variant: str, method: str, image_id: str, layer: int, head: int,
        percentile: int | None = None,
    ) -> dict[str, np.ndarray]:
        """:meth:`box_scores` as plain arrays: box metric → float64 ``(n_boxes,)`` indexed by
        ``box_index`` (NaN where missing; metrics without scores for the map are left out)."""
        n = len(self.boxes(image_id))
        out: dict[str, np.ndarray] = {}
        if self.scores is None:
            return out
        idx = self._score_index
        li, hi = idx["layer"].get(layer), idx["head"].get(head)
        pos = self._box_positions.get(image_id)
        if li is None or hi is None or pos is None:
            return out
        positions, box_index = pos
        keep = box_index < n
        for metric in self.box_metrics:
            try:
                block = self.score_block(metric, model, variant, method, percentile)
            except KeyError:
                continue
            vals = np.full(n, np.nan)
            if block.ndim == 4:  # (layer, head, image_id, box): a per-image box dim
                ii = idx["image_id"].get(image_id)
                row = block[li, hi, ii] if ii is not None else np.full(0, np.nan)
                vals[: min(n, row.size)] = row[:n]
            else:  # (layer, head, box): the metrics module's global box dim
                vals[box_index[keep]] = block[li, hi, positions[keep]]
            out[metric] = vals
        return out

    def _model_layer_table(self, metric: str, variant: str, percentile: int | None) -> LayerTable:
        """``(model, method, layer, image_id)`` at head −1 (or the mean over heads)."""
        key = ("mli", metric, variant, percentile)
        cached = self._summary_cache.get(key)
        if cached is not None:
            return cached
        dims = ("model", "method", "layer", "image_id")
        if -1 in self._score_index["head"]:
            values = self._read_scores(metric, percentile, dims, variant=variant, head=-1)
            fused = True
        else:
            values = self._read_scores(metric, percentile, ("head", *dims), variant=variant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
                values = np.nanmean(values, axis=0)
            fused = False
        idx = self._score_index
        out = LayerTable(np.asarray(values, dtype=np.float64), list(idx["model"]),
                         list(idx["method"]), list(idx["layer"]), fused)
        self._summary_cache[key] = out
        return out

    @functools.cached_property
    def _summary_cache(self) -> dict:
        return {}

    def score_models(self) -> list[str]:
        """Models in the scores that are not baselines."""
        if self.scores is None:
            return []
        return [str(m) for m in self.scores["model"].values
                if not str(m).startswith(BASELINE_PREFIX)]

    def _method_values(self, table: LayerTable, model: str,
                       method: str | None) -> tuple[str, np.ndarray] | None:
        """``(method used, its (layer, image_id) values)`` of one model: ``method`` or the
        fallback (:func:`fallback_method`); None when the model has no values at all."""
        vals = table.of(model)  # (method, layer, image)
        have = [m for m, v in zip(table.methods, vals) if np.isfinite(v).any()]
        use = fallback_method(have, method)
        return None if use is None else (use, vals[table.methods.index(use)])

    def _model_rows(self, kind: str, metric: str, method: str, variant: str,
                    percentile: int | None, compute: Any) -> list[tuple[str, str, Any]]:
        """Per non-baseline model with scores: ``(model, method used, result)``, where the
        method is ``method`` or the model's fallback (:meth:`_method_values`) and ``result`` is
        ``compute(values, layers)``'s entry for its ``(layer, image_id)`` values (a
        :mod:`ssl_attn.stats` batch function). Results are cached per ``(kind, metric,
        variant, percentile, model, method used)`` — shared by every method falling back to
        the same one — and all models not cached yet go to ``compute`` in one batch."""
        if self.scores is None or metric not in self.metrics:
            return []
        table = self._model_layer_table(metric, variant, percentile)
        picked, todo = [], {}
        for model in self.score_models():
            got = self._method_values(table, model, method) if model in table.models else None
            if got is None:
                continue
            use, values = got
            rkey = (kind, metric, variant, percentile, model, use)
            picked.append((model, use, rkey))
            if rkey not in self._summary_cache:
                todo[rkey] = values
        if todo:
            self._summary_cache.update(zip(todo, compute(list(todo.values()),
                                                         [table.layers] * len(todo))))
        return [(model, use, self._summary_cache[rkey]) for model, use, rkey in picked]

    def layer_summary(
        self, metric: str, method: str, variant: str = "frozen", percentile: int | None = None,
    ) -> pd.DataFrame:
        """Per model and layer: mean over images and the percentile-bootstrap CI of
        :func:`ssl_attn.stats.curve_from_values` (``stats.CI``, ``stats.N_BOOT`` resamples,
        ``stats.SEED``; the settings in ``.attrs``).

        Each model uses ``method`` when it has scores for it, else its primary method (labelled
        ``model (method)``). Head: ``-1`` (the head-mean map). Rows ``model, method, label,
        layer, mean, lo, hi, n`` (``n`` images with a finite score; ``lo``/``hi`` NaN below 2);
        NaN-only layers dropped.
        """
        key = ("summary", metric, method, variant, percentile)
        if key in self._summary_cache:
            return self._summary_cache[key]
        parts = [(model, use, model if use == method else f"{model} ({use})", curve)
                 for model, use, curve in self._model_rows(
                     "rows", metric, method, variant, percentile, stats.curves_from_values)]
        # Plain column concatenation (cheaper than pd.concat on a method change).
        sizes = [len(c) for *_, c in parts]
        df = pd.DataFrame({
            **{name: np.repeat(np.array([p[i] for p in parts], dtype=object), sizes).tolist()
               for i, name in enumerate(("model", "method", "label"))},
            **{out: (np.concatenate([c[col].to_numpy() for *_, c in parts]) if parts
                     else np.zeros(0, dtype=np.int64 if col in ("layer", "n") else float))
               for out, col in (("layer", "layer"), ("mean", "mean"), ("lo", "ci_lo"),
                                ("hi", "ci_hi"), ("n", "n"))}})
        df.attrs = stats.bootstrap_settings()
        self._summary_cache[key] = df
        return df

    def _baseline_best(self, metric: str, percentile: int | None) -> dict[str, pd.Series]:
        """Baseline name (without ``baseline:``) → :func:`ssl_attn.stats.best_from_values` of
        its first method with values (as ``stats.best_layer`` picks; frozen, head −1)."""
        key = ("baselines", metric, percentile)
        if key in self._summary_cache:
            return self._summary_cache[key]
        out: dict[str, pd.Series] = {}
        if (self.scores is not None and metric in self.metrics
                and "frozen" in self._score_index["variant"]):
            table = self._model_layer_table(metric, "frozen", percentile)
            todo = {}
            for m in table.models:
                if not str(m).startswith(BASELINE_PREFIX):
                    continue
                vals = table.of(m)
                have = [k for k, v in enumerate(vals) if np.isfinite(v).any()]
                if have:
                    todo[str(m)[len(BASELINE_PREFIX):]] = vals[have[0]]
            bests = stats.bests_from_values(list(todo.values()), [table.layers] * len(todo),
                                            self.metric_attrs(metric)["direction"])
            out = {name: best for name, best in zip(todo, bests) if best is not None}
        self._summary_cache[key] = out
        return out

    def baselines(self, metric: str, percentile: int | None = None) -> dict[str, float]:
        """Mean over images of each baseline pseudo-model (``baseline:*``) for a metric (the
        ``mean`` of ``stats.best_layer`` for that pseudo-model)."""
        return {name: float(best["mean"])
                for name, best in self._baseline_best(metric, percentile).items()}

    def _best(self, metric: str, method: str, variant: str,
              percentile: int | None) -> list[tuple[str, str, pd.Series]]:
        """Per non-baseline model: ``(model, method used, stats.best_from_values row)``."""
        key = ("best", metric, method, variant, percentile)
        if key in self._summary_cache:
            return self._summary_cache[key]
        direction = self.metric_attrs(metric)["direction"] if metric in self.metrics else None
        out = [(model, use, best) for model, use, best in self._model_rows(
            "best-rows", metric, method, variant, percentile,
            lambda values, layers: stats.bests_from_values(values, layers, direction))
            if best is not None]
        self._summary_cache[key] = out
        return out

    def leaderboard(
        self, method: str, variant: str = "frozen", percentile: int | None = None,
        metrics: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Models × metrics at each model's best layer (by the mean; direction-aware), with
        the bootstrap CI over images there, plus baseline rows — the rows of
        :func:`ssl_attn.stats.best_from_values` (= ``stats.best_layer``); the bootstrap
        settings in ``.attrs``.

        Columns: ``model, method`` then per metric ``<m>``, ``<m> lo``, ``<m> hi``,
        ``<m> layer``. The best layer is picked on the same images it is reported on, so the
        value is optimistic; compare models, not against a held-out number.
        """
        metrics = list(metrics) if metrics is not None else self.metrics
        recs: dict[str, dict[str, Any]] = {}
        for metric in metrics:
            label = self.metric_label(metric, percentile)
            for model, use, best in self._best(metric, method, variant, percentile):
                rec = recs.setdefault(model, {"model": model, "method": use})
                rec[label] = best["mean"]
                rec[f"{label} lo"] = best["ci_lo"]
                rec[f"{label} hi"] = best["ci_hi"]
                rec[f"{label} layer"] = int(best["layer"])
            for name, best in self._baseline_best(metric, percentile).items():
                model = BASELINE_PREFIX + name
                rec = recs.setdefault(model, {"model": model, "method": "baseline"})
                rec[label], rec[f"{label} lo"], rec[f"{label} hi"] = (
                    best["mean"], best["ci_lo"], best["ci_hi"])
        df = pd.DataFrame(list(recs.values()))
        for c in [c for c in df.columns if c.endswith(" layer")]:
            df[c] = df[c].astype("Int64")  # whole layers; <NA> for baselines
        df.attrs = stats.bootstrap_settings()
        return df
