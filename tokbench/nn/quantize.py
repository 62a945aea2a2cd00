"""Nearest-code lookup for learned codebooks, under the three assignment rules the published tokenizers use.

- "l2":     id = argmin_j |z|² + |e_j|² − 2 z·e_j (the expanded form taming-lineage code computes),
- "cosine": the same on l2-normalised z and codes (LlamaGen, TiTok, XQ-GAN),
- "dot":    id = argmax_j z·e_j, no normalisation (IBQ).

The search is chunked over the codebook so that 262,144-entry codebooks at batch 64 do not build a
tokens × codes matrix of many gigabytes; ties resolve to the lowest index, as `torch.argmin`/`argmax` do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nearest_code", "code_scores", "DEFAULT_CHUNK_ELEMENTS"]

DEFAULT_CHUNK_ELEMENTS = 1 << 26  # 64 Mi scores per chunk (256 MB in fp32)


def code_scores(z: torch.Tensor, codes: torch.Tensor, metric: str) -> torch.Tensor:
    """N×D queries against K×D codes → N×K scores, higher = nearer (negated squared distance for l2/cosine)."""
    if metric == "cosine":
        z, codes = F.normalize(z, dim=-1), F.normalize(codes, dim=-1)
    if metric in ("l2", "cosine"):
        return -(z.pow(2).sum(-1, keepdim=True) + codes.pow(2).sum(-1)[None, :] - 2.0 * (z @ codes.T))
    if metric == "dot":
        return z @ codes.T
    raise ValueError(f"unknown metric {metric!r}; expected 'l2', 'cosine' or 'dot'")


def nearest_code(z: torch.Tensor, codes: torch.Tensor, metric: str = "l2", *,
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> torch.Tensor:
    """Index of the best code for each row of `z` (N×D) among `codes` (K×D), as int64 of shape N."""
    if z.ndim != 2 or codes.ndim != 2 or z.shape[1] != codes.shape[1]:
        raise ValueError(f"nearest_code expects N x D queries and K x D codes, got {tuple(z.shape)} and {tuple(codes.shape)}")
    codes = codes.to(z.dtype)
    if metric == "cosine":
        z, codes = F.normalize(z, dim=-1), F.normalize(codes, dim=-1)
        metric = "l2"
    n, k = z.shape[0], codes.shape[0]
    step = max(1, min(k, chunk_elements // max(n, 1)))
    best_val = best_idx = None
    for start in range(0, k, step):
        s = code_scores(z, codes[start : start + step], metric)
        val, idx = s.max(dim=1)
        idx = idx + start
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val  # strict: an earlier chunk wins ties
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, best_idx)
    return best_idx
