"""Safe text in the explorer's panes: the one owner of how outside text is shown.

Text the dashboard does not write itself — a client's ``?store=`` value, file and folder paths,
exception messages, names read from a store or a dataset — is *data*, never markup. Every
Markdown pane or banner that may show such text is made here (:func:`markdown`,
:func:`alert`), and every such fragment goes in through :func:`md_escape` (plain text) or
:func:`md_code` (a code span); a line with no markup at all is a :func:`plain` pane:

* the panes render Markdown with raw HTML **off** (markdown-it ``html=False``), so a ``<script>``
  or ``<img onerror=...>`` that slipped through would still be shown as text;
* :func:`md_escape` backslash-escapes every ASCII punctuation character (links, images,
  emphasis, math) and writes ``& < >`` as entities, so the rendered text is the input verbatim;
* fragments become one line and are cut to ``limit`` characters.

Paths are shown relative to the served data directory (:func:`show_path`; never the server's
absolute path), and exception text loses absolute path prefixes (:func:`scrub`,
:func:`error_line`).
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Any

import panel as pn

__all__ = ["alert", "error_line", "markdown", "md_code", "md_escape", "plain", "scrub",
           "shorten", "show_path"]

#: Markdown-it options of every pane made here: raw HTML in the source is rendered as text.
RENDERER_OPTIONS = {"html": False}
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PUNCT = frozenset(string.punctuation) - set(_ENTITIES)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
# An absolute POSIX path (optionally a file:// URL) not glued to a preceding word or dot.
_ABS_PATH = re.compile(r"(?<![\w.~/<])(?:file://)?/(?:[^\s/'\"`<>|]+/)*([^\s/'\"`<>|,;)]*)")


def shorten(text: Any, limit: int | None = 200) -> str:
    """``text`` as one line (control characters and newlines → one space), cut to ``limit``
    characters with a trailing ``…`` (no cut when ``limit`` is None)."""
    s = _CONTROL.sub(" ", str(text)).strip()
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return s


def md_escape(text: Any, limit: int | None = 200) -> str:
    """Markdown source that renders as exactly ``shorten(text, limit)``, with no markup: every
    ASCII punctuation character is backslash-escaped and ``& < >`` become HTML entities."""
    return "".join(_ENTITIES.get(c) or ("\\" + c if c in _PUNCT else c)
                   for c in shorten(text, limit))


def md_code(text: Any, limit: int | None = 200) -> str:
    """``shorten(text, limit)`` as a Markdown code span (contents are never parsed; the fence
    is longer than any backtick run inside, as CommonMark requires)."""
    s = shorten(text, limit)
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _base(data_dir: str | os.PathLike | None) -> Path:
    base = Path(data_dir) if data_dir is not None else Path.cwd()
    try:
        return base.resolve()
    except OSError:
        return base.absolute()


def show_path(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str:
    """How a path is shown to a client: relative to ``data_dir`` (default: the working
    directory), e.g. ``stores/demo.zarr``; a relative path without ``..`` as given; anything
    else as ``…/<name>``. Never an absolute server path."""
    p = Path(path)
    base = _base(data_dir)
    try:
        full = (p if p.is_absolute() else Path.cwd() / p).resolve()
    except (OSError, RuntimeError):
        full = p.absolute()
    if full.is_relative_to(base):
        return full.relative_to(base).as_posix() or "."
    if not p.is_absolute() and ".." not in p.parts:
        return p.as_posix()
    return f"…/{p.name}"


def scrub(text: Any, data_dir: str | os.PathLike | None = None) -> str:
    """``text`` (an exception message) with ``data_dir``'s absolute prefix removed (paths under
    it become relative, as :func:`show_path` shows them) and any other absolute path cut to
    ``…/<name>``."""
    s = str(text)
    base = str(_base(data_dir))
    if base != "/":
        s = re.sub(rf"(?:file://)?{re.escape(base)}(?:/|(?=[^\w.-]|$))", "", s)
    return _ABS_PATH.sub(lambda m: m.group(0) if m.group(0) == "/" else f"…/{m.group(1)}", s)


def error_line(exc: BaseException, data_dir: str | os.PathLike | None = None,
               limit: int = 300) -> str:
    """One line (plain text, not yet escaped) naming an exception: its type and its message's
    first line, paths scrubbed (:func:`scrub`), cut to ``limit`` characters."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    first = msg.strip().splitlines()[0] if msg.strip() else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return shorten(scrub(text, data_dir), limit)


def markdown(text: str, **params) -> pn.pane.Markdown:
    """A Markdown pane with raw HTML off; ``text`` is trusted Markdown whose outside
    fragments went through :func:`md_escape` / :func:`md_code`."""
    return pn.pane.Markdown(text, renderer_options=dict(RENDERER_OPTIONS), **params)


def alert(text: str, kind: str = "info", **params) -> pn.pane.Alert:
    """A banner (``pn.pane.Alert`` of type ``kind``) with raw HTML off; ``text`` as in
    :func:`markdown`."""
    params.setdefault("sizing_mode", "stretch_width")
    return pn.pane.Alert(text, alert_type=kind, renderer_options=dict(RENDERER_OPTIONS),
                         **params)


def plain(text: str, **params) -> pn.pane.Str:
    """A plain-text pane (``pn.pane.Str``: the text is HTML-escaped, never parsed)."""
    return pn.pane.Str(text, **params)
