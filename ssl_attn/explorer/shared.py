"""One read-only :class:`~ssl_attn.explorer.data.ExplorerData` per store and server process,
shared by every session (``panel serve`` builds one page per browser tab; each would otherwise
open the store, its scores and the dataset again and keep its own caches of maps, photos and
score blocks). Per-session state (selection, views, Bokeh models) is never shared.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from ssl_attn.explorer.data import ExplorerData
from ssl_attn.store import scores_path

__all__ = ["SHARED_MAX", "clear_shared", "shared_data", "store_signature"]

#: At most this many distinct stores stay open per process (least recently used dropped first).
SHARED_MAX = 4
_shared: OrderedDict[tuple, tuple[tuple, ExplorerData]] = OrderedDict()
_shared_lock = threading.RLock()  # one opening at a time: concurrent sessions wait for it


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _newest_under(folder: Path) -> int:
    """Newest mtime (ns) of the files under ``folder`` (0 when absent); a small folder."""
    newest = 0
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.stat(os.path.join(dirpath, f)).st_mtime_ns)
    return newest


def store_signature(store: str | os.PathLike, scores: str | os.PathLike | None = None) -> tuple:
    """What says a store changed on disk: ``(mtime_ns, size)`` of the store's, the scores' and
    the shift table's (``X.shift.zarr``, read by the fine-tuning view) root ``zarr.json``
    (rewritten, consolidated, on every metadata change; None when absent) and the newest file
    of each model group's ``complete`` flags (written by every extract batch, whose map writes
    change no metadata). Cheap: a few ``stat`` calls."""
    from ssl_attn.store import shift_path

    store = Path(store)
    scores = Path(scores) if scores is not None else scores_path(store)
    complete = tuple(sorted((p.parent.name, _newest_under(p))
                            for p in store.glob("*/complete")))
    return (_stat(store / "zarr.json"), _stat(scores / "zarr.json"), complete,
            _stat(shift_path(store) / "zarr.json"))


def shared_data(
    store: str | os.PathLike,
    *,
    scores: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    photo_size: int = 800,
    data_dir: str | os.PathLike | None = None,
) -> ExplorerData:
    """The process-wide :class:`ExplorerData` of a store, opened on first use and reused by every
    later caller (each server session) while :func:`store_signature` is unchanged; a changed
    store is reopened, never served stale. Keyed by the resolved store, scores and dataset paths,
    ``photo_size`` and ``data_dir`` (messages show paths relative to it); at most
    :data:`SHARED_MAX` stores are kept (LRU). A store that cannot be opened is not kept (the
    next session retries). Thread-safe (``panel serve --num-threads``).
    """
    store_r = Path(store).resolve()
    scores_r = Path(scores).resolve() if scores is not None else scores_path(store_r)
    data_r = str(Path(data).resolve()) if data is not None else None
    dir_r = str(Path(data_dir).resolve()) if data_dir is not None else None
    key = (str(store_r), str(scores_r), data_r, int(photo_size), dir_r)
    sig = store_signature(store_r, scores_r)
    with _shared_lock:
        hit = _shared.get(key)
        if hit is not None and hit[0] == sig:
            _shared.move_to_end(key)
            return hit[1]
        _shared.pop(key, None)  # changed on disk: drop the old one before opening anew
        out = ExplorerData(store, scores=scores, data=data, photo_size=photo_size,
                           data_dir=data_dir)
        if out.ok:
            _shared[key] = (sig, out)
            while len(_shared) > SHARED_MAX:
                _shared.popitem(last=False)
        return out


def clear_shared() -> None:
    """Forget every shared :class:`ExplorerData` (tests; or to free memory)."""
    with _shared_lock:
        _shared.clear()
