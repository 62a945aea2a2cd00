"""Reg-VQ regularisers (arXiv 2303.06424, algorithms.md §4), re-implemented for a distance-based VQ, and the
RobustTok perturbation schedule (§1.5). Reg-VQ has no official code: this is tokbench's re-implementation, and every
open choice is a setting recorded in the training log.

Adaptation to distance-based VQ: logits ℓ_tn = −‖ẑ_t − ê_n‖² / τ (ẑ, ê normalised for cosine codebooks). τ is the
`temperature` setting, default 0.1, chosen by a measured criterion (the paper gives none): on the trained zoo
conv-k256 (cosine, 8-d) a Gumbel-max draw equals the argmax with P = 0.54 at τ = 0.1 (mean rank 1.7 of 256), against
P = 0.017 (median rank 62: a near-random code) at τ = 1; `benchmarks/experiments/train_robust/regvq_temperature.py`
measures it.

Choices (defaults; all settable in the config's `regvq` section):
- mask: Bernoulli(`mask_ratio`=0.4) per position; masked positions are quantised stochastically as in Gumbel-VQ,
  which the paper builds on: the draw is Gumbel-max, id = argmax(ℓ + g), and the vector is relaxed by the
  Gumbel-softmax y = softmax((ℓ + g)/τ_g) (`gumbel_tau` τ_g = 1, taming's default): with `relaxation: soft` the
  decoder sees Σ_n y_n ê_n (the relaxed sample; taming's training default), with `straight_through` it sees ê_id
  with the gradient of Σ_n y_n ê_n. Either way gradients reach the encoder through ℓ and the codebook through ê —
  not the hard z + sg(e − z) of the deterministic positions. Inference is deterministic (argmax).
- prior: KL(p̄ ‖ U) = log N − H(p̄), p̄ the batch mean (over all B·h·w tokens) of the **actual** quantisation
  results: the one-hot of the argmax at deterministic positions and of the Gumbel draw at masked ones (forward),
  with the gradient of softmax(ℓ) and of the Gumbel-softmax y respectively (straight-through).
- PCL: PatchNCE (τ_nce = 0.07) between features of the original (positives, stop-gradient) and of the reconstruction
  at the same location, negatives the reconstruction's other locations of the same image; positive weighted by
  w′_i = w_i / Σ_image w, w_i = ‖e_sampled − e_argmax‖²; **summed** over the locations i of an image as the paper
  writes it (L_PCL = Σ_i ℓ_i), then averaged over the images of the batch. A location contributes only when
  w_i > 0 (masked and the draw differs from the argmax): deterministic positions have w = 0 and log 0 is undefined.
  Weights are resized to the feature grid by nearest neighbour (then renormalised).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------------------------------
# Prior distribution regularisation
# ----------------------------------------------------------------------------------------------------------------------
def straight_through_usage(logits: torch.Tensor, ids: torch.Tensor, relaxed: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-averaged straight-through assignment p̄ (N,): value = the usage histogram of `ids` (the actual
    quantisation results), gradient through softmax(logits) — or, at positions where `mask` is set, through the
    Gumbel-softmax sample `relaxed` (… x N) that produced the stochastic draw there."""
    n = logits.shape[-1]
    soft = logits.reshape(-1, n).float().softmax(-1)
    if relaxed is not None and mask is not None:
        soft = torch.where(mask.reshape(-1, 1), relaxed.reshape(-1, n).float(), soft)
    hard = F.one_hot(ids.reshape(-1), n).to(soft.dtype)
    return (hard + soft - soft.detach()).mean(0)


def prior_kl(p_bar: torch.Tensor) -> torch.Tensor:
    """KL(p̄ ‖ uniform) = Σ p̄ log(N p̄) = log N − H(p̄), with 0·log 0 = 0."""
    n = p_bar.shape[-1]
    safe = torch.where(p_bar > 0, p_bar, torch.ones_like(p_bar))
    return (p_bar * (safe.log() + math.log(n))).sum()


def entropy(p: torch.Tensor) -> torch.Tensor:
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(p * safe.log()).sum(-1)


# ----------------------------------------------------------------------------------------------------------------------
# Stochastic mask regularisation
# ----------------------------------------------------------------------------------------------------------------------
def gumbel_noise(shape, device, generator: torch.Generator | None = None) -> torch.Tensor:
    u = torch.rand(shape, device=device, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


class GumbelDraw(NamedTuple):
    ids: torch.Tensor  # … : argmax at deterministic positions, Gumbel-max draw at masked ones
    mask: torch.Tensor  # … bool: the stochastic positions
    relaxed: torch.Tensor | None  # … x N: Gumbel-softmax softmax((ℓ + g)/τ_g) (None without masked positions)


def gumbel_mask(logits: torch.Tensor, ids_clean: torch.Tensor, mask_ratio: float, gumbel_tau: float = 1.0, *,
                generator: torch.Generator | None = None) -> GumbelDraw:
    """Reg-VQ's stochastic mask. Each position is masked with probability `mask_ratio` (Bernoulli); masked positions
    take the Gumbel-max draw argmax(ℓ + g); `relaxed` is the Gumbel-softmax softmax((ℓ + g)/τ_g) with the same
    noise, differentiable in the logits. Draws: one `rand` for the mask, then Gumbel noise over positions × codes."""
    if mask_ratio <= 0:
        return GumbelDraw(ids_clean, torch.zeros_like(ids_clean, dtype=torch.bool), None)
    mask = torch.rand(ids_clean.shape, device=ids_clean.device, generator=generator) < mask_ratio
    g = gumbel_noise(logits.shape, logits.device, generator)
    noisy = logits.float() + g
    sampled = noisy.detach().argmax(-1)
    return GumbelDraw(torch.where(mask, sampled, ids_clean), mask, (noisy / float(gumbel_tau)).softmax(-1))


def relaxed_codes(draw: GumbelDraw, codes: torch.Tensor, relaxation: str = "soft") -> torch.Tensor:
    """The lookup-space vectors of the stochastic draw (… x d): `soft` = Σ_n y_n ê_n (Gumbel-softmax relaxation),
    `straight_through` = ê_id forward with the gradient of Σ_n y_n ê_n. Only meaningful at masked positions."""
    if draw.relaxed is None:
        raise ValueError("relaxed_codes needs a draw with masked positions (mask_ratio > 0)")
    soft = draw.relaxed @ codes.to(draw.relaxed.dtype)
    if relaxation == "soft":
        return soft
    if relaxation == "straight_through":
        return F.embedding(draw.ids, codes).to(soft.dtype) + soft - soft.detach()
    raise ValueError(f"unknown Gumbel relaxation {relaxation!r} (soft | straight_through)")


# ----------------------------------------------------------------------------------------------------------------------
# Probabilistic contrastive loss
# ----------------------------------------------------------------------------------------------------------------------
def pcl_weights(e_sampled: torch.Tensor, e_argmax: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w′ (B x h x w): ‖e_sampled − e_argmax‖² at masked positions, 0 elsewhere, normalised to sum 1 per image
    (an image without a non-zero weight keeps all zeros)."""
    w = ((e_sampled.float() - e_argmax.float()) ** 2).sum(-1) * mask.float()
    s = w.flatten(1).sum(1).clamp_min(1e-12)
    return w / s.view(-1, *([1] * (w.ndim - 1)))


def pcl_loss(feat_orig: torch.Tensor, feat_rec: torch.Tensor, weights: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Weighted PatchNCE. feat_*: B x C x H' x W'; weights: B x h x w normalised (`pcl_weights`).

    term_i = −log[ w′_i e^{s_ii/τ} / ( w′_i e^{s_ii/τ} + (1/L) Σ_{j≠i} e^{s_ij/τ} ) ], s_ij = ŷ_i·ẑ_j (unit vectors,
    ŷ the original's features, stop-gradient), summed over the positions of an image with w′_i > 0 (the paper's
    Σ_i) and averaged over the images; 0 when there are none."""
    b, c, hh, ww = feat_rec.shape
    if weights.shape[-2:] != (hh, ww):
        w = F.interpolate(weights[:, None].float(), size=(hh, ww), mode="nearest")[:, 0]
        w = w / w.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)
    else:
        w = weights.float()
    y = F.normalize(feat_orig.detach().float().flatten(2), dim=1)  # B x C x L
    z = F.normalize(feat_rec.float().flatten(2), dim=1)
    L = hh * ww
    s = torch.einsum("bci,bcj->bij", y, z) / tau  # B x L x L, row i = query y_i
    pos = s.diagonal(dim1=1, dim2=2)  # B x L
    eye = torch.eye(L, dtype=torch.bool, device=s.device)
    neg = torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=-1) - math.log(L)
    wf = w.flatten(1)
    valid = wf > 0
    if not valid.any():
        return feat_rec.sum() * 0.0
    a = wf.clamp_min(1e-30).log() + pos
    term = -(a - torch.logaddexp(a, neg))
    return torch.where(valid, term, torch.zeros_like(term)).sum(1).mean()


def patch_features(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Default PCL feature network ("pixels"): each token's image patch as a vector, B x (3·p·p) x grid x grid.
    Cheap and weight-free; "vgg19" can be chosen when torchvision's VGG-19 weights are available locally."""
    b, c, h, w = x.shape
    p = h // grid
    return F.unfold(x.float(), kernel_size=p, stride=p).reshape(b, c * p * p, grid, grid)


# ----------------------------------------------------------------------------------------------------------------------
# RobustTok annealing (without the upstream jump after `end`)
# ----------------------------------------------------------------------------------------------------------------------
def anneal_ratio(epoch: int, start: int, end: int, end_ratio: float) -> float:
    """r(e): 1 before `start`, linear from 1 to `end_ratio` on [start, end], `end_ratio` after `end` (with
    start = end a single step at `start`; the config refuses end_ratio < 1 with start = end = 0, which would run
    α and δ at end_ratio× from step 0, and defaults to end_ratio 1: constant α, δ).
    Upstream's `end_ratio` c means "fall by c" (r = 1 − c at `end`) and then returns c after `end` (a jump unless
    c = 0.5); ours is the level reached and kept: upstream c corresponds to end_ratio = 1 − c."""
    if epoch < start:
        return 1.0
    if epoch > end or end <= start:
        return float(end_ratio)
    return 1.0 - (epoch - start) / (end - start) * (1.0 - float(end_ratio))


def annealed_perturbation(epoch: int, alpha: float, delta: int, start: int, end: int,
                          end_ratio: float) -> tuple[float, int]:
    """(α_eff, δ_eff) = (r·α, int(r·δ)) for this epoch."""
    r = anneal_ratio(epoch, start, end, end_ratio)
    return r * float(alpha), int(r * int(delta))
