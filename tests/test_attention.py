"""Attention methods on tiny saved models of every architecture (ssl_attn.attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_fixtures import (  # pytest puts tests/ on sys.path
    bright_square_image,
    noise_image,
    save_brightness_dinov2,
    softmax_attention,
)

from ssl_attn.attention import (
    ClsAttention,
    EagerAttentionError,
    Rollout,
    TokenLayout,
    attention_modules,
    attention_rollout,
    extract_maps,
    grad_cam,
)
from ssl_attn.models import get_spec, list_models, load_model

VIT_KEYS = [k for k in list_models() if get_spec(k).is_vit]
CLS_KEYS = [k for k in VIT_KEYS if get_spec(k).has_cls]
CNN_KEYS = [k for k in list_models() if not get_spec(k).is_vit]
GRID_224 = {k: (224 // get_spec(k).patch_size,) * 2 for k in VIT_KEYS}


@pytest.fixture(scope="module")
def loaded(tiny_weights):
    """Every tiny model, loaded through load_model(key, weights_dir=...)."""
    return {k: load_model(k, weights_dir=tiny_weights) for k in list_models()}


@pytest.fixture(scope="module")
def images():
    return [noise_image(300, 200, seed=1), noise_image(180, 240, seed=2)]


@pytest.fixture(scope="module")
def maps224(loaded, images):
    """All methods (+ embeddings) of every ViT at 224 px, batch of 2."""
    out = {}
    for key in VIT_KEYS:
        lm = loaded[key]
        batch = lm.preprocess(images, size=224)  # the demo ViT's native size is smaller
        out[key] = extract_maps(lm, batch.pixel_values, methods=lm.spec.methods, embeddings=True)
        out[key]["_pv"] = batch.pixel_values
    return out


# --- shapes and normalisation --------------------------------------------------------------


@pytest.mark.parametrize("key", VIT_KEYS)
def test_shapes_at_224(maps224, loaded, key):
    m, spec = maps224[key], loaded[key].spec
    gh, gw = GRID_224[key]
    L, H, C = spec.n_layers, spec.n_heads, spec.hidden_size
    assert (L, H, C) == (2, 2, 32)
    assert m["mean_received"].shape == (2, L, H, gh, gw)
    assert m["embedding"].shape == (2, gh, gw, C) and m["embedding"].dtype == np.float16
    if not spec.has_cls:
        assert m["probe"].shape == (2, H, gh, gw)
        assert not {"cls", "rollout", "register_mass"} & set(m)
    else:
        assert m["cls"].shape == (2, L, H, gh, gw)
        assert m["register_mass"].shape == m["cls_self"].shape == (2, L, H)
        assert m["rollout"].shape == (2, L, gh, gw)
    for name, arr in m.items():
        if name not in ("embedding", "_pv"):
            assert arr.dtype == np.float32, name


@pytest.mark.parametrize("key", CLS_KEYS)
def test_cls_row_sums_to_one(maps224, key):
    m = maps224[key]
    total = m["cls"].sum(axis=(-2, -1)) + m["register_mass"] + m["cls_self"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert np.all(m["cls"] >= 0)
    if get_spec(key).n_registers:  # registers receive attention
        assert np.all(m["register_mass"] > 0)
    else:
        assert np.all(m["register_mass"] == 0)


def test_rollout_rows_and_mean_received(maps224):
    m = maps224["dinov2"]
    # rollout rows sum to 1 over all tokens, so the patch part is in (0, 1]
    s = m["rollout"].sum(axis=(-2, -1))
    assert np.all(s > 0) and np.all(s <= 1 + 1e-6)
    # mean received: every query row sums to 1, so mean over queries sums to 1 over all tokens;
    # the patch columns hold at most 1
    s = m["mean_received"].sum(axis=(-2, -1))
    assert np.all(s > 0.5) and np.all(s <= 1 + 1e-6)
    # SigLIP has no prefix: mean received over the patches sums to exactly 1
    np.testing.assert_allclose(maps224["siglip2"]["mean_received"].sum(axis=(-2, -1)), 1, atol=1e-5)


# --- independent re-computation -------------------------------------------------------------


def test_dinov2_cls_equals_independent_softmax(maps224, loaded):
    model = loaded["dinov2"].model
    pv = maps224["dinov2"]["_pv"]
    with torch.no_grad():
        x = model.embeddings(pv)
        for i, layer in enumerate(model.encoder.layer):
            a = softmax_attention(x, layer.norm1, layer.attention.q_proj, layer.attention.k_proj, 2)
            expected = a[:, :, 0, 5:].reshape(2, 2, 16, 16).numpy()
            np.testing.assert_allclose(maps224["dinov2"]["cls"][:, i], expected, atol=1e-5)
            np.testing.assert_allclose(
                maps224["dinov2"]["register_mass"][:, i], a[:, :, 0, 1:5].sum(-1).numpy(), atol=1e-6
            )
            x = layer(x)


def test_clip_cls_equals_independent_softmax(maps224, loaded):
    model = loaded["clip"].model
    pv = maps224["clip"]["_pv"]
    with torch.no_grad():
        x = model.pre_layrnorm(model.embeddings(pv, interpolate_pos_encoding=True))
        for i, layer in enumerate(model.encoder.layers):
            a = softmax_attention(x, layer.layer_norm1, layer.self_attn.q_proj,
                                  layer.self_attn.k_proj, 2)
            expected = a[:, :, 0, 1:].reshape(2, 2, 14, 14).numpy()
            np.testing.assert_allclose(maps224["clip"]["cls"][:, i], expected, atol=1e-5)
            x = layer(x, None)


def test_mae_maps_are_in_raster_order(loaded, images):
    """Layer-0 CLS attention computed on unshuffled raster-order patches equals the stored map."""
    lm = loaded["mae"]
    assert lm.model.config.mask_ratio == 0.0
    pv = lm.preprocess(images, size=64).pixel_values  # native tiny size: no interpolation
    m = extract_maps(lm, pv, layers=[0], methods=["cls"])
    model = lm.model
    with torch.no_grad():
        pos = model.embeddings.position_embeddings
        patches = model.embeddings.patch_embeddings(pv) + pos[:, 1:]
        cls = (model.embeddings.cls_token + pos[:, :1]).expand(2, -1, -1)
        x = torch.cat([cls, patches], dim=1)
        layer = model.layers[0]
        a = softmax_attention(x, layer.layernorm_before, layer.attention.q_proj,
                              layer.attention.k_proj, 2)
    expected = a[:, :, 0, 1:].reshape(2, 2, 4, 4).numpy()
    np.testing.assert_allclose(m["cls"][:, 0], expected, atol=1e-5)
    # a shuffled order would not match: the map is not permutation-invariant
    assert not np.allclose(m["cls"][:, 0], expected[..., ::-1, :], atol=1e-5)


def test_siglip_probe_equals_pooling_head_attention(maps224, loaded):
    lm = loaded["siglip2"]
    pv = maps224["siglip2"]["_pv"]
    probe = maps224["siglip2"]["probe"]
    np.testing.assert_allclose(probe.sum(axis=(-2, -1)), 1.0, atol=1e-5)
    head = lm.model.head
    with torch.no_grad():
        last = lm.model(pixel_values=pv, interpolate_pos_encoding=True).last_hidden_state
        d = last.shape[-1]
        w, b = head.attention.in_proj_weight, head.attention.in_proj_bias
        q = head.probe @ w[:d].T + b[:d]  # (1, 1, D)
        k = last @ w[d : 2 * d].T + b[d : 2 * d]  # (B, N, D)
        qh = q.view(1, 1, 2, d // 2).transpose(1, 2)
        kh = k.view(2, -1, 2, d // 2).transpose(1, 2)
        a = torch.softmax(qh @ kh.transpose(-1, -2) / np.sqrt(d // 2), dim=-1)  # (B, 2, 1, N)
    np.testing.assert_allclose(probe, a[:, :, 0].reshape(2, 2, 14, 14).numpy(), atol=1e-5)


# --- rollout and Grad-CAM on hand-computed cases -----------------------------------------------


def _two_layer_attention():
    a0 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])[None]  # (1, 2, 2, 2)
    a1 = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])[None]
    return a0, a1


def test_rollout_two_layer_hand_computed():
    # layer 0: head mean [[.5,.5],[.5,.5]] + I, row-normalised -> [[.75,.25],[.25,.75]]
    # layer 1: head mean [[0,1],[0,1]] + I -> [[.5,.5],[0,1]]; product -> [[.5,.5],[.25,.75]]
    r0, r1 = attention_rollout(_two_layer_attention())
    np.testing.assert_allclose(r0[0].numpy(), [[0.75, 0.25], [0.25, 0.75]])
    np.testing.assert_allclose(r1[0].numpy(), [[0.5, 0.5], [0.25, 0.75]])
    method = Rollout(TokenLayout(n_prefix=1, has_cls=True, grid=(1, 1)), keep=[0, 1])
    for i, a in enumerate(_two_layer_attention()):
        method.update(i, a)
    np.testing.assert_allclose(method.result()["rollout"][0, :, 0, 0], [0.25, 0.5])


def test_rollout_layers_subset_is_chained_from_layer_zero(maps224, loaded):
    lm = loaded["dinov2"]
    only_last = extract_maps(lm, maps224["dinov2"]["_pv"], layers=[1], methods=["rollout", "cls"])
    assert only_last["rollout"].shape[1] == 1 and set(only_last) == {"rollout", "cls"}
    np.testing.assert_allclose(only_last["rollout"][:, 0], maps224["dinov2"]["rollout"][:, 1],
                               atol=1e-6)
    np.testing.assert_allclose(only_last["cls"][:, 0], maps224["dinov2"]["cls"][:, 1], atol=1e-6)


def test_cls_method_needs_cls_token():
    with pytest.raises(ValueError, match="CLS token"):
        ClsAttention(TokenLayout(n_prefix=0, has_cls=False, grid=(2, 2)), keep=[0])


class _GapNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_gradcam_equals_cam_for_gap_fc_network():
    net = _GapNet().eval()
    x = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    cams = grad_cam(net, x, [net.features])  # (2, 1, 6, 5)
    with torch.no_grad():
        acts = net.features(x)
        k = net(x).argmax(dim=1)
        w = net.fc.weight[k]  # (2, 4)
        cam = torch.relu((w[:, :, None, None] * acts).sum(1)) / (6 * 5)  # alpha_c = w_kc / (h w)
    assert cams.shape == (2, 1, 6, 5)
    np.testing.assert_allclose(cams[:, 0].numpy(), cam.numpy(), atol=1e-6)
    assert cam.max() > 0


@pytest.mark.parametrize("key", CNN_KEYS)
def test_resnet_gradcam_on_layer1_grid(loaded, key):
    lm = loaded[key]
    pv = lm.preprocess([noise_image(256, 192, seed=3)]).pixel_values  # 224 px
    m = extract_maps(lm, pv)
    assert set(m) == {"gradcam"} and m["gradcam"].shape == (1, 4, 56, 56)
    assert np.all(m["gradcam"] >= 0) and m["gradcam"].dtype == np.float32
    # layer4 is 7x7 natively, upsampled bilinearly (align_corners=False) onto 56x56
    native = grad_cam(lm.model, pv, [lm.model.layer4])
    assert native.shape == (1, 1, 7, 7)
    up = torch.nn.functional.interpolate(native, size=(56, 56), mode="bilinear",
                                         align_corners=False)
    np.testing.assert_allclose(m["gradcam"][:, 3], up[:, 0].numpy(), rtol=1e-5, atol=1e-7)


# --- geometry ---------------------------------------------------------------------------------


def test_map_peak_lands_on_bright_square(tmp_path):
    """A non-square image, full-image resize: the CLS map peaks at the square's relative place."""
    save_brightness_dinov2(tmp_path)
    lm = load_model("dinov2", weights_dir=tmp_path)
    width, height = 420, 280
    box = (300, 70, 360, 130)  # left, top, right, bottom in pixels
    batch = lm.preprocess([bright_square_image(width, height, box)])
    assert batch.transforms[0]["original"] == [280, 420]
    assert batch.transforms[0]["input"] == [224, 224]
    cls = extract_maps(lm, batch.pixel_values, methods=["cls"])["cls"][0, 0, 0]  # (16, 16)
    i, j = np.unravel_index(np.argmax(cls), cls.shape)
    y, x = (i + 0.5) / 16, (j + 0.5) / 16
    assert box[1] / height <= y <= box[3] / height
    assert box[0] / width <= x <= box[2] / width
    rows = slice(int(np.ceil(box[1] / height * 16 - 0.5)), int(box[3] / height * 16 + 0.5))
    cols = slice(int(np.ceil(box[0] / width * 16 - 0.5)), int(box[2] / width * 16 + 0.5))
    assert cls[rows, cols].sum() > 0.9 * cls.sum()


# --- resolutions, dtypes, errors -------------------------------------------------------------


#: non-native input grids: larger square, smaller x wider, native height x double width
OTHER_GRIDS = [(20, 20), (10, 16), (14, 28)]


@pytest.mark.parametrize("grid", OTHER_GRIDS)
@pytest.mark.parametrize("key", VIT_KEYS)
def test_other_input_sizes(loaded, images, key, grid):
    lm = loaded[key]
    patch = lm.spec.patch_size
    size = (grid[0] * patch, grid[1] * patch)
    m = extract_maps(lm, lm.preprocess(images[:1], size=size).pixel_values)
    name = "cls" if lm.spec.has_cls else "probe"
    assert m[name].shape[-2:] == grid
    axis = (-2, -1)
    if not lm.spec.has_cls:
        np.testing.assert_allclose(m["probe"].sum(axis=axis), 1, atol=1e-5)
    else:
        np.testing.assert_allclose(m["cls"].sum(axis=axis) + m["register_mass"] + m["cls_self"], 1,
                                   atol=1e-5)


def test_bfloat16_maps_are_float32_and_close(tiny_weights, maps224):
    lm = load_model("dinov2", weights_dir=tiny_weights, dtype="bf16")
    m = extract_maps(lm, maps224["dinov2"]["_pv"], methods=["cls", "rollout"])
    assert m["cls"].dtype == np.float32
    np.testing.assert_allclose(m["cls"], maps224["dinov2"]["cls"], atol=2e-2)  # bf16
    np.testing.assert_allclose(m["rollout"], maps224["dinov2"]["rollout"], atol=2e-2)


def test_sdpa_model_is_refused(tiny_weights, maps224):
    lm = load_model("dinov2", weights_dir=tiny_weights, attn_implementation="sdpa")
    with pytest.raises(EagerAttentionError, match="attn_implementation='eager'"):
        extract_maps(lm, maps224["dinov2"]["_pv"])


def test_missing_attention_weights_are_detected(tiny_weights, maps224):
    """A config that says eager but layers that return no weights (as sdpa does) is an error."""
    lm = load_model("dinov2", weights_dir=tiny_weights)
    drop = attention_modules(lm.model)[1].register_forward_hook(lambda m, a, out: (out[0], None))
    try:
        with pytest.raises(EagerAttentionError, match="from 1 of 2 layers"):
            extract_maps(lm, maps224["dinov2"]["_pv"])
    finally:
        drop.remove()


def test_unsupported_methods_and_layers(loaded, maps224):
    with pytest.raises(ValueError, match="does not support methods \\['probe'\\]"):
        extract_maps(loaded["dinov2"], maps224["dinov2"]["_pv"], methods=["probe"])
    with pytest.raises(ValueError, match="does not support methods \\['cls'\\]"):
        extract_maps(loaded["siglip2"], maps224["siglip2"]["_pv"], methods=["cls"])
    with pytest.raises(ValueError, match=r"layers \[2\] must be 0-based"):
        extract_maps(loaded["clip"], maps224["clip"]["_pv"], layers=[2])
    with pytest.raises(ValueError, match="multiples of 16"):
        extract_maps(loaded["clip"], torch.zeros(1, 3, 100, 100))


def test_siglip2_naflex_checkpoint(tmp_path):
    """A checkpoint whose config says model_type 'siglip2' loads as Siglip2VisionModel (NaFlex)."""
    from transformers import Siglip2Config, Siglip2Model
    from transformers.models.siglip2.image_processing_pil_siglip2 import convert_image_to_patches

    from ssl_attn.models import spec_from_hub_config
    from ssl_attn.models.families import naflex_inputs

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2}
    cfg = Siglip2Config(
        text_config={**small, "vocab_size": 64, "max_position_embeddings": 16},
        vision_config={**small, "patch_size": 16, "num_patches": 16},
    )
    torch.manual_seed(0)
    Siglip2Model(cfg).save_pretrained(tmp_path / "naflex")
    spec = spec_from_hub_config(str(tmp_path / "naflex"), key="naflex")
    assert (spec.family, spec.model_class) == ("siglip2", "Siglip2VisionModel")
    lm = load_model(spec)
    pv = lm.preprocess([noise_image(200, 120, seed=4)], size=(96, 160)).pixel_values
    m = extract_maps(lm, pv)
    assert m["probe"].shape == (1, 2, 6, 10) and m["mean_received"].shape == (1, 2, 2, 6, 10)
    np.testing.assert_allclose(m["probe"].sum(axis=(-2, -1)), 1, atol=1e-5)
    # the patch sequence is the processor's own layout
    ours = naflex_inputs(pv, 16)["pixel_values"][0].numpy()
    np.testing.assert_array_equal(ours, convert_image_to_patches(pv[0].numpy(), 16))
