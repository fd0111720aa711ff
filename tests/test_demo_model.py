"""The demo ViT (``demo_vit``, family ``vit``): registered, built from scratch, read like the six.

It has no hub checkpoint: ``ssl-attn demo`` builds it with random weights and trains it on the
synthetic style pool. These tests check that it goes through the same loading and extraction
path as the real models (transformers ``ViTModel``, eager attention, CLS token).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from _model_fixtures import noise_image  # pytest puts tests/ on sys.path

from ssl_attn.attention import extract_maps
from ssl_attn.models import get_family, get_spec, grid_shape, load_model
from ssl_attn.models.loading import build_hf_config
from ssl_attn.models.testing import tiny_config


def test_demo_spec_is_a_plain_cls_vit():
    spec = get_spec("demo_vit")
    fam = get_family(spec.family)
    assert (spec.family, spec.model_class, fam.model_type) == ("vit", "ViTModel", "vit")
    assert (spec.n_layers, spec.n_heads, spec.hidden_size, spec.patch_size) == (6, 6, 384, 16)
    assert spec.has_cls and spec.n_registers == 0 and spec.n_prefix_tokens == 1
    assert not spec.gated and "no hub checkpoint" in spec.notes
    assert spec.default_methods == ("cls", "register_mass", "cls_self", "rollout")
    assert fam.interpolate_pos_encoding and fam.post_norm is None
    assert fam.lora_targets == ("q_proj", "k_proj", "v_proj", "o_proj")
    # native input 112 px: 7 x 7 patches of 16
    assert spec.image_size == spec.config_overrides["image_size"] == 112
    assert grid_shape(spec, spec.image_size) == (7, 7)
    config = build_hf_config(spec.config_dict())
    assert type(config).__name__ == "ViTConfig"
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size,
            config.intermediate_size, config.patch_size) == (6, 6, 384, 1536, 16)


def test_full_size_random_init_has_the_hand_counted_parameters():
    lm = load_model("demo_vit", random_init=True, seed=0)
    assert type(lm.model).__name__ == "ViTModel"
    assert lm.weights == "random-init" and lm.attn_implementation == "eager"
    assert lm.input_size == (112, 112) and lm.grid() == (7, 7)
    d, mlp, n_tok = 384, 1536, 7 * 7 + 1
    per_layer = 4 * (d * d + d) + (d * mlp + mlp) + (mlp * d + d) + 2 * 2 * d
    embeddings = 3 * 16 * 16 * d + d + d + n_tok * d  # patch conv (+bias), CLS, positions
    pooler = d * d + d  # ViTModel's dense + tanh on CLS: built, not used by this package
    expected = embeddings + 6 * per_layer + 2 * d + pooler
    assert expected == 11_110_272
    assert sum(p.numel() for p in lm.model.parameters()) == expected


@pytest.fixture(scope="module")
def tiny():
    """The registered spec shrunk to 2 layers x 2 heads x 32 (64 px position grid)."""
    spec = get_spec("demo_vit")
    return replace(spec, n_layers=2, n_heads=2, hidden_size=32,
                   config_overrides=tiny_config(spec))


def test_tiny_random_init_is_seeded(tiny):
    a = load_model(tiny, random_init=True, seed=3).model.state_dict()
    b = load_model(tiny, random_init=True, seed=3).model.state_dict()
    c = load_model(tiny, random_init=True, seed=4).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["embeddings.cls_token"], c["embeddings.cls_token"])


@pytest.mark.parametrize("side, grid", [(112, (7, 7)), (64, (4, 4)), (96, (6, 6))])
def test_tiny_extract_maps_gives_cls_maps_on_the_patch_grid(tiny, side, grid):
    lm = load_model(tiny, random_init=True, seed=0)
    batch = lm.preprocess([noise_image(300, 200, seed=1), noise_image(150, 220, seed=2)],
                          size=side)
    assert tuple(batch.pixel_values.shape) == (2, 3, side, side)
    with torch.no_grad():
        maps = extract_maps(lm, batch.pixel_values, embeddings=True)
        out = lm.forward(batch.pixel_values, output_attentions=True)
    assert set(maps) == {"cls", "register_mass", "cls_self", "rollout", "embedding"}
    assert maps["cls"].shape == (2, 2, 2, *grid)  # (B, layers, heads, gh, gw)
    assert maps["rollout"].shape == (2, 2, *grid)
    np.testing.assert_array_equal(maps["register_mass"], 0.0)  # no registers
    # the CLS row of each layer's attention: patches (on the grid) + itself = 1
    for layer, attn in enumerate(out.attentions):
        row = attn[:, :, 0].numpy()
        np.testing.assert_allclose(maps["cls"][:, layer].reshape(2, 2, -1), row[:, :, 1:],
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(maps["cls_self"][:, layer], row[:, :, 0], rtol=1e-6)
    # post_norm None: last_hidden_state is already ViTModel's final layernorm output
    hidden = out.last_hidden_state[:, 1:].reshape(2, *grid, 32)
    np.testing.assert_allclose(maps["embedding"].astype(np.float32),
                               hidden.numpy(), atol=2e-3, rtol=2e-3)


def test_tiny_demo_model_through_the_extract_driver(tmp_path, synthetic_root, tiny_weights):
    """``ssl_attn.extract.extract`` writes the demo ViT's CLS maps at its native 7 x 7 grid."""
    from ssl_attn import extract as ex
    from ssl_attn import store as st

    path = tmp_path / "demo.zarr"
    report = ex.extract(path, synthetic_root, ["demo_vit"], weights_dir=tiny_weights,
                        batch_size=4, progress=False)
    assert not report.skipped
    tree = st.open_store(path)
    groups = [node for node in tree.subtree if "cls" in node.data_vars]
    assert len(groups) == 1
    cls = groups[0]["cls"]
    sizes = dict(cls.sizes)
    assert (sizes["layer"], sizes["head"]) == (2, 2)
    assert [sizes[d] for d in cls.dims[-2:]] == [7, 7]
    assert np.isfinite(cls.values).all() and (cls.values >= 0).all()
