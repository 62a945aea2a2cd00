"""UniTok adapter: parity with the upstream fixture, official key layout, token spaces, metadata, offline error."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from tokbench.api import CodebookSpace, Tokens
from tokbench.registry import get_family, get_preset, list_tokenizers, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError

unitok = pytest.importorskip("tokbench_adapters.unitok")


@pytest.fixture(scope="module")
def fixture():
    config, case, d = load_fixture("unitok")
    model = load_tokenizer("unitok", upstream_config=config, weights=str(d / "weights.safetensors"))
    return config, case, d, model


def _grid(config):
    n = config["constructor_kwargs"]["img_size"] // 16
    return n, n


# ----------------------------------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------------------------------
def test_input_conversion_matches_upstream(fixture):
    _, case, _, model = fixture
    x = model.to_model_input(case["images_uint8"])
    assert x.dtype == torch.float32
    assert torch.equal(x, case["model_input"])  # x/255 then x+x-1 in float32, bit for bit


def test_encode_ids_and_latent_match_fixture(fixture):
    config, case, _, model = fixture
    with torch.no_grad():
        assert torch.allclose(model.encoder(case["model_input"]), case["encoder_tokens"], atol=1e-4, rtol=0)
        assert torch.allclose(model.latent(case["model_input"]), case["latent"], atol=1e-5, rtol=0)
    tokens = model.encode(case["images_uint8"])
    (ids,) = tokens.as_list()
    h, w = _grid(config)
    n_sub = config["num_codebooks"]
    assert ids.shape == (2, h, w, n_sub) and ids.dtype == torch.int64
    # README: indices exact. Mapping ours (B×h×w×n_sub) ↔ upstream (B×n_sub×L).
    assert torch.equal(unitok.to_upstream_ids(ids), case["indices"])
    assert torch.equal(ids, case["indices"].view(2, n_sub, h, w).permute(0, 2, 3, 1))
    assert torch.equal(unitok.from_upstream_ids(case["indices"], h, w), ids)


def test_decode_raw_matches_fixture(fixture):
    config, case, _, model = fixture
    ids = unitok.from_upstream_ids(case["indices"], *_grid(config))
    tokens = Tokens([ids], model.layout)
    with torch.no_grad():
        quant = model.quantizer.idx_to_f(ids.reshape(2, -1, ids.shape[-1]))
        assert torch.allclose(quant, case["quant"], atol=1e-6, rtol=0)
        # tighter than the README's 1e-4 on purpose: a LayerNorm eps of 1e-6 instead of 1e-5 in the attention
        # projection moves post_quant by 3e-5 but decoded_raw only by 6e-5 (our build is bit-exact on CPU)
        assert torch.allclose(model.post_quant_proj(quant), case["post_quant"], atol=1e-5, rtol=0)
        raw = model.decode_raw(tokens)
    assert raw.shape == case["decoded_raw"].shape
    assert (raw - case["decoded_raw"]).abs().max() <= 1e-4  # README tolerance
    dec = model.decode(tokens)
    assert dec.min() >= 0 and dec.max() <= 1
    assert torch.allclose(dec * 2 - 1, case["decoded"], atol=2e-4, rtol=0)


def test_round_trip_matches_recon(fixture):
    _, case, _, model = fixture
    rec = model.decode(model.encode(case["images_uint8"])) * 2 - 1
    # recon uses the straight-through latent (≤ 6.9e-6 from decoding the ids, README)
    assert torch.allclose(rec, case["recon"], atol=2e-4, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# Token spaces, features, layout
# ----------------------------------------------------------------------------------------------------------------------
def test_token_spaces_are_normalised_sub_codebooks(fixture):
    config, _, d, model = fixture
    from safetensors.torch import load_file

    raw = load_file(str(d / "weights.safetensors"))
    n_sub, sub = config["num_codebooks"], config["sub_codebook_size"]
    spaces = model.token_spaces
    assert len(spaces) == n_sub
    assert model.layout.groups[0].spaces == tuple(range(n_sub))
    for i, s in enumerate(spaces):
        assert isinstance(s, CodebookSpace) and s.metric == "cosine" and s.vocab_size == sub
        assert s.dim == config["sub_codebook_dim"]
        expected = F.normalize(raw[f"quantizer.codebooks.{i}.codebook.weight"], dim=1)
        assert torch.allclose(s.codes, expected, atol=1e-7, rtol=0)
        assert torch.allclose(s.codes.norm(dim=1), torch.ones(sub), atol=1e-5)
    with pytest.raises(AttributeError):
        model.token_space  # several spaces: must use token_spaces


def test_last_features_give_the_ids(fixture):
    config, case, _, model = fixture
    model.keep_features = True
    try:
        tokens = model.encode(case["images_uint8"])
        feats = model.last_features
    finally:
        model.keep_features = False
    (ids,) = tokens.as_list()
    (f,) = feats
    assert f.shape == (*ids.shape, config["sub_codebook_dim"])
    for j, s in enumerate(model.token_spaces):
        assert torch.equal(s.scores(f[..., j, :]).argmax(-1), ids[..., j])
    # features are the un-normalised latent chunks
    assert torch.allclose(f.reshape(2, -1, config["constructor_kwargs"]["vocab_width"]), case["latent"], atol=1e-4)
    # perturbation-style neighbours (top-k under each space's metric) are valid ids of that space
    for j, s in enumerate(model.token_spaces):
        nn_ids = s.scores(f[..., j, :]).topk(5, dim=-1).indices
        assert nn_ids.min() >= 0 and nn_ids.max() < s.vocab_size


def test_flat_round_trip_and_bad_tokens(fixture):
    _, case, _, model = fixture
    tokens = model.encode(case["images_uint8"])
    assert tokens.flat().shape == (2, model.info.tokens_per_image)
    back = Tokens.from_flat(tokens.flat(), model.layout)
    assert torch.equal(back.ids[0], tokens.ids[0])
    bad = tokens.ids[0].clone()
    bad[0, 0, 0, 1] = model.token_spaces[1].vocab_size
    with pytest.raises(ValueError, match="out of range"):
        model.decode_raw(Tokens([bad], model.layout))


def test_bad_images_are_refused(fixture):
    _, case, _, model = fixture
    with pytest.raises(TypeError):
        model.encode(case["model_input"])
    with pytest.raises(ValueError, match="64"):
        model.encode(case["images_uint8"][:, :, :32, :32])


def test_id_mapping_helpers_are_inverse():
    g = torch.Generator().manual_seed(0)
    up = torch.randint(0, 4096, (3, 8, 16 * 16), generator=g)
    ours = unitok.from_upstream_ids(up, 16, 16)
    assert ours.shape == (3, 16, 16, 8)
    assert torch.equal(ours[1, 2, 5, 6], up[1, 6, 2 * 16 + 5])
    assert torch.equal(unitok.to_upstream_ids(ours), up)


# ----------------------------------------------------------------------------------------------------------------------
# Official checkpoint layout and loading
# ----------------------------------------------------------------------------------------------------------------------
def _official_meta_model():
    preset = get_preset("unitok")
    with torch.device("meta"):
        model = get_family("unitok").build(preset.get_config())
    return preset, model


def test_official_layout_matches_manifest():
    man = manifest("unitok")["unitok_large_256"]
    preset, model = _official_meta_model()
    assert preset.get_config()["constructor_kwargs"] == man["constructor_kwargs"]
    keys = meta_state_dict(man["keys"])
    official = {"args": OrderedDict(model="vitamin_large", vocab_size=32768),
                "trainer": {"unitok": keys, "disc": {"head.weight": torch.empty(3, device="meta")}}}
    fam = get_family("unitok")
    sd = fam.checkpoint_filter(official, preset.get_config())
    assert layout_report(model, sd) == ""
    assert not any(k.startswith(("text_encoder.", "fc_norm.", "projection.")) or k.endswith("vocab_usage") for k in sd)
    assert "logit_scale" not in sd and "encoder.pos_embed" in sd
    # a flattened copy (as `tokbench convert` writes) and the bare state dict give the same keys
    flat = {f"trainer.unitok.{k}": v for k, v in keys.items()}
    flat["args.dummy"] = torch.empty(1, device="meta")
    assert set(fam.checkpoint_filter(flat, preset.get_config())) == set(sd)
    assert set(fam.checkpoint_filter(keys, preset.get_config())) == set(sd)
    # full-size tokens: 16×16×8, 8 cosine spaces of 4096 × 8
    assert model.layout.groups[0].shape == (16, 16, 8)
    assert [s.vocab_size for s in model.token_spaces] == [4096] * 8
    assert model.info.tokens_per_image == 2048 and model.info.resolution == 256


def test_metadata_and_presets():
    assert "unitok" in list_tokenizers("unitok")
    preset = get_preset("unitok")
    assert preset.weights == "hf://FoundationVision/unitok_tokenizer/unitok_tokenizer.pth"
    assert "MIT" in preset.info["code_license"] and "unverified" in preset.info["weights_license"]
    assert "2502.20321" in preset.info["paper"]
    assert unitok.BENCH_PRESETS == ["unitok"]
    _, model = _official_meta_model()
    info = model.info
    assert (info.family, info.crop, info.value_range, info.quantizer) == ("unitok", "adm", "[-1,1]", "multi-codebook")
    assert info.vocab_size == 4096
    assert "Resize(288)+CenterCrop(256)" in info.notes


def test_missing_weights_offline_fail_clearly(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with torch.device("meta"), pytest.raises(WeightsNotFoundError) as err:  # meta: no 3 GB of random init
        load_tokenizer("unitok")
    msg = str(err.value)
    assert str(tmp_path / "FoundationVision--unitok_tokenizer" / "unitok_tokenizer.pth") in msg and "FoundationVision/unitok_tokenizer" in msg


def test_filter_refuses_unrelated_objects():
    fam = get_family("unitok")
    from tokbench.weights import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError):
        fam.checkpoint_filter(torch.zeros(3), {})
    with pytest.raises(CheckpointMismatchError, match="unitok"):
        fam.checkpoint_filter({"trainer": {"disc": {}}}, {})
    config = get_preset("unitok").get_config()
    with pytest.raises(CheckpointMismatchError, match="img_size"):
        fam.checkpoint_filter({"args": {"img_size": 512, "model": "vitamin_large"}, "trainer": {"unitok": {}}}, config)


def test_official_style_pickle_loads_weights_only(fixture, tmp_path):
    """The release is a torch.save dict {'args': OrderedDict(… dtype=torch.bfloat16 …), 'trainer': {'unitok', 'disc'}}:
    it must load with weights_only=True and give the fixture model's weights."""
    config, case, d, model = fixture
    from safetensors.torch import load_file

    kw = config["constructor_kwargs"]
    args = OrderedDict(kw, dtype=torch.bfloat16, train_data=None, exp_name="unitok_large")
    path = tmp_path / "unitok_tokenizer.pth"
    torch.save({"args": args, "trainer": {"unitok": OrderedDict(load_file(str(d / "weights.safetensors"))),
                                          "disc": {"head.weight": torch.ones(2)}}}, path)
    again = load_tokenizer("unitok", upstream_config=config, weights=str(path))
    assert torch.equal(again.encode(case["images_uint8"]).ids[0], model.encode(case["images_uint8"]).ids[0])
