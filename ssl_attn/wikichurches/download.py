"""Fetch WikiChurches files from Zenodo (record 5166987) with checksums and resume.

Checksums come from the record's metadata on the Zenodo REST API
(``{base_url}/api/records/5166987``: ``files: [{key, size, checksum: "md5:...", links: {self}}]``)
or, when the API is unreachable, from a registry file with the same ``files`` list (a shipped
``ssl_attn/zenodo_5166987.json`` if present; see :func:`write_registry`). ``pooch`` verifies
every file against its checksum; the transfer itself is done by :class:`ResumableDownloader`,
which keeps ``<name>.part`` next to the target and continues it with an HTTP ``Range`` request
after an interruption (pooch alone would restart an 11.5 GB ``images.zip`` from zero).

``base_url`` defaults to ``https://zenodo.org``; the ``SSL_ATTN_ZENODO_URL`` environment
variable or the ``base_url`` argument point it elsewhere (a mirror, or a loopback test server).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ChecksumError, DownloadError, WikiChurchesError
from .parse import image_file_name, parse_building_parts, raise_problems, read_json

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_FILES",
    "ENV_BASE_URL",
    "RECORD_ID",
    "REGISTRY_PATH",
    "RemoteFile",
    "ResumableDownloader",
    "download",
    "extract_annotated_images",
    "fetch_record",
    "load_registry",
    "record_files",
    "resolve_base_url",
    "write_registry",
]

RECORD_ID = "5166987"
DEFAULT_BASE_URL = "https://zenodo.org"
ENV_BASE_URL = "SSL_ATTN_ZENODO_URL"
DEFAULT_FILES: tuple[str, ...] = ("building_parts.json", "churches.json", "style_names.txt")
DEFAULT_OUT_DIR = Path("data") / "wikichurches"
#: Optional shipped checksum registry (used only when the Zenodo API cannot be reached).
REGISTRY_PATH = Path(__file__).resolve().parent.parent / f"zenodo_{RECORD_ID}.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of the Zenodo record: name, size in bytes, ``"md5:<hex>"`` checksum, URL."""

    key: str
    size: int | None
    checksum: str
    url: str


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url`` if given, else ``$SSL_ATTN_ZENODO_URL``, else ``https://zenodo.org``
    (trailing slash removed)."""
    url = base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    return url.rstrip("/")


def _file_url(base: str, key: str) -> str:
    return f"{base}/api/records/{RECORD_ID}/files/{key}/content"


def _parse_files(payload: Any, base: str, source: str) -> dict[str, RemoteFile]:
    """Turn a record's ``files`` (list, or ``{"entries": ...}``) into RemoteFile entries."""
    files = payload.get("files") if isinstance(payload, dict) else None
    if isinstance(files, dict):
        files = files.get("entries", files)
        if isinstance(files, dict):
            files = list(files.values())
    if not isinstance(files, list):
        raise DownloadError(f"{source}: no 'files' list in the record metadata")
    out: dict[str, RemoteFile] = {}
    for i, f in enumerate(files):
        key = (f.get("key") or f.get("filename")) if isinstance(f, dict) else None
        checksum = f.get("checksum") if isinstance(f, dict) else None
        if not key or not isinstance(checksum, str):
            raise DownloadError(f"{source}: files[{i}] lacks 'key' or 'checksum' ({f!r:.120})")
        if ":" not in checksum:  # older payloads give the bare md5 hex digest
            checksum = f"md5:{checksum}"
        links = f.get("links") or {}
        url = links.get("self") or links.get("content") or links.get("download")
        size = f.get("size")
        out[key] = RemoteFile(key=key, size=int(size) if size is not None else None,
                              checksum=checksum, url=url or _file_url(base, key))
    return out


def fetch_record(base_url: str | None = None, *, timeout: float = 30) -> dict[str, RemoteFile]:
    """Read the record's file list (names, sizes, md5 checksums, URLs) from the Zenodo API.

    Raises :class:`DownloadError` on a network error, an HTTP error or malformed JSON.
    """
    import requests

    base = resolve_base_url(base_url)
    url = f"{base}/api/records/{RECORD_ID}"
    try:
        r = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
        r.raise_for_status()
        payload = r.json()
    except (requests.RequestException, ValueError) as exc:
        raise DownloadError(
            f"cannot read Zenodo record metadata from {url} ({type(exc).__name__}: {exc}). "
            f"Check the network, or set ${ENV_BASE_URL} / base_url to a reachable mirror."
        ) from exc
    return _parse_files(payload, base, url)


def load_registry(path: str | os.PathLike, base_url: str | None = None
                  ) -> dict[str, RemoteFile]:
    """Read a checksum registry (JSON with the record's ``files`` list, as written by
    :func:`write_registry`). Entries without a URL get ``{base_url}/api/records/5166987/
    files/<key>/content``."""
    path = Path(path)
    return _parse_files(read_json(path), resolve_base_url(base_url), str(path))


def write_registry(path: str | os.PathLike = REGISTRY_PATH, base_url: str | None = None
                   ) -> Path:
    """Snapshot the record's file list (key, size, checksum) from the API into ``path``, so
    later downloads can verify checksums without the API. Returns ``path``."""
    files = fetch_record(base_url)
    payload = {"record": RECORD_ID,
               "files": [{k: v for k, v in asdict(f).items() if k != "url"}
                         for f in files.values()]}
    path = Path(path)
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def record_files(base_url: str | None = None, registry: str | os.PathLike | None = None
                 ) -> dict[str, RemoteFile]:
    """The record's files from the API; on failure from ``registry`` (default: the shipped
    :data:`REGISTRY_PATH` when it exists), with a warning. Raises :class:`DownloadError` when
    neither is available."""
    try:
        return fetch_record(base_url)
    except DownloadError as exc:
        reg = Path(registry) if registry is not None else REGISTRY_PATH
        if not reg.is_file():
            raise
        warnings.warn(f"{exc} Using checksums from the registry {reg}.", UserWarning,
                      stacklevel=2)
        return load_registry(reg, base_url)


class _IncompleteError(Exception):
    """The server closed the response before the expected number of bytes arrived."""


class ResumableDownloader:
    """A pooch ``downloader=`` that resumes interrupted transfers with HTTP ``Range``.

    Bytes go to ``part_path`` (``<target>.part``). A rerun continues it with
    ``Range: bytes=N-`` (N = bytes already on disk): a ``206`` answer is appended, a ``200``
    (server ignores ranges) restarts from zero. When complete the part file is moved to the
    temporary file pooch asked for, and pooch checks its hash. ``md5`` holds the hex md5 of
    the last finished transfer (for error messages). ``retries`` extra attempts resume within
    the same call; when they run out the part file is kept and :class:`DownloadError` says
    to rerun.

    Parameters: ``part_path``; ``size`` expected bytes (None = unknown); ``progress`` show a
    tqdm bar; ``retries`` (default 0); ``timeout`` seconds per socket read; ``chunk_size``
    bytes per write.
    """

    def __init__(self, part_path: str | os.PathLike, *, size: int | None = None,
                 progress: bool = True, retries: int = 0, timeout: float = 60,
                 chunk_size: int = _CHUNK) -> None:
        self.part_path = Path(part_path)
        self.size = size
        self.progress = progress
        self.retries = retries
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.md5: str | None = None

    def __call__(self, url: str, output_file: Any, pooch: Any = None,
                 check_only: bool = False) -> bool | None:
        import requests
        import urllib3

        if check_only:
            r = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return r.status_code == 200
        name = self.part_path.name.removesuffix(".part")
        for attempt in range(1 + self.retries):
            try:
                self._fetch(url, name)
                break
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                    _IncompleteError) as exc:
                if attempt == self.retries:
                    have = self.part_path.stat().st_size if self.part_path.exists() else 0
                    raise DownloadError(
                        f"{name}: download from {url} interrupted after {have} of "
                        f"{self.size if self.size is not None else '?'} bytes "
                        f"({type(exc).__name__}: {exc}). The partial file {self.part_path} is "
                        "kept; run download() again to resume."
                    ) from exc
        out = output_file if isinstance(output_file, str | os.PathLike) else None
        if out is None:  # a file object: copy into it
            with open(self.part_path, "rb") as src:
                shutil.copyfileobj(src, output_file)
            self.part_path.unlink()
        else:
            os.replace(self.part_path, out)
        return None

    def _hash_existing(self) -> Any:
        md5 = hashlib.md5()
        with open(self.part_path, "rb") as f:
            for block in iter(lambda: f.read(self.chunk_size), b""):
                md5.update(block)
        return md5

    def _fetch(self, url: str, name: str) -> None:
        import requests
        from tqdm.auto import tqdm

        part = self.part_path
        part.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        if self.size is not None and have > self.size:  # not a prefix of this file: restart
            part.unlink()
            have = 0
        if self.size is not None and have == self.size and have > 0:
            self.md5 = self._hash_existing().hexdigest()
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416 and have:  # range not satisfiable: part is unusable
                part.unlink()
                raise _IncompleteError(f"server refused to resume at byte {have}; restarting")
            if r.status_code == 206:
                start = _content_range_start(r.headers.get("Content-Range", ""))
                if start != have:
                    raise DownloadError(
                        f"{name}: asked {url} to resume at byte {have} but it answered "
                        f"Content-Range {r.headers.get('Content-Range')!r}; delete {part} "
                        "and rerun."
                    )
                mode, md5 = "ab", self._hash_existing()
            elif r.status_code == 200:
                mode, md5, have = "wb", hashlib.md5(), 0
            else:
                raise DownloadError(
                    f"{name}: HTTP {r.status_code} {r.reason} from {url}. Check the URL, or set "
                    f"${ENV_BASE_URL} / base_url to a reachable mirror."
                )
            length = r.headers.get("Content-Length")
            total = self.size if self.size is not None else (
                have + int(length) if length is not None else None)
            with open(part, mode) as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=not self.progress, leave=False,
            ) as bar:
                for chunk in _iter_chunks(r, self.chunk_size):
                    f.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
        got = part.stat().st_size
        if total is not None and got != total:
            raise _IncompleteError(f"got {got} of {total} bytes")
        self.md5 = md5.hexdigest()


def _iter_chunks(response: Any, size: int):
    """Yield body bytes as they arrive.

    ``iter_content`` reads fixed ``size`` blocks and, when the connection drops mid-block,
    raises without yielding the bytes of that block, so up to ``size`` bytes that reached us
    would be lost for the resume. urllib3's ``read1`` returns whatever has arrived, so every
    received byte lands in the part file before the error propagates.
    """
    raw = response.raw
    if not hasattr(raw, "read1"):  # pragma: no cover - urllib3 < 2.1
        yield from response.iter_content(size)
        return
    while True:
        chunk = raw.read1(size, decode_content=True)
        if not chunk:
            return
        yield chunk


def _content_range_start(value: str) -> int | None:
    """Start byte of a ``Content-Range: bytes START-END/TOTAL`` header (None if unparsable)."""
    try:
        unit, rest = value.split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def download(
    files: Sequence[str] | None = None,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    base_url: str | None = None,
    progress: bool = True,
    *,
    registry: str | os.PathLike | None = None,
    retries: int = 2,
) -> dict[str, Path]:
    """Download files of Zenodo record 5166987 into ``out_dir``, verified by md5.

    Parameters
    ----------
    files
        File names of the record (default: ``building_parts.json``, ``churches.json``,
        ``style_names.txt``; ``images.zip`` is 11.5 GB — ask for it explicitly).
    out_dir
        Target folder (default ``data/wikichurches``), created if needed.
    base_url
        Zenodo server (default ``$SSL_ATTN_ZENODO_URL`` or ``https://zenodo.org``).
    progress
        Show a tqdm progress bar per file.
    registry
        Checksum registry used when the API is unreachable (default: the shipped one, if any).
    retries
        Extra attempts per file, each resuming where the last stopped (default 2).

    Returns ``{name: path}``. A file already present with the right checksum is not
    downloaded again; an interrupted transfer leaves ``<name>.part`` and the next call resumes
    it. A checksum mismatch raises :class:`ChecksumError` naming the file and both hashes and
    leaves no file at the target path.
    """
    import pooch

    names = list(DEFAULT_FILES if files is None else files)
    out = Path(out_dir)
    remote = record_files(base_url, registry)
    unknown = [n for n in names if n not in remote]
    if unknown:
        raise DownloadError(
            f"file(s) {unknown} are not in Zenodo record {RECORD_ID}; available: "
            f"{sorted(remote)}"
        )
    result: dict[str, Path] = {}
    for name in names:
        rf = remote[name]
        target = out / name
        dl = ResumableDownloader(out / f"{name}.part", size=rf.size, progress=progress,
                                 retries=retries)
        try:
            path = pooch.retrieve(rf.url, known_hash=rf.checksum, fname=name, path=out,
                                  downloader=dl, progressbar=progress)
        except DownloadError:
            raise
        except ValueError as exc:
            if "hash" not in str(exc).lower():
                raise
            alg, want = rf.checksum.split(":", 1)
            stale = target.is_file() and pooch.file_hash(str(target), alg=alg) != want.lower()
            if stale:  # an older invalid copy must not stay in place looking valid
                target.unlink()
            got = f"md5:{dl.md5}" if dl.md5 else "(see below)"
            raise ChecksumError(
                f"{target}: checksum mismatch for {name} downloaded from {rf.url}: expected "
                f"{rf.checksum}, got {got}. The corrupted download was deleted; run download() "
                f"again, and if it fails again the record or the mirror has changed.\n"
                f"pooch: {exc}"
            ) from exc
        result[name] = Path(path)
    return result


def extract_annotated_images(
    images_zip: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_ids: Sequence[str] | None = None,
    *,
    progress: bool = False,
) -> list[Path]:
    """Extract only the annotated images from ``images.zip`` into ``<out_dir>/images/``.

    ``image_ids`` (stems like ``'Q2034923_wd0'`` or file names) default to the annotated
    images of ``<out_dir>/building_parts.json``. Archive members may sit under an ``images/``
    prefix or at the top level; they are matched by file name and written flat (never outside
    ``<out_dir>/images``). A file already extracted with the member's size is kept. Returns the
    paths in ``image_ids`` order. Raises :class:`WikiChurchesError` when the archive is
    unreadable or lacks a requested image (all missing names are listed).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    zpath = Path(images_zip)
    if image_ids is None:
        bp = out / "building_parts.json"
        parts = parse_building_parts(read_json(bp), bp, raise_on_error=False)
        raise_problems(bp, [p for p in parts.problems if p.kind != "out_of_frame"])
        image_ids = list(parts.image_files)
    names = [image_file_name(i) for i in image_ids]  # refuses ids that are not bare names
    dest = out / "images"
    try:
        zf = zipfile.ZipFile(zpath)
    except (OSError, zipfile.BadZipFile) as exc:
        raise WikiChurchesError(f"{zpath}: cannot open as a zip archive ({exc}); download "
                                "images.zip again.") from exc
    paths: list[Path] = []
    with zf:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if not info.is_dir() and base:
                members.setdefault(base, info)
        missing = [n for n in names if n not in members]
        if missing:
            raise WikiChurchesError(
                f"{zpath}: {len(missing)} requested image(s) not in the archive: "
                f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
            )
        dest.mkdir(parents=True, exist_ok=True)
        for n in tqdm(names, desc="extract", disable=not progress):
            info = members[n]
            target = dest / n
            paths.append(target)
            if target.is_file() and target.stat().st_size == info.file_size:
                continue
            tmp = dest / f"{n}.part"
            try:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (zipfile.BadZipFile, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise WikiChurchesError(f"{zpath}: member {info.filename!r} is corrupt "
                                        f"({exc}); download images.zip again.") from exc
            os.replace(tmp, target)
    return paths
