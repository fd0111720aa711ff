"""Model registry, loading, preprocessing and error messages (ssl_attn.models)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from _model_fixtures import noise_image  # pytest puts tests/ on sys.path
from PIL import Image

from ssl_attn.models import (
    FAMILY_TABLE,
    GatedModelError,
    ModelLoadError,
    WeightsUnavailableError,
    get_spec,
    grid_shape,
    list_models,
    load_model,
    register_model,
    spec_from_hub_config,
)
from ssl_attn.models import registry as reg
from ssl_attn.models.loading import build_hf_config, resolve_device, resolve_dtype
from ssl_attn.models.testing import save_random_model, tiny_config

# The checkpoints' own config.json values, written out independently of the registry.
REAL_CONFIGS = {
    "dinov2": {  # facebook/dinov2-with-registers-base
        "model_type": "dinov2_with_registers", "hidden_size": 768, "num_hidden_layers": 12,
        "num_attention_heads": 12, "mlp_ratio": 4, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
        "image_size": 518, "patch_size": 14, "qkv_bias": True, "layerscale_value": 1.0,
        "use_swiglu_ffn": False, "num_register_tokens": 4, "drop_path_rate": 0.0,
        "interpolate_antialias": True, "interpolate_offset": 0.0,
    },
    "dinov3": {  # facebook/dinov3-vitb16-pretrain-lvd1689m
        "model_type": "dinov3_vit", "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "gelu",
        "layer_norm_eps": 1e-5, "rope_theta": 100.0, "image_size": 224, "patch_size": 16,
        "query_bias": True, "key_bias": False, "value_bias": True, "proj_bias": True,
        "mlp_bias": True, "layerscale_value": 1.0, "use_gated_mlp": False,
        "num_register_tokens": 4, "pos_embed_rescale": 2.0, "pos_embed_shift": None,
        "pos_embed_jitter": None,
    },
    "mae": {  # facebook/vit-mae-base
        "model_type": "vit_mae", "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "qkv_bias": True,
        "decoder_hidden_size": 512, "decoder_intermediate_size": 2048,
        "decoder_num_hidden_layers": 8, "decoder_num_attention_heads": 16, "mask_ratio": 0.75,
        "norm_pix_loss": False,
    },
    "clip": {  # openai/clip-vit-base-patch16
        "model_type": "clip", "projection_dim": 512, "logit_scale_init_value": 2.6592,
        "vision_config": {
            "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 512,
        },
        "text_config": {
            "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
            "num_attention_heads": 8, "vocab_size": 49408, "max_position_embeddings": 77,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "projection_dim": 512,
        },
    },
    "siglip2": {  # google/siglip2-base-patch16-224 (model_type "siglip")
        "model_type": "siglip",
        "vision_config": {
            "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
        },
        "text_config": {
            "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "vocab_size": 256000, "max_position_embeddings": 64,
        },
    },
    "resnet50": {"arch": "resnet50", "num_classes": 1000, "weights": "IMAGENET1K_V2"},
}

LAYOUT = {  # key: (patch, registers, has_cls, mean, std, resample)
    "dinov2": (14, 4, True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic"),
    "dinov3": (16, 4, True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear"),
    "mae": (16, 0, True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic"),
    "clip": (16, 0, True, (0.48145466, 0.4578275, 0.40821073),
             (0.26862954, 0.26130258, 0.27577711), "bicubic"),
    "siglip2": (16, 0, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"),
    "resnet50": (None, 0, False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear"),
    "demo_vit": (16, 0, True, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear"),
}


VIT_KEYS = [k for k in list_models() if get_spec(k).is_vit]
#: The six models of the study (hub checkpoints); the others (the demo ViT) have no checkpoint.
REAL_VIT_KEYS = [k for k in VIT_KEYS if k in REAL_CONFIGS]


def _subset_equal(expected: dict, actual: dict, where: str) -> None:
    for k, v in expected.items():
        assert k in actual, f"{where}: {k} missing"
        if isinstance(v, dict):
            _subset_equal(v, actual[k], f"{where}.{k}")
        else:
            assert actual[k] == v, f"{where}.{k}: {actual[k]!r} != {v!r}"


# --- registry -----------------------------------------------------------------------------------


def test_six_models_registered():
    assert list_models()[:6] == ["dinov2", "dinov3", "mae", "clip", "siglip2", "resnet50"]
    # every registered model is checked against its checkpoint's config below; the demo ViT
    # (no checkpoint: random init, trained by `ssl-attn demo`) is the only other one
    assert set(list_models()) == set(REAL_CONFIGS) | {"demo_vit"} == set(LAYOUT)
    assert get_spec("siglip2").model_class == "SiglipVisionModel"
    assert get_spec("dinov3").gated and not get_spec("dinov2").gated
    assert len({get_spec(k) for k in list_models()}) == len(list_models())  # specs are hashable
    with pytest.raises(KeyError,
                       match=r"unknown model key 'dino'.*registered: clip, demo_vit, dinov2"):
        get_spec("dino")


@pytest.mark.parametrize("key", list(REAL_CONFIGS))
def test_spec_config_equals_real_checkpoint(key):
    spec = get_spec(key)
    _subset_equal(REAL_CONFIGS[key], spec.config_overrides, key)
    patch, n_reg, has_cls, mean, std, resample = LAYOUT[key]
    assert (spec.patch_size, spec.n_registers, spec.has_cls) == (patch, n_reg, has_cls)
    assert (spec.image_mean, spec.image_std, spec.resample) == (mean, std, resample)
    assert spec.image_size == 224
    if key != "resnet50":
        assert (spec.n_layers, spec.n_heads, spec.hidden_size) == (12, 12, 768)


@pytest.mark.parametrize("key", REAL_VIT_KEYS)
def test_full_config_objects_have_real_sizes(key):
    """Config classes default to other sizes (CLIP patch 32, DINOv3 ViT-S): values are explicit."""
    config = build_hf_config(get_spec(key).config_dict())
    vision = getattr(config, "vision_config", None) or config
    assert vision.hidden_size == 768 and vision.num_hidden_layers == 12
    assert vision.patch_size == LAYOUT[key][0]
    if key == "dinov3":
        assert vision.num_register_tokens == 4 and vision.key_bias is False
    if key == "clip":
        assert config.text_config.hidden_size == 512 and config.projection_dim == 512


def test_config_dicts_are_copies():
    spec = get_spec("clip")
    cfg = spec.config_dict()
    cfg["vision_config"]["patch_size"] = 32
    assert spec.config_overrides["vision_config"]["patch_size"] == 16
    raw = {"model_type": "dinov2", "patch_size": 14}
    s2 = replace(spec, key="x", config_overrides=raw)
    raw["patch_size"] = 7
    assert s2.config_overrides["patch_size"] == 14


def test_register_model(monkeypatch):
    monkeypatch.setattr(reg, "_REGISTRY", dict(reg._REGISTRY))
    spec = replace(get_spec("dinov2"), key="dinov2-alt")
    register_model(spec)
    assert get_spec("dinov2-alt") is spec
    with pytest.raises(KeyError, match="already registered"):
        register_model(spec)
    register_model(replace(spec, notes="changed"), overwrite=True)
    assert get_spec("dinov2-alt").notes == "changed"
    with pytest.raises(ValueError, match="family 'vit_hybrid' is not one of"):
        replace(spec, family="vit_hybrid")


def test_grid_shape():
    assert grid_shape(get_spec("dinov2"), 224) == (16, 16)
    for key in VIT_KEYS:  # patch 16 -> 14 x 14, patch 14 -> 16 x 16
        side = {16: 14, 14: 16}[LAYOUT[key][0]]
        assert grid_shape(get_spec(key), 224) == (side, side)
    assert grid_shape(get_spec("clip"), (224, 448)) == (14, 28)
    assert grid_shape(get_spec("resnet50"), 224) == (56, 56)
    with pytest.raises(ValueError, match="multiples of 14"):
        grid_shape(get_spec("dinov2"), 225)
    with pytest.raises(ValueError, match="multiples of 32"):
        grid_shape(get_spec("resnet50"), 240)


def test_spec_from_hub_config_reads_a_folder(tiny_weights):
    spec = spec_from_hub_config(str(tiny_weights / "dinov3"), key="my-dinov3")
    assert (spec.key, spec.family, spec.model_class) == ("my-dinov3", "dinov3", "DINOv3ViTModel")
    assert (spec.patch_size, spec.n_registers, spec.n_prefix_tokens) == (16, 4, 5)
    assert (spec.n_layers, spec.hidden_size) == (2, 32)
    sig = spec_from_hub_config(str(tiny_weights / "siglip2"))
    assert (sig.family, sig.model_class, sig.has_cls) == ("siglip", "SiglipVisionModel", False)
    assert sig.default_methods == ("mean_received", "probe")
    lm = load_model(spec)  # a local-folder checkpoint loads without weights_dir
    assert lm.weights.startswith("random-init:") and lm.spec.key == "my-dinov3"


# --- preprocessing --------------------------------------------------------------------------------


def test_preprocess_resizes_the_full_image_without_crop(tiny_weights):
    lm = load_model("clip", weights_dir=tiny_weights)
    # left third red, rest blue, 300 x 100: a crop would lose the red third
    arr = np.zeros((100, 300, 3), dtype=np.uint8)
    arr[:, :100, 0] = 255
    arr[:, 100:, 2] = 255
    batch = lm.preprocess([Image.fromarray(arr)])
    pv = batch.pixel_values
    assert pv.shape == (1, 3, 224, 224) and pv.dtype == torch.float32
    mean, std = LAYOUT["clip"][3], LAYOUT["clip"][4]
    red = (1 - mean[0]) / std[0]
    blue_in_red = (0 - mean[2]) / std[2]
    np.testing.assert_allclose(pv[0, 0, :, :70].numpy(), red, atol=1e-5)  # first 1/3 of 224
    np.testing.assert_allclose(pv[0, 2, :, :70].numpy(), blue_in_red, atol=1e-5)
    np.testing.assert_allclose(pv[0, 0, :, 80:].numpy(), (0 - mean[0]) / std[0], atol=1e-5)
    t = batch.transforms[0]
    assert t == {
        "original": [100, 300], "input": [224, 224], "resize": "resize full image, no crop",
        "interpolation": "bicubic", "mean": list(mean), "std": list(std),
    }
    wide = lm.preprocess([Image.fromarray(arr)], size=(112, 224))
    assert wide.pixel_values.shape == (1, 3, 112, 224)
    with pytest.raises(ValueError, match="multiples of 16"):
        lm.preprocess([Image.fromarray(arr)], size=100)


def test_preprocess_uses_each_models_normalisation(tiny_weights):
    grey = Image.new("RGB", (40, 30), (128, 128, 128))
    sig = load_model("siglip2", weights_dir=tiny_weights).preprocess([grey])
    np.testing.assert_allclose(sig.pixel_values.numpy(), (128 / 255 - 0.5) / 0.5, atol=1e-6)
    assert sig.transforms[0]["interpolation"] == "bilinear"


# --- loading ----------------------------------------------------------------------


@pytest.mark.parametrize("key", VIT_KEYS)
def test_tiny_model_architecture_comes_from_saved_config(tiny_weights, key):
    lm = load_model(key, weights_dir=tiny_weights)
    assert not lm.model.training
    assert lm.attn_implementation == "eager"
    # save_random_model marks its folders: random weights are never reported as a checkpoint
    assert lm.weights == f"random-init:{tiny_weights / key}"
    assert (lm.spec.n_layers, lm.spec.n_heads, lm.spec.hidden_size) == (2, 2, 32)
    assert lm.spec.patch_size == LAYOUT[key][0] and lm.spec.n_registers == LAYOUT[key][1]
    assert type(lm.model).__name__ == get_spec(key).model_class
    for name, value in FAMILY_TABLE[lm.spec.family].load_config.items():
        assert getattr(lm.model.config, name) == value  # MAE: mask_ratio 0
    if key == "mae":
        assert lm.model.config.mask_ratio == 0.0


def test_clip_vision_tower_comes_from_the_full_checkpoint(tiny_weights):
    from safetensors.torch import load_file

    saved = load_file(str(tiny_weights / "clip" / "model.safetensors"))
    assert any(k.startswith("text_model.") for k in saved)  # a full dual-encoder checkpoint
    lm = load_model("clip", weights_dir=tiny_weights)
    ours = lm.model.state_dict()
    for name in ("encoder.layers.1.self_attn.q_proj.weight", "embeddings.class_embedding"):
        torch.testing.assert_close(ours[name], saved[f"vision_model.{name}"])


@pytest.fixture(scope="module")
def resnet(tiny_weights):
    return load_model("resnet50", weights_dir=tiny_weights)


def test_facts_are_plain_json(tiny_weights, resnet):
    lm = load_model("dinov2", weights_dir=tiny_weights)
    facts = lm.facts()
    json.dumps(facts)
    assert facts["n_prefix_tokens"] == 5 and facts["grid"] == [16, 16]
    assert facts["input_size"] == [224, 224] and facts["patch_size"] == 14
    assert facts["preprocessing"]["resize"] == "resize full image, no crop"
    assert facts["weights"].startswith("random-init:")
    rn = resnet.facts(size=64)
    assert rn["gradcam_target"] == "top1_logit" and rn["grid"] == [16, 16]


def test_resnet_state_dict_folder(resnet, tmp_path):
    assert resnet.weights.endswith("resnet50.pth") and not resnet.model.training
    (tmp_path / "resnet50").mkdir()
    with pytest.raises(WeightsUnavailableError, match=r"exactly one torchvision state dict"):
        load_model("resnet50", weights_dir=tmp_path)


def test_missing_weights_folder_is_explained(tmp_path):
    with pytest.raises(WeightsUnavailableError, match=r"dinov2 has no config\.json.*save_pretr"):
        load_model("dinov2", weights_dir=tmp_path)


def test_wrong_family_in_folder(tiny_weights, tmp_path):
    import shutil

    shutil.copytree(tiny_weights / "clip", tmp_path / "dinov2")
    with pytest.raises(ModelLoadError, match=r"model_type 'clip'.*family 'dinov2'"):
        load_model("dinov2", weights_dir=tmp_path)


def test_offline_and_not_cached_message(monkeypatch, tmp_path):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    spec = replace(get_spec("mae"), key="missing", checkpoint="ssl-attn-tests/not-a-model")
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(spec)
    msg = str(info.value)
    assert "'ssl-attn-tests/not-a-model'" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--weights-dir" in msg and "DIR/missing/" in msg


def test_hub_id_is_loaded_from_the_hf_cache(tiny_weights, tmp_path, monkeypatch):
    """The real hub path (hf_hub_download + from_pretrained by id), served from a local cache."""
    import shutil

    import huggingface_hub.constants as hc

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--ssl-attn-tests--tiny-dinov2"
    shutil.copytree(tiny_weights / "dinov2", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    spec = replace(get_spec("dinov2"), checkpoint="ssl-attn-tests/tiny-dinov2")
    lm = load_model(spec)
    assert lm.weights == f"pretrained:ssl-attn-tests/tiny-dinov2@{commit}"
    assert lm.revision == commit and lm.facts()["revision"] == commit
    assert lm.spec.n_layers == 2 and lm.attn_implementation == "eager"


def test_torchvision_weights_from_the_torch_hub_cache(tiny_weights, tmp_path):
    """resnet50 by weights enum (IMAGENET1K_V2) goes through torchvision's own download cache."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "resnet50-11ad3fa6.pth").symlink_to(
        tiny_weights / "resnet50" / "resnet50.pth"
    )
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    try:
        lm = load_model("resnet50")
    finally:
        torch.hub.set_dir(old)
    assert lm.weights == "pretrained:torchvision/resnet50.IMAGENET1K_V2@resnet50-11ad3fa6.pth"


def test_gated_checkpoint_message(monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def refuse(repo_id, filename, **kwargs):
        url = f"https://huggingface.co/{repo_id}/resolve/main/{filename}"
        response = httpx2.Response(403, request=httpx2.Request("GET", url))
        raise GatedRepoError(f"403 Client Error: cannot access gated repo {url}", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    with pytest.raises(GatedModelError) as info:
        load_model("dinov3")
    msg = str(info.value)
    assert "facebook/dinov3-vitb16-pretrain-lvd1689m" in msg
    assert "accept the model's licence" in msg and "HF_TOKEN" in msg


def test_device_and_dtype_resolution():
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("float16") is torch.float16
    with pytest.raises(ValueError, match="not supported"):
        resolve_dtype("int8")


def test_bad_attn_implementation():
    with pytest.raises(ValueError, match="attn_implementation must be"):
        load_model("clip", attn_implementation="flash")


@pytest.mark.slow
def test_full_size_dinov2_saved_and_loaded(tmp_path):
    """The real architecture end to end: 12 layers, 768 wide, CLS + 4 registers, 16x16 grid."""
    from ssl_attn.attention import extract_maps

    save_random_model("dinov2", tmp_path, size="full")
    lm = load_model("dinov2", weights_dir=tmp_path)
    assert (lm.spec.n_layers, lm.spec.hidden_size, lm.spec.n_prefix_tokens) == (12, 768, 5)
    n_params = sum(p.numel() for p in lm.model.parameters())
    assert 85e6 < n_params < 88e6  # ViT-B/14 with registers
    m = extract_maps(lm, lm.preprocess([noise_image(64, 48)]).pixel_values, layers=[0, 11])
    assert m["cls"].shape == (1, 2, 12, 16, 16)
    # random_init builds the same registry architecture without any file
    rnd = load_model("clip", random_init=True)
    assert rnd.weights == "random-init" and rnd.model.config.patch_size == 16
    assert rnd.model.config.hidden_size == 768 and len(rnd.model.encoder.layers) == 12


def test_import_is_light():
    code = (
        "import sys, ssl_attn, ssl_attn.models; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert noise_image(4, 4).size == (4, 4)


def test_local_folder_without_random_marker_is_reported_as_local(tiny_weights, tmp_path):
    import shutil

    from ssl_attn.models.loading import RANDOM_INIT_MARKER

    assert (tiny_weights / "dinov2" / RANDOM_INIT_MARKER).exists()
    shutil.copytree(tiny_weights / "dinov2", tmp_path / "dinov2")
    (tmp_path / "dinov2" / RANDOM_INIT_MARKER).unlink()
    lm = load_model("dinov2", weights_dir=tmp_path)
    assert lm.weights == f"local:{tmp_path / 'dinov2'}"


# --- the family adapter table ------------------------------------------------------------------


def _modules_named(model: torch.nn.Module, target: str) -> list[torch.nn.Module]:
    """Modules matched by a PEFT-style target: the name equals it or ends with '.' + it."""
    return [m for n, m in model.named_modules() if n == target or n.endswith("." + target)]


@pytest.mark.parametrize("name", list(FAMILY_TABLE))
def test_every_family_builds_a_tiny_eager_model(name):
    """Each family's tiny config builds, runs the family's forward with eager attention and
    returns one (B, heads, N, N) attention per layer; its LoRA targets are one Linear per layer."""
    import transformers

    from ssl_attn.models.loading import fix_mae_init

    fam = FAMILY_TABLE[name]
    if not fam.is_vit:  # the CNN: Grad-CAM stages instead of attention, LoRA on its convs
        import torchvision

        assert fam.tiny_vision is None and fam.head_input == "gap"
        model = torchvision.models.resnet50(weights=None)
        assert all(isinstance(getattr(model, s), torch.nn.Sequential) for s in fam.stages)
        n_blocks = sum(len(getattr(model, s)) for s in fam.stages)  # 16 bottlenecks
        found = {t: _modules_named(model, t) for t in fam.lora_targets}
        # conv1 also matches the stem; every match is a Conv2d
        assert {t: len(m) for t, m in found.items()} == {
            "conv1": n_blocks + 1, "conv2": n_blocks, "conv3": n_blocks}
        assert all(type(m) is torch.nn.Conv2d for ms in found.values() for m in ms)
        return
    cfg = tiny_config(name)
    config = build_hf_config(cfg, attn_implementation="eager")
    vision = getattr(config, "vision_config", None) or config
    for key, value in fam.load_config.items():
        setattr(vision, key, value)
    loaded_cls, saved_cls = fam.classes(cfg["model_type"])
    assert hasattr(transformers, saved_cls)
    torch.manual_seed(0)
    model = getattr(transformers, loaded_cls)._from_config(vision, attn_implementation="eager")
    fix_mae_init(model)
    model.eval()
    patch = vision.patch_size
    side = getattr(vision, "image_size", None) or 4 * patch  # NaFlex: no fixed image size
    pv = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    kwargs = {"interpolate_pos_encoding": True} if fam.interpolate_pos_encoding else {}
    with torch.no_grad():
        out = model(**fam.inputs(pv, patch), output_attentions=True, **kwargs)
    if fam.check_output is not None:
        fam.check_output(out)
    n_layers, n_heads = vision.num_hidden_layers, vision.num_attention_heads
    n_prefix = int(fam.has_cls) + (vision.num_register_tokens if fam.registers else 0)
    n = n_prefix + (side // patch) ** 2
    assert len(out.attentions) == n_layers == 2
    for attn in out.attentions:
        assert attn.shape == (2, n_heads, n, n)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, n_heads, n))
    if fam.post_norm is not None:
        assert isinstance(getattr(model, fam.post_norm), torch.nn.LayerNorm)
    assert fam.lora_targets
    for target in fam.lora_targets:
        found = _modules_named(model, target)
        assert len(found) == n_layers, f"{name}: LoRA target {target!r} matches {len(found)}"
        assert all(type(m) is torch.nn.Linear for m in found), target


def test_family_table_is_the_one_source_of_family_facts():
    from ssl_attn.models import FAMILIES, get_family

    assert tuple(FAMILY_TABLE) == FAMILIES
    for key in list_models():
        spec = get_spec(key)
        fam = get_family(spec.family)
        assert spec.is_vit == fam.is_vit and spec.has_cls == fam.has_cls
        assert set(spec.default_methods) <= set(fam.methods)
        if fam.is_vit:
            assert spec.model_class == fam.classes(spec.config_overrides["model_type"])[0]
    with pytest.raises(ValueError, match="family 'vit_hybrid' is not one of"):
        get_family("vit_hybrid")
