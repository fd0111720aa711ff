"""Data that must never be lost or silently wrong (issue 11, items 4, 5, 9, 10).

- concurrent ``score`` runs on one store, and repair of a damaged scores output;
- a SIGKILL while a model group is being created, then a rerun;
- the store schema version (a newer store is refused by extract, score and the dashboard);
- ``--store`` at a folder that is not a store, ``score`` into a read-only place, and a rerun
  of extract with nothing to do on a store whose lock cannot be taken.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from _metrics_fixtures import model_group, write_dataset, write_store

from ssl_attn import extract as ex
from ssl_attn import store as st
from ssl_attn.metrics.scoring import ScoreError, score

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
SCORE_KW = {"resolution": 32, "n_draws": 3}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _make_store(tmp_path: Path) -> Path:
    root = write_dataset(tmp_path / "wc")
    groups = {"a": model_group(0),
              "b": model_group(1, complete=(True, False), methods=("probe",))}
    return write_store(tmp_path / "run.zarr", root, groups)


def _assert_scores_equal(got_path: Path, want: xr.Dataset) -> None:
    """Every variable of ``want`` is on disk at ``got_path`` (its own metadata, not only the
    consolidated copy) and equal, NaN where NaN."""
    for name in want.variables:
        assert (got_path / str(name) / "zarr.json").is_file(), f"{name} missing on disk"
    got = st.open_scores(got_path).load()
    assert sorted(got.variables) == sorted(want.variables)
    for name in want.variables:
        a, b = got[name].values, want[name].values
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), name
        else:
            assert np.array_equal(a, b), name


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, xr.Dataset]:
    """A store and its scores from one clean single run (into a separate ``out``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tmp = tmp_path_factory.mktemp("clean")
        store = _make_store(tmp)
        ds = score(store, out=tmp / "clean.scores.zarr", **SCORE_KW).load()
    return store, ds


# ------------------------------------------------------------------ item 4: concurrent scores
SCORE_SCRIPT = textwrap.dedent(
    """
    import sys, time, warnings
    from pathlib import Path
    warnings.simplefilter("ignore")
    from ssl_attn.metrics.scoring import score
    store, go = Path(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():  # start both runs at the same moment
        time.sleep(0.01)
    score(store, resolution=32, n_draws=3)
    print("done")
    """
)


def test_two_concurrent_score_processes_equal_one_clean_run(tmp_path, clean):
    store = tmp_path / "run.zarr"
    shutil.copytree(clean[0], store)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", SCORE_SCRIPT, str(store), str(go)],
                              env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]  # fmt: skip
    time.sleep(3)  # both imported and waiting
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    out = st.scores_path(store)
    _assert_scores_equal(out, clean[1])
    assert not list(tmp_path.glob("run.scores.zarr.tmp*"))  # no temporary left behind


def test_rerun_repairs_a_deleted_variable(tmp_path, clean):
    store = tmp_path / "run.zarr"
    shutil.copytree(clean[0], store)
    out = st.scores_path(store)
    score(store, **SCORE_KW)
    shutil.rmtree(out / "coverage")  # the consolidated metadata still lists it
    score(store, **SCORE_KW)
    _assert_scores_equal(out, clean[1])


def test_rerun_repairs_a_deleted_block_chunk(tmp_path, clean):
    store = tmp_path / "run.zarr"
    shutil.copytree(clean[0], store)
    out = st.scores_path(store)
    score(store, **SCORE_KW)
    chunks = sorted(p for p in (out / "roc_auc" / "c").rglob("*") if p.is_file())
    assert chunks
    chunks[0].unlink()  # one (model, variant, method) block of one variable lost
    score(store, **SCORE_KW)
    _assert_scores_equal(out, clean[1])


# ------------------------------------------------------------------ item 5: kill in group creation
KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import zarr.storage
    from ssl_attn.extract import extract
    store, data, weights, model, after = sys.argv[1:6]
    real_set, seen = zarr.storage.LocalStore.set, []

    async def set_then_die(self, key, value, *args, **kwargs):
        # SIGKILL this process once `after` array metadata files of the group are on disk:
        # a real kill at a fixed point of the group's creation
        await real_set(self, key, value, *args, **kwargs)
        if key.startswith(model + "/") and key.endswith("/zarr.json"):
            seen.append(key)
            if len(seen) == int(after):
                print(seen, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    zarr.storage.LocalStore.set = set_then_die
    extract(store, data, model, weights_dir=weights, batch_size=2, progress=False)
    """
)


@pytest.mark.parametrize("after", [1, 4])
def test_sigkill_during_group_creation_then_rerun_equals_a_clean_run(
    tmp_path, synthetic_root, tiny_weights, after
):
    from test_extract import VIT, data_of

    path = tmp_path / "killed.zarr"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(path), str(synthetic_root), str(tiny_weights),
         VIT, str(after)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (path / VIT / "zarr.json").is_file()  # the group was half created
    assert st.completed(path, VIT, "frozen") == set()
    report = ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, batch_size=2,
                        progress=False)
    assert report.models[VIT].n_computed == 8
    ref = tmp_path / "ref.zarr"
    ex.extract(ref, synthetic_root, VIT, weights_dir=tiny_weights, batch_size=2, progress=False)
    xr.testing.assert_equal(data_of(path)[VIT], data_of(ref)[VIT])


def test_half_created_group_is_rebuilt_but_one_with_complete_images_is_not(tmp_path):
    from test_store import IDS, batch_maps, group_kwargs

    path = tmp_path / "attn.zarr"
    st.init_store(path, synthetic=True, dataset="x")
    st.init_model_group(path, "vit", **group_kwargs())
    shutil.rmtree(path / "vit" / "rollout")  # what a kill between two arrays leaves
    (path / "vit" / "complete" / "zarr.json").unlink()
    assert st.init_model_group(path, "vit", **group_kwargs()) is True  # rebuilt
    st.write_maps(path, "vit", "frozen", IDS[:2], batch_maps(0, 2))
    assert st.completed(path, "vit") == set(IDS[:2])
    shutil.rmtree(path / "vit" / "rollout")
    with pytest.raises(st.StoreError, match="variables"):  # holds data: never deleted
        st.init_model_group(path, "vit", **group_kwargs())
    assert st.completed(path, "vit") == set(IDS[:2])


# ------------------------------------------------------------------ item 9: schema version
def _claim_version(path: Path, version: int) -> None:
    root = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    root.attrs[st.SCHEMA_ATTR] = version
    zarr.consolidate_metadata(str(path))


def test_new_store_records_the_schema_version_and_old_stores_are_version_1(tmp_path):
    path = tmp_path / "new.zarr"
    st.init_store(path, synthetic=True, dataset="x")
    assert json.loads((path / "zarr.json").read_text())["attributes"][st.SCHEMA_ATTR] == 1
    old = _make_store(tmp_path)  # written without the attr, as older versions did
    assert st.SCHEMA_ATTR not in st.open_store(old).attrs
    assert st.check_schema(old, st.open_store(old).attrs) == 1


def test_a_newer_store_is_refused_by_extract_score_and_the_dashboard(
    tmp_path, synthetic_root, monkeypatch
):
    from ssl_attn.explorer.data import ExplorerData

    store = _make_store(tmp_path)
    _claim_version(store, 99)
    before = sorted(p.name for p in store.iterdir())

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded for a refused store")

    monkeypatch.setattr("ssl_attn.models.load_model", no_model)
    for call in (
        lambda: ex.extract(store, synthetic_root, "dinov2", progress=False),
        lambda: score(store, **SCORE_KW),
        lambda: st.open_store(store),
        lambda: st.init_model_group(store, "vit", image_ids=["a"], grid=(1, 1),
                                    variables={"cls": ("y", "x")}),
    ):  # fmt: skip
        with pytest.raises(st.SchemaVersionError) as info:
            call()
        msg = str(info.value)
        assert str(store) in msg and "99" in msg and "up to 1" in msg and "upgrade" in msg
    assert sorted(p.name for p in store.iterdir()) == before
    assert not st.scores_path(store).exists()
    data = ExplorerData(store)
    assert data.tree is None and not data.ok
    assert any("schema version 99" in p and "Upgrade ssl-attn" in p for p in data.problems)


# ------------------------------------------------------------- item 10: not a store, read-only
def test_extract_refuses_a_non_store_folder_before_writing_or_computing(
    tmp_path, synthetic_root, monkeypatch
):
    folder = tmp_path / "my-photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")

    def no_model(*a, **k):
        raise AssertionError("nothing may be computed")

    monkeypatch.setattr("ssl_attn.models.load_model", no_model)
    with pytest.raises(st.StoreError, match="not an attention store"):
        ex.extract(folder, synthetic_root, "dinov2", progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # no zarr.json, no .lock
    a_file = tmp_path / "file.zarr"
    a_file.write_text("x")
    with pytest.raises(st.StoreError, match="not a folder"):
        st.init_store(a_file, synthetic=True, dataset="x")
    # an empty folder, or one left with only the lock, is fine
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    (empty / ".lock").touch()
    st.init_store(empty, synthetic=True, dataset="x")
    assert (empty / "zarr.json").is_file()


def test_score_into_a_read_only_place_fails_before_computing(tmp_path, clean, monkeypatch):
    """Tests run as root, for whom chmod -w changes nothing: ``os.access`` is patched to say
    the store's folder is read-only, and computing is made to fail loudly."""
    from ssl_attn.metrics.scoring import compute as compute_mod
    from ssl_attn.metrics.scoring import write as write_mod

    store = tmp_path / "ro" / "run.zarr"
    shutil.copytree(clean[0], store)
    real_access = os.access

    def access(path, mode, *a, **k):
        if Path(path) == store.parent and mode & os.W_OK:
            return False
        return real_access(path, mode, *a, **k)

    def no_compute(*a, **k):
        raise AssertionError("must fail before computing")

    monkeypatch.setattr(write_mod.os, "access", access)
    monkeypatch.setattr(compute_mod, "compute", no_compute)
    started = time.perf_counter()
    with pytest.raises(ScoreError, match="not writable") as info:
        score(store, **SCORE_KW)
    assert str(store.parent) in str(info.value)
    assert time.perf_counter() - started < 5
    assert sorted(p.name for p in store.parent.iterdir()) == ["run.zarr"]  # no lock, no tmp


def test_extract_rerun_with_nothing_to_do_needs_no_lock(tmp_path, synthetic_root, tiny_weights,
                                                        monkeypatch):
    """A store whose ``.lock`` cannot be opened (a folder stands in its place: a real failure
    even for root) still serves a rerun that has nothing to do; with work it fails before the
    model loads (writability patched, as for score)."""
    from test_extract import VIT

    from ssl_attn.store import layout

    path = tmp_path / "done.zarr"
    ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, batch_size=4,
               progress=False)
    (path / ".lock").unlink()
    (path / ".lock").mkdir()
    with pytest.raises(OSError), layout.store_lock(path, timeout=1):  # really cannot be taken
        pass
    again = ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, progress=False)
    assert again.models[VIT].n_computed == 0 and again.models[VIT].n_done_before == 8

    real_access = os.access
    monkeypatch.setattr(layout.os, "access", lambda p, m, *a, **k: (
        False if Path(p) == path else real_access(p, m, *a, **k)))

    def no_model(*a, **k):
        raise AssertionError("must fail before the model loads")

    monkeypatch.setattr("ssl_attn.models.load_model", no_model)
    with pytest.raises(PermissionError, match="not writable"):
        ex.extract(path, synthetic_root, VIT, weights_dir=tiny_weights, progress=False,
                   variant="lora")  # new work: a variant not yet computed
