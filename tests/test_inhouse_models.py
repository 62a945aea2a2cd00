"""tokbench's own tokenizers: API contract, token space, EMA codebook, presets, checkpoint filter."""

import pytest
import torch

from tokbench.registry import build_tokenizer, get_family, get_preset, list_tokenizers
from tokbench.weights import save_safetensors

VIT = {"constructor_kwargs": dict(image_size=32, patch_size=4, encoder_size="tiny", decoder_size="tiny",
                                  codebook_size=64, lookup_dim=8)}
CONV = {"constructor_kwargs": dict(image_size=16, ch=8, ch_mult=[1, 2], num_res_blocks=1, z_channels=16,
                                   codebook_size=32, lookup_dim=4, l2_norm=False)}


@pytest.mark.parametrize("family,config,grid", [("tokbench_vitvq", VIT, 8), ("tokbench_convvq", CONV, 8)])
def test_encode_decode_and_token_space(family, config, grid):
    torch.manual_seed(0)
    tok = build_tokenizer(family, config)
    res = tok.info.resolution
    x = torch.randint(0, 256, (2, 3, res, res), dtype=torch.uint8)
    tok.keep_features = True
    t = tok.encode(x)
    assert t.ids[0].shape == (2, grid, grid) and tok.info.tokens_per_image == grid * grid
    space = tok.token_space
    assert space.metric == ("cosine" if config["constructor_kwargs"].get("l2_norm", True) else "l2")
    feats = tok.last_features[0]
    assert feats.shape == (2, grid, grid, config["constructor_kwargs"]["lookup_dim"])
    assert torch.equal(space.scores(feats).argmax(-1), t.ids[0])
    y = tok.decode(t)
    assert y.shape == (2, 3, res, res) and 0 <= float(y.min()) and float(y.max()) <= 1
    # decode_raw from ids is the decoder applied to the looked-up effective codes
    assert torch.allclose(tok.decode_raw(t), tok.decode_codes(space.codes[t.ids[0]]), atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode(t.replace_ids([t.ids[0] + 1000]))


def test_cosine_codes_are_unit_vectors_and_factorised():
    tok = build_tokenizer("tokbench_vitvq", VIT)
    codes = tok.token_space.codes
    assert codes.shape == (64, 8) and torch.allclose(codes.norm(dim=-1), torch.ones(64), atol=1e-5)
    assert tok.quantize.proj_in.weight.shape == (8, 64) and tok.quantize.proj_out.weight.shape == (64, 8)


def test_ema_codebook_moves_towards_assigned_features():
    cfg = {"constructor_kwargs": dict(VIT["constructor_kwargs"], ema_codebook=True, ema_decay=0.5)}
    tok = build_tokenizer("tokbench_vitvq", cfg)
    q = tok.quantize
    assert not q.embedding.weight.requires_grad and "quantize.ema_embed_sum" in tok.state_dict()
    target = torch.nn.functional.normalize(torch.randn(8), dim=0)
    zp = target.expand(1, 4, 4, 8).clone()
    ids = torch.full((1, 4, 4), 3)
    before = torch.dot(q.codes()[3], target)
    for _ in range(5):
        q.ema_update(zp, ids)
    assert torch.dot(q.codes()[3], target) > max(float(before), 0.99)
    codebook_loss, commit = q.vq_losses(zp, ids)
    assert codebook_loss == 0 and commit >= 0  # with EMA the codebook is not trained by a loss


def test_presets_build_on_meta_and_have_no_weights():
    names = list_tokenizers(family="tokbench_vitvq")
    assert {"tokbench-vitvq-ss-256", "tokbench-vitvq-bb-256"} <= set(names)
    p = get_preset("tokbench-vitvq-bb-256")
    with torch.device("meta"):
        m = get_family(p.family).build(p.get_config())
    assert m.info.tokens_per_image == 1024 and m.info.vocab_size == 8192
    n_enc = sum(x.numel() for x in m.encoder.parameters())
    assert 84e6 < n_enc < 88e6  # ViT-B blocks (12 × 768, the paper's ≈86M per ViT-B stack)
    from tokbench.weights import WeightsNotFoundError
    import tokbench

    with pytest.raises(WeightsNotFoundError, match="names none"):
        tokbench.load_tokenizer("tokbench-vitvq-ss-256")


def test_bad_configs_are_clear():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_tokenizer("tokbench_vitvq", {"constructor_kwargs": dict(VIT["constructor_kwargs"], image_size=30)})
    with pytest.raises(ValueError, match="constructor_kwargs"):
        build_tokenizer("tokbench_convvq", {})


def test_checkpoint_filter_and_strict_load(tmp_path):
    import tokbench

    torch.manual_seed(1)
    src = build_tokenizer("tokbench_convvq", CONV)
    path = tmp_path / "w.safetensors"
    save_safetensors(src.state_dict(), path)
    tok = tokbench.load_tokenizer("tokbench_convvq", weights=path, upstream_config=CONV)
    for k, v in src.state_dict().items():
        assert torch.equal(tok.state_dict()[k], v)
    # a trainer resume file: the EMA copy is what loads
    pt = tmp_path / "last.pt"
    torch.save({"model": {k: v * 0 for k, v in src.state_dict().items()}, "ema": src.state_dict(), "step": 1}, pt)
    tok2 = tokbench.load_tokenizer("tokbench_convvq", weights=pt, upstream_config=CONV)
    assert torch.equal(tok2.quantize.embedding.weight, src.quantize.embedding.weight)
