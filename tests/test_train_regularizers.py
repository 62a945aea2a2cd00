"""Arithmetic of the Reg-VQ regularisers, the RobustTok anneal and the perturbation neighbour rule."""

import math

import pytest
import torch

from tokbench.tokenizer_training import regularizers as R
from tokbench.perturb import feature_candidates
from tokbench.tokenizer_training.perturb_hook import codebook_space, perturb_ids


def nearest_codes(z, codes, metric, delta):
    """The engine's neighbour search, shaped like the features (… x δ)."""
    return feature_candidates(codebook_space(codes, metric), z, delta).reshape(*z.shape[:-1], delta)


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
    draw = R.gumbel_mask(logits, clean, 0.4, generator=g)
    share = draw.mask.float().mean().item()
    assert abs(share - 0.4) < 0.04  # 2048 Bernoulli(0.4) draws: sd ≈ 0.011
    assert torch.equal(draw.ids[~draw.mask], clean[~draw.mask])
    assert (draw.ids[draw.mask] != clean[draw.mask]).float().mean() > 0.3  # Gumbel draws differ from the argmax often
    none = R.gumbel_mask(logits, clean, 0.0, generator=g)
    assert torch.equal(none.ids, clean) and not none.mask.any() and none.relaxed is None


def test_gumbel_draw_is_the_argmax_of_its_relaxation_and_samples_the_softmax():
    """Gumbel-max: the draw is argmax(ℓ + g) = argmax of the Gumbel-softmax y (any τ_g), and P(draw = n) =
    softmax(ℓ)_n. ℓ = log(0.5, 0.3, 0.2): 30000 draws, sd of each share ≤ 0.003."""
    logits = torch.tensor([0.5, 0.3, 0.2]).log().expand(30000, 3).contiguous()
    clean = logits.argmax(-1)
    g = torch.Generator().manual_seed(7)
    draw = R.gumbel_mask(logits, clean, 1.0, gumbel_tau=0.5, generator=g)
    assert draw.mask.all() and torch.equal(draw.ids, draw.relaxed.argmax(-1))
    assert torch.allclose(draw.relaxed.sum(-1), torch.ones(30000))
    share = torch.bincount(draw.ids, minlength=3).float() / 30000
    assert torch.allclose(share, torch.tensor([0.5, 0.3, 0.2]), atol=0.015)
    # the relaxation is softmax((ℓ + g)/τ_g) with the same noise (replayed: one rand for the mask, then the noise)
    g2 = torch.Generator().manual_seed(7)
    torch.rand(clean.shape, generator=g2)
    noise = R.gumbel_noise(logits.shape, logits.device, g2)
    assert torch.allclose(draw.relaxed, ((logits + noise) / 0.5).softmax(-1), atol=1e-6)


def test_relaxed_codes_hand_computed():
    """y = (0.2, 0.7, 0.1) over codes (1,0), (0,1), (1,1): soft = (0.3, 0.8); straight-through forward = the drawn
    code (0,1), gradient as the soft one (d Σ out / d y_n = Σ_k e_nk = 1, 1, 2)."""
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([[0.2, 0.7, 0.1]], requires_grad=True)
    draw = R.GumbelDraw(torch.tensor([1]), torch.tensor([True]), y)
    soft = R.relaxed_codes(draw, codes, "soft")
    assert torch.allclose(soft, torch.tensor([[0.3, 0.8]]))
    st = R.relaxed_codes(draw, codes, "straight_through")
    assert torch.allclose(st, torch.tensor([[0.0, 1.0]]))
    (gy,) = torch.autograd.grad(st.sum(), y)
    assert torch.allclose(gy, torch.tensor([[1.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="relaxation"):
        R.relaxed_codes(draw, codes, "hard")


def test_prior_kl_counts_the_actual_draws_hand_computed():
    """Actual results: positions 0,1 deterministic (argmax 0, 0), positions 2,3 stochastic (draws 1, 3; their argmax
    was 0). p̄ = (.5, .25, 0, .25): KL = log 4 − H = 0.5·log 2 (the clean ids alone would give KL = log 4). The
    gradient reaches the logits at deterministic positions and the Gumbel-softmax at stochastic ones, 1/4 each."""
    n = 4
    logits = torch.zeros(4, n, requires_grad=True)
    relaxed = torch.full((4, n), 0.25, requires_grad=True)
    mask = torch.tensor([False, False, True, True])
    ids = torch.tensor([0, 0, 1, 3])
    p_bar = R.straight_through_usage(logits, ids, relaxed, mask)
    assert torch.allclose(p_bar, torch.tensor([0.5, 0.25, 0.0, 0.25]))
    kl = R.prior_kl(p_bar)
    assert float(kl.detach()) == pytest.approx(0.5 * math.log(2), abs=1e-6)
    gl, gr = torch.autograd.grad(p_bar[1], [logits, relaxed])
    assert torch.all(gr[:2] == 0) and torch.allclose(gr[2:, 1], torch.full((2,), 0.25))
    assert torch.all(gl[2:] == 0) and gl[:2].abs().sum() > 0
    clean = R.straight_through_usage(logits, torch.zeros(4, dtype=torch.long))
    assert float(R.prior_kl(clean)) == pytest.approx(math.log(n), abs=1e-6)


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
    assert float(loss) == pytest.approx(float(torch.stack(terms).sum()), rel=1e-5)  # Σ_i, as the paper writes it
    loss.backward()
    assert z.grad.abs().sum() > 0
    assert float(R.pcl_loss(y, z, torch.zeros_like(w), tau)) == 0.0


def test_pcl_loss_hand_computed_sum_per_image_mean_over_images():
    """Two locations with orthonormal features, reconstruction = original, τ = 1: s_ii = 1, s_ij = 0, L = 2.
    term_i = −log[w_i e / (w_i e + ½)]; image 1 has w = (¼, ¾), image 2 only location 0 (w = (1, 0))."""
    y = torch.eye(2).reshape(1, 2, 1, 2).expand(2, 2, 1, 2).contiguous()  # B x C x 1 x 2, feature i = e_i
    w = torch.tensor([[[0.25, 0.75]], [[1.0, 0.0]]])
    e = math.e
    t = lambda wi: -math.log(wi * e / (wi * e + 0.5))  # noqa: E731
    expected = ((t(0.25) + t(0.75)) + t(1.0)) / 2
    assert float(R.pcl_loss(y, y.clone(), w, 1.0)) == pytest.approx(expected, rel=1e-6)


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


def test_generator_redraw_is_the_engine_rule_on_generator_draws():
    from tokbench.perturb import generator_redraw, select_replacements

    g = torch.Generator().manual_seed(1)
    codes, z = torch.randn(32, 4, generator=g), torch.randn(2, 5, 5, 4, generator=g)
    space = codebook_space(codes, "l2")
    ids = nearest_codes(z, codes, "l2", 1)[..., 0]
    new, hit = generator_redraw(space, z, ids, alpha=0.4, delta=5, generator=torch.Generator().manual_seed(7))
    g2 = torch.Generator().manual_seed(7)
    u, j = torch.rand(ids.shape, generator=g2), torch.randint(0, 5, ids.shape, generator=g2)
    assert torch.equal(new, select_replacements(ids, nearest_codes(z, codes, "l2", 5), u, j, 0.4))
    assert torch.equal(hit, u <= 0.4) and torch.equal(new[~hit], ids[~hit])
    with pytest.raises(ValueError, match="do not match"):
        generator_redraw(space, z[0], ids, alpha=0.4, delta=5)


def test_default_schedule_runs_alpha_and_delta_as_configured():
    """Enabling the perturbation with the default schedule runs α, δ as written, from step 0 to the end."""
    from tokbench.tokenizer_training import make_config

    p = make_config({"perturb": {"enabled": True, "alpha": 1.0, "delta": 100}})["perturb"]
    for epoch in (0, 1, 50, 10_000):
        assert R.annealed_perturbation(epoch, p["alpha"], p["delta"], p["start_epoch"], p["end_epoch"],
                                       p["end_ratio"]) == (1.0, 100)


def test_end_ratio_without_annealing_window_is_refused():
    from tokbench.tokenizer_training import make_config

    with pytest.raises(ValueError, match="end_ratio 0.5 with perturb.end_epoch 0"):
        make_config({"perturb": {"enabled": True, "end_ratio": 0.5}})
    with pytest.raises(ValueError, match="end_ratio must lie"):
        make_config({"perturb": {"enabled": True, "end_ratio": 1.5, "start_epoch": 1, "end_epoch": 2}})
    # a window still anneals as written (RobustTok: α 1 → 0.5 from epoch 40 to 120)
    p = make_config({"perturb": {"enabled": True, "start_epoch": 40, "end_epoch": 120, "end_ratio": 0.5}})["perturb"]
    assert R.annealed_perturbation(80, p["alpha"], p["delta"], 40, 120, p["end_ratio"]) == (0.75, 75)
