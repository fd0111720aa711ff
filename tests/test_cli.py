"""The ``ssl-attn`` command, called in-process through ``main(argv)``."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from zenodo_server import ZenodoServer  # pytest puts tests/ on sys.path

from ssl_attn.cli import build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("download", "synth", "info", "extract", "score", "demo"):
        assert cmd in out


def test_extract_defaults_and_shard_parsing():
    args = build_parser().parse_args(["extract", "--models", "dinov2", "mae", "--layers", "11",
                                      "--shard", "1/4"])
    assert args.models == ["dinov2", "mae"] and args.layers == [11]
    # variant None: "frozen", or with --finetuned the run's own variant
    assert args.batch_size == 8 and args.device == "auto" and args.variant is None
    assert args.finetuned is None
    from ssl_attn.extract import parse_shard

    assert parse_shard(args.shard) == (1, 4)
    with pytest.raises(ValueError):
        parse_shard("4/4")


def test_synth_then_info(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synth", "-o", str(out), "--n", "6", "--n-annotated", "4", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed
    parts = json.loads((out / "building_parts.json").read_text())
    assert len(parts["annotations"]) == 4
    assert len(list((out / "images").glob("*.jpg"))) == 6

    assert main(["info", "--data", str(out), "--validate"]) == 0
    info = capsys.readouterr().out
    assert "annotated images: 4" in info and "SYNTHETIC" in info
    n_boxes = sum(len(g["elements"]) for a in parts["annotations"].values()
                  for g in a["bbox_groups"])
    assert f"boxes: {n_boxes}" in info


def test_info_validate_fails_on_a_corrupt_image(tmp_path, capsys):
    out = tmp_path / "syn"
    main(["synth", "-o", str(out), "--n", "3", "--n-annotated", "3"])
    victim = sorted((out / "images").glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["info", "--data", str(out), "--validate"]) == 1
    assert victim.name in capsys.readouterr().out


def test_unknown_model_key_is_a_clear_error(tmp_path, capsys):
    code = main(["extract", "--models", "dinov9", "--data", str(tmp_path), "--store",
                 str(tmp_path / "s.zarr")])
    assert code == 2  # a usage error: one line on stderr, no traceback
    err = capsys.readouterr().err
    assert "unknown model key" in err and "dinov9" in err and len(err.strip().splitlines()) == 1


def test_download_against_a_loopback_zenodo(tmp_path, capsys):
    images = io.BytesIO()
    with zipfile.ZipFile(images, "w") as zf:
        zf.writestr("images/Q1_wd0.jpg", b"jpeg-1")
        zf.writestr("images/Q2_wd0.jpg", b"jpeg-2")
    parts = {"meta": [{"name": "Portal", "parents": []}],
             "annotations": {"Q1_wd0.jpg": {"styles": ["Q46261"], "bbox_groups": []}}}
    files = {"building_parts.json": json.dumps(parts).encode(),
             "churches.json": b"{}", "style_names.txt": b"Q46261 Romanesque\n",
             "images.zip": images.getvalue()}
    with ZenodoServer(files) as srv:
        code = main(["download", "-o", str(tmp_path), "--base-url", srv.url, "--files",
                     "building_parts.json", "images.zip", "--extract-annotated"])
    assert code == 0
    assert (tmp_path / "building_parts.json").read_bytes() == files["building_parts.json"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["Q1_wd0.jpg"]
    assert not (tmp_path / "churches.json").exists()  # only what was asked
    assert "extracted 1 annotated images" in capsys.readouterr().out


@pytest.mark.slow
def test_extract_and_score_commands(tmp_path, synthetic_root, tiny_weights, capsys):
    store = tmp_path / "cli.zarr"
    argv = ["extract", "--models", "dinov2", "resnet50", "--data", str(synthetic_root),
            "--store", str(store), "--weights-dir", str(tiny_weights), "--device", "cpu",
            "--batch-size", "4"]
    assert main(argv) == 0
    assert "dinov2 [frozen]: 8 computed" in capsys.readouterr().out
    assert main(argv) == 0  # a rerun finds everything complete
    assert "dinov2 [frozen]: 0 computed, 8 already complete" in capsys.readouterr().out

    assert main(["score", "--store", str(store), "--no-baselines"]) == 0
    scores_path = Path(str(store).removesuffix(".zarr") + ".scores.zarr")
    assert scores_path.exists()
    import xarray as xr

    scores = xr.open_zarr(scores_path)
    assert set(scores["model"].values.tolist()) == {"dinov2", "resnet50"}
    cov = scores["coverage"].sel({"model": "dinov2", "method": "cls", "head": -1}).values
    assert ((cov[cov == cov] >= 0) & (cov[cov == cov] <= 1)).all() and (cov == cov).any()
