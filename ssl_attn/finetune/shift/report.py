"""Readable forms of a shift table: :func:`shift_frame` (one table as a long DataFrame) and
:func:`format_shift` (what ``ssl-attn shift`` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .base import BEST_DIMS, EFFECT_MEANINGS, FAMILY_DIMS, REFERENCE, ShiftError

__all__ = ["format_shift", "shift_frame"]


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
    dims = {"layer": FAMILY_DIMS, "beyond_control": FAMILY_DIMS, "best": BEST_DIMS,
            "style": (*BEST_DIMS, "style"), "feature": (*BEST_DIMS, "feature")}[table]
    names = [k for k in ds.data_vars if tuple(ds[k].dims) == tuple(dims)
             and (k.startswith(pre) if pre else not k.startswith(
                 ("beyond_control_", "best_", "style_", "feature_")))]
    if table == "best":
        names = [k for k in ds.data_vars if set(ds[k].dims) <= set(BEST_DIMS)
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
