"""TiTok adapters (`titok` two-stage L/B/S, `titok_vq8k` single-stage): parity with the 1d-tokenizer fixtures,
official key layouts of all six presets, 1-D token spaces, HF snapshot folders with config.json, offline errors."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from tokbench.api import TokenLayout, Tokens
from tokbench.registry import get_family, get_preset, list_tokenizers, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import CheckpointMismatchError, WeightsNotFoundError

FAMILIES = ["titok", "titok_vq8k"]
PRESETS = {  # preset → (family, manifest entry)
    "titok-l32": ("titok", "titok_l32"), "titok-b64": ("titok", "titok_b64"), "titok-s128": ("titok", "titok_s128"),
    "titok-bl64-vq8k": ("titok_vq8k", "titok_bl64_vq8k"), "titok-bl128-vq8k": ("titok_vq8k", "titok_bl128_vq8k"),
    "titok-sl256-vq8k": ("titok_vq8k", "titok_sl256_vq8k"),
}


@pytest.fixture(scope="module", params=FAMILIES)
def fx(request):
    config, case, d = load_fixture(request.param)
    model = load_tokenizer(request.param, upstream_config=config, weights=d / "weights.safetensors")
    model.keep_features = True
    return request.param, model, case


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """Offline, with an empty weights folder and an empty Hub cache."""
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


def test_parity_encode(fx):
    family, model, case = fx
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    tokens = model.encode(case["images_uint8"])
    assert model.layout == TokenLayout.sequence(8) and model.layout.groups[0].kind == "sequence"
    assert torch.equal(tokens.ids[0], case["indices"][:, 0])  # upstream (B, 1, N): the 1 is a fake height
    feats = model.last_features[0]  # B x N x D, pre-quantisation
    torch.testing.assert_close(feats, case["z"][:, :, 0].transpose(1, 2), atol=1e-5, rtol=0)
    assert torch.equal(model.token_space.scores(feats).argmax(-1), tokens.ids[0])


def test_parity_decode(fx):
    family, model, case = fx
    ids = case["indices"][:, 0]
    tokens = Tokens([ids], model.layout)
    torch.testing.assert_close(model.token_space.codes[ids], case["quant"][:, :, 0].transpose(1, 2), atol=1e-5, rtol=0)
    if family == "titok":
        torch.testing.assert_close(model.logits(ids), case["logits"], atol=1e-5, rtol=0)
    atol = 2e-4  # images: the fixtures README bound
    torch.testing.assert_close(model.decode_raw(tokens), case["decoded"], atol=atol, rtol=0)
    torch.testing.assert_close(model.decode_raw(model.encode(case["images_uint8"])), case["recon"], atol=atol, rtol=0)
    torch.testing.assert_close(model.decode(tokens), case["decoded"].clamp(0, 1), atol=atol, rtol=0)


def test_token_space_and_metadata(fx):
    family, model, _ = fx
    space = model.token_space
    w = model.quantize.embedding.weight
    if family == "titok":
        assert space.metric == "cosine" and (space.vocab_size, space.dim) == (4096, 12)
        torch.testing.assert_close(space.codes, torch.nn.functional.normalize(w, dim=-1), atol=0, rtol=0)
    else:
        assert space.metric == "l2" and (space.vocab_size, space.dim) == (8192, 64)
        assert torch.equal(space.codes, w)
    assert torch.equal(space.scores(space.codes[:512]).argmax(-1), torch.arange(512))
    info = model.info
    assert (info.family, info.value_range, info.resolution, info.tokens_per_image) == (family, "[0,1]", 64, 8)
    assert info.vocab_size == space.vocab_size and "Apache-2.0" in info.code_license and info.weights_license
    with pytest.raises(ValueError, match="64x64"):
        model.encode(torch.zeros(1, 3, 48, 48, dtype=torch.uint8))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_official_layout(preset, no_hub):
    family, entry_name = PRESETS[preset]
    entry = manifest(family)[entry_name]
    p = get_preset(preset)
    assert p.family == family and p.weights == f"hf://{entry['hf_repo']}"
    cfg = p.get_config()
    assert cfg["constructor_kwargs"] == entry["constructor_kwargs"]
    fam = get_family(family)
    with torch.device("meta"):
        model = fam.build(copy.deepcopy(cfg))
    assert layout_report(model, fam.checkpoint_filter(meta_state_dict(entry["keys"]), cfg)) == ""
    assert sum(t.numel() for t in model.state_dict().values()) == entry["num_params"]
    n = entry["constructor_kwargs"]["config"]["model"]["vq_model"]["num_latent_tokens"]
    assert model.layout == TokenLayout.sequence(n) and model.info.resolution == 256


def test_bench_presets_registered():
    from tokbench_adapters import titok

    assert sorted(titok.BENCH_PRESETS) == sorted(PRESETS) == sorted(list_tokenizers("titok") + list_tokenizers("titok_vq8k"))


def _snapshot(folder, d, inner: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"experiment": {"project": "x"}, **inner}))
    shutil.copy(d / "weights.safetensors", folder / "model.safetensors")


def test_hf_snapshot_folder_and_config_json(no_hub):
    config, case, d = load_fixture("titok_vq8k")
    inner = config["constructor_kwargs"]["config"]
    _snapshot(no_hub / "someorg--tiny-titok", d, inner)
    # hf://org/repo@rev whole-snapshot spec, served from the weights folder (offline)
    model = load_tokenizer("titok_vq8k", upstream_config=config, weights="hf://someorg/tiny-titok@abc123")
    assert torch.equal(model.encode(case["images_uint8"]).ids[0], case["indices"][:, 0])
    # a folder whose config.json describes another model is refused, naming the difference
    bad = copy.deepcopy(inner)
    bad["model"]["vq_model"]["is_legacy"] = True
    _snapshot(no_hub / "other", d, bad)
    with pytest.raises(CheckpointMismatchError, match="is_legacy"):
        load_tokenizer("titok_vq8k", upstream_config=config, weights=no_hub / "other")


def test_preset_reads_repo_config_json(no_hub):
    """A snapshot already on this machine: its config.json builds the preset (and must agree with it)."""
    p = get_preset("titok-s128")
    theirs = copy.deepcopy(p.get_config()["constructor_kwargs"]["config"])
    theirs["experiment"] = {"tokenizer_checkpoint": "tokenizer_titok_s128.bin"}
    folder = no_hub / "yucornetto--tokenizer_titok_s128_imagenet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(theirs))
    assert p.get_config()["constructor_kwargs"]["config"] == theirs
    theirs["model"]["vq_model"]["num_latent_tokens"] = 64
    (folder / "config.json").write_text(json.dumps(theirs))
    with pytest.raises(CheckpointMismatchError, match="num_latent_tokens"):
        p.get_config()


@pytest.mark.parametrize("preset", ["titok-l32", "titok-sl256-vq8k"])
def test_offline_error_names_where_to_put_the_files(preset, no_hub):
    with torch.device("meta"), pytest.raises(WeightsNotFoundError) as e:
        load_tokenizer(preset)
    repo = get_preset(preset).weights[len("hf://"):]
    assert str(no_hub / repo.replace("/", "--")) in str(e.value) and repo in str(e.value)


def test_bad_config_errors():
    config, _, _ = load_fixture("titok")
    cfg = copy.deepcopy(config)
    cfg["constructor_kwargs"]["config"]["model"]["vq_model"]["vit_enc_model_size"] = "huge"
    with pytest.raises(ValueError, match="huge"):
        get_family("titok").build(cfg)
    cfg = copy.deepcopy(config)
    cfg["constructor_kwargs"]["config"]["model"]["vq_model"]["quantize_mode"] = "vae"
    with pytest.raises(ValueError, match="VAE"):
        get_family("titok").build(cfg)
