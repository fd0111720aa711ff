"""The served dashboard in headless Chromium: move the layer, tap a box, the page follows.

Serves ``dashboards/explorer.py`` with ``panel serve`` on a free loopback port over a small
fixture store (``tests/_store_builder.py``) and drives it with Playwright's Python package and
Debian's ``/usr/bin/chromium`` (no browser download). Skipped when Chromium is missing, unless
``SSL_ATTN_REQUIRE_BROWSER=1`` (then it fails).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# JS: page coordinates of a data point (x, y) of the attention figure (the one with the photo).
_TO_PAGE = """([x, y]) => {
  const v = Bokeh.index.query_one((v) => v.model && v.model.type === 'Figure' &&
      v.model.renderers.some((r) => r.glyph && r.glyph.type === 'ImageRGBA'));
  const r = v.canvas_view.el.getBoundingClientRect();
  return [r.x + v.frame.x_scale.compute(x), r.y + v.frame.y_scale.compute(y)];
}"""


def _need_browser():
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed"
    if reason:
        if os.environ.get("SSL_ATTN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SSL_ATTN_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(store: Path, data_dir: Path, log_path: Path):
    """``panel serve dashboards/explorer.py`` over ``store`` on a free loopback port; yields the
    app's URL once the liveness endpoint answers (fails with the server log otherwise)."""
    port = _free_port()
    log = open(log_path, "w")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", str(ROOT / "dashboards" / "explorer.py"),
         "--port", str(port), "--address", "127.0.0.1",
         "--allow-websocket-origin", f"127.0.0.1:{port}", "--liveness",
         "--args", "--store", str(store), "--data-dir", str(data_dir)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/explorer"
    try:
        deadline = time.monotonic() + 90
        while True:  # poll the liveness endpoint (a GET of the app would build a session)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/liveness",
                                            timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("panel serve did not come up:\n" + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def server(tmp_path):
    _need_browser()
    from _store_builder import build_all

    fix = build_all(tmp_path / "data")
    with serve(fix.store, fix.data_dir, tmp_path / "serve.log") as url:
        yield url


def _status(page, pattern: str, timeout: float = 60.0) -> str:
    """Wait until the status line matches ``pattern``; return its text."""
    loc = page.get_by_text(re.compile(r"^image Q\d+_wd\d · model"))
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if loc.count():
            text = loc.first.inner_text()
            if re.search(pattern, text):
                return text
        page.wait_for_timeout(250)
    raise AssertionError(f"status line never matched {pattern!r}; last: {text!r}")


def test_layer_and_box_tap_update_the_page(server, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server)
            _status(page, r"image Q100_wd0 · model vit · frozen · cls · layer 2 · head mean")
            # The first tab (layer curves) is built after the page loads (pn.state.onload).
            page.get_by_text(re.compile(r"Mean over images; band: 95% percentile bootstrap"))\
                .wait_for(timeout=30000)
            # Move the layer with the player: "first" -> layer 0, "next" -> layer 1.
            page.locator("button.first").click()
            _status(page, r"· layer 0 ·")
            page.locator("button.next").click()
            _status(page, r"· layer 1 ·")
            # Tap inside box 1 (left 0, top 0, 0.5 x 0.5 of the 64 x 48 photo): frame (16, -12).
            page.wait_for_timeout(500)
            x, y = page.evaluate(_TO_PAGE, [16, -12])
            page.mouse.click(x, y)
            text = _status(page, r"· box 1$")
            assert "layer 1" in text
            page.get_by_text("Box 1: Rose window").wait_for(timeout=30000)
            # box_coverage = 0.05 * (1 + 1) + 0.01 * layer 1 = 0.11
            page.get_by_text("box_coverage: 0.1100").wait_for(timeout=30000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
            if os.environ.get("SSL_ATTN_SHOTS"):  # keep a copy to look at
                page.screenshot(path=os.path.join(os.environ["SSL_ATTN_SHOTS"],
                                                  "explorer.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    assert not errors, f"browser console errors: {errors}"


# Issue 11 items 1 and 3: each payload as ``?store=``; the text the banner must show.
_XSS = "window.__xss=1"
_PAYLOADS = [
    (f'<img src=x onerror="{_XSS};alert(1)">', "No attention store at"),
    (f"<script>{_XSS}</script>", "No attention store at"),
    (f"../<img src=x onerror={_XSS}>", "Refused:"),
    (f"stores/<svg onload={_XSS}>.zarr", "No attention store at"),
    ("[click](javascript:alert(1))", "No attention store at"),
    ("x" * 5000, "too long (5,000 characters)"),
]


def test_store_parameter_payloads_run_no_script(server, tmp_path):
    """No payload runs script (``window.__xss`` stays unset, no dialog opens), each page shows
    its banner with the payload as text, and the 5,000-character store is not a blank page."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})

            def on_dialog(dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            for payload, banner in _PAYLOADS:
                page.goto(f"{server}?store={quote(payload, safe='')}")
                page.get_by_text(banner).first.wait_for(timeout=60000)
                if len(payload) < 100:  # shown verbatim, as text
                    page.get_by_text(payload, exact=False).first.wait_for(timeout=10000)
                page.wait_for_timeout(500)  # let any injected handler fire
                assert page.evaluate("() => window.__xss") is None, payload
                assert not dialogs, (payload, dialogs)
                body = page.evaluate("() => document.body.innerText")
                assert "ssl-attn explorer" in body  # the template, not a blank page
                if banner == "Refused:":
                    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
                    out = os.environ.get("SSL_ATTN_SCREENSHOTS")
                    if out:
                        page.screenshot(path=str(Path(out) / "refused.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "refused.png").stat().st_size > 5_000
