"""Statistics for alignment scores: bootstrap CIs, paired tests, effect sizes, Holm.

Plain functions work on numpy arrays; the table helpers (:func:`best_layer`,
:func:`layer_curve`, :func:`paired_differences`) take the scores Dataset of
:func:`ssl_attn.metrics.score` and return pandas DataFrames ready for plotting. Their numpy
core — :func:`mean_ci` (mean and bootstrap CI of many rows at once), :func:`curve_from_values`
(a ``(layer, image)`` array → the per-layer table) and :func:`best_row` (the best layer of such
a table) — is what the explorer calls on the arrays it reads through the fast raw-Zarr path, so
the notebook and the dashboard show the same numbers from the same code.

Conventions — one documented choice, the default of every function here and recorded with the
results (``DataFrame.attrs``, see :func:`bootstrap_settings`; the scores' root attrs record
:data:`N_BOOT` and :data:`SEED`):

* :data:`N_BOOT` = 10 000 resamples (percentile bootstrap; the CI's Monte-Carlo error is then
  well under 1 % of its width for typical n ≈ 139 images),
* :data:`CI` = 0.95 (two-sided, quantiles 0.025 and 0.975 of the resampled means),
* :data:`SEED` = 0: every CI draws its ``(N_BOOT, n)`` resampling indices from
  ``numpy.random.default_rng(SEED)``, so two samples of the same size share one draw and a
  CI is reproducible from the values alone.

NaN values (images a model did not score) are dropped before any statistic; paired statistics
keep only images where both sides are finite. Means are taken in float64 whatever the stored
dtype.

Modules: :mod:`.bootstrap` (settings, :func:`bootstrap_ci`, :func:`mean_ci`), :mod:`.curves`
(numpy core: curves and best layers from arrays), :mod:`.paired` (tests, d_z, Holm; and
:func:`paired_ttest_rows`, :func:`wilcoxon_rows`, :func:`cohens_dz_rows`: the same for many
rows at once, equal bit for bit), :mod:`.tables` (the same on a scores Dataset). Import from
:mod:`ssl_attn.stats` itself.
"""

from __future__ import annotations

from .bootstrap import CI, N_BOOT, SEED, bootstrap_ci, bootstrap_settings, mean_ci
from .curves import (
    CURVE_COLUMNS,
    best_from_values,
    best_row,
    bests_from_values,
    curve_from_values,
    curves_from_values,
    direction,
)
from .paired import (
    cohens_dz,
    cohens_dz_rows,
    holm,
    paired_ttest,
    paired_ttest_rows,
    wilcoxon,
    wilcoxon_rows,
)
from .tables import best_layer, layer_curve, paired_differences

__all__ = [
    "CI",
    "CURVE_COLUMNS",
    "N_BOOT",
    "SEED",
    "best_from_values",
    "best_layer",
    "best_row",
    "bests_from_values",
    "bootstrap_ci",
    "bootstrap_settings",
    "cohens_dz",
    "cohens_dz_rows",
    "curve_from_values",
    "curves_from_values",
    "direction",
    "holm",
    "layer_curve",
    "mean_ci",
    "paired_differences",
    "paired_ttest",
    "paired_ttest_rows",
    "wilcoxon",
    "wilcoxon_rows",
]

