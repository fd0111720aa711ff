"""The narrative notebooks run end to end (papermill) on tiny models and the synthetic set."""

from __future__ import annotations

import json
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
    assert [b.name for b in books] == ["01_data.ipynb", "02_attention.ipynb", "03_alignment.ipynb"]
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
