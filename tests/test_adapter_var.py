"""VAR adapter: parity with the `var` fixture, official key layouts, token spaces, metadata, offline errors."""

from __future__ import annotations

import pytest
import torch

from tokbench.api import CodebookSpace, Tokens
from tokbench_adapters._nn.multiscale_vq import phi_index_table
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError


@pytest.fixture(scope="module")
def var_case():
    torch.set_num_threads(1)
    cfg, case, d = load_fixture("var")
    model = load_tokenizer("var", weights=str(d / "weights.safetensors"), upstream_config=cfg)
    model.keep_features = True
    tokens = model.encode(case["images_uint8"])
    return cfg, case, model, tokens


def _fixture_tokens(model, case) -> Tokens:
    ids = [case[f"indices_{k}"].reshape(-1, *g.shape) for k, g in enumerate(model.layout.groups)]
    return Tokens(ids, model.layout)


def test_phi_table_matches_upstream_float64_ties():
    cfg = load_fixture("var")[0]
    assert phi_index_table(len(cfg["v_patch_nums"]), 4) == cfg["phi_index_per_scale"]
    for row in manifest("var").values():
        assert phi_index_table(len(row["v_patch_nums"]), 4) == row["phi_index_per_scale"]


def test_input_and_ids_exact(var_case):
    cfg, case, model, tokens = var_case
    assert torch.equal(model.to_model_input(case["images_uint8"]), case["model_input"])
    ids = tokens.as_list()
    assert len(ids) == len(cfg["v_patch_nums"])
    for k, (t, pn) in enumerate(zip(ids, cfg["v_patch_nums"])):
        assert t.shape == (2, pn, pn) and t.dtype == torch.int64
        assert torch.equal(t.reshape(2, -1), case[f"indices_{k}"]), f"scale {k}"
    assert tokens.flat().shape == (2, cfg["num_tokens"])


def test_latent_and_fhat(var_case):
    _, case, model, _ = var_case
    with torch.no_grad():
        f = model.quant_conv(model.encoder(case["model_input"]))
        torch.testing.assert_close(f, case["latent"], atol=1e-5, rtol=0)
        _, _, fhat = model.quantize.encode(f)
        torch.testing.assert_close(fhat, case["quant"], atol=1e-5, rtol=0)
        ids = _fixture_tokens(model, case).as_list()
        torch.testing.assert_close(model.quantize.ids_to_fhat(ids), case["quant_from_indices"], atol=1e-5, rtol=0)


def test_decode_and_recon(var_case):
    _, case, model, tokens = var_case
    raw = model.decode_raw(_fixture_tokens(model, case))
    torch.testing.assert_close(raw, case["decoded_unclamped"], atol=2e-4, rtol=0)
    torch.testing.assert_close(raw.clamp(-1, 1), case["decoded"], atol=2e-4, rtol=0)
    torch.testing.assert_close(model.decode_raw(tokens).clamp(-1, 1), case["recon"], atol=2e-4, rtol=0)
    out = model.decode(tokens)
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, (case["recon"] + 1) / 2, atol=2e-4, rtol=0)


def test_token_space_and_features(var_case):
    cfg, case, model, tokens = var_case
    (space,) = model.token_spaces
    assert isinstance(space, CodebookSpace) and space.metric == "l2"
    assert torch.equal(space.codes, case["codebook"])
    assert [g.scale for g in model.layout.groups] == list(range(len(cfg["v_patch_nums"])))
    assert all(g.spaces == (0,) and g.kind == "grid" for g in model.layout.groups)
    assert len(model.last_features) == len(model.layout.groups)
    for f, t, g in zip(model.last_features, tokens.as_list(), model.layout.groups):
        assert f.shape == (2, *g.shape, cfg["codebook_dim"])
        assert torch.equal(space.scores(f).argmax(-1), t)
    # the coarsest scale's feature is the area-mean of the whole latent
    torch.testing.assert_close(model.last_features[0][:, 0, 0], case["latent"].mean((2, 3)), atol=1e-5, rtol=0)


def test_bad_tokens_rejected(var_case):
    _, case, model, tokens = var_case
    bad = tokens.as_list()
    bad[3] = bad[3].clone()
    bad[3][0, 0, 0] = model.token_spaces[0].vocab_size
    with pytest.raises(ValueError, match="out of range"):
        model.decode_raw(tokens.replace_ids(bad))


@pytest.mark.parametrize("preset,row", [("var-vq-256", "var_256"), ("var-vq-512", "var_512")])
def test_official_layout(preset, row):
    m = manifest("var")[row]
    p = get_preset(preset)
    cfg = p.get_config()
    assert cfg["constructor_kwargs"] == m["constructor_kwargs"]
    with torch.device("meta"):
        model = get_family("var").build(cfg)
    sd = get_family("var").checkpoint_filter(meta_state_dict(m["keys"]), cfg)
    assert layout_report(model, sd) == ""
    assert len(sd) == len(m["keys"]) - 1  # only the usage statistics buffer is dropped
    assert model.layout.tokens_per_image == m["tokens"]
    assert model.info.resolution == m["image_size"] and model.info.vocab_size == 4096
    assert sum(v.numel() for k, v in model.state_dict().items()) == m["num_params"]


def test_metadata():
    with torch.device("meta"):
        model = get_family("var").build(get_preset("var-vq-256").get_config())
    i = model.info
    assert (i.family, i.resolution, i.value_range, i.crop) == ("var", 256, "[-1,1]", "adm")
    assert i.tokens_per_image == 680 and i.quantizer == "multiscale-vq"
    assert "MIT" in i.code_license and i.weights_license and "2404.02905" in i.paper
    from tokbench_adapters import var

    assert "var-vq-256" in var.BENCH_PRESETS


def test_offline_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as e:
        load_tokenizer("var-vq-256")
    msg = str(e.value)
    assert str(tmp_path / "FoundationVision--var" / "vae_ch160v4096z32.pth") in msg and "FoundationVision/var" in msg
