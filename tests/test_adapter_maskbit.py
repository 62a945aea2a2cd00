"""MaskBit (LFQ) and VQGAN+ adapters: parity with the fixtures, official key layouts, token spaces, metadata."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import BinarySpace, CodebookSpace, Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import CheckpointMismatchError, WeightsNotFoundError

SUBFOLDER = {"maskbit": "lfq", "vqgan_plus": "vqgan_plus"}
PRESETS = {  # tokbench preset -> manifest entry
    "maskbit-10bit": "maskbit_tokenizer_10bit", "maskbit-12bit": "maskbit_tokenizer_12bit",
    "maskbit-14bit": "maskbit_tokenizer_14bit", "maskbit-16bit": "maskbit_tokenizer_16bit",
    "maskbit-18bit": "maskbit_tokenizer_18bit", "vqgan-plus-10bit": "vqgan_plus_paper",
    "vqgan-plus-12bit": "vqgan_plus_12bit",
}


@pytest.fixture(scope="module", params=["maskbit", "vqgan_plus"])
def loaded(request):
    family = request.param
    config, case, d = load_fixture("maskbit", SUBFOLDER[family])
    model = load_tokenizer(family, weights=d / "weights.safetensors", upstream_config=config)
    return family, config, case, model


def test_parity_encode_decode(loaded):
    family, config, case, model = loaded
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    model.keep_features = True
    tokens = model.encode(case["images_uint8"])
    assert tokens.ids[0].dtype == torch.int64
    assert torch.equal(tokens.ids[0], case["indices"])
    feats = model.last_features[0]
    assert feats.shape == (2, 4, 4, config["constructor_kwargs"]["token_size"])
    torch.testing.assert_close(feats, case["latent"].permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    decoded = model.decode_raw(Tokens([case["indices"]], model.layout))
    torch.testing.assert_close(decoded, case["decoded"], atol=2e-4, rtol=0)  # images: 2e-4 (fixtures README)
    # the full round trip (upstream recon goes through the straight-through latent: ≤ 2.4e-5 away for VQGAN+)
    torch.testing.assert_close(model.decode_raw(tokens), case["recon"], atol=2e-4, rtol=0)
    out = model.decode(tokens)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, case["recon"].clamp(0, 1), atol=2e-4, rtol=0)


def test_token_space_and_features(loaded):
    family, config, case, model = loaded
    model.keep_features = True
    tokens = model.encode(case["images_uint8"])
    feats = model.last_features[0]
    space = model.token_space
    if family == "maskbit":
        assert isinstance(space, BinarySpace) and space.bits == 6 and space.vocab_size == 64
        bits = (feats > 0).long()
        assert torch.equal((bits * 2 ** torch.arange(6)).sum(-1), tokens.ids[0])
        # code of id: channel c = +1 iff bit c set (LSB first); equals the official codebook buffer
        assert torch.equal(model.quantize.codes(torch.arange(64).reshape(1, 8, 8)).permute(0, 2, 3, 1).reshape(64, 6),
                           model.quantize.codebook)
        # a single bit flip stays a valid id and changes the decode
        flipped = tokens.ids[0] ^ (1 << 5)
        assert int(flipped.max()) < space.vocab_size
        assert (model.decode_raw(tokens.replace_ids([flipped])) - case["recon"]).abs().max() > 1e-2
    else:
        assert isinstance(space, CodebookSpace) and space.metric == "l2"
        assert torch.equal(space.codes, model.quantize.embedding.weight)
        assert torch.equal(space.scores(feats).argmax(-1), tokens.ids[0])
    with pytest.raises(ValueError, match="out of range"):
        model.decode_raw(tokens.replace_ids([tokens.ids[0] + space.vocab_size]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_official_layout(preset):
    family = get_preset(preset).family
    entry = manifest("maskbit")[PRESETS[preset]]
    config = get_preset(preset).get_config()
    assert config["constructor_kwargs"] == entry["constructor_kwargs"]
    with torch.device("meta"):
        model = get_family(family).build(config)
    sd = get_family(family).checkpoint_filter(meta_state_dict(entry["keys"]), config)  # plain state dict, no wrapper
    assert layout_report(model, sd) == ""
    assert {k: v.dtype for k, v in model.state_dict().items() if k.startswith("quantize.bits")} == (
        {"quantize.bits_to_indices": torch.int32} if family == "maskbit" else {})
    assert model.info.tokens_per_image == 256 and model.layout.groups[0].shape == (16, 16)
    assert model.info.vocab_size == entry["codebook_size"]
    assert model.info.value_range == "[0,1]" and model.info.code_license == "Apache-2.0"
    assert model.info.paper and model.info.weights_license
    assert model.info.quantizer == ("lfq" if family == "maskbit" else "vq")


def test_filter_wrappers_and_buffers():
    config, _, d = load_fixture("maskbit", "lfq")
    from safetensors.torch import load_file

    raw = load_file(str(d / "weights.safetensors"))
    f = get_family("maskbit").checkpoint_filter
    assert set(f({"state_dict": dict(raw)}, config)) == set(raw)
    missing = {k: v for k, v in raw.items() if not k.startswith("quantize.")}
    assert torch.equal(f(missing, config)["quantize.codebook"], raw["quantize.codebook"])
    bad = dict(raw)
    bad["quantize.codebook"] = -raw["quantize.codebook"]
    with pytest.raises(CheckpointMismatchError, match="quantize.codebook"):
        f(bad, config)


def test_config_errors():
    config, _, _ = load_fixture("maskbit", "lfq")
    with pytest.raises(ValueError, match="vqgan_plus"):
        get_family("vqgan_plus").build(config)
    bad = {"constructor_kwargs": dict(config["constructor_kwargs"], model_class="maskgit")}
    with pytest.raises(ValueError, match="maskgit"):
        get_family("maskbit").build(bad)
    config_v, case, _ = load_fixture("maskbit", "vqgan_plus")
    model = get_family("vqgan_plus").build(config_v)
    with pytest.raises(ValueError, match="64x64"):
        model.encode(case["images_uint8"][:, :, :32, :32])


def test_absent_weights_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as err:
        load_tokenizer("maskbit-10bit")
    msg = str(err.value)
    assert str(tmp_path / "markweber--maskbit_tokenizer_10bit" / "maskbit_tokenizer_10bit.bin") in msg and "markweber/maskbit_tokenizer_10bit" in msg
