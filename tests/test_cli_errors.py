"""One-line CLI errors and exit codes: every probe class of ``benchmarks/probes.py``.

Each probe (bad data, bad weights, bad arguments, foreign stores) runs in-process through
``cli.main(argv)``: exactly one line on stderr, no traceback, the file, folder or argument at
fault named, and a non-zero exit (2 for argument errors, 3 for skipped images, else 1). A few run
as real subprocesses; ``--debug`` / ``SSL_ATTN_DEBUG=1`` show the traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_attn import cli

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("ssl_attn_probes", ROOT / "benchmarks" / "probes.py")
probes = importlib.util.module_from_spec(_spec)
sys.modules["ssl_attn_probes"] = probes  # dataclasses look their module up
_spec.loader.exec_module(probes)


class _AnyPaths(dict):
    def __missing__(self, key: str) -> Path:
        return Path("/nonexistent") / key


PROBE_NAMES = [p.name for p in probes.build_probes(_AnyPaths(), Path("/nonexistent"))]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    return probes.make_fixtures(tmp_path_factory.mktemp("probe_fixtures"))


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cli.main(argv)`` in-process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse: --help and argument errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_there_are_forty_probes():
    assert len(PROBE_NAMES) >= 40 and len(set(PROBE_NAMES)) == len(PROBE_NAMES)


@pytest.mark.parametrize("name", PROBE_NAMES)
def test_probe_prints_one_line_naming_the_culprit(name, fixtures, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SSL_ATTN_DEBUG", raising=False)
    probe = {p.name: p for p in probes.build_probes(fixtures, tmp_path)}[name]
    code, _, err = run(probe.argv, capsys)
    flags = probes.classify(probe, code, err)
    assert not flags["traceback"], err
    assert flags["one_line"], err
    assert flags["named"], (probe.names, err)
    assert flags["nonzero"], err
    assert probes.message_lines(err)[0].startswith(f"ssl-attn {probe.argv[0]}"), err
    if probe.exit_code is not None:
        assert code == probe.exit_code, (code, err)
    else:
        assert code == (cli.EXIT_USAGE if probe.kind == "args" else cli.EXIT_ERROR), (code, err)


def test_weights_errors_never_suggest_unsafe_unpickling(fixtures, tmp_path, capsys):
    for key in ("w_pth_pickle", "w_pth_garbage"):
        code, _, err = run(["extract", "--models", "resnet50", "--data", str(fixtures["data"]),
                            "--store", str(tmp_path / f"{key}.zarr"), "--weights-dir",
                            str(fixtures[key]), "--device", "cpu"], capsys)  # fmt: skip
        assert code == 1 and "resnet50.pth" in err
        assert "weights_only=False" not in err and "weights_only = False" not in err


def test_weights_of_another_size_never_suggest_ignoring_mismatches(fixtures, tmp_path, capsys):
    code, _, err = run(["extract", "--models", "dinov2", "--data", str(fixtures["data"]),
                        "--store", str(tmp_path / "s.zarr"), "--weights-dir",
                        str(fixtures["w_wrong_size"]), "--device", "cpu"], capsys)  # fmt: skip
    assert code == 1 and "model.safetensors" in err and "shapes differ" in err
    assert "ignore_mismatched_sizes" not in err


def test_failed_model_load_leaves_no_store(fixtures, tmp_path, capsys):
    store = tmp_path / "new.zarr"
    argv = ["extract", "--models", "dinov2", "--data", str(fixtures["data"]), "--store",
            str(store), "--weights-dir", str(fixtures["w_truncated"]), "--device", "cpu"]
    assert run(argv, capsys)[0] == 1
    assert not store.exists()
    empty = tmp_path / "empty.zarr"  # an empty folder the user made: left as it was
    empty.mkdir()
    argv[argv.index(str(store))] = str(empty)
    assert run(argv, capsys)[0] == 1
    assert empty.is_dir() and not any(empty.iterdir())
    # a failure in the first batch (layer out of range) after the model loaded: no store either
    argv = ["extract", "--models", "dinov2", "--data", str(fixtures["data"]), "--store",
            str(store), "--weights-dir", str(fixtures["w_good"]), "--device", "cpu",
            "--layers", "99"]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 1 and "layers" in err and not store.exists()


def test_failed_model_load_keeps_an_existing_store(fixtures, tmp_path, capsys):
    store = tmp_path / "s.zarr"
    good = ["extract", "--models", "dinov2", "--data", str(fixtures["data"]), "--store",
            str(store), "--weights-dir", str(fixtures["w_good"]), "--device", "cpu"]
    assert run(good, capsys)[0] == 0
    before = sorted(p.relative_to(store) for p in store.rglob("*") if p.name != ".lock")
    bad = ["extract", "--models", "dinov2", "--data", str(fixtures["data"]), "--store",
           str(store), "--weights-dir", str(fixtures["w_truncated"]), "--device", "cpu",
           "--variant", "lora"]  # fmt: skip
    assert run(bad, capsys)[0] == 1
    after = sorted(p.relative_to(store) for p in store.rglob("*") if p.name != ".lock")
    assert after == before


def test_skipped_images_exit_3_unless_allowed(fixtures, tmp_path, capsys):
    store = tmp_path / "skip.zarr"
    argv = ["extract", "--models", "dinov2", "--data", str(fixtures["corrupt_jpeg"]), "--store",
            str(store), "--weights-dir", str(fixtures["w_good"]), "--device", "cpu"]
    code, out, err = run(argv, capsys)
    assert code == cli.EXIT_SKIPPED == 3
    assert "skipped Q9000000_wd0" in out and "--allow-skipped" in err
    assert len(probes.message_lines(err)) == 1
    attrs = json.loads((store / "zarr.json").read_text())["attributes"]
    assert "Q9000000_wd0" in json.dumps(attrs["skipped_images"])
    # the rerun retries the unreadable image, skips it again: still 3, and 0 when allowed
    assert run(argv, capsys)[0] == 3
    code, _, err = run([*argv, "--allow-skipped"], capsys)
    assert code == 0 and probes.message_lines(err) == []


def test_debug_flag_and_env_show_the_traceback(fixtures, capsys, monkeypatch):
    argv = ["info", "--data", str(fixtures["bad_json"])]
    monkeypatch.delenv("SSL_ATTN_DEBUG", raising=False)
    code, _, err = run(["--debug", *argv], capsys)
    assert code == 1 and probes.TRACEBACK in err
    assert err.strip().splitlines()[-1].startswith("ssl-attn info: error: ")
    assert "building_parts.json" in err.strip().splitlines()[-1]
    monkeypatch.setenv("SSL_ATTN_DEBUG", "1")
    code, _, err = run(argv, capsys)
    assert code == 1 and probes.TRACEBACK in err
    monkeypatch.setenv("SSL_ATTN_DEBUG", "0")
    code, _, err = run(argv, capsys)
    assert code == 1 and probes.TRACEBACK not in err


def test_a_bug_shows_a_hint_then_the_traceback(monkeypatch, capsys, tmp_path):
    def broken(args):
        return None.missing  # an AttributeError: a bug, not a user error

    monkeypatch.setattr(cli, "_cmd_info", broken)
    code, _, err = run(["info", "--data", str(tmp_path)], capsys)
    assert code == 1
    first = err.splitlines()[0]
    assert first.startswith("ssl-attn info: internal error") and "AttributeError" in first
    assert probes.TRACEBACK in err


def test_one_line_folds_and_caps():
    assert cli.one_line("a\n  b\n\nc") == "a; b; c"
    assert cli.one_line("2 problems:\n  x\n  y") == "2 problems: x; y"
    assert cli.error_line(cli.UsageError("argument --size: no")) == "argument --size: no"
    assert len(cli.one_line("x" * 10_000)) <= 2000
    err = FileNotFoundError(2, "No such file or directory", "/tmp/x.json")
    assert cli.error_line(err) == "/tmp/x.json: No such file or directory"
    assert cli.error_line(KeyError("frozen")) == "KeyError: missing key 'frozen'"


@pytest.mark.parametrize("key", ["bad_json", "w_config", "device"])
def test_real_subprocess(key, fixtures, tmp_path):
    """The console entry point itself (``python -m ssl_attn.cli``), as a user runs it."""
    if key == "bad_json":
        argv, name = ["info", "--data", str(fixtures["bad_json"])], "building_parts.json"
    elif key == "w_config":
        argv = ["extract", "--models", "dinov2", "--data", str(fixtures["data"]), "--store",
                str(tmp_path / "s.zarr"), "--weights-dir", str(fixtures["w_config"]),
                "--device", "cpu"]  # fmt: skip
        name = "config.json"
    else:
        argv, name = ["extract", "--device", "tpu9"], "--device"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    env.pop("SSL_ATTN_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "ssl_attn.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert probes.TRACEBACK not in proc.stderr
    assert len(lines) == 1 and name in lines[0], proc.stderr
    assert proc.returncode == (2 if key == "device" else 1)
    assert not (tmp_path / "s.zarr").exists()
