"""The offline pixel-patch VQ baseline: deterministic fit, consistent token space, exact round trip."""

import torch

import tokbench
from tokbench.api import Tokens
from tokbench.baselines.pixel_vq import patches_of, unpatch
from tokbench.data import open_dataset


def test_roundtrip_equals_decoding_nearest_codes():
    tok = tokbench.load_tokenizer("pixel-vq-p4-k64")
    ds = open_dataset("sample", 64, num_images=6)
    x = torch.stack([ds[i] for i in range(6)])
    tok.keep_features = True
    tokens = tok.encode(x)
    assert tokens.layout == tok.layout and tokens.ids[0].shape == (6, 16, 16)
    space = tok.token_space
    assert space.kind == "codebook" and space.metric == "l2" and space.vocab_size == 64
    # the ids are the nearest codes of the features under the space's own metric
    (feat,) = tok.last_features
    assert torch.equal(space.scores(feat).argmax(-1), tokens.ids[0])
    brute = torch.cdist(feat.reshape(-1, feat.shape[-1]).double(), space.codes.double()).argmin(-1)
    assert torch.equal(brute.reshape(6, 16, 16), tokens.ids[0])
    # decode(encode(x)) equals decoding the nearest codes by hand
    by_hand = unpatch(space.codes[brute.reshape(6, 16, 16)], 4).clamp(0, 1)
    assert torch.allclose(tok.decode(tokens), by_hand, atol=1e-7)
    err = (tok.decode(tokens) - x / 255.0).abs().mean()
    assert err < 0.1  # a real (if crude) reconstruction


def test_patchify_is_invertible_and_fit_is_deterministic():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(unpatch(patches_of(x, 4), 4), x)
    a = tokbench.load_tokenizer("pixel-vq-p4-k64")
    b = tokbench.load_tokenizer("pixel-vq-p4-k64")  # from the cache
    assert torch.equal(a.codebook, b.codebook)
    assert a.codebook.unique(dim=0).shape[0] == 64  # no dead duplicate centres


def test_out_of_range_ids_are_rejected():
    tok = tokbench.load_tokenizer("pixel-vq-p4-k64")
    bad = Tokens([torch.full((1, 16, 16), 64)], tok.layout)
    import pytest

    with pytest.raises(ValueError, match="out of range"):
        tok.check_tokens(bad)


def test_a_damaged_or_foreign_codebook_cache_is_named_and_refitted(tmp_path, monkeypatch, caplog):
    import logging

    from tokbench.baselines import pixel_vq
    from tokbench.io import write_checked_torch

    monkeypatch.setenv("TOKBENCH_CACHE", str(tmp_path))
    cfg = {"constructor_kwargs": {"patch": 4, "codebook_size": 8, "resolution": 16,
                                  "fit": {"data": "sample", "num_images": 4, "num_patches": 200, "iters": 2}}}
    good = pixel_vq.build(cfg).codebook.clone()
    (cache,) = (tmp_path / "pixel_vq").glob("*.codebook")
    raw = cache.read_bytes()
    for damaged in (raw[: len(raw) // 2], raw[:-1] + bytes([raw[-1] ^ 1]), b""):
        cache.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert torch.equal(pixel_vq.build(cfg).codebook, good)
        assert any(str(cache) in r.getMessage() and "refitting" in r.getMessage() for r in caplog.records)
        assert cache.read_bytes() == raw  # rebuilt, identical
    # a valid file made for another configuration (a copied or renamed cache entry) is not trusted either
    write_checked_torch(cache, {"codebook": good + 1.0}, {"other": "config"}, kind=pixel_vq.CACHE_KIND)
    assert torch.equal(pixel_vq.build(cfg).codebook, good)
