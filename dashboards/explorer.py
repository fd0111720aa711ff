"""The explorer dashboard, served with Panel:

    panel serve dashboards/explorer.py --args --store data/stores/demo.zarr [--data DIR]
                                               [--data-dir data]

Store: ``--store PATH``, else the env var ``SSL_ATTN_STORE``, else ``data/stores/demo.zarr``.
A client may pick another store with ``?store=stores/other.zarr``, resolved inside the data
directory (``--data-dir`` / ``SSL_ATTN_DATA_DIR``, default ``data``); anything outside it is
refused. Everything is read-only. All logic lives in :mod:`ssl_attn.explorer`.
"""

from __future__ import annotations

import argparse
import os
import sys

import panel as pn

from ssl_attn.explorer import DEFAULT_DATA_DIR, DEFAULT_STORE, build_app


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``--store``, ``--data``, ``--data-dir`` (``panel serve ... --args`` fills sys.argv)."""
    p = argparse.ArgumentParser(prog="dashboards/explorer.py", add_help=False)
    p.add_argument("--store", default=os.environ.get("SSL_ATTN_STORE", str(DEFAULT_STORE)))
    p.add_argument("--data", default=os.environ.get("SSL_ATTN_DATA") or None)
    p.add_argument("--data-dir",
                   default=os.environ.get("SSL_ATTN_DATA_DIR", str(DEFAULT_DATA_DIR)))
    args, _ = p.parse_known_args(argv)
    return args


pn.extension("tabulator", notifications=False)
_args = parse_args(sys.argv[1:])
_requested = None
if pn.state.session_args.get("store"):
    _requested = pn.state.session_args["store"][0].decode("utf-8", "replace")

build_app(_args.store, data=_args.data, data_dir=_args.data_dir,
          requested=_requested).servable(title="ssl-attn explorer")
