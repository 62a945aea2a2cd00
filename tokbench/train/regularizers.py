"""Reg-VQ regularisers (arXiv 2303.06424, algorithms.md §4), re-implemented for a distance-based VQ, and the
RobustTok perturbation schedule (§1.5). Reg-VQ has no official code: this is tokbench's re-implementation, and every
open choice is a setting recorded in the training log.

Adaptation to distance-based VQ: logits ℓ_tn = −‖ẑ_t − ê_n‖² / τ (ẑ, ê normalised for cosine codebooks).

Choices (defaults; all settable in the config's `regvq` section):
- prior: KL(p̄ ‖ U) = log N − H(p̄), p̄ the batch mean (over all B·h·w tokens) of the straight-through one-hot of the
  **clean** (argmax) assignment — hard one-hot forward, softmax(ℓ) gradient backward.
- mask: Bernoulli(`mask_ratio`=0.4) per position; masked positions take the Gumbel-max draw argmax(ℓ + g), hard
  straight-through (z + sg(e − z)) like the deterministic positions. Inference is deterministic.
- PCL: PatchNCE (τ_nce = 0.07) between features of the original (positives, stop-gradient) and of the reconstruction
  at the same location, negatives the reconstruction's other locations of the same image; positive weighted by
  w′_i = w_i / Σ_image w, w_i = ‖e_sampled − e_argmax‖², computed only at positions with w_i > 0 (masked and the draw
  differs from the argmax): deterministic positions have w = 0 and no term (instead of log 0). Weights are resized to
  the feature grid by nearest neighbour (then renormalised).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------------------------------
# Prior distribution regularisation
# ----------------------------------------------------------------------------------------------------------------------
def straight_through_usage(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Batch-averaged straight-through assignment p̄ (N,): value = the usage histogram of `ids`, gradient through
    softmax(logits)."""
    n = logits.shape[-1]
    soft = logits.reshape(-1, n).float().softmax(-1)
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


def stochastic_mask_ids(logits: torch.Tensor, ids_clean: torch.Tensor, mask_ratio: float, *,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix argmax and Gumbel-max ids: (mixed ids, mask). Each position is masked with probability `mask_ratio`
    (Bernoulli); draws: one `rand` for the mask, then Gumbel noise over all positions × codes."""
    if mask_ratio <= 0:
        return ids_clean, torch.zeros_like(ids_clean, dtype=torch.bool)
    mask = torch.rand(ids_clean.shape, device=ids_clean.device, generator=generator) < mask_ratio
    g = gumbel_noise(logits.shape, logits.device, generator)
    sampled = (logits.detach().float() + g).argmax(-1)
    return torch.where(mask, sampled, ids_clean), mask


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
    ŷ the original's features, stop-gradient), averaged over positions with w′_i > 0; 0 when there are none."""
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
    return term[valid].mean()


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
    """r(e): 1 before `start`, linear from 1 to `end_ratio` on [start, end], `end_ratio` after `end`.
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
