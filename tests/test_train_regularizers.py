"""Arithmetic of the Reg-VQ regularisers, the RobustTok anneal and the perturbation neighbour rule."""

import math

import pytest
import torch

from tokbench.train import regularizers as R
from tokbench.train.perturb_hook import nearest_codes, perturb_ids


def test_prior_kl_is_log_n_minus_usage_entropy():
    torch.manual_seed(0)
    n = 16
    logits = torch.randn(4, 5, 5, n, requires_grad=True)
    ids = torch.randint(0, 6, (4, 5, 5))  # only 6 of 16 codes used: a non-trivial histogram
    p_bar = R.straight_through_usage(logits, ids)
    hist = torch.bincount(ids.flatten(), minlength=n).double() / ids.numel()
    assert torch.allclose(p_bar.double(), hist, atol=1e-6)
    h = -(hist[hist > 0] * hist[hist > 0].log()).sum()
    kl = R.prior_kl(p_bar)
    assert float(kl.detach()) == pytest.approx(math.log(n) - float(h), abs=1e-5)
    kl.backward()  # gradient flows through the softmax (straight-through)
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    uniform = torch.full((n,), 1.0 / n)
    assert float(R.prior_kl(uniform)) == pytest.approx(0.0, abs=1e-6)


def test_stochastic_mask_share_and_deterministic_elsewhere():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 16, 16, 32, generator=g)
    clean = logits.argmax(-1)
    mixed, mask = R.stochastic_mask_ids(logits, clean, 0.4, generator=g)
    share = mask.float().mean().item()
    assert abs(share - 0.4) < 0.04  # 2048 Bernoulli(0.4) draws: sd ≈ 0.011
    assert torch.equal(mixed[~mask], clean[~mask])
    assert (mixed[mask] != clean[mask]).float().mean() > 0.3  # Gumbel draws differ from the argmax often
    same, none = R.stochastic_mask_ids(logits, clean, 0.0, generator=g)
    assert torch.equal(same, clean) and not none.any()


def test_pcl_weights_normalise_and_vanish_at_deterministic_positions():
    g = torch.Generator().manual_seed(2)
    e_arg = torch.randn(3, 4, 4, 8, generator=g)
    e_smp = e_arg + torch.randn(3, 4, 4, 8, generator=g)
    mask = torch.rand(3, 4, 4, generator=g) < 0.4
    mask[2] = False  # an image without stochastic positions keeps zero weights
    w = R.pcl_weights(e_smp, e_arg, mask)
    assert torch.all(w[~mask] == 0)
    assert torch.allclose(w[:2].flatten(1).sum(1), torch.ones(2), atol=1e-6)
    assert w[2].sum() == 0
    expected = ((e_smp - e_arg) ** 2).sum(-1) * mask
    assert torch.allclose(w[0], expected[0] / expected[0].sum(), atol=1e-6)


def test_pcl_loss_matches_formula_and_only_counts_weighted_positions():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(1, 5, 2, 2, generator=g)
    z = torch.randn(1, 5, 2, 2, generator=g, requires_grad=True)
    w = torch.tensor([[[0.25, 0.75], [0.0, 0.0]]])
    tau = 0.1
    loss = R.pcl_loss(y, z, w, tau)
    yn = torch.nn.functional.normalize(y.flatten(2), dim=1)[0].T  # L x C
    zn = torch.nn.functional.normalize(z.detach().flatten(2), dim=1)[0].T
    s = yn @ zn.T / tau
    terms = []
    for i, wi in enumerate(w.flatten().tolist()):
        if wi == 0:
            continue
        pos = wi * s[i, i].exp()
        neg = sum(s[i, j].exp() for j in range(4) if j != i) / 4
        terms.append(-torch.log(pos / (pos + neg)))
    assert float(loss) == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    loss.backward()
    assert z.grad.abs().sum() > 0
    assert float(R.pcl_loss(y, z, torch.zeros_like(w), tau)) == 0.0


@pytest.mark.parametrize("epoch,alpha,delta", [(0, 1.0, 100), (39, 1.0, 100), (40, 1.0, 100), (80, 0.75, 75),
                                               (120, 0.5, 50), (121, 0.5, 50), (199, 0.5, 50)])
def test_anneal_robusttok_config(epoch, alpha, delta):
    """algorithms.md §1.5 table: α=1, δ=100, start 40, end 120, ratio 0.5."""
    a, d = R.annealed_perturbation(epoch, 1.0, 100, 40, 120, 0.5)
    assert a == pytest.approx(alpha) and d == delta


def test_anneal_to_zero_has_no_jump_after_end():
    assert R.anneal_ratio(100, 40, 120, 0.0) == pytest.approx(0.25)
    assert R.anneal_ratio(120, 40, 120, 0.0) == 0.0
    assert R.anneal_ratio(150, 40, 120, 0.0) == 0.0  # upstream would jump back to full strength here
    a, d = R.annealed_perturbation(130, 0.5, 10, 0, 100, 0.2)
    assert a == pytest.approx(0.1) and d == 2


def test_perturbation_replays_robusttok_fixture():
    """The neighbour rule and draws replay upstream add_perturbation (xqgan fixture: seed 2024, α .5, β 1, δ 8)."""
    from tokbench.testing import load_fixture

    _, case, _ = load_fixture("xqgan", "single")
    z = case["z_pre_quant"].permute(0, 2, 3, 1)
    cand = nearest_codes(z, case["codebook_raw"], "cosine", int(case["perturb_delta"]))
    assert torch.equal(cand, case["perturb_candidates"])
    torch.manual_seed(int(case["perturb_seed"]))
    ids, hit = perturb_ids(z, case["codebook_raw"], "cosine", case["indices"], alpha=float(case["perturb_alpha"]),
                           beta=float(case["perturb_beta"]), delta=int(case["perturb_delta"]))
    assert torch.equal(ids, case["perturb_indices"])
    assert int((ids != case["indices"]).sum()) == 59


def test_perturb_ids_selects_first_images_and_rates():
    g = torch.Generator().manual_seed(4)
    codes = torch.randn(64, 8, generator=g)
    z = torch.randn(10, 16, 16, 8, generator=g)
    clean = nearest_codes(z, codes, "cosine", 1)[..., 0]
    ids, hit = perturb_ids(z, codes, "cosine", clean, alpha=0.5, beta=0.35, delta=4, generator=g)
    assert not hit[3:].any() and torch.equal(ids[3:], clean[3:])  # ⌊10·0.35⌋ = 3 images
    assert abs(hit[:3].float().mean().item() - 0.5) < 0.06
    changed = (ids[:3] != clean[:3]).float().mean().item()
    assert abs(changed - 0.5 * 3 / 4) < 0.06  # P(change) = α(δ−1)/δ
    cand = nearest_codes(z[:3], codes, "cosine", 4)
    assert (cand == ids[:3, ..., None]).any(-1).all()  # every draw is one of the δ nearest
