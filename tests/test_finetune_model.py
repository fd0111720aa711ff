"""FineTunableModel (strategies, head inputs), safetensors checkpoints, load_finetuned, and
fine-tuned variants in the store (the linear-probe negative control).

Tiny random models of the conftest fixture ``tiny_weights`` (ResNet-50 is full size: its
models are built a few times only) and a small synthetic dataset; runs are written by hand with
``save_weights`` + a manifest (the trainer is tested elsewhere).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_attn import store as st
from ssl_attn.finetune import checkpoint as ck
from ssl_attn.finetune.model import FineTunableModel, state_digest
from ssl_attn.models import FAMILY_TABLE, list_models
from ssl_attn.models.families import HEAD_INPUTS, Family

# one model per head input / family flavour: CLS + registers, CLS + post-norm, pooled, GAP
SIZES = {"dinov2": 56, "clip": 64, "siglip2": 64, "resnet50": 32}
CLASSES = ["Q46261", "Q176483", "Q236122"]
# the full-size ResNet-50 cases are marked slow (tens of seconds on a shared CPU)
KEYS = [pytest.param(k, marks=pytest.mark.slow) if k == "resnet50" else k for k in SIZES]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ssl_attn import synthetic

    root = tmp_path_factory.mktemp("ft_data")
    synthetic.generate(root, n=30, n_annotated=8, image_size_range=(64, 96), seed=3,
                       progress=False)  # fmt: skip
    return root


def pixels(key: str, n: int = 4, seed: int = 0) -> torch.Tensor:
    side = SIZES[key]
    return torch.randn(n, 3, side, side, generator=torch.Generator().manual_seed(seed))


def build(key: str, weights: Path, strategy: str, seed: int = 0, **kw) -> FineTunableModel:
    model = FineTunableModel(key, weights_dir=weights, size=SIZES[key])
    model.setup(strategy, len(CLASSES), seed=seed, **kw)
    return model


def train_steps(model: FineTunableModel, steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on random images and labels, in train mode."""
    opt = torch.optim.AdamW(model.param_groups(lr, lr, 0.05))
    model.train()
    for step in range(steps):
        x = pixels(model.model_name, seed=100 + step)
        y = torch.tensor([0, 1, 2, 0])
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def trained(tiny_weights):
    """``trained(key, strategy)`` -> ``(model, backbone before, head before)``: one model per
    (key, strategy), built once per module and trained with :func:`train_steps` (a full-size
    ResNet-50 is costly on a CPU: it is built three times in all)."""
    cache: dict[tuple[str, str], tuple] = {}

    def get(key: str, strategy: str):
        if (key, strategy) not in cache:
            model = build(key, tiny_weights, strategy)
            before, head = snapshot(model.backbone), snapshot(model.head)
            train_steps(model, steps=2 if key == "resnet50" else 3)
            cache[key, strategy] = (model, before, head)
        return cache[key, strategy]

    return get


def write_run(run: Path, model: FineTunableModel, variant: str | None = None,
              classes: list[str] = CLASSES, best_epoch: int = 1) -> Path:  # fmt: skip
    """A minimal run folder: best/ weights and a complete manifest."""
    ck.save_weights(run, model, "best")
    manifest = {
        **ck.manifest_base(model),
        "config": {"model_name": model.model_name, "strategy": model.strategy},
        "labels_kind": "style",
        "classes": list(classes),
        "class_names": [f"style {c}" for c in classes],
        "split": {"path": "splits/x.json", "digest": "ab" * 32, "n_train": 16, "n_val": 6},
        "seed": 0,
        "history": [{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}],
        "best_epoch": best_epoch,
        "best_val_acc": 0.5,
        "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        "variant": variant or model.strategy,
        "complete": True,
    }
    ck.write_manifest(run, manifest)
    return run


# ----------------------------------------------------------------------------- family facts


def test_family_lora_and_head_facts():
    heads = {name: fam.head_input for name, fam in FAMILY_TABLE.items()}
    assert heads["dinov2"] == heads["clip"] == heads["mae"] == heads["dinov3"] == "cls"
    assert heads["siglip"] == heads["siglip2"] == "pooled"
    assert heads["resnet"] == "gap"
    for fam in FAMILY_TABLE.values():
        assert fam.head_input in HEAD_INPUTS
        assert (fam.lora_rank, fam.lora_alpha, fam.lora_dropout) == (8, 16.0, 0.1)
        assert fam.lora_targets
    with pytest.raises(ValueError, match="head_input 'mean' is not one of"):
        Family(name="x", backend="transformers", head_input="mean")
    with pytest.raises(ValueError, match="needs a CLS token"):
        Family(name="x", backend="transformers", has_cls=False)
    with pytest.raises(ValueError, match="LoRA needs rank"):
        Family(name="x", backend="transformers", lora_rank=0)


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("key", KEYS)
def test_forward_gives_logits_on_the_family_head_input(key, trained):
    model = trained(key, "linear_probe")[0]
    x = pixels(key)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        base = model.loaded.model
        if key == "resnet50":  # GAP of layer4 = the input fc had
            h = base.maxpool(base.relu(base.bn1(base.conv1(x))))
            h = base.layer4(base.layer3(base.layer2(base.layer1(h))))
            want = h.mean(dim=(2, 3))
        else:
            out = model.loaded.forward(x)
            if key == "dinov2":  # last_hidden_state is already final-normed
                want = out.last_hidden_state[:, 0]
            elif key == "clip":
                want = base.post_layernorm(out.last_hidden_state[:, 0])
            else:
                want = out.pooler_output
    assert logits.shape == (4, len(CLASSES)) and logits.dtype == torch.float32
    assert feats.shape == (4, model.feature_dim)
    torch.testing.assert_close(feats, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, feats @ model.head.weight.T + model.head.bias)
    if key == "clip":  # CLIP's own pooled output is post_layernorm(CLS)
        torch.testing.assert_close(feats, out.pooler_output)


@pytest.mark.parametrize("key", [k for k in list_models() if k not in SIZES])
def test_every_other_registered_model_trains_with_lora(key, tiny_weights):
    """The families not covered above (MAE's raster-order noise, DINOv3's RoPE, ...)."""
    model = FineTunableModel(key, weights_dir=tiny_weights, size=64)
    model.setup("lora", 2)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    grads = [p.grad for n, p in model.backbone.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None for g in grads)
    assert model(x).shape == (2, 2)


def test_head_init_is_seeded(tiny_weights):
    model = build("clip", tiny_weights, "linear_probe", seed=5)
    again = build("clip", tiny_weights, "linear_probe", seed=5)
    other = build("clip", tiny_weights, "linear_probe", seed=6)
    assert torch.equal(again.head.weight, model.head.weight)
    assert not torch.equal(other.head.weight, model.head.weight)
    assert torch.all(model.head.bias == 0)
    assert float(model.head.weight.detach().abs().max()) <= 0.04  # truncated normal, std 0.02


# ----------------------------------------------------------------------------- strategies


@pytest.mark.parametrize("key", KEYS)
def test_linear_probe_leaves_every_backbone_tensor_bit_identical(key, trained):
    model, before, head_before = trained(key, "linear_probe")
    assert not model.backbone.training  # BN statistics and dropout stay in eval mode
    after = model.loaded.model.state_dict()
    assert set(after) == set(before)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert not torch.equal(head_before["weight"], model.head.weight)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert set(model.trainable_state()) == {"head.weight", "head.bias"}


@pytest.mark.parametrize("key", KEYS)
def test_lora_changes_only_adapters_and_head(key, trained):
    model, before, head_before = trained(key, "lora")
    fam = model.family
    assert model.lora == {"rank": 8, "alpha": 16.0, "dropout": 0.1,
                          "targets": list(fam.lora_targets)}  # fmt: skip
    after = model.backbone.state_dict()
    adapters = {k for k in after if ".lora_" in k}
    assert adapters and set(after) == set(before)
    # every adapted module of the family's targets got one A and one B
    adapted = {k.split(".lora_")[0] for k in adapters}
    assert all(name.endswith(tuple("." + t for t in fam.lora_targets)) for name in adapted)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed - adapters == set()  # no base tensor moved (BN statistics included)
    assert {k for k in changed if ".lora_B." in k}  # B starts at zero and learned
    assert not torch.equal(head_before["weight"], model.head.weight)
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {k for k in adapters if "lora_" in k}
    state = model.trainable_state()
    assert set(state) == {"head.weight", "head.bias"} | {f"backbone.{k}" for k in trainable}


@pytest.mark.parametrize("key", KEYS)
def test_full_changes_the_backbone(key, trained):
    model, before, _ = trained(key, "full")
    after = model.loaded.model.state_dict()
    weights = [k for k, v in before.items() if v.ndim >= 2 and v.is_floating_point()
               and not k.endswith("mask_token")]  # fmt: skip
    changed = [k for k in weights if not torch.equal(before[k], after[k])]
    assert len(changed) == len(weights), sorted(set(weights) - set(changed))[:5]
    assert set(model.trainable_state()) == (
        {"head.weight", "head.bias"} | {f"backbone.{k}" for k in after})


def test_param_groups_split_lr_and_weight_decay(tiny_weights):
    model = build("dinov2", tiny_weights, "full")
    groups = model.param_groups(1e-3, 1e-4, 0.05)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["head", "head_no_decay", "backbone", "backbone_no_decay"]
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [
        (1e-3, 0.05), (1e-3, 0.0), (1e-4, 0.05), (1e-4, 0.0)]
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in by_name["backbone_no_decay"]["params"]}
    decay = {names[id(p)] for p in by_name["backbone"]["params"]}
    assert "backbone.embeddings.cls_token" in no_decay
    assert all(n.endswith("bias") or "norm" in n or "token" in n or "position" in n
               or "lambda" in n for n in no_decay)  # fmt: skip
    assert decay and all(model.get_parameter(n).ndim >= 2 for n in decay)  # matrices, convs
    every = [p for g in groups for p in g["params"]]
    assert len(every) == len({id(p) for p in every})  # each parameter once
    assert {id(p) for p in every} == {id(p) for p in model.parameters() if p.requires_grad}
    probe = build("dinov2", tiny_weights, "linear_probe").param_groups(1e-3, 1e-4, 0.05)
    assert [g["name"] for g in probe] == ["head", "head_no_decay"]


def test_setup_errors(tiny_weights):
    model = FineTunableModel("dinov2", weights_dir=tiny_weights, size=56)
    with pytest.raises(RuntimeError, match="setup"):
        model(pixels("dinov2"))
    with pytest.raises(ValueError, match="strategy 'adapter' is not one of"):
        model.setup("adapter", 3)
    with pytest.raises(ValueError, match="num_classes"):
        model.setup("full", 1)
    with pytest.raises(ValueError, match="are for strategy 'lora'"):
        model.setup("full", 3, lora_rank=4)
    with pytest.raises(ValueError, match="need rank >= 1"):
        model.setup("lora", 3, lora_rank=0)
    model.setup("lora", 3, lora_rank=2, lora_alpha=4, lora_dropout=0.0)
    assert model.lora["rank"] == 2
    a = next(v for k, v in model.backbone.state_dict().items() if "lora_A" in k)
    assert a.shape[0] == 2
    with pytest.raises(RuntimeError, match="already set up"):
        model.setup("full", 3)


def test_trainable_state_round_trip(tiny_weights):
    model = build("clip", tiny_weights, "lora")
    train_steps(model)
    fresh = build("clip", tiny_weights, "lora", seed=9)
    x = pixels("clip")
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        fresh.load_trainable_state({k: v.clone() for k, v in model.trainable_state().items()})
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="1 missing"):
        state = dict(model.trainable_state())
        state.pop("head.bias")
        fresh.load_trainable_state(state)


# ----------------------------------------------------------------------------- checkpoints


def test_full_checkpoint_round_trip(tmp_path, tiny_weights, trained):
    model = trained("dinov2", "full")[0]
    run = write_run(tmp_path / "run", model)
    assert sorted(p.name for p in (run / "best").iterdir()) == [ck.BACKBONE_FILE, ck.HEAD_FILE]
    loaded, manifest = ck.load_finetuned(run, model_name="dinov2", weights_dir=tiny_weights)
    assert manifest["strategy"] == "full" and loaded.attn_implementation == "eager"
    assert loaded.weights == f"finetuned:{run}:full:epoch1"
    want, have = model.loaded.model.state_dict(), loaded.model.state_dict()
    assert set(want) == set(have)
    assert all(torch.equal(want[k], have[k]) for k in want)
    # the base is found again without weights_dir: the run recorded where it came from
    again, _ = ck.load_finetuned(run)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in have.items())
    # resume-style load into a fresh model
    fresh = build("dinov2", tiny_weights, "full", seed=3)
    ck.load_weights(run, fresh)
    state = fresh.trainable_state()
    assert all(torch.equal(v, state[k]) for k, v in model.trainable_state().items())


@pytest.mark.parametrize("key", ["dinov2", "clip", "siglip2"])
def test_merged_lora_equals_the_unmerged_model(tmp_path, tiny_weights, trained, key):
    model = trained(key, "lora")[0]
    run = write_run(tmp_path / "run", model)
    adapter = run / "best" / ck.ADAPTER_DIR
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in adapter.iterdir()}
    saved, _ = ck.read_tensors(adapter / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # adapter tensors only
    loaded, _ = ck.load_finetuned(run, model_name=key)
    assert not any("lora" in n for n, _ in loaded.model.named_modules())  # a plain model
    assert type(loaded.model).__name__ == model.spec.model_class
    x = pixels(key)
    with torch.no_grad():
        a = model.loaded.forward(x).last_hidden_state  # adapters unmerged (sdpa)
        b = loaded.forward(x).last_hidden_state  # merged (eager)
        base = FineTunableModel(key, weights_dir=tiny_weights, size=SIZES[key])
        c = base.loaded.forward(x).last_hidden_state
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
    assert (c - a).abs().max() > 1e-3  # the adapters did change the model
    fresh = build(key, tiny_weights, "lora", seed=4)
    ck.load_weights(run, fresh)
    state = fresh.trainable_state()
    assert all(torch.equal(v, state[k]) for k, v in model.trainable_state().items())


@pytest.mark.slow
def test_resnet_checkpoints_put_the_head_on_fc(tmp_path, trained):
    x = pixels("resnet50")
    for strategy in ("full", "lora"):
        model = trained("resnet50", strategy)[0]
        run = write_run(tmp_path / strategy, model)
        loaded, _ = ck.load_finetuned(run, model_name="resnet50")
        assert loaded.weights.endswith(":gradcam-target=top1-of-3-style-logits")
        assert loaded.model.fc.out_features == len(CLASSES)
        with torch.no_grad():
            want, have = model(x), loaded.forward(x)
        # logits of a random ResNet are O(1e3): compare relative to their scale
        tol = 1e-6 if strategy == "full" else 1e-5
        torch.testing.assert_close(have, want, rtol=tol, atol=tol * float(want.abs().max()))


def test_interrupted_swap_is_recovered(tmp_path, tiny_weights):
    model = build("dinov2", tiny_weights, "linear_probe")
    run = write_run(tmp_path / "run", model)
    (run / "best").rename(run / ".best.old")  # a crash between the two renames
    assert ck.weights_folder(run) == run / "best"
    assert not (run / ".best.old").exists()
    ck.save_weights(run, model, "last", extra_tensors={"optimizer": {"step": torch.ones(2)}},
                    extra_json={"state": {"epoch": 1, "loss": float("nan")}})  # fmt: skip
    assert json.loads((run / "last" / "state.json").read_text()) == {"epoch": 1, "loss": None}
    assert torch.equal(ck.read_tensors(run / "last" / "optimizer.safetensors")[0]["step"],
                       torch.ones(2))  # fmt: skip
    assert not any(p.name.startswith(".") for p in run.iterdir())


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, trained) -> Path:
    model = trained("dinov2", "full")[0]
    return write_run(tmp_path_factory.mktemp("full_run") / "run", model)


def copy_run(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def test_truncated_and_garbage_safetensors_name_the_file(tmp_path, full_run):
    run = copy_run(full_run, tmp_path / "trunc")
    head = run / "best" / ck.HEAD_FILE
    head.write_bytes(head.read_bytes()[:-7])
    with pytest.raises(ck.CheckpointError, match=f"{head}: not a readable safetensors"):
        ck.load_finetuned(run)
    run = copy_run(full_run, tmp_path / "garbage")
    backbone = run / "best" / ck.BACKBONE_FILE
    backbone.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ck.CheckpointError, match=f"{backbone}: not a readable safetensors"):
        ck.load_finetuned(run)
    backbone.unlink()
    with pytest.raises(ck.CheckpointError, match=f"{backbone}: missing"):
        ck.load_finetuned(run)


def test_truncated_lora_adapter_names_the_file(tmp_path, trained):
    model = trained("dinov2", "lora")[0]
    run = write_run(tmp_path / "run", model)
    path = run / "best" / ck.ADAPTER_DIR / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ck.CheckpointError, match=f"{path}: not a readable safetensors"):
        ck.load_finetuned(run)


def test_missing_and_unexpected_tensors(tmp_path, full_run):
    from safetensors.torch import save_file

    run = copy_run(full_run, tmp_path / "keys")
    path = run / "best" / ck.BACKBONE_FILE
    tensors, meta = ck.read_tensors(path)
    tensors.pop("layernorm.weight")
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ck.CheckpointError, match=rf"{path}: does not fit .*1 missing "
                       r"\(e.g. layernorm.weight\); 1 unexpected \(e.g. extra.weight\)"):
        ck.load_finetuned(run)


def test_manifest_of_another_base_model(tmp_path, full_run, tiny_weights):
    manifest = full_run / ck.MANIFEST
    with pytest.raises(ck.CheckpointError, match=f"{manifest}: model.key = 'dinov2'.*not 'clip'"):
        ck.load_finetuned(full_run, model_name="clip")
    # same key, other base weights (another seed): the digest tells them apart
    from ssl_attn.models.testing import save_random_model

    other = tmp_path / "other_weights"
    save_random_model("dinov2", other, size="tiny", seed=1)
    with pytest.raises(ck.CheckpointError, match=f"{manifest}: the base weights .* differ"):
        ck.load_finetuned(full_run, weights_dir=other)


def test_head_with_another_class_count(tmp_path, full_run):
    run = copy_run(full_run, tmp_path / "classes")
    data = json.loads((run / ck.MANIFEST).read_text())
    data["classes"] = [*CLASSES, "Q840829"]
    ck.write_manifest(run, data)
    head = run / "best" / ck.HEAD_FILE
    with pytest.raises(ck.CheckpointError, match=f"{head}: the head has 3 classes but .* has 4"):
        ck.load_finetuned(run)


def test_bad_manifests(tmp_path, full_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ck.CheckpointError, match=f"{empty / ck.MANIFEST}: missing"):
        ck.load_finetuned(empty)
    run = copy_run(full_run, tmp_path / "bad")
    manifest = run / ck.MANIFEST
    good = json.loads(manifest.read_text())
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(ck.CheckpointError, match=f"{manifest}: not valid JSON"):
        ck.read_manifest(run)
    for field, value, match in (
        ("format", "other", "field 'format'"),
        ("format_version", 2, "format_version 2 is newer"),
        ("strategy", "adapter", "field 'strategy'"),
        ("classes", ["one"], "field 'classes'"),
        ("model", {"checkpoint": "x"}, "field 'model.key'"),
        ("best_epoch", None, "field 'best_epoch' is None: the run has no completed epoch"),
    ):
        ck.write_manifest(run, {**good, field: value})
        with pytest.raises(ck.CheckpointError, match=f"{manifest}: {match}"):
            ck.load_finetuned(run)
    ck.write_manifest(run, good)
    assert ck.read_manifest(manifest) == ck.read_manifest(run) == good


def test_manifest_base_records_the_base(tiny_weights):
    model = build("dinov2", tiny_weights, "lora")
    base = ck.manifest_base(model)
    assert base["format"] == "ssl-attn-finetune" and base["format_version"] == 1
    m = base["model"]
    assert m["key"] == "dinov2" and m["family"] == "dinov2" and m["head_input"] == "cls"
    assert m["weights"] == f"random-init:{tiny_weights / 'dinov2'}"
    assert m["base_digest"] == state_digest(
        FineTunableModel("dinov2", weights_dir=tiny_weights).loaded.model)
    assert m["feature_dim"] == 32 and m["input_size"] == [56, 56]
    assert base["strategy"] == "lora" and base["lora"]["rank"] == 8
    assert {"torch", "peft", "safetensors"} <= set(base["library_versions"])
    assert base["git_commit"] and base["created"].endswith("+00:00")
    json.dumps(base)  # plain JSON


# ----------------------------------------------------------------------------- store variants


def store_arrays(path: Path, key: str, variant: str) -> dict[str, np.ndarray]:
    ds = st.open_store(path)[key].to_dataset()
    sel = ds.sel(variant=variant)
    assert bool(sel[st.COMPLETE].all())
    return {name: sel[name].values for name in ds.data_vars if name != st.COMPLETE}


@pytest.mark.parametrize("key", ["dinov2", "siglip2"])
def test_linear_probe_maps_equal_frozen_maps_bit_for_bit(tmp_path, tiny_weights, trained,
                                                         data, key):  # fmt: skip
    """THE negative control: a linear probe changes no backbone tensor, so its maps are the
    frozen maps, exactly; a LoRA run's maps differ (the run's weights are really applied)."""
    from ssl_attn.extract import extract

    probe = trained(key, "linear_probe")[0]
    probe_run = write_run(tmp_path / "probe", probe)
    lora = trained(key, "lora")[0]
    lora_run = write_run(tmp_path / "lora", lora)
    store = tmp_path / "s.zarr"
    extract(store, data, key, weights_dir=tiny_weights, batch_size=4, progress=False)
    report = extract(store, data, key, finetuned=probe_run, batch_size=4, progress=False)
    assert report.models[key].variant == "linear_probe" and report.models[key].n_computed == 8
    extract(store, data, key, finetuned=lora_run, weights_dir=tiny_weights, batch_size=4,
            progress=False)  # fmt: skip
    frozen = store_arrays(store, key, "frozen")
    probed = store_arrays(store, key, "linear_probe")
    tuned = store_arrays(store, key, "lora")
    assert set(frozen) == set(probed) == set(tuned) and frozen
    for name in frozen:
        assert np.array_equal(frozen[name], probed[name]), name
    assert any(not np.allclose(frozen[n], tuned[n]) for n in frozen)
    attrs = st.decode_attrs(st.open_store(store)[key].attrs)
    prov = {v: st.decode_attrs(a) for v, a in attrs["variant_provenance"].items()}
    assert set(prov) == {"frozen", "linear_probe", "lora"}
    p = prov["linear_probe"]
    assert p["run"] == str(probe_run.resolve())
    assert p["manifest"] == str((probe_run / ck.MANIFEST).resolve())
    assert (p["strategy"], p["labels_kind"], p["best_epoch"], p["best_val_acc"]) == (
        "linear_probe", "style", 1, 0.5)
    assert p["classes"] == CLASSES and p["split_digest"] == "ab" * 32
    assert p["weights"] == f"finetuned:{probe_run}:linear_probe:epoch1"
    assert p["input_size"] == prov["frozen"]["input_size"]
    assert p["dtype"] == prov["frozen"]["dtype"] == "float32"
    assert "run" not in prov["frozen"]
    # resuming the variant from the same run computes nothing; from another run is refused
    again = extract(store, data, key, finetuned=probe_run, progress=False)
    assert again.models[key].n_computed == 0
    with pytest.raises(st.StoreError, match="variant 'linear_probe' holds maps of"):
        extract(store, data, key, variant="linear_probe", weights_dir=tiny_weights,
                progress=False)  # fmt: skip


def test_extract_finetuned_argument_errors(tmp_path, full_run, data, tiny_weights):
    from ssl_attn.extract import extract

    store = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match=r"this run fine-tuned 'dinov2'.*--models dinov2"):
        extract(store, data, ["dinov2", "clip"], finetuned=full_run, progress=False)
    with pytest.raises(ValueError, match=r"this run is variant 'full'.*not 'lora'"):
        extract(store, data, "dinov2", variant="lora", finetuned=full_run, progress=False)
    with pytest.raises(ck.CheckpointError, match=r"manifest\.json: missing"):
        extract(store, data, "dinov2", finetuned=tmp_path, progress=False)
    assert not store.exists()  # nothing was written


def test_cli_extract_finetuned(tmp_path, full_run, data, tiny_weights, capsys):
    from ssl_attn.cli import main

    store = tmp_path / "cli.zarr"
    code = main(["extract", "--finetuned", str(full_run), "--data", str(data), "--store",
                 str(store), "--device", "cpu", "--batch-size", "4", "--weights-dir",
                 str(tiny_weights)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "dinov2 [full]: 8 computed" in capsys.readouterr().out
    ds = st.open_store(store)["dinov2"].to_dataset()
    assert [str(v) for v in ds["variant"].values] == ["full"]
    prov = st.decode_attrs(st.decode_attr(ds.attrs["variant_provenance"])["full"])
    assert prov["run"] == str(full_run.resolve())
    assert prov["manifest"] == str((full_run / ck.MANIFEST).resolve())
    assert prov["strategy"] == "full"
    code = main(["extract", "--finetuned", str(full_run), "--data", str(data), "--store",
                 str(store), "--variant", "lora"])  # fmt: skip
    assert code == 1
    assert "this run is variant 'full'" in capsys.readouterr().err
