"""Zenodo download (checksums, resume, skip) and images.zip extraction, against a loopback
server (tests/zenodo_server.py)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from zenodo_server import ZenodoServer  # pytest puts tests/ on sys.path

from ssl_attn.wikichurches import (
    ChecksumError,
    DownloadError,
    WikiChurchesError,
    download,
    extract_annotated_images,
    fetch_record,
    load_registry,
    write_registry,
)

BIG = bytes((i * 7 + i // 251) % 256 for i in range(300_000))  # deterministic, not periodic


def _parts_json(keys: list[str]) -> bytes:
    meta = [{"name": "Portal", "parents": []}]
    ann = {k: {"styles": ["Q46261"], "bbox_groups": [
        {"group_label": 0, "elements": [{"left": 0.1, "top": 0.1, "width": 0.2, "height": 0.2,
                                          "label": 0}]}]} for k in keys}
    return json.dumps({"meta": meta, "annotations": ann}).encode()


FILES = {
    "building_parts.json": _parts_json(["Q1_wd0.jpg"]),
    "churches.json": json.dumps({"Q1": {"name": "St. A", "built_year": 1100,
                                        "styles": ["Q46261"], "country": "X",
                                        "location": None}}).encode(),
    "style_names.txt": b"Q46261 Romanesque\nQ176483 Gothic\n",
    "images.zip": BIG,
}


@pytest.fixture
def server():
    with ZenodoServer(dict(FILES)) as srv:
        yield srv


def test_record_metadata_parsed(server):
    rec = fetch_record(server.url)
    assert sorted(rec) == sorted(FILES)
    f = rec["churches.json"]
    assert f.size == len(FILES["churches.json"])
    assert f.checksum == "md5:" + hashlib.md5(FILES["churches.json"]).hexdigest()
    assert f.url == f"{server.url}/api/records/5166987/files/churches.json/content"


def test_default_download_verifies_and_fetches_only_defaults(server, tmp_path):
    out = download(out_dir=tmp_path, base_url=server.url, progress=False)
    assert sorted(out) == ["building_parts.json", "churches.json", "style_names.txt"]
    for name, path in out.items():
        assert path == (tmp_path / name).resolve()
        assert path.read_bytes() == FILES[name]
    assert server.file_requests("images.zip") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(out)  # no .part / temp files


def test_env_var_sets_base_url(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_ATTN_ZENODO_URL", server.url + "/")
    out = download(["style_names.txt"], out_dir=tmp_path, progress=False)
    assert out["style_names.txt"].read_bytes() == FILES["style_names.txt"]
    assert len(server.file_requests("style_names.txt")) == 1


def test_present_valid_file_not_downloaded_again_invalid_one_replaced(server, tmp_path):
    download(["churches.json", "style_names.txt"], out_dir=tmp_path, base_url=server.url,
             progress=False)
    assert len(server.file_requests("churches.json")) == 1
    (tmp_path / "style_names.txt").write_bytes(b"Q1 edited by hand\n")
    download(["churches.json", "style_names.txt"], out_dir=tmp_path, base_url=server.url,
             progress=False)
    assert len(server.file_requests("churches.json")) == 1  # valid: skipped
    assert len(server.file_requests("style_names.txt")) == 2  # invalid: fetched again
    assert (tmp_path / "style_names.txt").read_bytes() == FILES["style_names.txt"]


def test_corrupted_file_rejected_and_removed(tmp_path):
    with ZenodoServer(dict(FILES), corrupt={"churches.json"}) as srv:
        with pytest.raises(ChecksumError) as ei:
            download(["churches.json"], out_dir=tmp_path, base_url=srv.url, progress=False)
        bad = hashlib.md5(srv.served_bytes("churches.json")).hexdigest()
    msg = str(ei.value)
    assert "churches.json" in msg
    assert "md5:" + hashlib.md5(FILES["churches.json"]).hexdigest() in msg  # expected
    assert "md5:" + bad in msg  # got
    assert list(tmp_path.iterdir()) == []  # neither the target, a .part nor a temp file


def test_cut_transfer_then_rerun_resumes_with_range(tmp_path):
    cut = 100_000
    with ZenodoServer(dict(FILES), cut_after={"images.zip": cut}) as srv:
        with pytest.raises(DownloadError, match=r"images\.zip.*interrupted.*resume"):
            download(["images.zip"], out_dir=tmp_path, base_url=srv.url, progress=False,
                     retries=0)
        part = tmp_path / "images.zip.part"
        assert part.stat().st_size == cut
        assert part.read_bytes() == BIG[:cut]
        assert not (tmp_path / "images.zip").exists()

        out = download(["images.zip"], out_dir=tmp_path, base_url=srv.url, progress=True,
                       retries=0)
        reqs = srv.file_requests("images.zip")
    assert len(reqs) == 2
    assert "Range" not in reqs[0].headers
    assert reqs[1].headers["Range"] == f"bytes={cut}-"
    assert out["images.zip"].read_bytes() == BIG
    assert not part.exists()


def test_retry_resumes_within_one_call(tmp_path):
    with ZenodoServer(dict(FILES), cut_after={"images.zip": 12_345}) as srv:
        out = download(["images.zip"], out_dir=tmp_path, base_url=srv.url, progress=False,
                       retries=1)
        reqs = srv.file_requests("images.zip")
    assert [r.headers.get("Range") for r in reqs] == [None, "bytes=12345-"]
    assert out["images.zip"].read_bytes() == BIG


def test_server_without_range_support_restarts_from_zero(tmp_path):
    with ZenodoServer(dict(FILES), cut_after={"images.zip": 5000}, support_range=False) as srv:
        with pytest.raises(DownloadError):
            download(["images.zip"], out_dir=tmp_path, base_url=srv.url, progress=False,
                     retries=0)
        out = download(["images.zip"], out_dir=tmp_path, base_url=srv.url, progress=False,
                       retries=0)
        assert srv.file_requests("images.zip")[1].headers["Range"] == "bytes=5000-"
    assert out["images.zip"].read_bytes() == BIG  # 200 answer: rewritten, not appended


def test_complete_part_is_used_and_oversized_part_restarted(server, tmp_path):
    (tmp_path / "images.zip.part").write_bytes(BIG)  # finished, but not yet handed over
    out = download(["images.zip"], out_dir=tmp_path, base_url=server.url, progress=False)
    assert server.file_requests("images.zip") == []
    assert out["images.zip"].read_bytes() == BIG
    (tmp_path / "churches.json.part").write_bytes(b"x" * 10_000)  # longer than the file
    out = download(["churches.json"], out_dir=tmp_path, base_url=server.url, progress=False)
    assert "Range" not in server.file_requests("churches.json")[0].headers
    assert out["churches.json"].read_bytes() == FILES["churches.json"]


def test_unknown_file_name_lists_available(server, tmp_path):
    with pytest.raises(DownloadError, match=r"nope\.txt.*available.*style_names\.txt"):
        download(["nope.txt"], out_dir=tmp_path, base_url=server.url, progress=False)


def test_registry_fallback_when_api_fails(server, tmp_path):
    reg = write_registry(tmp_path / "reg.json", base_url=server.url)
    entries = load_registry(reg, base_url=server.url)
    assert entries["style_names.txt"].checksum == "md5:" + server.md5("style_names.txt")
    server.fail_metadata = True
    with pytest.warns(UserWarning, match="registry"):
        out = download(["style_names.txt"], out_dir=tmp_path / "d", base_url=server.url,
                       progress=False, registry=reg)
    assert out["style_names.txt"].read_bytes() == FILES["style_names.txt"]
    with pytest.raises(DownloadError, match=r"api/records/5166987.*HTTPError"):
        download(["style_names.txt"], out_dir=tmp_path / "e", base_url=server.url,
                 progress=False, registry=tmp_path / "missing.json")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("prefix", ["images/", ""])
def test_extract_only_annotated(tmp_path, prefix):
    (tmp_path / "building_parts.json").write_bytes(_parts_json(["Q1_wd0.jpg", "Q2_wd1.jpg"]))
    z = _zip(tmp_path / "images.zip", {f"{prefix}Q1_wd0.jpg": b"one",
                                       f"{prefix}Q2_wd1.jpg": b"two",
                                       f"{prefix}Q3_wd0.jpg": b"not annotated"})
    paths = extract_annotated_images(z, tmp_path)
    assert paths == [tmp_path / "images" / "Q1_wd0.jpg", tmp_path / "images" / "Q2_wd1.jpg"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["Q1_wd0.jpg",
                                                                       "Q2_wd1.jpg"]
    assert paths[1].read_bytes() == b"two"
    # explicit ids, given as file name or stem
    sub = extract_annotated_images(z, tmp_path / "x", image_ids=["Q3_wd0.jpg"])
    assert [p.read_bytes() for p in sub] == [b"not annotated"]


def test_extract_missing_members_all_listed(tmp_path):
    z = _zip(tmp_path / "images.zip", {"images/Q1_wd0.jpg": b"one"})
    with pytest.raises(WikiChurchesError, match=r"2 requested image\(s\).*Q8_wd0\.jpg, Q9_wd0"):
        extract_annotated_images(z, tmp_path, image_ids=["Q1_wd0", "Q8_wd0", "Q9_wd0"])
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(WikiChurchesError, match=r"bad\.zip.*zip archive"):
        extract_annotated_images(tmp_path / "bad.zip", tmp_path, image_ids=["Q1_wd0"])
