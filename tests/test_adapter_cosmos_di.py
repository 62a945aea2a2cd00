"""Cosmos-DI adapter: JIT and torch-mode parity with the fixture, official key layouts, FSQ token space."""

from __future__ import annotations

import warnings

import pytest
import torch

from tokbench.api import FSQSpace, Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError

PRESETS = {"cosmos-di8x8": "Cosmos-0.1-Tokenizer-DI8x8", "cosmos-di16x16": "Cosmos-0.1-Tokenizer-DI16x16"}
LEVELS = (8, 8, 8, 5, 5, 5)
BASIS = torch.tensor([1, 8, 64, 512, 2560, 12800])
HALF = torch.tensor([4, 4, 4, 2, 2, 2])


@pytest.fixture(scope="module")
def fixture():
    return load_fixture("cosmos_di")


@pytest.fixture(scope="module", params=["torch", "jit"])
def loaded(request, fixture):
    config, case, d = fixture
    weights = d / "weights.safetensors" if request.param == "torch" else d  # the folder with encoder.jit/decoder.jit
    model = load_tokenizer("cosmos_di", weights=weights, upstream_config=config)
    assert model.runtime == request.param
    return request.param, model


def _ids_from_features(f: torch.Tensor) -> torch.Tensor:
    return ((torch.round(f * HALF) + HALF) * BASIS).sum(-1).long()


@pytest.mark.parametrize("keep_features", [False, True])
def test_parity(loaded, fixture, keep_features):
    runtime, model = loaded
    _, case, _ = fixture
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    model.keep_features = keep_features
    tokens = model.encode(case["images_uint8"])
    assert tokens.ids[0].dtype == torch.int64 and torch.equal(tokens.ids[0], case["indices"])
    if keep_features:
        feats = model.last_features[0]
        assert feats.shape == (2, 8, 8, 6)
        assert torch.equal(_ids_from_features(feats), case["indices"])  # nearest grid point = the id
        torch.testing.assert_close(feats * HALF, model.fsq.bound(case["prequant"].permute(0, 2, 3, 1)), atol=2e-5,
                                   rtol=0)
    else:
        assert model.last_features is None
    decoded = model.decode_raw(Tokens([case["indices"]], model.layout))
    torch.testing.assert_close(decoded, case["decoded"], atol=2e-4, rtol=0)
    # the wrapper's uint8 post-processing on our decode: at most one level off (float noise at rounding edges)
    u8 = (model.decode(tokens) * 255 + 0.5).to(torch.uint8)
    assert (u8.int() - case["recon_uint8"].int()).abs().max() <= 1


def test_torch_mode_internals(fixture):
    config, case, d = fixture
    model = load_tokenizer("cosmos_di", weights=d / "weights.safetensors", upstream_config=config)
    with torch.no_grad():
        prequant = model.net.quant_conv(model.net.encoder(case["model_input"]))
        torch.testing.assert_close(prequant, case["prequant"], atol=1e-5, rtol=0)
        ids, codes, _ = model.fsq.quantize(case["prequant"])
    assert torch.equal(ids, case["indices"]) and torch.equal(codes, case["codes"])
    assert torch.equal(model.fsq.codes_from_ids(case["indices"], torch.float32), case["codes"])


def test_jit_runs_in_its_own_dtype(fixture):
    """`.to(dtype)` on the tokenizer never reaches the TorchScript files (their dtype is baked into the graph), the
    fuser setting is restored, and runtime='torch' forces the rebuild even with .jit files."""
    config, case, d = fixture
    model = load_tokenizer("cosmos_di", weights=d, upstream_config=config)
    before = torch._C._jit_texpr_fuser_enabled()
    model.to(torch.bfloat16)
    assert model.compute_dtype == torch.float32
    assert torch.equal(model.encode(case["images_uint8"]).ids[0], case["indices"])
    assert all(p.dtype == torch.float32 for m in model._jit for p in m.parameters())
    assert torch._C._jit_texpr_fuser_enabled() == before
    forced = load_tokenizer("cosmos_di", weights=d, upstream_config={**config, "runtime": "torch"})
    assert forced.runtime == "torch" and forced._jit is None
    assert torch.equal(forced.encode(case["images_uint8"]).ids[0], case["indices"])


def test_bf16_jit_file(fixture, tmp_path):
    """A bf16-traced pair (as the official export makes them) runs in bf16 without any cast of the files."""
    config, case, d = fixture
    src = load_tokenizer("cosmos_di", weights=d / "weights.safetensors", upstream_config=config)
    net = src.net.to(torch.bfloat16)

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.quant_conv, self.quantizer = net.encoder, net.quant_conv, _Quant(net.quantizer)

        def forward(self, x):
            return self.quantizer(self.quant_conv(self.encoder(x)))

    class _Quant(torch.nn.Module):
        def __init__(self, fsq):
            super().__init__()
            self.fsq = fsq

        def forward(self, z):
            ids, codes, _ = self.fsq.quantize(z)
            return ids.int(), codes, torch.zeros(z.shape[0], 1, 1, 1, dtype=z.dtype)

    class Dec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.post_quant_conv, self.decoder = net.post_quant_conv, net.decoder

        def forward(self, ids):
            return self.decoder(self.post_quant_conv(net.quantizer.codes_from_ids(ids, torch.bfloat16)))

    images = case["images_uint8"][:, :, 32:96, 32:96].contiguous()  # 64 px keeps bf16 CPU convs quick
    small = {**config, "image_size": 64}
    reference = load_tokenizer("cosmos_di", weights=d / "weights.safetensors", upstream_config=small).encode(images)
    x = src.to_model_input(images)[:1].to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enc = torch.jit.trace(Enc().eval(), x, strict=True, check_trace=False)
        dec = torch.jit.trace(Dec().eval(), reference.ids[0][:1], strict=True, check_trace=False)
        torch.jit.save(enc, str(tmp_path / "encoder.jit"))
        torch.jit.save(dec, str(tmp_path / "decoder.jit"))
    model = load_tokenizer("cosmos_di", weights=tmp_path, upstream_config=small)
    assert model.runtime == "jit" and model.compute_dtype == torch.bfloat16
    assert model.to_model_input(images).dtype == torch.bfloat16
    model.keep_features = True
    tokens = model.encode(images)
    agree = (tokens.ids[0] == reference.ids[0]).float().mean().item()
    assert agree >= 0.8  # bf16 changes a few percent of the ids against float32 (README: 3.1%)
    out = model.decode_raw(tokens)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    assert all(p.dtype == torch.bfloat16 for m in model._jit for p in m.parameters())


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_official_layout(preset):
    entry = manifest("cosmos_di")[PRESETS[preset]]
    config = get_preset(preset).get_config()
    assert config["constructor_kwargs"] == entry["constructor_kwargs"]
    family = get_family("cosmos_di")
    with torch.device("meta"):
        model = family.build(config)
    assert layout_report(model, family.checkpoint_filter(meta_state_dict(entry["keys"]), config)) == ""
    jit = entry["jit_files"]
    pair = meta_state_dict(jit["encoder.jit"]["keys"] + jit["decoder.jit"]["keys"])  # what read_weights returns
    assert layout_report(model, family.checkpoint_filter(pair, config)) == ""
    assert layout_report(model, family.checkpoint_filter(meta_state_dict(jit["autoencoder.jit"]["keys"]), config)) == ""
    s = 8 if preset == "cosmos-di8x8" else 16
    assert model.layout.groups[0].shape == (256 // s, 256 // s) and model.info.tokens_per_image == (256 // s) ** 2
    assert model.info.vocab_size == 64000 and model.info.quantizer == "fsq" and model.info.value_range == "[-1,1]"
    assert model.info.code_license == "Apache-2.0" and model.info.weights_license == "NVIDIA Open Model License"
    assert sum(p.numel() for p in model.parameters()) == entry["num_params"]


def test_fsq_token_space(loaded, fixture):
    _, model = loaded
    _, case, _ = fixture
    space = model.token_space
    assert isinstance(space, FSQSpace) and space.levels == LEVELS and space.vocab_size == 64000
    assert space.bases == tuple(BASIS.tolist())
    ids = torch.arange(64000).reshape(1, 250, 256)
    codes = model.fsq.codes_from_ids(ids, torch.float32).permute(0, 2, 3, 1)
    assert torch.equal(_ids_from_features(codes), ids)  # the grid is a bijection with dim 0 least significant
    assert codes.min() == -1 and codes[..., :3].max() == 0.75 and codes[..., 3:].max() == 1
    # a grid step (digit 0 ± 1, kept in range) is a valid id and changes the decode
    tokens = Tokens([case["indices"]], model.layout)
    d0 = case["indices"] % 8
    step = torch.where(d0 < 7, case["indices"] + 1, case["indices"] - 1)
    assert int(step.max()) < 64000
    assert (model.decode_raw(tokens.replace_ids([step])) - case["decoded"]).abs().max() > 1e-2
    with pytest.raises(ValueError, match="out of range"):
        model.decode_raw(tokens.replace_ids([case["indices"] + 64000]))


def test_bad_inputs(fixture, tmp_path):
    config, case, d = fixture
    with pytest.raises(WeightsNotFoundError, match="encoder.jit"):
        load_tokenizer("cosmos_di", weights=tmp_path, upstream_config=config)
    model = load_tokenizer("cosmos_di", weights=d / "weights.safetensors", upstream_config=config)
    with pytest.raises(ValueError, match="128x128"):
        model.encode(case["images_uint8"][:, :, :120, :120])
    with pytest.raises(ValueError, match="runtime"):
        get_family("cosmos_di").build({**config, "runtime": "onnx"})


def test_absent_weights_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as err:
        load_tokenizer("cosmos-di16x16")
    msg = str(err.value)
    assert str(tmp_path / "nvidia--Cosmos-0.1-Tokenizer-DI16x16") in msg and "nvidia/Cosmos-0.1-Tokenizer-DI16x16" in msg
