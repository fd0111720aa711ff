"""Statistics of many paired rows at once: the tested cells of a shift table (mean Δ and
bootstrap CI, t-test / Wilcoxon p, d_z, means) with Holm correction and effect labels, all
from :mod:`ssl_attn.stats`'s row-wise functions."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ssl_attn import stats

__all__ = ["effect_labels", "holm_within", "paired_rows", "tested"]


# ------------------------------------------------------------------ statistics of many rows
def paired_rows(a: np.ndarray, b: np.ndarray, *, wilcoxon: bool = True) -> dict[str, np.ndarray]:
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


def holm_within(p: np.ndarray, dims: Sequence[str], family: Sequence[str]) -> np.ndarray:
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


def effect_labels(delta: np.ndarray, p_holm: np.ndarray, sign: np.ndarray,
                  alpha: float) -> np.ndarray:
    """+1 enhance / −1 destroy where ``p_holm < alpha`` (by the sign of ``delta·sign``, ``sign``
    +1 for higher-is-better metrics, −1 for lower), else 0 preserve."""
    with np.errstate(invalid="ignore"):
        sig = np.isfinite(p_holm) & (p_holm < alpha) & np.isfinite(delta)
        return np.where(sig, np.sign(np.nan_to_num(delta) * sign), 0).astype(np.int8)


def tested(a: np.ndarray, b: np.ndarray, shape: tuple[int, ...], dims: Sequence[str],
            family: Sequence[str], sign: np.ndarray, alpha: float, *,
            wilcoxon: bool = False) -> dict[str, np.ndarray]:
    """:func:`paired_rows` of ``a − b`` (``(*shape, sample)``), reshaped to ``shape``, with
    ``p_holm`` (Holm across ``family`` ∩ ``dims``) and ``effect`` (``sign`` broadcast to
    ``shape``)."""
    n = a.shape[-1]
    out = {k: v.reshape(shape) for k, v in
           paired_rows(a.reshape(-1, n), b.reshape(-1, n), wilcoxon=wilcoxon).items()}
    out["p_holm"] = holm_within(out["p_value"], dims, family)
    out["effect"] = effect_labels(out["delta"], out["p_holm"], sign, alpha)
    return out
