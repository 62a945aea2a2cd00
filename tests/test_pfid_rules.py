"""pFID neighbour rules per family: every registered family exposes its pre-quantisation features, so the default
`feature` rule (RobustTok's) runs on all of them, and each reports which rule its pFID used; exclude_self realises α;
the feature rule replays the xqgan fixture's upstream latent-perturbation case exactly through the engine."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench.api import BinarySpace, CodebookSpace, FSQSpace, TokenLayout, Tokens
from tokbench.perturb import (DEFAULT_MODE, PerturbSetting, Perturber, expected_change_rate, neighbour_rules,
                              rule_summary)
from tokbench.registry import build_tokenizer, families, load_tokenizer
from tokbench.testing import load_fixture

# family → parity fixture folder (None: an in-house / baseline model built here)
FIXTURES = {
    "cosmos_di": ("cosmos_di",), "ibq": ("ibq",), "imagefolder": ("xqgan", "imagefolder"),
    "llamagen_vq": ("llamagen_vq",), "mage": ("mage",), "maskbit": ("maskbit", "lfq"),
    "maskgit_vq": ("maskgit_vq",), "open_magvit2": ("open_magvit2",), "taming_vqgan": ("taming_vqgan",),
    "titok": ("titok",), "titok_vq8k": ("titok_vq8k",), "unitok": ("unitok",), "var": ("var",),
    "vqgan_lc": ("vqgan_lc",), "vqgan_plus": ("maskbit", "vqgan_plus"), "xqgan": ("xqgan", "single"),
    "tokbench_convvq": None, "tokbench_vitvq": None, "pixel_vq": None,
}
INHOUSE = {
    "tokbench_vitvq": {"constructor_kwargs": dict(image_size=32, patch_size=4, encoder_size="tiny",
                                                  decoder_size="tiny", codebook_size=64, lookup_dim=8)},
    "tokbench_convvq": {"constructor_kwargs": dict(image_size=16, ch=8, ch_mult=[1, 2], num_res_blocks=1,
                                                   z_channels=16, codebook_size=32, lookup_dim=4, l2_norm=False)},
}
EXPECTED = {"codebook": "feature", "binary": "hamming", "fsq": "fsq-grid"}


def test_every_registered_family_is_covered():
    shipped = {f for f in families() if not f.startswith("toy")}  # toy families are registered by other tests
    assert shipped == set(FIXTURES), "a new family needs its row here (which rule does its pFID use?)"


def _load(family: str):
    torch.manual_seed(0)
    if family == "pixel_vq":
        tok = load_tokenizer("pixel-vq-p4-k64")
    elif FIXTURES[family] is None:
        tok = build_tokenizer(family, INHOUSE[family]).eval()
    else:
        cfg, case, d = load_fixture(*FIXTURES[family])
        return load_tokenizer(family, weights=d / "weights.safetensors", upstream_config=cfg), case["images_uint8"]
    r = tok.info.resolution
    return tok, torch.randint(0, 256, (2, 3, r, r), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", sorted(FIXTURES))
def test_family_reports_its_rule_and_runs_the_default(family):
    tok, images = _load(family)
    rules = neighbour_rules(tok.token_spaces, DEFAULT_MODE)
    assert rules == {f"space{i}": EXPECTED[sp.kind] for i, sp in enumerate(tok.token_spaces)}
    assert rule_summary(rules) in ("feature", "hamming", "fsq-grid")
    assert rule_summary(neighbour_rules(tok.token_spaces, "code")) in ("code", "hamming", "fsq-grid")
    tok.keep_features = True
    tokens = tok.encode(images)
    feats = tok.last_features
    assert feats is not None and len(feats) == len(tok.layout.groups), f"{family} exposes no pre-quantisation features"
    for f, t, g in zip(feats, tokens.ids, tok.layout.groups):  # the feature rule's rank 0 is the token itself
        for si, s in enumerate(g.spaces):
            sp = tok.token_spaces[s]
            if isinstance(sp, CodebookSpace):
                fs = f[..., si, :] if g.has_sub_axis else f
                ids = t[..., si] if g.has_sub_axis else t
                agree = (sp.scores(fs.float()).argmax(-1) == ids).float().mean()
                assert float(agree) == 1.0, f"{family}: features do not reproduce the ids ({float(agree):.3f})"
    delta = min(4, *(sp.vocab_size for sp in tok.token_spaces))
    r = Perturber.for_tokenizer(tok)(tokens, PerturbSetting(1.0, delta), torch.arange(images.shape[0]), feats)
    assert r.rate is not None and 0.0 < r.rate <= 1.0


@pytest.mark.parametrize("mode", ["code", "feature"])
@pytest.mark.parametrize("space", ["codebook", "binary", "fsq"])
def test_exclude_self_realises_alpha(mode, space):
    """exclude_self: every re-drawn token changes, so the realised share is α within binomial error (4σ); without it
    the share is α(δ-1)/δ."""
    lay = TokenLayout.grid(16, 16)
    B, alpha, delta = 16, 0.3, 5
    g = torch.Generator().manual_seed(4)
    feats = None
    if space == "codebook":
        sp = CodebookSpace(128, codes=torch.randn(128, 8, generator=g), metric="l2")
        f = torch.randn(B, 16, 16, 8, generator=g)
        ids, feats = sp.scores(f).argmax(-1), [f]
    elif space == "binary":
        sp = BinarySpace(2**10, bits=10)
        ids = torch.randint(0, sp.vocab_size, (B, 16, 16), generator=g)
    else:  # interior grid points only: clipping at the edge would keep some ids
        sp = FSQSpace(7**3, levels=(7, 7, 7))
        digits = torch.randint(1, 6, (B, 16, 16, 3), generator=g)
        ids = (digits * torch.tensor(sp.bases)).sum(-1)
    n = ids.numel()
    for excl in (True, False):
        s = PerturbSetting(alpha, delta, mode=mode, exclude_self=excl)
        r = Perturber([sp], lay)(Tokens([ids], lay), s, torch.arange(B), feats)
        p = expected_change_rate(s, delta)
        assert p == (alpha if excl else alpha * (delta - 1) / delta)
        assert abs(r.rate - p) < 4 * math.sqrt(p * (1 - p) / n), (excl, r.rate, p)
    # the exclude_self draws are the same selection draws: it changes exactly the tokens selected at α
    sel = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(alpha, delta, mode=mode, exclude_self=True),
                               torch.arange(B), feats).tokens.ids[0] != ids
    wide = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(alpha, delta, mode=mode), torch.arange(B),
                                feats).tokens.ids[0] != ids
    assert bool((wide <= sel).all())


def test_exclude_self_needs_two_candidates():
    with pytest.raises(ValueError, match="exclude_self"):
        PerturbSetting(0.5, 1, exclude_self=True)


def test_rate_zero_by_construction_and_undefined_without_eligible_tokens():
    sp = BinarySpace(2**6, bits=6)
    lay = TokenLayout.sequence(8)
    ids = torch.zeros(4, 8, dtype=torch.int64)
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(0.0, 3), torch.arange(4))
    assert int(r.eligible.sum()) == 32 and r.rate == 0.0  # α = 0: 0 of 32, not 0/0
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(0.5, 3, beta=0.0), torch.arange(4))
    assert int(r.eligible.sum()) == 0 and r.rate is None  # β = 0: no eligible token, undefined


def test_feature_rule_replays_upstream_case_exactly():
    """xqgan fixture: upstream `add_perturbation` (α=0.5, δ=8, seed 2024). The engine's feature rule, fed upstream's
    recorded draws (u, j), gives upstream's perturbed ids exactly, changing the same 59 tokens."""
    _, case, _ = load_fixture("xqgan", "single")
    z = case["z_pre_quant"].permute(0, 2, 3, 1)
    sp = CodebookSpace(64, codes=case["codebook"], metric="cosine")
    delta, alpha = int(case["perturb_delta"]), float(case["perturb_alpha"])
    lay = TokenLayout.grid(8, 8)
    draws = [(case["perturb_rand_u"].reshape(2, -1), case["perturb_rand_j"].reshape(2, -1))]
    r = Perturber([sp], lay).perturb(Tokens([case["indices"]], lay), PerturbSetting(alpha, delta), torch.arange(2),
                                     features=[z], draws=draws)
    assert torch.equal(r.tokens.ids[0], case["perturb_indices"])
    assert int(r.changed.sum()) == 59 and int(r.eligible.sum()) == 128
    # the code rule on the same draws differs (its candidates are the assigned code's neighbours, not the feature's)
    rc = Perturber([sp], lay).perturb(Tokens([case["indices"]], lay), PerturbSetting(alpha, delta, mode="code"),
                                      torch.arange(2), draws=draws)
    assert not torch.equal(rc.tokens.ids[0], case["perturb_indices"])


def test_suites_default_to_the_feature_rule_and_record_exclude_self(tmp_path):
    from tokbench.runner.suite import Suite, load_suite

    for name in (None, "imagenet256"):
        s = load_suite(name)
        assert s.pfid.mode == "feature" and s.pfid.exclude_self is False
        assert all(x.mode == "feature" for x in s.pfid_settings())
    bad = {"name": "x", "pfid": {"exclude_self": "yes"}}
    with pytest.raises(ValueError, match="exclude_self"):
        Suite.from_dict(bad, file="x.yaml")
    s = Suite.from_dict({"name": "x", "pfid": {"alpha": [0.5], "delta": [4], "exclude_self": True}})
    assert s.pfid_settings()[0].exclude_self and "xself" in s.pfid_settings()[0].label
