"""ssl-attn: do self-supervised vision transformers look where architecture experts look?

The package is import-light: importing :mod:`ssl_attn` never imports torch, transformers,
panel or dask. Import the submodule you need (``ssl_attn.wikichurches``, ``ssl_attn.models``,
``ssl_attn.store``, ``ssl_attn.metrics`` ...).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
