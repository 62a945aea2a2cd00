"""MAGE VQGAN adapter: parity with the LTH14/mage fixture, key renames onto the MaskGIT modules, offline error."""

from __future__ import annotations

import copy

import pytest
import torch

from tokbench.api import Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError

FAMILY = "mage"


@pytest.fixture(scope="module")
def fx():
    config, case, d = load_fixture(FAMILY)
    model = load_tokenizer(FAMILY, upstream_config=config, weights=d / "weights.safetensors")
    model.keep_features = True
    return model, config, case


def test_parity(fx):
    model, _, case = fx
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    tokens = model.encode(case["images_uint8"])
    assert torch.equal(tokens.ids[0], case["indices"])
    feats = model.last_features[0]
    torch.testing.assert_close(feats, case["pre_quant"].permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    assert torch.equal(model.token_space.scores(feats).argmax(-1), tokens.ids[0])
    given = Tokens([case["indices"]], model.layout)
    torch.testing.assert_close(model.codes_to_latent(case["indices"]), case["quant"], atol=1e-5, rtol=0)
    torch.testing.assert_close(model.decode_raw(given), case["decoded"], atol=2e-4, rtol=0)
    torch.testing.assert_close(model.decode_raw(tokens), case["recon"], atol=2e-4, rtol=0)


def test_token_space_and_metadata(fx):
    model, _, case = fx
    space = model.token_space
    assert space.metric == "l2" and torch.equal(space.codes, case["codebook"])
    assert torch.equal(space.scores(space.codes).argmax(-1), torch.arange(space.vocab_size))
    info = model.info
    assert (info.family, info.value_range, info.vocab_size, info.tokens_per_image) == (FAMILY, "[0,1]", 128, 16)
    assert "MIT" in info.code_license and info.weights_license


def test_official_layout_and_wrappers():
    (entry,) = manifest(FAMILY).values()
    cfg = get_preset("mage-vqgan").get_config()
    assert cfg["constructor_kwargs"] == entry["constructor_kwargs"]
    fam = get_family(FAMILY)
    with torch.device("meta"):
        model = fam.build(copy.deepcopy(cfg))
    raw = meta_state_dict(entry["keys"])
    assert layout_report(model, fam.checkpoint_filter(raw, cfg)) == ""
    # MAGE's loader accepts {"state_dict": ...}; MAGE ViT checkpoints embed the tokenizer as model["vqgan.*"]
    assert layout_report(model, fam.checkpoint_filter({"state_dict": raw}, cfg)) == ""
    vit = {"model": {**{f"vqgan.{k}": v for k, v in raw.items()}, "blocks.0.w": torch.empty(1, device="meta")}}
    assert layout_report(model, fam.checkpoint_filter(vit, cfg)) == ""
    assert sum(p.numel() for p in model.parameters()) == entry["num_params"]


def test_offline_error_names_where_to_put_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with torch.device("meta"), pytest.raises(WeightsNotFoundError) as e:
        load_tokenizer("mage-vqgan")
    assert str(tmp_path / "vqgan_jax_strongaug.ckpt") in str(e.value)
