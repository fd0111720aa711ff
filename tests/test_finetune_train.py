"""Fine-tuning: the config, the process-count-invariant loss, the run folder, resume and DDP.

Tiny synthetic data (50 images, 8 annotated: a training pool of 42, split 33 train / 9 val) and
the tiny random DINOv2 at 28 px. The subprocess tests (marked slow) run the real CLI: one
process as the reference, a run killed with SIGKILL after its first epoch and resumed, and a
two-process gloo run under ``torch.distributed.run``. Subprocesses run with one thread each
(``OMP_NUM_THREADS=1``) so that the bit-exact comparisons compare like with like.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ssl_attn import cli
from ssl_attn.finetune.config import FineTuningConfig

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 28  # 2 x 2 patches of the tiny DINOv2 (patch 14)


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ssl_attn import synthetic

    root = tmp_path_factory.mktemp("ft_data")
    synthetic.generate(root, n=50, n_annotated=8, image_size_range=(64, 96), seed=0,
                       progress=False)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from ssl_attn.models.testing import save_random_model

    out = tmp_path_factory.mktemp("ft_weights")
    save_random_model("dinov2", out, size="tiny", seed=0)
    return out


@pytest.fixture
def one_thread():
    """In-process training on one thread (the machine is shared; two threads contend)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(data: Path, weights: Path, out: Path, **kw) -> FineTuningConfig:
    base = dict(model_name="dinov2", strategy="full", epochs=2, batch_size=8, size=SIZE,
                device="cpu", out_dir=str(out), weights_dir=str(weights))
    return FineTuningConfig(**{**base, **kw})


def _model(weights: Path):
    from ssl_attn.finetune.model import FineTunableModel

    return FineTunableModel("dinov2", weights_dir=weights, size=SIZE)


def _cli_args(data: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", "dinov2", "--strategy", "full", "--data", str(data),
            "--weights-dir", str(weights), "--epochs", "3", "--batch-size", "8", "--size",
            str(SIZE), "--device", "cpu", "--out", str(out), *extra]


def _run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(err: str) -> list[str]:
    """stderr without progress-bar and weight-loading noise."""
    return [ln for ln in err.splitlines() if ln.startswith("ssl-attn ")]


# --------------------------------------------------------------------------------- config


@pytest.mark.parametrize("field, value, words", [
    ("strategy", "probe", "linear_probe, lora, full"),
    ("labels", "random", "style, shuffled"),
    ("precision", "fp8", "auto, no, bf16, fp16"),
    ("epochs", 0, ">= 1"),
    ("batch_size", 2.5, "integer"),
    ("lr_head", 0.0, "> 0"),
    ("lr_backbone", float("nan"), "> 0"),
    ("val_fraction", 1.0, "(0, 1)"),
    ("crop_scale", (0.9, 0.5), "0 < lo <= hi <= 1"),
    ("warmup_fraction", 1.0, "[0, 1)"),
    ("device", "gpu", "cuda:N"),
    ("rule", {"main_styles": ["Q1"], "multi": "all"}, "multi"),
    ("lora_rank", 8, "strategy 'lora'"),
])
def test_config_rejects_bad_values_naming_the_field(field, value, words):
    with pytest.raises(ValueError) as exc:
        FineTuningConfig("dinov2", **{"strategy": "full", field: value})
    assert f"FineTuningConfig.{field}" in str(exc.value) and words in str(exc.value)


def test_config_json_round_trip_variant_and_differences():
    from ssl_attn.wikichurches import StyleRule

    cfg = FineTuningConfig("mae", strategy="linear_probe", labels="shuffled", crop_scale=[0.5, 1],
                           rule=StyleRule(("Q46261", "Q176483"), "priority"), size=224)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["rule"] == {"main_styles": ["Q46261", "Q176483"], "multi": "priority"}
    assert d["crop_scale"] == [0.5, 1.0]
    back = FineTuningConfig.from_dict(d)
    assert back == cfg and back.rule == cfg.rule and back.crop_scale == (0.5, 1.0)
    assert cfg.variant == "linear_probe_shuffled"
    assert FineTuningConfig("mae", strategy="full").variant == "full"
    # runtime fields may change between a run and its resume; the recipe may not
    assert cfg.differences(replace(cfg, device="cpu", num_workers=3, out_dir="x")) == {}
    assert cfg.differences(replace(cfg, epochs=3)) == {"epochs": (10, 3)}
    with pytest.raises(ValueError, match="unknown field"):
        FineTuningConfig.from_dict({**d, "lr": 1})


# --------------------------------------------------------------------------------- batches, loss


def test_epoch_batches_cover_every_image_once_seeded_by_seed_and_epoch():
    from ssl_attn.finetune.trainer import epoch_batches

    batches = epoch_batches(10, 4, seed=0, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = epoch_batches(10, 4, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(batches),
                              np.concatenate(epoch_batches(10, 4, seed=0, epoch=1)))
    assert not np.array_equal(np.concatenate(batches),
                              np.concatenate(epoch_batches(10, 4, seed=1, epoch=0)))


def test_shard_is_contiguous_and_an_empty_share_is_a_ghost():
    from ssl_attn.finetune.trainer import shard

    batch = np.array([7, 3, 5])
    assert shard(batch, 0, 2)[0].tolist() == [7, 3] and not shard(batch, 0, 2)[1]
    assert shard(batch, 1, 2)[0].tolist() == [5] and not shard(batch, 1, 2)[1]
    part, ghost = shard(np.array([9]), 1, 2)
    assert part.tolist() == [9] and ghost
    part, ghost = shard(np.array([9]), 0, 2)
    assert part.tolist() == [9] and not ghost


def test_shard_losses_average_to_the_one_process_gradient():
    """The loss normaliser: two shards' gradients, averaged as DDP does, equal the gradient
    of the class-weighted mean over the whole batch; a ghost share adds nothing."""
    from ssl_attn.finetune.trainer import shard_loss

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=gen)
    y = torch.tensor([0, 2, 2, 1, 0])
    class_w = torch.tensor([0.5, 2.0, 1.0])
    w_global = float(class_w[y].sum())  # 0.5 + 1 + 1 + 2 + 0.5 = 5
    assert w_global == 5.0

    whole = logits.clone().requires_grad_(True)
    loss, _, _ = shard_loss(whole, y, class_w, w_global, world=1)
    loss.backward()
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert math.isclose(float(loss.detach()), float((class_w[y] * ce).sum() / 5), rel_tol=1e-6)

    grads = []
    for part in (slice(0, 3), slice(3, 5)):
        x = logits[part].clone().requires_grad_(True)
        shard_loss(x, y[part], class_w, w_global, world=2)[0].backward()
        grads.append(x.grad)
    averaged = torch.cat(grads) / 2  # DDP: the mean over the two processes
    torch.testing.assert_close(averaged, whole.grad, rtol=1e-6, atol=1e-8)

    x = logits[:1].clone().requires_grad_(True)
    ghost_loss, w, _ = shard_loss(x, y[:1], class_w, w_global, world=2, ghost=True)
    ghost_loss.backward()
    assert float(ghost_loss.detach()) == 0.0 and float(w.sum()) == 0.0 and not x.grad.any()
    # uniform logits: every CE is log C, so the weighted mean is log 3 whatever the weights
    uniform = shard_loss(torch.zeros(5, 3), y, class_w, w_global, world=1)[0]
    assert math.isclose(float(uniform), math.log(3), rel_tol=1e-6)


# --------------------------------------------------------------------------------- run folder


def test_optimizer_state_round_trips_exactly_through_safetensors_and_json(tmp_path):
    from safetensors.torch import save_file
    from transformers import get_cosine_schedule_with_warmup

    from ssl_attn.finetune.rundir import load_resume_state, resume_state

    def make():
        torch.manual_seed(0)
        lin = torch.nn.Linear(4, 3)
        opt = torch.optim.AdamW([{"params": [lin.weight], "lr": 1e-2},
                                 {"params": [lin.bias], "lr": 1e-3, "weight_decay": 0.0}])
        return lin, opt, get_cosine_schedule_with_warmup(opt, 2, 10)

    def step(lin, opt, sched, seed):
        g = torch.Generator().manual_seed(seed)
        lin(torch.randn(6, 4, generator=g)).square().sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()

    lin, opt, sched = make()
    for s in range(3):
        step(lin, opt, sched, s)
    tensors, state = resume_state(epoch=4, optimizer=opt.state_dict(),
                                  scheduler=sched.state_dict())
    assert set(tensors) == {f"state.{p}.{n}" for p in (0, 1)
                            for n in ("step", "exp_avg", "exp_avg_sq")}
    save_file(tensors, str(tmp_path / "optimizer.safetensors"))
    (tmp_path / "state.json").write_text(json.dumps(state))  # plain JSON: no pickle anywhere
    state = load_resume_state(tmp_path)
    assert state["epoch"] == 4 and state["scaler"] is None

    lin2, opt2, sched2 = make()
    lin2.load_state_dict(lin.state_dict())
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    for s in (3, 4):
        step(lin, opt, sched, s)
        step(lin2, opt2, sched2, s)
    assert torch.equal(lin.weight, lin2.weight) and torch.equal(lin.bias, lin2.bias)
    assert sched.get_last_lr() == sched2.get_last_lr()


def _folder(path: Path, tag: str) -> None:
    path.mkdir(parents=True)
    (path / "tag").write_text(tag)


def _tag(path: Path) -> str | None:
    return (path / "tag").read_text() if (path / "tag").exists() else None


@pytest.mark.parametrize("crash", ["write_last", "write_best", "write_manifest", "none"])
def test_an_interrupted_commit_is_rolled_back_to_the_manifest(tmp_path, crash):
    """A commit killed at any step leaves (after ``recover``) the folders its manifest names."""
    from ssl_attn.finetune import rundir

    out = tmp_path / "run"
    _folder(out / "last", "epoch1")
    _folder(out / "best", "epoch1")

    class KilledError(Exception):
        pass

    def step(name, action):
        def run(*args):
            if crash == name:
                raise KilledError(name)
            action(*args)
        return run

    manifest = {"epochs": 1}
    with contextlib.suppress(KilledError):
        rundir.commit(out, 1,
                      write_last=step("write_last", lambda s: _folder(s / "last", "epoch2")),
                      write_best=step("write_best", lambda s: _folder(s / "best", "epoch2")),
                      write_manifest=step("write_manifest",
                                          lambda: manifest.update(epochs=2)))
    rundir.recover(out, manifest["epochs"])
    want = "epoch2" if crash == "none" else "epoch1"
    assert (_tag(out / "last"), _tag(out / "best")) == (want, want)
    assert sorted(p.name for p in out.iterdir()) == ["best", "last"]


def test_a_commit_killed_after_its_manifest_keeps_the_new_folders(tmp_path):
    """Killed while deleting ``.staging``: the manifest already names the new epoch."""
    from ssl_attn.finetune import rundir

    out = tmp_path / "run"
    _folder(out / "last", "epoch2")
    _folder(out / rundir.STAGING / "previous-last", "epoch1")
    (out / rundir.STAGING / "commit.json").write_text(json.dumps({"epoch": 1}))
    rundir.recover(out, 2)
    assert _tag(out / "last") == "epoch2" and not (out / rundir.STAGING).exists()


# --------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def probe_run(data, weights, tmp_path_factory):
    """A 2-epoch linear probe trained in-process (module-scoped: several tests read it)."""
    from ssl_attn.finetune.trainer import FineTuner

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("probe") / "run"
        cfg = _config(data, weights, out, strategy="linear_probe", lr_head=1e-2)
        return cfg, FineTuner(cfg).train(_model(weights), data, progress=False)
    finally:
        torch.set_num_threads(before)


def test_a_run_records_history_best_epoch_confusion_and_provenance(probe_run, weights):
    cfg, r = probe_run
    assert [h["epoch"] for h in r.history] == [1, 2] and not r.reused
    keys = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_bacc", "lr_head",
            "lr_backbone", "seconds", "images_per_s"}
    assert all(set(h) == keys for h in r.history)
    assert all(h["lr_backbone"] is None for h in r.history)  # the probe trains no backbone
    accs = [h["val_acc"] for h in r.history]
    assert r.best_epoch == 1 + accs.index(max(accs)) and r.best_val_acc == max(accs)
    m = r.manifest
    assert m["split"]["n_train"] == 33 and m["split"]["n_val"] == 9
    assert r.confusion.shape == (4, 4) and r.confusion.sum() == 9
    assert np.trace(r.confusion) == round(r.best_val_acc * 9)
    assert len(r.classes) == 4 and len(r.class_names) == 4
    assert m["format"] == "ssl-attn-finetune" and m["format_version"] == 1 and m["complete"]
    assert m["variant"] == "linear_probe" and m["labels_kind"] == "style" and m["seed"] == 0
    assert m["config"] == cfg.to_dict()
    assert m["model"]["key"] == "dinov2" and str(weights) in m["model"]["weights"]
    assert m["trainer"]["num_processes"] == 1 and m["trainer"]["mixed_precision"] == "no"
    assert m["trainer"]["steps_per_epoch"] == 5  # ceil(33 / 8)
    assert {"accelerate", "peft"} <= set(m["library_versions"])
    assert r.provenance["git_commit"] and r.provenance["package_version"]
    assert list(r.history_frame().index) == [1, 2]
    assert (r.checkpoint_dir / "best").is_dir() and (r.checkpoint_dir / "last").is_dir()
    assert sorted(p.name for p in r.checkpoint_dir.iterdir()) == ["best", "last",
                                                                  "manifest.json"]
    # warm-up 10 % of 10 steps = 1 step, then cosine to 0: the lr of the last step is small
    assert 0 < r.history[-1]["lr_head"] < cfg.lr_head / 10


def test_a_complete_run_is_returned_without_training(probe_run, capsys):
    from ssl_attn.finetune.trainer import FineTuner

    cfg, r = probe_run
    again = FineTuner(cfg).train(object(), r.checkpoint_dir, progress=True)  # no model needed
    assert again.reused and again.history == r.history
    assert "without training" in capsys.readouterr().out
    assert FineTuner(replace(cfg, device="auto", num_workers=1)).stored_result().reused


def test_a_folder_holding_another_config_is_refused(probe_run, data, weights, capsys):
    from ssl_attn.finetune.rundir import RunFolderError
    from ssl_attn.finetune.trainer import FineTuner

    cfg, r = probe_run
    with pytest.raises(RunFolderError, match="lr_head") as exc:
        FineTuner(replace(cfg, lr_head=0.5)).train(_model(weights), data, progress=False)
    assert str(r.checkpoint_dir) in str(exc.value) and "another output folder" in str(exc.value)
    code, _, err = _run_cli(_cli_args(data, weights, r.checkpoint_dir, "--strategy",
                                      "linear_probe", "--epochs", "2"), capsys)
    lines = _error_lines(err)
    assert code == cli.EXIT_ERROR and len(lines) == 1, err
    assert "other settings" in lines[0] and str(r.checkpoint_dir) in lines[0]


def test_train_seeds_writes_one_run_per_seed(data, weights, tmp_path, one_thread):
    from ssl_attn.finetune.trainer import FineTuner

    cfg = _config(data, weights, tmp_path / "seeds", strategy="linear_probe", epochs=1)
    results = FineTuner(cfg).train_seeds(lambda: _model(weights), data, [3, 5], progress=False)
    assert [r.manifest["seed"] for r in results] == [3, 5]
    assert [r.checkpoint_dir.name for r in results] == ["seed-3", "seed-5"]
    assert results[0].history[0]["train_loss"] != results[1].history[0]["train_loss"]
    again = FineTuner(cfg).train_seeds(lambda: pytest.fail("trained again"), data, [3, 5],
                                       progress=False)
    assert all(r.reused for r in again)


# --------------------------------------------------------------------------------- bad input


def test_a_dataset_without_style_labels_is_a_one_line_error(data, weights, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(data, bare, ignore=shutil.ignore_patterns("splits"))
    (bare / "churches.json").unlink()
    code, _, err = _run_cli(_cli_args(bare, weights, tmp_path / "out"), capsys)
    lines = _error_lines(err)
    assert code == cli.EXIT_ERROR and len(lines) == 1 and "Traceback" not in err, err
    assert "churches.json" in lines[0] and "style" in lines[0]


def test_a_class_without_training_images_is_a_one_line_error(data, weights, tmp_path, capsys):
    import shutil

    from ssl_attn.wikichurches import WikiChurches

    skew = tmp_path / "skew"
    shutil.copytree(data, skew, ignore=shutil.ignore_patterns("splits"))
    annotated = {i.rsplit("_wd", 1)[0] for i in WikiChurches(skew).image_ids}
    churches = json.loads((skew / "churches.json").read_text())
    for qid, church in churches.items():  # Baroque survives only among the annotated images
        if qid not in annotated and "Q840829" in church["styles"]:
            church["styles"] = ["Q176483"]
    (skew / "churches.json").write_text(json.dumps(churches))
    code, _, err = _run_cli(_cli_args(skew, weights, tmp_path / "out"), capsys)
    lines = _error_lines(err)
    assert code == cli.EXIT_ERROR and len(lines) == 1 and "Traceback" not in err, err
    assert "Q840829" in lines[0] and "training image" in lines[0]


def test_cli_argument_errors_exit_2(data, weights, tmp_path, capsys):
    code, _, err = _run_cli(_cli_args(data, weights, tmp_path / "o", "--strategy", "probe"),
                            capsys)
    assert code == cli.EXIT_USAGE and "linear_probe, lora, full" in err
    code, _, err = _run_cli(_cli_args(data, weights, tmp_path / "o", "--val-fraction", "1.5"),
                            capsys)
    assert code == cli.EXIT_USAGE and "val_fraction" in err and len(_error_lines(err)) == 1
    code, _, err = _run_cli(_cli_args(data, weights, tmp_path / "o", "--size", "30"), capsys)
    assert code == cli.EXIT_USAGE and "--size" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, _, err = _run_cli(_cli_args(data, weights, foreign), capsys)
    assert code == cli.EXIT_ERROR and "not a fine-tuning run folder" in err
    assert (foreign / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------------- subprocesses


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep), OMP_NUM_THREADS="1", TQDM_DISABLE="1", HF_HUB_OFFLINE="1")
    env.pop("SSL_ATTN_DEBUG", None)
    return env


def _cli_cmd(data: Path, weights: Path, out: Path, strategy: str = "full") -> list[str]:
    return [sys.executable, "-m", "ssl_attn.cli",
            *_cli_args(data, weights, out, "--strategy", strategy)]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(request, data, weights, tmp_path_factory) -> tuple[str, Path]:
    """An uninterrupted one-process CLI run of the strategy ``request.param``: 3 epochs of 5
    steps. Returns ``(strategy, run folder)``."""
    strategy = request.param
    out = tmp_path_factory.mktemp(f"reference-{strategy}") / "run"
    _check(subprocess.run(_cli_cmd(data, weights, out, strategy), env=_env(),
                          capture_output=True, text=True, timeout=600))
    return strategy, out


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(run.rglob("*.safetensors")):
        for k, v in load_file(f).items():
            out[f"{f.relative_to(run)}:{k}"] = v
    return out


def _history(run: Path) -> list[dict]:
    m = json.loads((run / "manifest.json").read_text())
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")}
            for h in m["history"]]


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["full", "lora"], indirect=True)
def test_resume_after_a_kill_gives_identical_weights(reference, data, weights, tmp_path):
    """Killed (SIGKILL) after its first epoch and rerun, a run ends bit-identical to an
    uninterrupted one: every tensor of best/ and last/ (weights, LoRA adapters, AdamW state),
    the scheduler state and the history. LoRA runs with the family's dropout (0.1), whose
    masks come from the per-epoch reseeded generator."""
    strategy, reference = reference
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli_cmd(data, weights, out, strategy), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 300
    epochs_done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            epochs_done = len(json.loads(manifest.read_text())["history"])
        except (OSError, ValueError, KeyError):
            epochs_done = 0
        if epochs_done >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stopped = json.loads(manifest.read_text())
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 1 <= len(stopped["history"]) < 3 and not stopped["complete"]

    resumed = subprocess.run(_cli_cmd(data, weights, out, strategy), env=_env(),
                             capture_output=True, text=True, timeout=600)
    _check(resumed)
    assert f"resuming after epoch {len(stopped['history'])}/3" in resumed.stdout

    want, got = _tensors(reference), _tensors(out)
    assert set(got) == set(want) and any(k.startswith("last/optimizer") for k in got)
    assert any(k.startswith("best/") for k in got)
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key
    assert _history(out) == _history(reference)
    ref_m, out_m = (json.loads((r / "manifest.json").read_text()) for r in (reference, out))
    assert (out_m["best_epoch"], out_m["confusion"]) == (ref_m["best_epoch"], ref_m["confusion"])
    assert json.loads((out / "last" / "state.json").read_text()) == json.loads(
        (reference / "last" / "state.json").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("reference", ["full"], indirect=True)
def test_two_gloo_processes_equal_one_process(reference, data, weights, tmp_path):
    """torchrun with 2 CPU processes: accelerate picks MULTI_CPU + gloo from torchrun's
    environment; the 33 training images give a last batch of 1 (a ghost share on rank 1).
    Full fine-tuning, the strategy with the most tensors (LoRA's dropout masks depend on the
    sharding)."""
    _, reference = reference
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m",
           "ssl_attn.cli", *_cli_args(data, weights, out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    _check(proc)
    assert proc.stdout.count("best epoch") == 1  # one summary, from rank 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["trainer"]["num_processes"] == 2 and m["trainer"]["distributed_type"] == "MULTI_CPU"
    want, got = _tensors(reference), _tensors(out)
    assert set(got) == set(want)
    delta = {k: float((got[k].double() - want[k].double()).abs().max()) for k in want}
    # The key bias shifts every attention logit of a query by the same amount, which softmax
    # ignores: its gradient is 0 in exact arithmetic and rounding noise in practice, which
    # AdamW normalises into steps of about the learning rate. It is not compared exactly; it
    # stays within lr_backbone * steps of its start (0) in both runs.
    noise = [k for k in want if k.endswith("attention.k_proj.bias")]
    assert noise and all(float(t.abs().max()) <= 1e-4 * 15 for k in noise
                         for t in (got[k], want[k]))
    worst = max(d for k, d in delta.items() if k not in noise)
    print(f"\nmax |delta| 2 vs 1 process: {worst:.3g} (key biases: "
          f"{max(delta[k] for k in noise):.3g})")
    assert worst <= 1e-5, worst
    for key in want:
        if key.endswith(".step"):
            assert torch.equal(got[key], want[key])
    h1, h2 = _history(reference), _history(out)
    for a, b in zip(h1, h2, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


@pytest.mark.slow
def test_the_recipe_fits_its_training_images(data, weights, tmp_path, one_thread):
    """The whole loop learns: without augmentation the tiny DINOv2 (random weights) fits its 33
    training images (accuracy 1.0 by about epoch 25 of 40, ~15 s on one thread).

    Not a claim about the styles: from random weights a tiny ViT stays near chance on held-out
    synthetic images (measured, loaded machine: 0.25-0.39 val accuracy with 150-600 training
    images at 56-112 px in 30-150 s), so no validation bound is asserted here.
    """
    from ssl_attn.finetune.trainer import FineTuner

    cfg = _config(data, weights, tmp_path / "fit", epochs=40, lr_head=3e-3, lr_backbone=3e-3,
                  crop_scale=(1.0, 1.0), hflip=0.0, jitter=0.0, warmup_fraction=0.0)
    r = FineTuner(cfg).train(_model(weights), data, progress=False)
    first, last = r.history[0], r.history[-1]
    assert last["train_acc"] >= 0.9, [h["train_acc"] for h in r.history]
    assert last["train_loss"] < 0.3 * first["train_loss"]
