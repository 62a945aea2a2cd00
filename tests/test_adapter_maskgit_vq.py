"""MaskGIT-VQ adapter: parity with the 1d-tokenizer fixture, the official key layout, token space, offline error."""

from __future__ import annotations

import copy

import pytest
import torch

from tokbench.api import Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import CheckpointMismatchError, WeightsNotFoundError

FAMILY = "maskgit_vq"


@pytest.fixture(scope="module")
def fx():
    config, case, d = load_fixture(FAMILY)
    model = load_tokenizer(FAMILY, upstream_config=config, weights=d / "weights.safetensors")
    model.keep_features = True
    return model, config, case


def test_parity_encode(fx):
    model, _, case = fx
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    tokens = model.encode(case["images_uint8"])
    assert tokens.ids[0].shape == (2, 4, 4)
    # upstream returns (B, h*w), row-major over the grid
    assert torch.equal(tokens.flat(), case["indices"])
    feats = model.last_features[0]
    torch.testing.assert_close(feats, case["z"].permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    assert torch.equal(model.token_space.scores(feats).argmax(-1), tokens.ids[0])


def test_parity_decode(fx):
    model, _, case = fx
    tokens = Tokens.from_flat(case["indices"], model.layout)
    torch.testing.assert_close(model.codes_to_latent(tokens.ids[0]), case["quant"], atol=1e-5, rtol=0)
    raw = model.decode_raw(tokens)
    torch.testing.assert_close(raw, case["decoded_unclamped"], atol=2e-4, rtol=0)
    torch.testing.assert_close(model.decode(tokens), case["decoded"], atol=2e-4, rtol=0)
    # round trip: decode(encode(x)) is the upstream decode of the encoded ids
    torch.testing.assert_close(model.decode(model.encode(case["images_uint8"])), case["decoded"], atol=2e-4, rtol=0)


def test_token_space_and_metadata(fx):
    model, config, _ = fx
    space = model.token_space
    assert space.metric == "l2" and space.vocab_size == 64 and space.dim == 48
    assert torch.equal(space.codes, model.quantize.embedding.weight)
    # every code is its own nearest neighbour (the perturbation engine's neighbour list starts with the code)
    assert torch.equal(space.scores(space.codes).argmax(-1), torch.arange(64))
    info = model.info
    assert (info.family, info.value_range, info.resolution, info.vocab_size, info.tokens_per_image) == (
        FAMILY, "[0,1]", 64, 64, 16)
    assert info.code_license and info.weights_license and info.paper
    with pytest.raises(ValueError, match="out of range"):
        model.decode_raw(Tokens([torch.full((1, 4, 4), 64)], model.layout))


def test_strict_load_names_missing_key(tmp_path):
    from safetensors.torch import load_file, save_file

    config, _, d = load_fixture(FAMILY)
    sd = load_file(str(d / "weights.safetensors"))
    sd.pop("decoder.conv_out.bias")
    save_file(sd, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="decoder.conv_out.bias"):
        load_tokenizer(FAMILY, upstream_config=config, weights=tmp_path / "w.safetensors")


def test_official_layout():
    man = manifest(FAMILY)
    (entry,) = man.values()
    preset = get_preset("maskgit-vq")
    cfg = preset.get_config()
    assert cfg["constructor_kwargs"]["encoder_decoder_conf"] == entry["constructor_kwargs"]["encoder_decoder_conf"]
    assert {k: v for k, v in cfg["constructor_kwargs"]["quantize"].items()} == entry["constructor_kwargs"]["quantize"]
    fam = get_family(FAMILY)
    with torch.device("meta"):
        model = fam.build(copy.deepcopy(cfg))
    sd = fam.checkpoint_filter(meta_state_dict(entry["keys"]), cfg)  # the official file is a flat state dict
    assert layout_report(model, sd) == ""
    assert sum(p.numel() for p in model.parameters()) == entry["num_params"]
    assert model.layout.tokens_per_image == 256 and model.info.vocab_size == 1024


def test_offline_error_names_where_to_put_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with torch.device("meta"), pytest.raises(WeightsNotFoundError) as e:
        load_tokenizer("maskgit-vq")
    assert str(tmp_path / "fun-research--TiTok" / "maskgit-vqgan-imagenet-f16-256.bin") in str(e.value)


def test_wrong_resolution_is_refused(fx):
    model, _, _ = fx
    with pytest.raises(ValueError, match="64x64"):
        model.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
