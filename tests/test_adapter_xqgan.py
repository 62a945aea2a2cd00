"""XQ-GAN / RobustTok (`xqgan`) and ImageFolder (`imagefolder`) adapters: fixture parity, official key layouts,
token spaces, EMA-picking checkpoint filter, metadata and offline errors."""

from __future__ import annotations

import argparse

import pytest
import torch

from tokbench.api import CodebookSpace, Tokens
from tokbench.registry import get_family, get_preset, load_tokenizer
from tokbench.testing import layout_report, load_fixture, manifest, meta_state_dict
from tokbench.weights import WeightsNotFoundError

ATOL = 1e-5  # latents and codes (fixtures README)
IMAGE_ATOL = 2e-4  # decoded images (fixtures README)


def _load(parts, family):
    torch.set_num_threads(1)
    cfg, case, d = load_fixture(*parts)
    model = load_tokenizer(family, weights=str(d / "weights.safetensors"), upstream_config=cfg)
    model.keep_features = True
    return cfg, case, model, model.encode(case["images_uint8"])


@pytest.fixture(scope="module")
def single():
    return _load(("xqgan", "single"), "xqgan")


@pytest.fixture(scope="module")
def folder():
    return _load(("xqgan", "imagefolder"), "imagefolder")


# ---------------------------------------------------------------------------------------------------------------------
# xqgan (single cosine codebook)
# ---------------------------------------------------------------------------------------------------------------------
def test_single_encode(single):
    cfg, case, model, tokens = single
    x = model.to_model_input(case["images_uint8"])
    assert torch.equal(x, case["model_input"])
    with torch.no_grad():
        torch.testing.assert_close(model.pre_quant(x), case["z_pre_quant"], atol=ATOL, rtol=0)
    (ids,) = tokens.as_list()
    assert ids.shape == (2, 8, 8) and torch.equal(ids, case["indices"])


def test_single_decode(single):
    _, case, model, tokens = single
    torch.testing.assert_close(model.ids_to_latent(case["indices"]), case["quant_from_ids"], atol=ATOL, rtol=0)
    raw = model.decode_raw(Tokens([case["indices"]], model.layout))
    torch.testing.assert_close(raw, case["decoded"], atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(model.decode_raw(tokens).clamp(-1, 1), case["recon"], atol=IMAGE_ATOL, rtol=0)


def test_single_token_space_and_features(single):
    _, case, model, tokens = single
    (space,) = model.token_spaces
    assert isinstance(space, CodebookSpace) and space.metric == "cosine"
    torch.testing.assert_close(space.codes, case["codebook"], atol=1e-7, rtol=0)
    (feat,) = model.last_features
    assert feat.shape == (2, 8, 8, 16)
    torch.testing.assert_close(feat, case["z_pre_quant"].permute(0, 2, 3, 1), atol=ATOL, rtol=0)
    assert torch.equal(space.scores(feat).argmax(-1), tokens.ids[0])


def test_single_latent_perturbation_replay(single):
    """Upstream's latent perturbation, replayed from its recorded draws through our token space: its top-delta
    candidates are the cosine neighbours of our features, and decoding the chosen ids gives its decoded images."""
    _, case, model, _ = single
    delta, alpha = int(case["perturb_delta"]), float(case["perturb_alpha"])
    cand = model.token_space.scores(model.last_features[0]).topk(delta, dim=-1).indices
    assert torch.equal(cand, case["perturb_candidates"])
    u, j = case["perturb_rand_u"], case["perturb_rand_j"]
    pick = torch.where(u > alpha, torch.zeros_like(j), j).view(2, 8, 8, 1)
    new = cand.gather(-1, pick).squeeze(-1)
    assert torch.equal(new, case["perturb_indices"])
    torch.testing.assert_close(model.ids_to_latent(new), case["perturb_quant"], atol=1e-6, rtol=0)
    torch.testing.assert_close(model.decode_raw(Tokens([new], model.layout)), case["perturb_decoded"], atol=IMAGE_ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# imagefolder (2 product branches × 10 scales)
# ---------------------------------------------------------------------------------------------------------------------
def test_folder_encode(folder):
    cfg, case, model, tokens = folder
    x = model.to_model_input(case["images_uint8"])
    assert torch.equal(x, case["model_input"])
    with torch.no_grad():
        torch.testing.assert_close(model.pre_quant(x), case["z_pre_quant"], atol=ATOL, rtol=0)
    ids = tokens.as_list()
    pns = cfg["v_patch_nums"]
    assert len(ids) == 2 * len(pns)
    for k, t in enumerate(ids):
        pn = pns[k % len(pns)]
        assert t.shape == (2, pn, pn)
        assert torch.equal(t.reshape(2, -1), case[f"indices_{k}"]), f"group {k}"
    assert tokens.flat().shape == (2, 2 * sum(p * p for p in pns))


def test_folder_decode(folder):
    _, case, model, tokens = folder
    fixture_ids = [case[f"indices_{k}"].reshape(-1, *g.shape) for k, g in enumerate(model.layout.groups)]
    torch.testing.assert_close(model.ids_to_latent(fixture_ids), case["quant_from_ids"], atol=ATOL, rtol=0)
    torch.testing.assert_close(model.ids_to_latent(tokens.as_list()), case["quant"], atol=ATOL, rtol=0)
    raw = model.decode_raw(Tokens(fixture_ids, model.layout))
    torch.testing.assert_close(raw, case["decoded_unclamped"], atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(raw.clamp(-1, 1), case["decoded"], atol=IMAGE_ATOL, rtol=0)
    torch.testing.assert_close(model.decode_raw(tokens).clamp(-1, 1), case["recon"], atol=IMAGE_ATOL, rtol=0)


def test_folder_token_spaces_and_features(folder):
    cfg, case, model, tokens = folder
    assert len(model.token_spaces) == 2
    for b, space in enumerate(model.token_spaces):
        assert isinstance(space, CodebookSpace) and space.metric == "cosine"
        assert torch.equal(space.codes, case[f"codebook_{b}"])  # raw rows: the lookup uses them unnormalised
    S = len(cfg["v_patch_nums"])
    assert [(g.spaces, g.scale) for g in model.layout.groups] == [((b,), s) for b in range(2) for s in range(S)]
    assert model.layout.multiscale
    for f, t, g in zip(model.last_features, tokens.as_list(), model.layout.groups):
        assert f.shape == (2, *g.shape, cfg["codebook_embed_dim"])
        assert torch.equal(model.token_spaces[g.spaces[0]].scores(f).argmax(-1), t)
    assert model.quantizes[0].phi_index == case["phi_index_per_scale"].tolist()


# ---------------------------------------------------------------------------------------------------------------------
# official layouts, filter, metadata, offline errors
# ---------------------------------------------------------------------------------------------------------------------
SINGLE_ROWS = {"xqgan-4096": "XQGAN-4096", "xqgan-8192": "XQGAN-8192", "robusttok-zero": "RobustTok-zero",
               "robustok-main": "RobusTok-main-train", "robustok-post": "RobusTok-post-train"}
FOLDER_ROWS = {"imagefolder-msvr10p2-4096": "MSVR10P2-4096", "imagefolder-msvr10p2-8192": "MSVR10P2-8192",
               "imagefolder-msvr10p2-16384": "MSVR10P2-16384"}


def _official(row: dict) -> dict:
    """The official checkpoint's wrapping: a training dict whose `ema` holds the weights we must pick."""
    ema = meta_state_dict(row["keys"])
    other = {k: torch.empty(0, device="meta") for k in ema}  # wrong shapes: picking 'model' would fail
    return {"model": other, "ema": ema, "optimizer": {"state": {}}, "discriminator": {"conv.weight": torch.zeros(1)},
            "steps": 10, "args": argparse.Namespace(ema=True)}


@pytest.mark.parametrize("preset,row,fixture", [(p, r, "single") for p, r in SINGLE_ROWS.items()]
                         + [(p, r, "imagefolder") for p, r in FOLDER_ROWS.items()])
def test_official_layout(preset, row, fixture):
    m = manifest("xqgan", fixture)[row]
    p = get_preset(preset)
    cfg = p.get_config()
    assert cfg["constructor_kwargs"] == m["constructor_kwargs"]
    fam = get_family(p.family)
    with torch.device("meta"):
        model = fam.build(cfg)
    sd = fam.checkpoint_filter(_official(m), cfg)
    assert layout_report(model, sd) == ""
    assert not any(k.startswith("semantic_model.") or k.endswith("ema_vocab_hit_SV") for k in sd)
    n_params = sum(v.numel() for k, v in model.state_dict().items() if not k.endswith("lvl1LC"))
    assert n_params == m["num_params_inference"]
    assert model.info.resolution == m["image_size"] and model.info.vocab_size == m["codebook_size"]


@pytest.mark.parametrize("row", ["IMed-MSVR10P2-4096", "LAION-MSVR10P2-4096", "imagefolder-imagenet-4096"])
def test_other_imagefolder_releases_fit(row):
    m = manifest("xqgan", "imagefolder")[row]
    cfg = {"constructor_kwargs": m["constructor_kwargs"], "image_size": m["image_size"]}
    with torch.device("meta"):
        model = get_family("imagefolder").build(cfg)
    assert layout_report(model, get_family("imagefolder").checkpoint_filter(_official(m), cfg)) == ""


def test_unsupported_configs_fail_clearly():
    vp2 = manifest("xqgan", "imagefolder")["VP2-4096"]
    with pytest.raises(NotImplementedError, match="VP2"):
        with torch.device("meta"):
            get_family("imagefolder").build({"constructor_kwargs": vp2["constructor_kwargs"]})
    cfg = load_fixture("xqgan", "imagefolder")[0]
    with pytest.raises(ValueError, match="imagefolder"):
        get_family("xqgan").build(cfg)


def test_metadata():
    with torch.device("meta"):
        single = get_family("xqgan").build(get_preset("robusttok-zero").get_config())
        folder = get_family("imagefolder").build(get_preset("imagefolder-msvr10p2-4096").get_config())
    assert (single.info.resolution, single.info.tokens_per_image, single.info.vocab_size) == (256, 256, 4096)
    assert (folder.info.tokens_per_image, folder.info.quantizer) == (572, "product-multiscale-vq")
    for i in (single.info, folder.info):
        assert i.value_range == "[-1,1]" and i.crop == "adm" and "arXiv" in i.paper
        assert "non-commercial" in i.code_license and "non-commercial" in i.weights_license
        assert "unverified" in i.weights_license
    assert "2503.08354" in get_preset("robusttok-zero").info["paper"]
    from tokbench_adapters import xqgan

    assert set(xqgan.BENCH_PRESETS) <= set(SINGLE_ROWS) | set(FOLDER_ROWS)


@pytest.mark.parametrize("preset,file", [("xqgan-8192", "qiuk6--RobustTok/XQGAN-8192.pt"),
                                         ("imagefolder-msvr10p2-4096", "qiuk6--XQ-GAN/MSVR10P2-4096/best_ckpt.pt")])
def test_offline_error(preset, file, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("TOKBENCH_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotFoundError) as e:
        load_tokenizer(preset)
    assert str(tmp_path / file) in str(e.value) and "qiuk6/" in str(e.value)


def test_official_pickle_round_trip(single, tmp_path):
    """An official-style training pickle (EMA + non-EMA + optimizer + argparse Namespace) is refused without trust
    and, when trusted, loads the EMA weights."""
    from safetensors.torch import load_file

    from tokbench.weights import UnsafeCheckpointError

    cfg, case, _, _ = single
    d = load_fixture("xqgan", "single")[2]
    ema = load_file(str(d / "weights.safetensors"))
    noisy = {k: (v + 1.0 if v.is_floating_point() else v) for k, v in ema.items()}
    path = tmp_path / "RobustTok-zero.pt"
    torch.save({"model": noisy, "ema": ema, "optimizer": {}, "steps": 3, "args": argparse.Namespace(ema=True)}, path)
    with pytest.raises(UnsafeCheckpointError, match="trust"):
        load_tokenizer("xqgan", weights=str(path), upstream_config=cfg)
    model = load_tokenizer("xqgan", weights=str(path), upstream_config=cfg, trust_checkpoint=True)
    assert torch.equal(model.encode(case["images_uint8"]).ids[0], case["indices"])
