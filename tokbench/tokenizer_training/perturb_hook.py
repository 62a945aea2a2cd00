"""The trainer's RobustTok latent perturbation (algorithms.md §1.2), on top of the perturbation engine.

The neighbour search and the replacement rule are `tokbench.perturb`'s (`feature_candidates`, `select_replacements`,
driven by `generator_redraw` with the trainer's checkpointed generator); this module only adds upstream's per-batch
image selection (the first ⌊B·β⌋ images) and the codebook-as-tensors convenience signature.

Variant recorded: candidates are the δ nearest codes to the **encoder feature** (RobustTok's own rule, the engine's
`mode="feature"`), not to the assigned code, under the codebook's metric (cosine for L2-normalised codebooks).
"""

from __future__ import annotations

import torch

from ..api import CodebookSpace
from ..perturb import generator_redraw

NEIGHBOUR_RULE = ("feature-to-code (RobustTok): delta nearest codes to the encoder feature under the codebook metric "
                  "(tokbench.perturb.feature_candidates)")


def codebook_space(codes: torch.Tensor, metric: str) -> CodebookSpace:
    """A token space over the (detached) effective codes, as the engine takes them."""
    return CodebookSpace(int(codes.shape[0]), codes=codes.detach(), metric=metric)  # type: ignore[arg-type]


def perturb_ids(features: torch.Tensor, codes: torch.Tensor, metric: str, ids: torch.Tensor, *, alpha: float,
                beta: float, delta: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RobustTok latent perturbation on a batch of token ids (B x …); features B x … x d (raw lookup features).

    The first ⌊B·β⌋ images are perturbed (upstream's per-device rule); in them each token independently, with
    probability α, is replaced by a code drawn uniformly among its δ nearest codes (δ capped at the codebook size;
    rank 0, the clean code, included, so a token changes with probability α(δ−1)/δ). Other tokens keep `ids` (which
    may already be Reg-VQ stochastic draws). Returns (new ids, bool mask of re-drawn tokens). Draws: one `rand` then
    one `randint` over all tokens of the selected images, in that order (`tokbench.perturb.generator_redraw`).
    """
    b = ids.shape[0]
    n_img = int(b * beta)
    redrawn = torch.zeros_like(ids, dtype=torch.bool)
    delta = min(int(delta), int(codes.shape[0]))
    if n_img == 0 or alpha <= 0 or delta <= 1:
        return ids, redrawn
    new, hit = generator_redraw(codebook_space(codes, metric), features[:n_img].float(), ids[:n_img], alpha=alpha,
                                delta=delta, generator=generator)
    out = ids.clone()
    out[:n_img] = new
    redrawn[:n_img] = hit
    return out, redrawn
