"""CLI failure probes: bad input, bad weights and bad arguments through the real ``ssl-attn``.

Each probe runs one ``ssl-attn`` command (``python -m ssl_attn.cli``, as a subprocess) on tiny,
self-made bad input in a temporary folder and classifies what came back:

- ``traceback``: a Python traceback was printed (``Traceback (most recent call last)``);
- ``one_line``: stderr holds exactly one non-empty line (progress bars are disabled);
- ``named``: the message names the file, folder or argument at fault;
- ``nonzero``: the exit status is not 0.

Usage (``--target`` is the source tree whose ``ssl_attn`` is probed, put first on PYTHONPATH)::

    PYTHONPATH=. python benchmarks/probes.py --target /work/wt/base
    PYTHONPATH=. python benchmarks/probes.py --target . --jobs 2

The fixtures (a 4-image synthetic dataset, one tiny random DINOv2 saved with
``save_random_model(size="tiny")`` and variants of both) are written with the ``ssl_attn`` of
the current interpreter; the probes themselves use ``--target``'s. ``tests/test_cli_errors.py``
runs the same probes in-process (``build_probes``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Probe:
    """One bad invocation: ``argv`` after ``ssl-attn``; ``names``: substrings of which one must
    appear in the message (the file, folder or argument at fault); ``kind``: probe class."""

    name: str
    kind: str
    argv: list[str]
    names: tuple[str, ...] = ()
    exit_code: int | None = None  # the expected status where a specific one is documented


@dataclass
class Outcome:
    """What one probe printed and returned, and its classification."""

    probe: Probe
    code: int
    stderr: str
    seconds: float = 0.0
    flags: dict[str, bool] = field(default_factory=dict)


_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")  # a tqdm progress bar


def message_lines(stderr: str) -> list[str]:
    """The non-empty lines of ``stderr`` without tqdm progress-bar output."""
    lines = []
    for line in stderr.splitlines():
        parts = [seg for seg in line.split("\r") if seg.strip() and not _BAR.search(seg)]
        lines += parts
    return lines


def classify(probe: Probe, code: int, stderr: str) -> dict[str, bool]:
    """``traceback``, ``one_line``, ``named``, ``nonzero`` (and ``code_ok``) for one result.

    Progress bars (tqdm, on stderr) are not counted as lines."""
    lines = message_lines(stderr)
    text = "\n".join(lines)
    return {
        "traceback": TRACEBACK in text,
        "one_line": len(lines) == 1,
        "named": not probe.names or any(n in text for n in probe.names),
        "nonzero": code != 0,
        "code_ok": probe.exit_code is None or code == probe.exit_code,
    }


# --------------------------------------------------------------------------------------------
# fixtures


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def _dataset_variant(good: Path, root: Path, name: str, edit) -> Path:
    """A copy of the good dataset whose ``building_parts.json`` dict goes through ``edit``."""
    out = root / name
    shutil.copytree(good, out)
    parts = json.loads((out / "building_parts.json").read_text())
    result = edit(parts)
    text = result if isinstance(result, str) else json.dumps(parts)
    (out / "building_parts.json").write_text(text)
    return out


def _first_element(parts: dict) -> dict:
    first = next(iter(parts["annotations"].values()))
    return first["bbox_groups"][0]["elements"][0]


def make_fixtures(root: Path) -> dict[str, Path]:
    """Write the good dataset, tiny weights and every bad variant under ``root``."""
    import torch

    from ssl_attn import synthetic
    from ssl_attn.models.testing import save_random_model

    os.environ.setdefault("TQDM_DISABLE", "1")
    f: dict[str, Path] = {}
    good = root / "data"
    synthetic.generate(good, n=4, seed=0, n_annotated=3, progress=False)
    f["data"] = good

    def set_label(parts):
        _first_element(parts)["label"] = 999

    def set_nan(parts):
        _first_element(parts)["left"] = math.nan

    def set_string(parts):
        _first_element(parts)["top"] = "0.5x"

    def drop_label(parts):
        del _first_element(parts)["label"]

    f["bad_json"] = _dataset_variant(good, root, "bad_json", lambda p: '{"meta": [1, 2,')
    f["bad_label"] = _dataset_variant(good, root, "bad_label", set_label)
    f["nan_coord"] = _dataset_variant(good, root, "nan_coord", set_nan)
    f["str_coord"] = _dataset_variant(good, root, "str_coord", set_string)
    f["no_label"] = _dataset_variant(good, root, "no_label", drop_label)
    f["list_json"] = _dataset_variant(good, root, "list_json", lambda p: "[1, 2, 3]")
    no_images = root / "no_images"
    shutil.copytree(good, no_images)
    shutil.rmtree(no_images / "images")
    f["no_images"] = no_images
    corrupt = root / "corrupt_jpeg"
    shutil.copytree(good, corrupt)
    sorted((corrupt / "images").glob("*.jpg"))[0].write_bytes(b"\xff\xd8 not a jpeg")
    f["corrupt_jpeg"] = corrupt
    no_parts = root / "no_parts"
    shutil.copytree(good, no_parts)
    (no_parts / "building_parts.json").unlink()
    f["no_parts"] = no_parts
    (root / "a_file.txt").write_text("not a folder\n")
    f["a_file"] = root / "a_file.txt"

    # weights: one good tiny DINOv2 and the bad variants, each in its own weights_dir
    good_w = root / "w_good"
    save_random_model("dinov2", good_w, size="tiny", seed=0)
    f["w_good"] = good_w

    def weights_variant(name: str) -> Path:
        out = root / name
        shutil.copytree(good_w, out)
        return out

    w = weights_variant("w_truncated")
    st_file = w / "dinov2" / "model.safetensors"
    st_file.write_bytes(st_file.read_bytes()[: st_file.stat().st_size // 2])
    f["w_truncated"] = w
    w = weights_variant("w_garbage_st")
    (w / "dinov2" / "model.safetensors").write_bytes(b"\x00" * 64)
    f["w_garbage_st"] = w
    w = weights_variant("w_config")
    (w / "dinov2" / "config.json").write_text('{"model_type": "dinov2", ')
    f["w_config"] = w
    w = weights_variant("w_config_list")
    (w / "dinov2" / "config.json").write_text("[1, 2]")
    f["w_config_list"] = w
    w = weights_variant("w_no_type")
    cfg = json.loads((w / "dinov2" / "config.json").read_text())
    cfg.pop("model_type", None)
    _write_json(w / "dinov2" / "config.json", cfg)
    f["w_no_type"] = w
    w = weights_variant("w_no_weights")
    (w / "dinov2" / "model.safetensors").unlink()
    f["w_no_weights"] = w
    w = weights_variant("w_wrong_size")
    cfg = json.loads((w / "dinov2" / "config.json").read_text())
    cfg["hidden_size"] = 2 * int(cfg["hidden_size"])
    cfg["intermediate_size"] = 2 * int(cfg.get("intermediate_size", 64))
    _write_json(w / "dinov2" / "config.json", cfg)
    f["w_wrong_size"] = w
    w = root / "w_wrong_arch"  # a MAE checkpoint in the dinov2 folder
    save_random_model("mae", root / "w_mae_src", size="tiny", seed=0)
    (w).mkdir()
    shutil.copytree(root / "w_mae_src" / "mae", w / "dinov2")
    f["w_wrong_arch"] = w
    f["w_empty"] = root / "w_empty"
    (root / "w_empty").mkdir()
    w = root / "w_pth_garbage"
    (w / "resnet50").mkdir(parents=True)
    (w / "resnet50" / "resnet50.pth").write_bytes(b"this is not a checkpoint")
    f["w_pth_garbage"] = w
    w = root / "w_pth_pickle"
    (w / "resnet50").mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(1), "extra": argparse.Namespace(a=1)},
               w / "resnet50" / "resnet50.pth")  # fmt: skip
    f["w_pth_pickle"] = w
    w = root / "w_pth_truncated"
    (w / "resnet50").mkdir(parents=True)
    buf = w / "resnet50" / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, buf)
    buf.write_bytes(buf.read_bytes()[:-200])
    f["w_pth_truncated"] = w
    w = root / "w_pth_wrong"
    (w / "resnet50").mkdir(parents=True)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, w / "resnet50" / "resnet50.pth")
    f["w_pth_wrong"] = w
    w = root / "w_st_garbage_resnet"
    (w / "resnet50").mkdir(parents=True)
    (w / "resnet50" / "resnet50.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    f["w_st_garbage_resnet"] = w

    # stores
    foreign = root / "foreign.zarr"
    foreign.mkdir()
    (foreign / "zarr.json").write_text("{this is not json")
    f["foreign_store"] = foreign
    listy = root / "listy.zarr"
    listy.mkdir()
    (listy / "zarr.json").write_text("[1, 2]")
    f["list_store"] = listy
    v2 = root / "v2.zarr"
    v2.mkdir()
    _write_json(v2 / "zarr.json", {"zarr_format": 2, "node_type": "group"})
    f["v2_store"] = v2
    f["empty_store"] = root / "empty.zarr"
    (root / "empty.zarr").mkdir()
    return f


def build_probes(f: dict[str, Path], scratch: Path) -> list[Probe]:
    """The probe list; ``f`` from :func:`make_fixtures`, ``scratch``: a folder for new stores."""
    data, good_w = str(f["data"]), str(f["w_good"])

    def ex(name: str, kind: str, *extra: str, data: str = data, weights: str = good_w,
           models: tuple[str, ...] = ("dinov2",), names: tuple[str, ...] = (),
           exit_code: int | None = None) -> Probe:  # fmt: skip
        store = str(scratch / f"{name}.zarr")
        argv = ["extract", "--models", *models, "--data", data, "--store", store,
                "--weights-dir", weights, "--device", "cpu", *extra]  # fmt: skip
        return Probe(name, kind, argv, names, exit_code)

    def info(name: str, key: str, names: tuple[str, ...], validate: bool = True) -> Probe:
        argv = ["info", "--data", str(f[key])] + (["--validate"] if validate else [])
        return Probe(name, "data", argv, names)

    bp = ("building_parts.json",)
    probes = [
        # ---- data
        info("info: malformed JSON", "bad_json", bp),
        info("info: JSON not an object", "list_json", bp),
        info("info: label outside ontology", "bad_label", (*bp, "999")),
        info("info: NaN coordinate", "nan_coord", (*bp, "left")),
        info("info: string coordinate", "str_coord", (*bp, "top")),
        info("info: element without label", "no_label", (*bp, "label")),
        info("info: missing images dir", "no_images", ("images",)),
        info("info: missing building_parts.json", "no_parts", bp),
        info("info --validate: corrupt JPEG", "corrupt_jpeg", ("corrupt_jpeg",)),
        Probe("info: missing --data", "args", ["info", "--data", str(scratch / "nowhere")],
              ("nowhere",)),
        Probe("info: --data is a file", "args", ["info", "--data", str(f["a_file"])],
              ("a_file.txt",)),
        ex("extract: malformed JSON", "data", data=str(f["bad_json"]), names=bp),
        ex("extract: label outside ontology", "data", data=str(f["bad_label"]), names=bp),
        ex("extract: NaN coordinate", "data", data=str(f["nan_coord"]), names=bp),
        ex("extract: missing images dir (skipped)", "data", data=str(f["no_images"]),
           names=("images",), exit_code=3),
        ex("extract: corrupt JPEG (skipped)", "data", data=str(f["corrupt_jpeg"]),
           names=("skipped",), exit_code=3),
        ex("extract: missing --data", "args", data=str(scratch / "nowhere"), names=("nowhere",)),
        # ---- weights
        ex("weights: truncated safetensors", "weights", weights=str(f["w_truncated"]),
           names=("model.safetensors",)),
        ex("weights: garbage safetensors", "weights", weights=str(f["w_garbage_st"]),
           names=("model.safetensors",)),
        ex("weights: non-JSON config.json", "weights", weights=str(f["w_config"]),
           names=("config.json",)),
        ex("weights: config.json not an object", "weights", weights=str(f["w_config_list"]),
           names=("config.json",)),
        ex("weights: config without model_type", "weights", weights=str(f["w_no_type"]),
           names=("config.json",)),
        ex("weights: config but no weights file", "weights", weights=str(f["w_no_weights"]),
           names=("w_no_weights",)),
        ex("weights: shapes of another size", "weights", weights=str(f["w_wrong_size"]),
           names=("w_wrong_size",)),
        ex("weights: wrong-architecture folder", "weights", weights=str(f["w_wrong_arch"]),
           names=("config.json",)),
        ex("weights: missing model folder", "weights", weights=str(f["w_empty"]),
           names=("w_empty",)),
        ex("weights: missing --weights-dir", "args", weights=str(scratch / "no_weights"),
           names=("no_weights",)),
        ex("weights: garbage .pth", "weights", weights=str(f["w_pth_garbage"]),
           models=("resnet50",), names=("resnet50.pth",)),
        ex("weights: .pth with a pickled object", "weights", weights=str(f["w_pth_pickle"]),
           models=("resnet50",), names=("resnet50.pth",)),
        ex("weights: truncated .pth", "weights", weights=str(f["w_pth_truncated"]),
           models=("resnet50",), names=("resnet50.pth",)),
        ex("weights: .pth of another network", "weights", weights=str(f["w_pth_wrong"]),
           models=("resnet50",), names=("resnet50.pth",)),
        ex("weights: garbage resnet safetensors", "weights",
           weights=str(f["w_st_garbage_resnet"]), models=("resnet50",),
           names=("resnet50.safetensors",)),
        # ---- arguments
        ex("args: --device bogus", "args", "--device", "tpu9", names=("--device",)),
        ex("args: --device cuda:x", "args", "--device", "cuda:x", names=("--device",)),
        ex("args: --device cuda:7 (absent GPU)", "args", "--device", "cuda:7",
           names=("cuda:7",), exit_code=1),
        ex("args: --dtype int8", "args", "--dtype", "int8", names=("--dtype",)),
        ex("args: --shard 4/4", "args", "--shard", "4/4", names=("--shard",)),
        ex("args: --shard x", "args", "--shard", "x", names=("--shard",)),
        ex("args: --batch-size 0", "args", "--batch-size", "0", names=("--batch-size",)),
        ex("args: --batch-size -2", "args", "--batch-size", "-2", names=("--batch-size",)),
        ex("args: --layers a", "args", "--layers", "a", names=("--layers",)),
        ex("args: --layers -1", "args", "--layers", "-1", names=("--layers",)),
        ex("args: --layers 99", "args", "--layers", "99", names=("layers",), exit_code=1),
        ex("args: --size 0", "args", "--size", "0", names=("--size",)),
        ex("args: --size 100", "args", "--size", "100", names=("--size", "size")),
        ex("args: unknown model key", "args", models=("dinov9",), names=("dinov9",)),
        Probe("args: synth --n 0", "args", ["synth", "-o", str(scratch / "s0"), "--n", "0"],
              ("--n",)),
        Probe("args: synth --n -3", "args", ["synth", "-o", str(scratch / "s1"), "--n", "-3"],
              ("--n",)),
        Probe("args: synth --n-annotated -1", "args",
              ["synth", "-o", str(scratch / "s2"), "--n", "2", "--n-annotated", "-1"],
              ("--n-annotated",)),
        Probe("args: synth into a non-empty folder", "data",
              ["synth", "-o", str(f["w_good"]), "--n", "2"], ("w_good",)),
        Probe("args: score --resolution 0", "args",
              ["score", "--store", str(f["empty_store"]), "--resolution", "0"],
              ("--resolution",)),
        Probe("args: demo --device bogus", "args",
              ["demo", "--data", str(scratch / "demo_data"), "--device", "tpu9"], ("--device",)),
        Probe("args: demo --n 0", "args", ["demo", "--data", str(scratch / "demo0"), "--n", "0"],
              ("--n",)),
        # ---- stores
        ex("store: foreign zarr.json (extract)", "store", names=("zarr.json",)),
        Probe("store: foreign zarr.json (score)", "store", ["score", "--store",
              str(f["foreign_store"])], ("zarr.json",)),
        Probe("store: zarr.json not an object (score)", "store",
              ["score", "--store", str(f["list_store"])], ("zarr.json",)),
        Probe("store: zarr v2 metadata (score)", "store",
              ["score", "--store", str(f["v2_store"])], ("v2.zarr",)),
        Probe("store: missing store (score)", "args",
              ["score", "--store", str(scratch / "absent.zarr")], ("absent.zarr",)),
        Probe("store: store is a file (score)", "args",
              ["score", "--store", str(f["a_file"])], ("a_file.txt",)),
        ex("store: store is a file (extract)", "args", names=("a_file.txt",)),
        Probe("store: score --data missing", "args",
              ["score", "--store", str(f["empty_store"]), "--data", str(scratch / "nodata")],
              ("nodata",)),
    ]
    # point the two "foreign/file store" extract probes at their stores
    for p in probes:
        if p.name == "store: foreign zarr.json (extract)":
            p.argv[p.argv.index("--store") + 1] = str(f["foreign_store"])
        if p.name == "store: store is a file (extract)":
            p.argv[p.argv.index("--store") + 1] = str(f["a_file"])
    return probes


# --------------------------------------------------------------------------------------------
# running


def run_subprocess(probe: Probe, target: Path, timeout: float = 300.0) -> Outcome:
    """Run one probe as ``python -m ssl_attn.cli`` with ``target`` first on PYTHONPATH."""
    env = dict(os.environ, PYTHONPATH=str(target), TQDM_DISABLE="1", HF_HUB_OFFLINE="1",
               PYTHONWARNINGS="ignore")  # fmt: skip
    env.pop("SSL_ATTN_DEBUG", None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ssl_attn.cli", *probe.argv], env=env, capture_output=True,
        text=True, timeout=timeout, cwd=str(target),
    )
    out = Outcome(probe, proc.returncode, proc.stderr, time.perf_counter() - start)
    out.flags = classify(probe, proc.returncode, proc.stderr)
    return out


def table(outcomes: list[Outcome]) -> str:
    """A text table of the outcomes and the totals."""
    cols = ("traceback", "one_line", "named", "nonzero")
    lines = [f"{'probe':44s} {'exit':>4s} " + " ".join(f"{c:>9s}" for c in cols)]
    for o in outcomes:
        marks = " ".join(f"{'yes' if o.flags[c] else '-':>9s}" for c in cols)
        lines.append(f"{o.probe.name[:44]:44s} {o.code:4d} {marks}")
    n = len(outcomes)
    totals = {c: sum(o.flags[c] for o in outcomes) for c in cols}
    good = sum(
        (not o.flags["traceback"]) and o.flags["one_line"] and o.flags["named"]
        and o.flags["nonzero"] for o in outcomes
    )  # fmt: skip
    lines.append("")
    lines.append(f"{n} probes: tracebacks {totals['traceback']}, one line {totals['one_line']}, "
                 f"file/argument named {totals['named']}, non-zero exit {totals['nonzero']}; "
                 f"all four right: {good}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default=".", help="source tree whose ssl_attn is probed")
    p.add_argument("--jobs", type=int, default=2, help="probes run at once (default 2)")
    p.add_argument("--only", default=None, help="run probes whose name contains this text")
    p.add_argument("--show", action="store_true", help="print each probe's stderr")
    args = p.parse_args(argv)
    os.environ["TQDM_DISABLE"] = "1"
    target = Path(args.target).resolve()
    with tempfile.TemporaryDirectory(prefix="ssl-attn-probes-") as tmp:
        root = Path(tmp)
        fixtures = make_fixtures(root / "fx")
        scratch = root / "scratch"
        scratch.mkdir()
        probes = build_probes(fixtures, scratch)
        if args.only:
            probes = [q for q in probes if args.only in q.name]
        def one(q: Probe) -> Outcome:
            o = run_subprocess(q, target)
            print(f"  [{o.seconds:5.1f} s] exit {o.code:3d} {q.name}", file=sys.stderr, flush=True)
            return o

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(one, probes))
        if args.show:
            for o in outcomes:
                print(f"== {o.probe.name} (exit {o.code})\n{o.stderr.rstrip()}\n")
        print(f"target: {target}")
        print(table(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
