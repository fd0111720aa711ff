"""Issue 11, items 1-3: request and file text is never markup, no absolute server path is shown,
and every session failure is a banner (no browser; tests/test_ui_browser.py has the browser
check).

"Rendered" below is what the browser receives as a pane's HTML: Panel renders Markdown on the
server and ships the HTML escaped once (``_transform_object``), so ``html.unescape`` of that is
the markup the page inserts.
"""

from __future__ import annotations

import html
import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("panel")

import panel as pn
import xarray as xr
from panel.pane.markup import HTMLBasePane

try:  # tests/ as a plain folder: pytest puts it on sys.path
    from _store_builder import build_all
except ModuleNotFoundError:  # tests/ as a package
    from tests._store_builder import build_all

from ssl_attn.explorer import Explorer, ExplorerData, build_app
from ssl_attn.explorer.scores import ScoresMixin
from ssl_attn.explorer.text import md_code, md_escape, scrub, show_path

warnings.filterwarnings("ignore", message=".*Zarr.*")

SCRIPT_PAYLOADS = [
    '<img src=x onerror="alert(1)">',
    "<script>window.__xss=1</script>",
    "stores/<img src=x onerror=alert(1)>.zarr",  # inside the data dir: "No store at ..."
    '"><svg onload=alert(1)>',
    "[click](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "![x](http://127.0.0.1:9/tracker.png)",
    "<a href='javascript:alert(1)'>x</a>",
    "`</code><script>window.__xss=1</script>`",
]
PATH_PAYLOADS = ["x" * 5000, "stores/" + "y" * 300 + ".zarr", "../../etc/passwd",
                 "stores/../../x.zarr", "/etc/passwd", "..", "stores/test.zarr/../../.."]
_TAG = re.compile(r"<\s*(script|img|svg|a|iframe)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def fix(tmp_path_factory):
    return build_all(tmp_path_factory.mktemp("security_data"))


def _panes(app) -> list[HTMLBasePane]:
    out: list[HTMLBasePane] = []
    for area in (app.main, app.sidebar, app.header):
        for obj in area:
            out.extend(obj.select(HTMLBasePane))
    return out


def _rendered(pane: HTMLBasePane) -> str:
    """The HTML the page inserts for a pane."""
    return html.unescape(pane._transform_object(pane.object)["object"])


def _text(pane: HTMLBasePane) -> str:
    """The visible text of a pane (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]*>", "", _rendered(pane)))


def _banners(app) -> list[pn.pane.Alert]:
    return [p for p in _panes(app) if isinstance(p, pn.pane.Alert)]


def _abs_forms(*paths: Path) -> list[str]:
    out = []
    for p in paths:
        out += [str(p), str(Path(p).resolve())]
    return out


def _assert_no_abs_paths(app, *paths: Path) -> None:
    forms = _abs_forms(*paths)
    for pane in _panes(app):
        for text in (str(pane.object), _rendered(pane)):
            for form in forms:
                assert form not in text, (form, text)


@pytest.mark.parametrize("payload", SCRIPT_PAYLOADS + PATH_PAYLOADS)
def test_request_text_is_never_markup(fix, payload):
    app = build_app(fix.store, data_dir=fix.data_dir, requested=payload)
    banners = _banners(app)
    assert banners and banners[0].alert_type == "danger"
    for pane in _panes(app):
        rendered = _rendered(pane)
        assert not _TAG.search(rendered), rendered
        assert "javascript:" not in re.sub(r">[^<]*<", "><", rendered)  # not in any attribute
        assert "onerror=" not in re.sub(r">[^<]*<", "><", rendered)
    # The banner names the request as text (shortened, one line), not as markup.
    shown = " ".join(_text(b) for b in banners)
    assert len(shown) < 600
    if len(payload) < 60 and not payload.startswith("/"):
        assert payload in shown or payload.split("/")[-1] in shown, shown
    _assert_no_abs_paths(app, fix.data_dir)


def test_the_normal_page_shows_no_absolute_path(fix, tmp_path):
    app = build_app(fix.store, data_dir=fix.data_dir)
    _assert_no_abs_paths(app, fix.data_dir)
    sidebar = " ".join(_text(p) for p in _panes(app))
    assert "Store: stores/test.zarr" in sidebar
    # A missing store inside the data dir: named relative to it.
    app = build_app(fix.store, data_dir=fix.data_dir, requested="stores/nope.zarr")
    (banner,) = _banners(app)
    assert "No attention store at stores/nope.zarr." in _text(banner)
    _assert_no_abs_paths(app, fix.data_dir)
    # A missing default store and a missing dataset: still no absolute path.
    app = build_app(tmp_path / "data" / "stores" / "gone.zarr", data_dir=tmp_path / "data")
    assert "stores/gone.zarr" in _text(_banners(app)[0])
    _assert_no_abs_paths(app, tmp_path)


def test_refused_banner_names_no_server_path(fix, tmp_path):
    app = build_app(fix.store, data_dir=fix.data_dir, requested=str(tmp_path / "x.zarr"))
    (banner,) = _banners(app)
    text = _text(banner)
    assert text.startswith("Refused:") and "outside the data directory" in text
    assert "…/x.zarr" in text
    _assert_no_abs_paths(app, tmp_path, fix.data_dir)


def test_long_store_request_is_refused_with_a_banner(fix):
    app = build_app(fix.store, data_dir=fix.data_dir, requested="x" * 5000)
    (banner,) = _banners(app)
    assert "too long (5,000 characters)" in _text(banner)
    # A long path given directly (no URL check) is "not there", not an OSError.
    data = ExplorerData(fix.data_dir / ("z" * 5000), data_dir=fix.data_dir)
    assert not data.ok and "No attention store at" in data.problems[0]
    # And a long configured store: a banner, not an exception.
    app = build_app(fix.data_dir / ("z" * 5000), data_dir=fix.data_dir)
    assert _banners(app)


def _copy_with_scores(fix, tmp_path: Path, drop: tuple[str, ...]) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(fix.data_dir, data_dir, symlinks=True)
    sc = data_dir / "stores" / "test.scores.zarr"
    ds = xr.open_zarr(sc).drop_vars(list(drop)).load()
    shutil.rmtree(sc)
    ds.to_zarr(sc)
    return data_dir


@pytest.mark.parametrize("drop", [("variant",), ("model",), ("variant", "model")])
def test_scores_without_coords_give_a_banner_and_maps(fix, tmp_path, drop):
    data_dir = _copy_with_scores(fix, tmp_path, drop)
    app = build_app(data_dir / "stores" / "test.zarr", data_dir=data_dir)
    texts = [_text(b) for b in _banners(app)]
    assert any("lack the coordinate(s)" in t and drop[0] in t for t in texts), texts
    assert any("stores/test.scores.zarr" in t for t in texts)
    ex = Explorer(data_dir / "stores" / "test.zarr", data_dir=data_dir)
    assert ex.state is not None and ex.data.scores is None
    assert ex.attention.map_values().shape == (4, 6)  # maps without scores
    _assert_no_abs_paths(app, tmp_path)


def test_a_failure_while_building_keeps_the_maps(fix, monkeypatch):
    """The session boundary: an error deep in a view (here the scores' KeyError: 'frozen')
    becomes a banner with a one-line reason, and the page is rebuilt without scores."""
    def broken(self, *args, **kwargs):
        raise KeyError("frozen")

    monkeypatch.setattr(ScoresMixin, "layer_summary", broken)
    app = build_app(fix.store, data_dir=fix.data_dir)
    texts = [_text(b) for b in _banners(app)]
    assert any("The scores cannot be shown" in t and "KeyError: frozen" in t for t in texts)
    assert app.main[0].select(pn.pane.Bokeh)  # the attention figure is there
    _assert_no_abs_paths(app, fix.data_dir)


def test_a_failure_of_everything_is_still_a_banner(fix, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError(f"disk on fire at {fix.data_dir.resolve()}/stores/test.zarr/<b>x</b>")

    monkeypatch.setattr(Explorer, "controls", broken)
    app = build_app(fix.store, data_dir=fix.data_dir)
    (banner,) = _banners(app)
    text = _text(banner)
    assert text.startswith("Cannot show the store stores/test.zarr:")
    assert "OSError: disk on fire at stores/test.zarr/<b>x</b>" in text
    assert "<b>" not in _rendered(banner)
    _assert_no_abs_paths(app, fix.data_dir)


def test_status_line_and_box_info_are_text(fix, monkeypatch):
    ex = Explorer(fix.store, data_dir=fix.data_dir)
    status = ex.status()
    assert isinstance(status, pn.pane.Str) and status.object == ex.state.describe()
    evil = "<img src=x onerror=alert(1)> [a](javascript:alert(1)) **b**"
    table = pd.DataFrame({"box_index": [0], "feature": [evil], "left": [0.1], "top": [0.1],
                          "width": [0.2], "height": [0.2]})
    monkeypatch.setattr(ex.attention, "box_table", lambda: table)
    ex.state.selected_box = 0
    pane = ex.attention.info_pane()
    pane.object = ex.attention.box_info()
    assert evil in _text(pane)
    assert not _TAG.search(_rendered(pane)) and "<strong>b" not in _rendered(pane)


@pytest.mark.parametrize("text", [
    "<script>x</script>", "a_b*c*`d` [e](f) ![g](h) $x$ \\ & &amp; &lt; # -- | ~x~ <!-- c -->",
    "line1\nline2\r\n\tend", "` leading and trailing `", "``double``",
])
def test_md_escape_and_md_code_render_the_text_verbatim(text):
    expected = " ".join(text.split()) if "\n" in text or "\t" in text else text.strip()
    for fragment in (md_escape(text), md_code(text)):
        pane = pn.pane.Markdown(fragment)  # even with raw HTML on
        assert _text(pane).strip() == expected, (fragment, _rendered(pane))
        assert not _TAG.search(_rendered(pane))


def test_paths_are_shown_relative_to_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "stores").mkdir(parents=True)
    assert show_path(data_dir / "stores" / "a.zarr", data_dir) == "stores/a.zarr"
    assert show_path(tmp_path / "elsewhere" / "b.zarr", data_dir) == "…/b.zarr"
    assert show_path("/etc/passwd", data_dir) == "…/passwd"
    msg = f"[Errno 2] No such file: '{data_dir.resolve()}/stores/a.zarr' (file://{tmp_path}/q)"
    assert scrub(msg, data_dir) == "[Errno 2] No such file: 'stores/a.zarr' (…/q)"
