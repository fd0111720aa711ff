"""ssl-attn: do self-supervised vision transformers look where architecture experts look?

The package is import-light: importing :mod:`ssl_attn` never imports torch, transformers,
panel or dask. Import the submodule you need (``ssl_attn.wikichurches``, ``ssl_attn.models``,
``ssl_attn.store``, ``ssl_attn.metrics`` ...).
"""

from __future__ import annotations

import warnings

# Stores are Zarr v3 with consolidated metadata (fast lazy opens); zarr warns on every write that
# consolidation is not yet part of the v3 spec. We rely on it knowingly: say it once in docs, not
# on every call.
warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")

__version__ = "0.1.0"

__all__ = ["__version__"]
