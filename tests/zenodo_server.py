"""A loopback stand-in for the Zenodo REST API, for download tests.

Serves ``/api/records/<record>`` (JSON metadata with md5 checksums and ``links.self`` URLs) and
``/api/records/<record>/files/<key>/content`` (file bytes, with HTTP ``Range`` support), from a
``ThreadingHTTPServer`` on 127.0.0.1, port chosen by the OS, in a daemon thread.

Knobs: ``corrupt`` — names served with one byte flipped while the metadata keeps the true
checksum; ``cut_after`` — ``{name: n}``: the first request for ``name`` announces the full length
but the connection is closed after ``n`` bytes; ``support_range=False`` — ignore ``Range`` and
always answer 200 with the whole file; ``fail_metadata`` — answer 500 for the metadata.
Every request is recorded in ``requests`` (method, path, headers).

    with ZenodoServer({"a.json": b"{}"}) as srv:
        download(["a.json"], out_dir=tmp, base_url=srv.url)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORD_ID = "5166987"


@dataclass
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class ZenodoServer:
    files: dict[str, bytes]
    record_id: str = RECORD_ID
    corrupt: set[str] = field(default_factory=set)
    cut_after: dict[str, int] = field(default_factory=dict)
    support_range: bool = True
    fail_metadata: bool = False
    requests: list[LoggedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._served: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ZenodoServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ZenodoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def file_url(self, name: str) -> str:
        return f"{self.url}/api/records/{self.record_id}/files/{name}/content"

    def md5(self, name: str) -> str:
        return hashlib.md5(self.files[name]).hexdigest()

    def served_bytes(self, name: str) -> bytes:
        """The bytes this server sends for ``name`` (flipped first byte when corrupt)."""
        data = self.files[name]
        if name in self.corrupt and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def file_requests(self, name: str) -> list[LoggedRequest]:
        suffix = f"/files/{name}/content"
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(suffix)]

    def metadata(self) -> dict:
        return {
            "id": int(self.record_id),
            "files": [
                {"key": k, "size": len(v), "checksum": f"md5:{self.md5(k)}",
                 "links": {"self": self.file_url(k)}}
                for k, v in self.files.items()
            ],
        }

    # ------------------------------------------------------------------ handler
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self
        file_re = re.compile(rf"^/api/records/{self.record_id}/files/(?P<key>[^/]+)/content$")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet tests
                pass

            def _log(self) -> None:
                with server._lock:
                    server.requests.append(
                        LoggedRequest(self.command, self.path, dict(self.headers.items())))

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None,
                      length: int | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                    self.wfile.flush()

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                self._log()
                path = self.path.split("?", 1)[0]
                if path == f"/api/records/{server.record_id}":
                    if server.fail_metadata:
                        self._send(500, b'{"status": 500}')
                        return
                    body = json.dumps(server.metadata()).encode()
                    self._send(200, body, {"Content-Type": "application/json"})
                    return
                m = file_re.match(path)
                if not m or m["key"] not in server.files:
                    self._send(404, b'{"status": 404}')
                    return
                key = m["key"]
                data = server.served_bytes(key)
                total = len(data)
                start, code, headers = 0, 200, {"Accept-Ranges": "bytes"}
                rng = self.headers.get("Range")
                if rng and server.support_range and self.command == "GET":
                    mr = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if not mr or int(mr[1]) >= total:
                        self._send(416, b"", {"Content-Range": f"bytes */{total}"})
                        return
                    start = int(mr[1])
                    end = int(mr[2]) if mr[2] else total - 1
                    data = data[start:end + 1]
                    code = 206
                    headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{total}"
                with server._lock:
                    n_before = server._served.get(key, 0)
                    if self.command == "GET":
                        server._served[key] = n_before + 1
                cut = server.cut_after.get(key)
                if cut is not None and n_before == 0 and self.command == "GET":
                    # Announce the full length, send only `cut` bytes, then drop the connection.
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(code, data, headers)

        return Handler
