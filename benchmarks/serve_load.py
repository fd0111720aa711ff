"""Load test of the served dashboard: N concurrent browser sessions changing the layer.

    .venv/bin/python benchmarks/serve_load.py [--sessions 20] [--seconds 60] [--procs 1]
        [--threads 0] [--store PATH] [--code DIR] [--pause 0.5]

Starts ``panel serve dashboards/explorer.py`` on a free loopback port (127.0.0.1 only) against a
store — ``--store``, or one of the full WikiChurches size built like ``benchmarks/explorer.py``
does (``tests/_store_builder.py``, RANDOM VALUES GENERATED FOR TIMING ONLY) — then opens
``--sessions`` pages at once in Debian's Chromium (``/usr/bin/chromium``, one browser, one
context per session, driven by Playwright). Each session loads the page, waits for the status
line, then for ``--seconds`` presses the layer player's "next" button ("first" at the end),
waits until the status line names the new layer (the status and the map change in the same
server callback, so this is the time from the click to the map's update on screen), and pauses
``--pause`` s.

Reports: errors (console/page errors, timeouts), page-load time p50/p95 (navigation start to
the status line visible), per-interaction p50/p95, and the server's RSS (the ``panel serve``
process and its workers, psutil) over time and per session. ``--code DIR`` serves another
checkout (its ``dashboards/explorer.py`` with ``PYTHONPATH=DIR``), e.g. to compare against an
older version. Every loop is bounded by time; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Console errors of an offline machine (a CDN font or icon the page may name), not the app's.
OFFLINE = "net::ERR_NAME_NOT_RESOLVED"
STATUS = re.compile(r"^image \S+ · model")
LAYER = re.compile(r"· layer (\d+) ·")
CLEANUP_S = 20.0  # panel serve discards closed sessions every 17 s (--check-unused-sessions)
warnings.filterwarnings("ignore")


def pct(values: list[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` of ``values`` (NaN when empty)."""
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(root: Path) -> Path:
    """The full-size timing-only store of ``benchmarks/explorer.py`` under ``root``."""
    spec = importlib.util.spec_from_file_location("_bench_explorer", ROOT / "benchmarks" /
                                                  "explorer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build(root)


class Server:
    """``panel serve`` of ``code``'s dashboard on 127.0.0.1; RSS sampled once a second."""

    def __init__(self, code: Path, store: Path, data_dir: Path, procs: int, threads: int,
                 log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/explorer"
        cmd = [sys.executable, "-m", "panel", "serve", str(code / "dashboards" / "explorer.py"),
               "--port", str(self.port), "--address", "127.0.0.1",
               "--allow-websocket-origin", f"127.0.0.1:{self.port}", "--liveness",
               "--num-procs", str(procs)]
        if threads:
            cmd += ["--num-threads", str(threads)]
        cmd += ["--args", "--store", str(store), "--data-dir", str(data_dir)]
        env = dict(os.environ, PYTHONPATH=str(code))
        self.log = open(log, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.rss: list[tuple[float, float]] = []  # (seconds since start, MB)
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"panel serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/liveness",
                                            timeout=5) as r:
                    if r.status == 200:
                        self._sampler.start()
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("panel serve did not come up in time")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server and its workers so far."""
        import psutil

        total = 0.0
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    c = p.cpu_times()
                    total += c.user + c.system
        return total

    def rss_mb(self) -> float:
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return float("nan")
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):  # a worker that just exited
                total += p.memory_info().rss
        return total / 1e6

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.rss.append((time.monotonic() - self._t0, self.rss_mb()))

    def stop(self) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


async def status_text(page, timeout_s: float) -> str:
    loc = page.get_by_text(STATUS).first
    await loc.wait_for(timeout=timeout_s * 1e3)
    return await loc.inner_text()


async def session(browser, url: str, seconds: float, pause: float, load_timeout: float,
                  out: dict) -> None:
    """One client: load, then step the layer player until ``seconds`` are up."""
    ctx = await browser.new_context(viewport={"width": 1500, "height": 1100})
    page = await ctx.new_page()
    page.on("console", lambda m: out["offline" if OFFLINE in m.text else "errors"].append(
        f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out["errors"].append(f"pageerror: {e}"))
    try:
        t = time.perf_counter()
        await page.goto(url, timeout=load_timeout * 1e3)
        text = await status_text(page, load_timeout)
        out["loads"].append(time.perf_counter() - t)
        end = time.monotonic() + seconds
        status = page.get_by_text(STATUS).first
        player = page.locator("input[type=range]").first  # the layer player's position
        while time.monotonic() < end:
            m = LAYER.search(text)
            if m is None:
                out["errors"].append(f"no layer in the status line {text!r}")
                break
            at_end = await player.input_value() == await player.get_attribute("max")
            t = time.perf_counter()
            await page.locator("button.first" if at_end else "button.next").first.click(
                timeout=30e3)
            # The next status line naming another layer (Playwright polls the DOM each frame).
            await page.get_by_text(STATUS).filter(has_not_text=m.group(0)).first.wait_for(
                timeout=30e3)
            out["interactions"].append(time.perf_counter() - t)
            text = await status.inner_text()
            await asyncio.sleep(pause)
    except Exception as exc:  # a timeout or a crash of this session: count it, go on
        out["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    finally:
        await ctx.close()


async def drive(url: str, n: int, seconds: float, pause: float, load_timeout: float) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"errors": [], "offline": [], "loads": [], "interactions": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            await asyncio.wait_for(
                asyncio.gather(*[session(browser, url, seconds, pause, load_timeout, out)
                                 for _ in range(n)]),
                timeout=seconds + load_timeout + 120)
        finally:
            await browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0, help="layer changes per session")
    p.add_argument("--procs", type=int, default=1, help="panel serve --num-procs")
    p.add_argument("--threads", type=int, default=0, help="panel serve --num-threads (0: off)")
    p.add_argument("--pause", type=float, default=0.5, help="think time between changes (s)")
    p.add_argument("--load-timeout", type=float, default=180.0, help="per page load (s)")
    p.add_argument("--store", type=Path, default=None, help="a store (else build one)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="the data directory (default: two levels above the store)")
    p.add_argument("--code", type=Path, default=ROOT, help="the checkout to serve")
    args = p.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"skipped: {CHROMIUM} not found (apt-get install chromium)")
        return 0
    try:
        import playwright.async_api  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        print(f"skipped: {exc.name} is not installed")
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="ssl_attn_serve_"))
    store = args.store
    if store is None:
        print("NOTE: the store content is random, generated for timing only.")
        store = build_store(tmp / "data")
    store = store.resolve()
    data_dir = (args.data_dir or store.parent.parent).resolve()
    code = args.code.resolve()
    server = Server(code, store, data_dir, args.procs, args.threads, tmp / "serve.log")
    try:
        server.wait_ready()
        asyncio.run(drive(server.url, 1, 0.0, 0.0, args.load_timeout))  # warm-up: one page
        time.sleep(CLEANUP_S)
        rss0, cpu0 = server.rss_mb(), server.cpu_s()
        t = time.perf_counter()
        out = asyncio.run(drive(server.url, args.sessions, args.seconds, args.pause,
                                args.load_timeout))
        wall = time.perf_counter() - t
        cpu = server.cpu_s() - cpu0
        time.sleep(CLEANUP_S)  # closed sessions: let the server discard them
        rss_end = server.rss_mb()
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)  # the built store, the server log
    loads, acts = out["loads"], out["interactions"]
    peak = max((mb for _, mb in server.rss), default=float("nan"))
    print(f"served {code} (--num-procs {args.procs}, --num-threads {args.threads or 'off'}), "
          f"store {store}")
    print(f"{args.sessions} sessions × {args.seconds:.0f} s, pause {args.pause} s, "
          f"wall {wall:.0f} s, machine {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"errors: {len(out['errors'])} (and {len(out['offline'])} resources a browser "
          f"without network could not fetch: {OFFLINE})")
    for e in sorted(set(out["errors"]))[:10]:
        print(f"  {out['errors'].count(e)} × {e}")
    print(f"page loads: {len(loads)}  p50 {pct(loads, .5):.2f} s  p95 {pct(loads, .95):.2f} s  "
          f"max {max(loads, default=float('nan')):.2f} s")
    print(f"layer changes: {len(acts)}  p50 {pct(acts, .5) * 1e3:.0f} ms  "
          f"p95 {pct(acts, .95) * 1e3:.0f} ms  max {max(acts, default=float('nan')) * 1e3:.0f} ms")
    print(f"server CPU: {cpu:.0f} s in {wall:.0f} s wall ({cpu / wall:.2f} cores busy on "
          f"average); ~{cpu / max(len(loads) + len(acts), 1):.2f} s per page load or change")
    print(f"server RSS: after one warm-up page {rss0:.0f} MB, peak {peak:.0f} MB, after the "
          f"sessions closed {rss_end:.0f} MB ({(rss_end - rss0) / max(args.sessions, 1):.1f} MB "
          "retained per closed session, an upper bound: freed memory stays in the heap)")
    trace = server.rss[:: max(1, len(server.rss) // 12)]
    print("RSS over time (s: MB): " + ", ".join(f"{s:.0f}: {mb:.0f}" for s, mb in trace))
    print("targets: 0 errors, interaction p95 <= 500 ms, bounded RSS")
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
