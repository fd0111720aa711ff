"""The narrative notebooks run end to end (papermill) on tiny models and the synthetic set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

pytestmark = pytest.mark.slow


def _run(name: str, out_dir: Path, **parameters) -> dict:
    papermill = pytest.importorskip("papermill")
    out = out_dir / name
    papermill.execute_notebook(
        str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
        progress_bar=False, cwd=str(out_dir),
    )
    return json.loads(out.read_text())


def _text(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_every_notebook_has_a_parameters_cell_and_no_outputs():
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [b.name for b in books] == ["01_data.ipynb", "02_attention.ipynb", "03_alignment.ipynb",
                                       "04_finetuning.ipynb"]
    for book in books:
        nb = json.loads(book.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, book.name
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def test_notebooks_run_on_tiny_models(tmp_path, synthetic_root, tiny_weights):
    from ssl_attn.store import completed

    nb1 = _run("01_data.ipynb", tmp_path, data_dir=str(synthetic_root))
    text1 = _text(nb1)
    assert "SYNTHETIC" in text1 and "soft target sums to 1.000000" in text1

    store = tmp_path / "nb.zarr"
    _run("02_attention.ipynb", tmp_path, data_dir=str(synthetic_root), store_path=str(store),
         models=["dinov2", "siglip2", "resnet50"], weights_dir=str(tiny_weights),
         device="cpu", image_limit=None)
    for key in ("dinov2", "siglip2", "resnet50"):
        assert len(completed(store, key)) == 8, key

    nb3 = _run("03_alignment.ipynb", tmp_path, store_path=str(store), metric="coverage")
    text3 = _text(nb3)
    assert "higher is better" in text3
    assert "baseline:uniform" in text3 and "dinov2" in text3
    assert (tmp_path / "nb.scores.zarr").exists()


def test_finetuning_notebook_runs_on_a_tiny_model(tmp_path, monkeypatch):
    """04 end to end on a tiny dinov2 and a 40-image synthetic set (8 annotated, 32 in the
    training pool): split, three runs, four variants extracted and scored, the shift table."""
    import ssl_attn
    from ssl_attn import synthetic
    from ssl_attn.finetune import open_shift
    from ssl_attn.models.testing import save_random_model
    from ssl_attn.store import decode_attr, open_store, shift_path

    data = tmp_path / "data"
    synthetic.generate(data, n=40, seed=1, n_annotated=8, image_size_range=(64, 96),
                       progress=False)
    weights = tmp_path / "weights"
    save_random_model("dinov2", weights, size="tiny", seed=0)
    # The kernel is a subprocess: it must import this checkout's ssl_attn, on one thread.
    here = str(Path(ssl_attn.__file__).resolve().parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (here, os.environ.get("PYTHONPATH")) if p))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = tmp_path / "ft.zarr"
    nb = _run("04_finetuning.ipynb", tmp_path, data_dir=str(data), runs_dir=str(tmp_path / "runs"),
              store_path=str(store), model="dinov2", strategy="full", random_init=True,
              base_dir=str(weights), epochs=2, batch_size=8, device="cpu", extract_batch_size=8,
              metric="coverage", method="cls")  # the random base already in base_dir: reused
    text = _text(nb)
    assert f"from {here}/ssl_attn" in text  # the kernel ran this checkout
    assert "0 annotated images in the split (the 8 annotated images are the evaluation set" in text
    for variant in ("full", "full_shuffled", "linear_probe"):
        assert (tmp_path / "runs" / f"dinov2-{variant}" / "manifest.json").exists(), variant
    assert "beyond the shuffled-label control (coverage): 4 rows" in text  # 2 methods x 2 layers
    assert "linear probe: Δ == 0 in 8 of 8 cells (max |Δ| = 0); scores identical to frozen: True"\
        in text
    assert "dinov2 · full on the style labels: val acc" in text
    assert "cls: Δcoverage at its best layer" in text and "beyond the shuffled control" in text
    # 2 epochs of a tiny random model: no learning, so nothing beyond the control (computed)
    assert "not shown to learn the styles" in text and "did not learn the task here" in text
    assert "and none is found" in text
    group = open_store(store)["dinov2"].attrs
    assert group["weights"] == f"random-init:{weights / 'dinov2'}"  # frozen = the runs' base
    assert sorted(decode_attr(group["variant_provenance"])) == [
        "frozen", "full", "full_shuffled", "linear_probe"]
    shift = open_shift(shift_path(store))
    assert sorted(shift["variant"].values.tolist()) == ["full", "full_shuffled", "linear_probe"]
    assert shift.attrs["controls"] == {"full": "full_shuffled"}
    lp = shift["delta"].sel(variant="linear_probe")
    assert int(lp.notnull().sum()) == 8 and float(abs(lp).max()) == 0.0
