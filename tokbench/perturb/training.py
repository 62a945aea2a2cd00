"""The engine's rule for a *training* loop: RobustTok's latent perturbation drawn from a `torch.Generator`.

Why separate from `Perturber`: benchmarks need draws keyed by (seed, image index, position) so that pFID never depends
on batching; a trainer needs upstream's order of draws instead (one `rand`, then one `randint`, over all tokens of
the perturbed images, from a generator the trainer seeds and checkpoints), so that its resume is exact and a fixture
recorded from upstream replays. The neighbour search (`feature_candidates`) and the replacement rule
(`select_replacements`) are the engine's own; only the source of the draws differs. Nothing here needs gradients:
the trainer looks the chosen codes up itself and passes them straight through to the encoder.
"""

from __future__ import annotations

import torch

from ..api import CodebookSpace
from .engine import select_replacements
from .neighbours import feature_candidates


def generator_redraw(space: CodebookSpace, features: torch.Tensor, ids: torch.Tensor, *, alpha: float, delta: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-draw every token of `ids` (… , one per feature row of `features` … x D) with probability α, uniformly among
    the δ nearest codes to its feature (rank 0, the clean code, included). Returns (new ids, bool mask of re-drawn
    tokens), shaped like `ids`. Draws: `torch.rand(ids.shape)` then `torch.randint(0, δ, ids.shape)`."""
    if features.shape[:-1] != ids.shape:
        raise ValueError(f"features {tuple(features.shape)} do not match ids {tuple(ids.shape)} (… x D vs …)")
    cand = feature_candidates(space, features.detach(), int(delta)).reshape(*ids.shape, int(delta))
    u = torch.rand(ids.shape, generator=generator, device=ids.device)
    j = torch.randint(0, int(delta), ids.shape, generator=generator, device=ids.device)
    return select_replacements(ids, cand, u, j, alpha), u <= alpha
