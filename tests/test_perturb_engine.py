"""Perturbation engine: α=0 identity, realised rate, neighbourhoods, determinism across batching, layouts, upstream replay."""

from __future__ import annotations

import math

import pytest
import torch

from tokbench.api import BinarySpace, CodebookSpace, FSQSpace, TokenGroup, TokenLayout, Tokens
from tokbench.perturb import (PerturbSetting, Perturber, code_neighbour_table, expected_change_rate,
                              feature_candidates, neighbourhood_radius, select_replacements)
from tokbench.testing import load_fixture


def _codebook(n=64, d=8, metric="l2", seed=0):
    g = torch.Generator().manual_seed(seed)
    return CodebookSpace(n, codes=torch.randn(n, d, generator=g), metric=metric)


def _ids(shape, vocab, seed=1):
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _brute_neighbours(space, queries, delta, self_ids=None):
    s = space.scores(queries)
    if self_ids is not None:
        s[torch.arange(len(self_ids)), self_ids] = float("inf")
    return s.topk(delta, dim=-1).indices


SPACES = {
    "l2": lambda: _codebook(64, 8, "l2"),
    "cosine": lambda: _codebook(64, 8, "cosine"),
    "dot": lambda: _codebook(64, 8, "dot"),
    "binary": lambda: BinarySpace(2**10, bits=10),
    "fsq": lambda: FSQSpace(8 * 5 * 5, levels=(8, 5, 5)),
}


@pytest.mark.parametrize("kind", list(SPACES))
def test_alpha_zero_is_identity(kind):
    sp = SPACES[kind]()
    lay = TokenLayout.grid(8, 8)
    ids = _ids((6, 8, 8), sp.vocab_size)
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(0.0, 20), torch.arange(6))
    assert torch.equal(r.tokens.ids[0], ids) and r.rate == 0.0
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(1.0, 1), torch.arange(6))  # δ = 1: only itself
    assert torch.equal(r.tokens.ids[0], ids)


@pytest.mark.parametrize("metric", ["l2", "cosine", "dot"])
@pytest.mark.parametrize("mode", ["code", "feature"])
def test_codebook_rate_and_neighbourhood(metric, mode):
    sp = _codebook(128, 8, metric)
    lay = TokenLayout.grid(16, 16)
    B, alpha, delta = 16, 0.4, 10
    feats = torch.randn(B, 16, 16, 8, generator=torch.Generator().manual_seed(3))
    ids = sp.scores(feats).argmax(-1)
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(alpha, delta, mode=mode), torch.arange(B),
                             features=[feats])
    new = r.tokens.ids[0]
    n = ids.numel()
    p = expected_change_rate(PerturbSetting(alpha, delta), delta)
    assert int(r.eligible.sum()) == n
    assert int(r.changed.sum()) == int((new != ids).sum())
    assert abs(r.rate - p) < 4 * math.sqrt(p * (1 - p) / n), (r.rate, p)
    if mode == "code":
        nb = _brute_neighbours(sp, sp.codes[ids.flatten()], delta, self_ids=ids.flatten())
    else:
        nb = _brute_neighbours(sp, feats.reshape(-1, 8), delta)
    assert bool((nb == new.reshape(-1, 1)).any(-1).all()), "a replacement lies outside the δ-neighbourhood"


def test_binary_rate_and_hamming_ball():
    sp = BinarySpace(2**18, bits=18)  # LFQ-sized: neighbours on the fly, no table
    lay = TokenLayout.grid(16, 16)
    B, alpha, delta = 8, 0.7, 1 + 18 + 50  # the 2-flip shell cut: a random part of it per token
    ids = _ids((B, 16, 16), sp.vocab_size)
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(alpha, delta), torch.arange(B))
    flips = (r.tokens.ids[0] ^ ids)
    dist = sum(((flips >> b) & 1) for b in range(18))
    assert int(dist.max()) <= neighbourhood_radius(sp, delta) == 2
    n = ids.numel()
    p = alpha * (delta - 1) / delta
    assert abs(r.rate - p) < 4 * math.sqrt(p * (1 - p) / n)
    # within the cut shell, the flipped pairs vary (not always the same low bits)
    pairs = flips[dist == 2].unique()
    assert pairs.numel() > 40


def test_fsq_steps_clipped():
    sp = FSQSpace(8 * 5 * 5 * 5, levels=(8, 5, 5, 5))
    lay = TokenLayout.sequence(64)
    B = 32
    ids = _ids((B, 64), sp.vocab_size)
    delta = 1 + 8 + 10
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(1.0, delta), torch.arange(B))
    b, lv = torch.tensor(sp.bases), torch.tensor(sp.levels)
    d0, d1 = (ids[..., None] // b) % lv, (r.tokens.ids[0][..., None] // b) % lv
    assert int((d1 - d0).abs().max()) == 1 and bool((d1 < lv).all() and (d1 >= 0).all())
    assert int((d1 != d0).sum(-1).max()) <= neighbourhood_radius(sp, delta) == 2
    assert 0.5 < r.rate < (delta - 1) / delta  # clipping at the grid edge keeps some ids


@pytest.mark.parametrize("kind", list(SPACES))
def test_independent_of_batch_size_and_order(kind):
    sp = SPACES[kind]()
    lay = TokenLayout.grid(4, 4)
    N = 32
    ids = _ids((N, 4, 4), sp.vocab_size)
    feats = torch.randn(N, 4, 4, 8) if isinstance(sp, CodebookSpace) else None
    setting = PerturbSetting(0.6, 9, seed=5, mode="feature" if feats is not None else "code")
    if feats is not None:
        ids = sp.scores(feats).argmax(-1)
    idx = torch.arange(1000, 1000 + N)
    results = []
    for bs in (1, 7, 32):
        pert = Perturber([sp], lay)
        parts = []
        for s in range(0, N, bs):
            f = [feats[s:s + bs]] if feats is not None else None
            parts.append(pert(Tokens([ids[s:s + bs]], lay), setting, idx[s:s + bs], features=f).tokens.ids[0])
        results.append(torch.cat(parts))
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    f = [feats[perm]] if feats is not None else None
    shuffled = Perturber([sp], lay)(Tokens([ids[perm]], lay), setting, idx[perm], features=f).tokens.ids[0]
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])
    assert torch.equal(shuffled, results[0][perm])
    assert not torch.equal(results[0], ids)
    other = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(0.6, 9, seed=6, mode=setting.mode), idx,
                                 features=[feats] if feats is not None else None).tokens.ids[0]
    assert not torch.equal(other, results[0]), "the seed must matter"


def test_multiscale_scale_choice_and_subcodebooks():
    a, b = _codebook(32, 4, "l2", 1), _codebook(48, 4, "cosine", 2)
    lay = TokenLayout((TokenGroup((1, 1), scale=0), TokenGroup((2, 2), scale=1), TokenGroup((4, 4), scale=2)))
    ids = [_ids((20, *g.shape), 32, seed=i) for i, g in enumerate(lay.groups)]
    r = Perturber([a], lay)(Tokens(ids, lay), PerturbSetting(1.0, 8, scales=(1, 2), mode="code"), torch.arange(20))
    assert torch.equal(r.tokens.ids[0], ids[0])
    assert not torch.equal(r.tokens.ids[2], ids[2])
    assert int(r.eligible.sum()) == 20 * (4 + 16)
    # a trailing sub-codebook axis: each entry its own space and vocabulary
    lay2 = TokenLayout((TokenGroup((4, 4, 2), spaces=(0, 1)),))
    sub = torch.stack([_ids((40, 4, 4), 32, 5), _ids((40, 4, 4), 48, 6)], -1)
    r2 = Perturber([a, b], lay2)(Tokens([sub], lay2), PerturbSetting(1.0, 0.25, mode="code"), torch.arange(40))
    assert r2.deltas == {0: 8, 1: 12}  # δ as a fraction of each vocabulary
    new = r2.tokens.ids[0]
    assert int(new[..., 0].max()) < 32 and int(new[..., 1].max()) < 48 and int(new[..., 1].max()) >= 32
    for j, sp in enumerate((a, b)):
        o, n_ = sub[..., j].flatten(), new[..., j].flatten()
        nb = _brute_neighbours(sp, sp.codes[o], r2.deltas[j], self_ids=o)
        assert bool((nb == n_[:, None]).any(-1).all())
    # the two sub-codebooks are drawn independently: their change patterns differ
    assert not torch.equal(new[..., 0] != sub[..., 0], new[..., 1] != sub[..., 1])


def test_beta_selects_whole_images():
    sp = _codebook()
    lay = TokenLayout.grid(8, 8)
    ids = _ids((200, 8, 8), 64)
    r = Perturber([sp], lay)(Tokens([ids], lay), PerturbSetting(1.0, 16, beta=0.3, mode="code"), torch.arange(200))
    touched = (r.tokens.ids[0] != ids).flatten(1).any(1)
    on = r.eligible > 0
    assert not bool((touched & ~on).any())
    assert 0.2 < float(on.float().mean()) < 0.4


def test_code_table_self_first_and_chunking():
    sp = _codebook(50, 6, "dot")
    codes = sp.codes.clone()
    codes[7] = codes[3]  # duplicates: each stays its own first neighbour
    sp = CodebookSpace(50, codes=codes, metric="dot")
    full = code_neighbour_table(sp, 12)
    chunked = code_neighbour_table(sp, 12, chunk_elements=50 * 3)
    assert torch.equal(full, chunked)
    assert torch.equal(full[:, 0].long(), torch.arange(50))
    assert torch.equal(full.long(), _brute_neighbours(sp, codes, 12, self_ids=torch.arange(50)))


def test_bad_settings():
    with pytest.raises(ValueError):
        PerturbSetting(1.5, 10)
    with pytest.raises(ValueError):
        PerturbSetting(0.5, 2.5)
    with pytest.raises(ValueError, match="exceeds"):
        PerturbSetting(0.5, 100).delta_for(_codebook(64))
    lay = TokenLayout.grid(2, 2)
    with pytest.raises(ValueError, match="features"):
        Perturber([_codebook()], lay)(Tokens([_ids((1, 2, 2), 64)], lay), PerturbSetting(0.5, 4, mode="feature"), [0])


def test_replays_upstream_robusttok_case():
    """xqgan fixture: upstream `add_perturbation` with α=0.5, δ=8, seed 2024. Our feature-rule candidates equal its
    top-δ lists, and the pure selection rule on its recorded draws gives its perturbed ids."""
    _, case, _ = load_fixture("xqgan", "single")
    z = case["z_pre_quant"].permute(0, 2, 3, 1)  # B x h x w x D, the feature the quantiser sees
    sp = CodebookSpace(64, codes=case["codebook"], metric="cosine")
    delta, alpha = int(case["perturb_delta"]), float(case["perturb_alpha"])
    assert torch.equal(sp.scores(z).argmax(-1), case["indices"])
    cand = feature_candidates(sp, z, delta)
    assert torch.equal(cand.reshape(2, 8, 8, delta), case["perturb_candidates"])
    out = select_replacements(case["indices"].reshape(-1), cand, case["perturb_rand_u"].double(),
                              case["perturb_rand_j"], alpha)
    assert torch.equal(out.reshape(2, 8, 8), case["perturb_indices"])
    assert int((out != case["indices"].reshape(-1)).sum()) == 59
    # the engine's own draws follow the same rule: every change is one of upstream's candidates
    lay = TokenLayout.grid(8, 8)
    r = Perturber([sp], lay)(Tokens([case["indices"]], lay), PerturbSetting(alpha, delta, mode="feature"),
                             torch.arange(2), features=[z])
    assert bool((case["perturb_candidates"] == r.tokens.ids[0][..., None]).any(-1).all())


def test_smaller_alpha_redraws_a_subset():
    """The selection draws do not depend on α: tokens re-drawn at α=0.3 are also re-drawn (identically) at α=0.6."""
    sp = _codebook(64, 8, "l2")
    lay = TokenLayout.grid(8, 8)
    ids = _ids((16, 8, 8), 64)
    p = Perturber([sp], lay)
    lo = p(Tokens([ids], lay), PerturbSetting(0.3, 10, mode="code"), torch.arange(16)).tokens.ids[0]
    hi = p(Tokens([ids], lay), PerturbSetting(0.6, 10, mode="code"), torch.arange(16)).tokens.ids[0]
    moved = lo != ids
    assert bool(moved.any()) and torch.equal(hi[moved], lo[moved])
    assert int((hi != ids).sum()) > int(moved.sum())
