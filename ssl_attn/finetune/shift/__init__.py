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

Modules (one job each; import the names from :mod:`ssl_attn.finetune.shift` itself):
:mod:`.base` (constants, :class:`ShiftError`), :mod:`.readers` (styles and accuracy from the
store), :mod:`.cube` (the scores as arrays), :mod:`.rows` (the tested cells: Δ, CI, p, Holm,
effect, from :mod:`ssl_attn.stats`'s row-wise functions), :mod:`.table` (:func:`shift_table`),
:mod:`.io` (:func:`write_shift`, :func:`open_shift`), :mod:`.report` (:func:`shift_frame`,
:func:`format_shift`).
"""

from __future__ import annotations

from .base import (
    ALPHA,
    CONTROL_SUFFIX,
    EFFECT_MEANINGS,
    FAMILY_DIMS,
    REFERENCE,
    TITLE,
    UNIFORM_MODEL,
    ShiftError,
)
from .io import open_shift, write_shift
from .readers import store_accuracy, store_styles
from .report import format_shift, shift_frame
from .table import shift_table

__all__ = [
    "ALPHA",
    "CONTROL_SUFFIX",
    "EFFECT_MEANINGS",
    "FAMILY_DIMS",
    "REFERENCE",
    "TITLE",
    "UNIFORM_MODEL",
    "ShiftError",
    "format_shift",
    "open_shift",
    "shift_frame",
    "shift_table",
    "store_accuracy",
    "store_styles",
    "write_shift",
]
