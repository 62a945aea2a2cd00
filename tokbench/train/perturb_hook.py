"""The one place where the trainer needs a neighbour search: RobustTok latent perturbation (algorithms.md §1.2).

TODO(perturb-engine): switch `nearest_codes` to `tokbench.perturb` when the perturbation engine (written by the
"runner" helper) lands on main, so that the neighbour search exists once. Until then this small function is the
stand-in; nothing else in tokbench.train searches neighbours.

Variant recorded: candidates are the δ nearest codes to the **encoder feature** (RobustTok's own rule), not to the
assigned code, under the codebook's metric (cosine for L2-normalised codebooks = squared distance of unit vectors).
"""

from __future__ import annotations

import torch

NEIGHBOUR_RULE = "feature-to-code (RobustTok): delta nearest codes to the encoder feature under the codebook metric"


def nearest_codes(features: torch.Tensor, codes: torch.Tensor, metric: str, delta: int) -> torch.Tensor:
    """Indices (… x delta) of the `delta` nearest codes to each feature (… x d), nearest first.

    `features` are raw (un-normalised) lookup features; for metric "cosine" both sides are L2-normalised, for "l2"
    the squared distance is used, for "dot" the inner product. Column 0 is the clean (argmax) assignment.
    """
    if delta < 1:
        raise ValueError(f"delta must be >= 1, got {delta}")
    from ..api import CodebookSpace

    space = CodebookSpace(int(codes.shape[0]), codes=codes.detach(), metric=metric)  # type: ignore[arg-type]
    scores = space.scores(features.detach().float())
    return scores.topk(min(int(delta), codes.shape[0]), dim=-1).indices


def perturb_ids(features: torch.Tensor, codes: torch.Tensor, metric: str, ids: torch.Tensor, *, alpha: float,
                beta: float, delta: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RobustTok latent perturbation on a batch of token ids (B x …).

    The first ⌊B·β⌋ images are perturbed (upstream's per-device rule); in them each token independently, with
    probability α, is replaced by a code drawn uniformly among its δ nearest codes (rank 0, the clean code, included,
    so a token changes with probability α(δ−1)/δ). Other tokens keep `ids` (which may already be Reg-VQ
    stochastic draws). Returns (new ids, bool mask of re-drawn tokens). Draws: one `rand` then one `randint` over
    all tokens of the selected images, in that order.
    """
    b = ids.shape[0]
    n_img = int(b * beta)
    redrawn = torch.zeros_like(ids, dtype=torch.bool)
    if n_img == 0 or alpha <= 0 or delta <= 1:
        return ids, redrawn
    cand = nearest_codes(features[:n_img], codes, metric, delta)  # n x … x delta
    shape = cand.shape[:-1]
    u = torch.rand(shape, generator=generator, device=ids.device)
    j = torch.randint(0, cand.shape[-1], shape, generator=generator, device=ids.device)
    hit = u <= alpha  # upstream keeps rank 0 where u > alpha
    new = cand.gather(-1, j.unsqueeze(-1)).squeeze(-1)
    out = ids.clone()
    out[:n_img] = torch.where(hit, new, ids[:n_img])
    redrawn[:n_img] = hit
    return out, redrawn
