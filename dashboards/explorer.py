"""The explorer dashboard, served with Panel:

    panel serve dashboards/explorer.py --args --store data/stores/demo.zarr [--data DIR]
                                               [--data-dir data]

Store: ``--store PATH``, else the env var ``SSL_ATTN_STORE``, else ``data/stores/demo.zarr``.
A client may pick another store with ``?store=stores/other.zarr``, resolved inside the data
directory (``--data-dir`` / ``SSL_ATTN_DATA_DIR``, default ``data``); anything outside it is
refused. Everything is read-only. All logic lives in :mod:`ssl_attn.explorer`.

Sessions of one process share the opened store, scores, dataset and every read-only cache
(:func:`ssl_attn.explorer.data.shared_data`); selections and plots stay per session. For many
users, serve with worker processes and/or event threads (README, "Serving the dashboard"):

    panel serve dashboards/explorer.py --num-procs 2 --num-threads 4 --args --store ...
    python dashboards/explorer.py --procs 2 --threads 4 [--port 5006] --store ...  # the same
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


def serve_command(argv: list[str]) -> list[str]:
    """The ``panel serve`` command line for ``python dashboards/explorer.py [options]``:
    ``--procs N`` (``--num-procs``, worker processes; 0 = one per CPU), ``--threads N``
    (``--num-threads``, Panel's thread pool for events; 0 = off), ``--port``; every other
    option (``--store``, ``--data``, ``--data-dir``) goes to the app after ``--args``."""
    p = argparse.ArgumentParser(prog="dashboards/explorer.py")
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--port", type=int, default=5006)
    args, rest = p.parse_known_args(argv)
    cmd = [sys.executable, "-m", "panel", "serve", os.path.abspath(__file__),
           "--port", str(args.port), "--num-procs", str(args.procs)]
    if args.threads > 0:
        cmd += ["--num-threads", str(args.threads)]
    return [*cmd, "--args", *rest]


if __name__ == "__main__":  # python dashboards/explorer.py --procs 2 --threads 4 --store ...
    cmd = serve_command(sys.argv[1:])
    os.execv(cmd[0], cmd)

pn.extension("tabulator", notifications=False)
_args = parse_args(sys.argv[1:])
_requested = None
if pn.state.session_args.get("store"):
    _requested = pn.state.session_args["store"][0].decode("utf-8", "replace")

build_app(_args.store, data=_args.data, data_dir=_args.data_dir,
          requested=_requested).servable(title="ssl-attn explorer")
