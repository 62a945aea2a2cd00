"""Adapters of the taming-transformers lineage (taming VQGAN, LlamaGen VQ, IBQ, VQGAN-LC, Open-MAGVIT2):
parity with the upstream fixtures, official key layouts, token spaces, EMA selection, metadata, offline errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tokbench import load_tokenizer
from tokbench.api import BinarySpace, CodebookSpace, Tokens
from tokbench.registry import get_family, get_preset, list_tokenizers
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError

torch.set_num_threads(1)


@dataclasses.dataclass
class Spec:
    family: str
    presets: dict  # manifest preset key -> our preset name
    latent: str  # the case tensor holding the pre-quantisation latent
    metric: str | None  # None for binary spaces
    codes: str | None = "codebook"  # the case tensor holding the effective codes
    decoded_atol: float = 2e-4
    recon_atol: float = 2e-4


SPECS = {
    "taming_vqgan": Spec("taming_vqgan", {"f16-1024": "taming-vqgan-f16-1024", "f16-16384": "taming-vqgan-f16-16384"},
                         latent="z", metric="l2"),
    "llamagen_vq": Spec("llamagen_vq", {"VQ-16 (vq_ds16_c2i)": "llamagen-vq16", "VQ-8 (vq_ds8_c2i)": "llamagen-vq8"},
                        latent="pre_quant", metric="cosine"),
    "ibq": Spec("ibq", {f"imagenet256_{n}": f"ibq-{n}" for n in (1024, 8192, 16384, 262144)},
                latent="pre_quant", metric="dot"),
    "vqgan_lc": Spec("vqgan_lc", {"vqgan-lc-100K-f16-dim8": "vqgan-lc-100k"}, latent="z", metric="l2"),
    "open_magvit2": Spec("open_magvit2", {"imagenet_256_L": "open-magvit2-256-l"}, latent="encoder_out", metric=None,
                         codes=None),
}


def _load(family: str):
    config, case, d = load_fixture(family)
    model = load_tokenizer(family, upstream_config=config, weights=d / "weights.safetensors")
    return model, config, case


@pytest.fixture(scope="module", params=sorted(SPECS))
def loaded(request):
    spec = SPECS[request.param]
    model, config, case = _load(spec.family)
    model.keep_features = True
    tokens = model.encode(case["images_uint8"])
    return spec, model, config, case, tokens


# ----------------------------------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------------------------------
def test_model_input_matches_upstream(loaded):
    spec, model, _, case, _ = loaded
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])


def test_ids_match_fixture_exactly(loaded):
    spec, model, _, case, tokens = loaded
    assert len(tokens.as_list()) == 1
    assert tokens.as_list()[0].shape == case["indices"].shape
    assert torch.equal(tokens.as_list()[0], case["indices"])


def test_decode_raw_matches_fixture(loaded):
    spec, model, _, case, _ = loaded
    out = model.decode_raw(Tokens([case["indices"].clone()], model.layout))
    torch.testing.assert_close(out, case["decoded"], atol=spec.decoded_atol, rtol=0)


def test_round_trip_matches_recon(loaded):
    spec, model, _, case, tokens = loaded
    torch.testing.assert_close(model.decode_raw(tokens), case["recon"], atol=spec.recon_atol, rtol=0)


def test_decode_is_clamped_unit_range(loaded):
    spec, model, _, case, tokens = loaded
    out = model.decode(tokens)
    ref = ((case["recon"] + 1) / 2).clamp(0, 1)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, ref, atol=spec.recon_atol, rtol=0)


def test_last_features_are_the_quantiser_input(loaded):
    spec, model, _, case, tokens = loaded
    feats = model.last_features
    assert feats is not None and len(feats) == 1
    g = model.layout.groups[0]
    latent = case[spec.latent]
    assert feats[0].shape == (latent.shape[0], *g.shape, latent.shape[1])
    torch.testing.assert_close(feats[0], latent.permute(0, 2, 3, 1), atol=1e-5, rtol=0)
    space = model.token_spaces[g.spaces[0]]
    if isinstance(space, CodebookSpace):
        assert torch.equal(space.scores(feats[0]).argmax(-1), tokens.ids[0])
    else:  # binary: bit c of the id is the sign of channel c
        bits = (feats[0] > 0).long()
        assert torch.equal((bits << torch.arange(space.bits)).sum(-1), tokens.ids[0])


def test_token_space_holds_effective_codes(loaded):
    spec, model, _, case, _ = loaded
    space = model.token_space
    if spec.metric is None:
        assert isinstance(space, BinarySpace) and space.lsb_first
        assert space.vocab_size == 2**space.bits == model.info.vocab_size
        return
    assert isinstance(space, CodebookSpace)
    assert space.metric == spec.metric and space.vocab_size == model.info.vocab_size
    if spec.codes:
        torch.testing.assert_close(space.codes, case[spec.codes], atol=1e-6, rtol=0)
    if spec.metric in ("l2", "cosine"):  # every code is its own nearest neighbour
        assert torch.equal(space.scores(space.codes).argmax(-1), torch.arange(space.vocab_size))


def test_metadata(loaded):
    spec, model, config, case, _ = loaded
    info = model.info
    assert info.family == spec.family
    assert info.resolution == case["images_uint8"].shape[-1]
    assert info.tokens_per_image == model.layout.tokens_per_image == case["indices"][0].numel()
    assert info.value_range == "[-1,1]" and info.crop == "adm"
    assert info.paper and info.code_license and info.weights_license
    if spec.family == "vqgan_lc":  # no licence is published: say so
        assert "no licence" in info.code_license and "no licence" in info.weights_license


# ----------------------------------------------------------------------------------------------------------------------
# Official layouts, presets, errors
# ----------------------------------------------------------------------------------------------------------------------
def _wrap_official(family: str, sd: dict, entry: dict) -> dict:
    """The meta state dict wrapped the way the manifest says the official file is."""
    meta = torch.empty(1, device="meta")
    if family == "taming_vqgan":
        return {"state_dict": {**sd, "loss.discriminator.main.0.weight": meta, "loss.logvar": meta}, "epoch": 1}
    if family == "llamagen_vq":
        return {"model": sd, "steps": 400000}
    if family == "vqgan_lc":
        extra = meta_state_dict(entry["extra_checkpoint_keys"])
        return {"state_dict": {**sd, **extra}, "epoch": 100}
    if family in ("ibq", "open_magvit2"):
        return {"state_dict": _lit_ema_wrap(sd, sd, entry), "global_step": 1}
    raise AssertionError(family)


def _lit_ema_wrap(raw: dict, ema: dict, entry: dict | None = None) -> dict:
    """A Lightning state dict with LitEma copies, as SEED-Voken writes it: raw generator keys, `loss.*`,
    `model_ema.<key without dots>` for the generator (and the discriminator), decay and num_updates."""
    meta = torch.empty(1, device="meta")
    out = dict(raw)
    out.update({"model_ema." + k.replace(".", ""): v for k, v in ema.items()})
    loss_keys = [r[0] for r in (entry or {}).get("ckpt_loss_keys", [])] or ["loss.discriminator.main.0.weight"]
    out.update({k: meta for k in loss_keys})
    out.update({"model_ema." + k.replace(".", ""): meta for k in loss_keys if k.startswith("loss.discriminator.")})
    out["model_ema.decay"] = torch.tensor(0.999)
    out["model_ema.num_updates"] = torch.tensor(1000)
    return out


PRESET_CASES = [(f, k, p) for f, s in SPECS.items() for k, p in s.presets.items()]


@pytest.mark.parametrize("family,key,preset", PRESET_CASES, ids=[c[2] for c in PRESET_CASES])
def test_official_layout(family, key, preset):
    entry = manifest(family)[key]
    p = get_preset(preset)
    assert p.family == family
    config = p.get_config()
    official = entry["constructor_kwargs"]
    shared = [k for k in config["constructor_kwargs"] if k in official and k != "lossconfig"]
    assert shared and all(config["constructor_kwargs"][k] == official[k] for k in shared), shared
    with torch.device("meta"):
        model = get_family(family).build(config)
    sd = get_family(family).checkpoint_filter(_wrap_official(family, meta_state_dict(entry["keys"]), entry), config)
    assert layout_report(model, sd) == ""
    assert model.info.tokens_per_image == p.info["tokens_per_image"]
    assert model.info.vocab_size == p.info["vocab_size"]


def test_every_preset_is_covered():
    for family, spec in SPECS.items():
        assert sorted(list_tokenizers(family)) == sorted(spec.presets.values())


@pytest.mark.parametrize("family", sorted(SPECS))
def test_missing_weights_offline_names_the_place(family, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    preset = sorted(SPECS[family].presets.values())[0]
    with pytest.raises(WeightsNotFoundError) as e:
        with torch.device("meta"):
            load_tokenizer(preset)
    msg = str(e.value)
    assert str(tmp_path) in msg and preset in msg
    filename = msg.split(str(tmp_path))[1].split()[0].strip("/")
    assert filename and not filename.startswith(("?", "(")), msg


def test_decode_of_encode_equals_decoding_the_quantised_latent(loaded):
    spec, model, _, case, tokens = loaded
    with torch.no_grad():
        z = model.encode_latent(model.to_model_input(case["images_uint8"]))
        zq, ids = model.quantize_latent(z)
        ref = model.decode_latent(zq)
    assert torch.equal(ids, tokens.ids[0])
    assert torch.equal(model.decode_raw(tokens), ref)
    assert torch.equal(model.decode(tokens), ((ref + 1) / 2).clamp(0, 1))


def test_wrong_image_size_is_a_clear_error():
    model, _, case = _load("taming_vqgan")
    with pytest.raises(ValueError, match="expected 128x128"):
        model.encode(case["images_uint8"][..., :64, :64])


@pytest.mark.parametrize("family", ["ibq", "open_magvit2"])
def test_filter_takes_the_lit_ema_weights(family):
    config, _, d = load_fixture(family)
    from safetensors.torch import load_file

    ema = {k: v.clone() for k, v in load_file(str(d / "weights.safetensors")).items()}
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    fam = get_family(family)
    sd = fam.checkpoint_filter({"state_dict": _lit_ema_wrap(raw, ema), "epoch": 3}, config)
    assert sorted(sd) == sorted(ema) and all(torch.equal(sd[k], ema[k]) for k in ema)
    model = fam.build(config)
    model.load_state_dict(sd, strict=True)
    # without EMA copies (the fixture's flat file) the generator keys pass through; a partial EMA set is refused
    assert all(torch.equal(a, b) for a, b in zip(fam.checkpoint_filter(raw, config).values(), raw.values()))
    partial = _lit_ema_wrap(raw, dict(list(ema.items())[:3]))
    with pytest.raises(Exception, match="EMA"):
        fam.checkpoint_filter({"state_dict": partial}, config)


def test_llamagen_filter_prefers_ema():
    config, _, d = load_fixture("llamagen_vq")
    from safetensors.torch import load_file

    ema = load_file(str(d / "weights.safetensors"))
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    sd = get_family("llamagen_vq").checkpoint_filter({"model": raw, "ema": ema}, config)
    assert torch.equal(sd["decoder.up.0.block.0.conv1.weight"], ema["decoder.conv_blocks.4.res.0.conv1.weight"])


# ----------------------------------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
def test_nearest_code_chunked_equals_dense(metric):
    from tokbench.nn.quantize import code_scores, nearest_code

    g = torch.Generator().manual_seed(0)
    z, codes = torch.randn(50, 6, generator=g), torch.randn(97, 6, generator=g) * torch.rand(97, 1, generator=g)
    codes[40] = codes[7]  # an exact tie resolves to the lower index, across chunks too
    z[3] = codes[7] * (1.0 if metric != "dot" else 0.0) + (codes[7] if metric == "dot" else 0.0)
    dense = code_scores(z, codes, metric).argmax(1)
    assert torch.equal(nearest_code(z, codes, metric), dense)
    assert torch.equal(nearest_code(z, codes, metric, chunk_elements=50 * 8), dense)
    assert int(nearest_code(z, codes, metric, chunk_elements=50 * 8)[3]) != 40


def test_benchmark_collects_every_preset_of_these_families():
    import importlib.util

    from tokbench.testing import project_root

    spec = importlib.util.spec_from_file_location("perf_adapters",
                                                  project_root() / "benchmarks" / "perf" / "perf_adapters.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    collected = mod.bench_presets()
    for s in SPECS.values():
        assert set(s.presets.values()) <= set(collected)


def test_taming_config_rejects_impossible_shapes():
    from tokbench.nn.taming import TamingConfig

    assert TamingConfig.from_ddconfig({"ch": 128, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 2, "resolution": 256,
                                       "attn_resolutions": [16], "z_channels": 256}).attn_levels == ()
    assert TamingConfig.from_ddconfig({"ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "resolution": 256,
                                       "attn_resolutions": [16], "z_channels": 256}).attn_levels == (4,)
    with pytest.raises(ValueError, match="attn_levels"):
        TamingConfig(ch_mult=(1, 2, 2, 4), attn_levels=(4,))
    with pytest.raises(ValueError, match="multiple of 32"):
        TamingConfig(ch=48)
