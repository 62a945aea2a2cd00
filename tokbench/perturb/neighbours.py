"""Neighbourhoods of a token: which ids count as "the δ nearest" for each kind of token space.

- Codebook, `code` rule: the δ nearest codes to the *assigned code* under the model's own metric, from a precomputed
  N x δ table (row i starts with i itself). Computed in row chunks so 100k–262k vocabularies fit in memory.
- Codebook, `feature` rule: the δ nearest codes to the encoder's pre-quantisation feature (RobustTok's exact rule);
  computed only for the tokens that are re-drawn.
- Binary (LFQ): codes ordered by Hamming distance; rank j in [0, δ) is unranked on the fly into a set of bit flips
  (shell k holds the C(n, k) codes at distance k), no table even for 2^18 codes.
- FSQ: codes reached by moving k digits by ±1 grid step (clipped at the grid's edge); shell k holds C(n, k)·2^k moves.
For binary and FSQ, the order of bits/digits inside a shell is a per-token random permutation, so that when δ cuts a
shell the kept part is a uniform random subset rather than always the same low bits.
"""

from __future__ import annotations

import logging
import math

import torch

from ..api import BinarySpace, CodebookSpace, FSQSpace

log = logging.getLogger(__name__)

SCORE_CHUNK_ELEMENTS = 1 << 25  # scores computed at once: rows x vocabulary (128 MiB in float32)


# ----------------------------------------------------------------------------------------------------------------------
# Codebooks
# ----------------------------------------------------------------------------------------------------------------------
def code_neighbour_table(space: CodebookSpace, delta: int, device: torch.device | str | None = None,
                         chunk_elements: int = SCORE_CHUNK_ELEMENTS) -> torch.Tensor:
    """N x δ int32 table: row i holds the δ nearest codes to code i under `space.scores`, nearest first, with i itself
    always first (also for the dot metric, where a code need not be its own best match, and for duplicate codes)."""
    n = space.vocab_size
    if not 1 <= delta <= n:
        raise ValueError(f"δ={delta} must lie in [1, {n}] for a codebook of {n} codes")
    codes = space.codes.detach()
    device = torch.device(device) if device is not None else codes.device
    codes = codes.to(device, torch.float32)
    rows = max(1, chunk_elements // n)
    out = torch.empty(n, delta, dtype=torch.int32, device=device)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        s = space.scores(codes[start:stop], codes)
        s[torch.arange(stop - start, device=device), torch.arange(start, stop, device=device)] = float("inf")
        out[start:stop] = s.topk(delta, dim=-1).indices.to(torch.int32)
    return out


def feature_candidates(space: CodebookSpace, features: torch.Tensor, delta: int,
                       chunk_elements: int = SCORE_CHUNK_ELEMENTS) -> torch.Tensor:
    """M x D features → M x δ ids of the δ nearest codes to each feature (nearest first; RobustTok's rule)."""
    n = space.vocab_size
    if not 1 <= delta <= n:
        raise ValueError(f"δ={delta} must lie in [1, {n}] for a codebook of {n} codes")
    codes = space.codes.detach().to(features.device, torch.float32)
    feats = features.reshape(-1, features.shape[-1]).to(torch.float32)
    rows = max(1, chunk_elements // n)
    out = torch.empty(feats.shape[0], delta, dtype=torch.int64, device=features.device)
    for start in range(0, feats.shape[0], rows):
        out[start : start + rows] = space.scores(feats[start : start + rows], codes).topk(delta, dim=-1).indices
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Shell unranking (binary and FSQ)
# ----------------------------------------------------------------------------------------------------------------------
def _binom_table(n: int, device) -> torch.Tensor:
    """T[i, c] = C(c, i) for i in 0..n, c in 0..n-1."""
    return torch.tensor([[math.comb(c, i) for c in range(n)] for i in range(n + 1)], dtype=torch.int64, device=device)


def shell_sizes(kind: str, n: int) -> list[int]:
    """Number of codes at each distance k = 0..n: C(n,k) (binary) or C(n,k)·2^k (FSQ, before clipping)."""
    return [math.comb(n, k) * (2**k if kind == "fsq" else 1) for k in range(n + 1)]


def max_candidates(space) -> int:
    if isinstance(space, BinarySpace):
        return 2**space.bits
    if isinstance(space, FSQSpace):
        return 3 ** len(space.levels)
    return space.vocab_size


def radius_for(kind: str, n: int, delta: int) -> int:
    """The largest number of flipped bits / moved digits among the δ candidates."""
    cum = 0
    for k, s in enumerate(shell_sizes(kind, n)):
        cum += s
        if cum >= delta:
            return k
    return n


def unrank_moves(kind: str, n: int, rank: torch.Tensor, perm_bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """rank (M,) in [0, total) → (moved (M x n) bool, sign (M x n) ±1 int64), for shells ordered by distance.

    perm_bits: M x n random 32-bit keys; the order of the n slots is argsort(perm_bits) per token."""
    device = rank.device
    sizes = torch.tensor(shell_sizes(kind, n), dtype=torch.int64, device=device)
    ends = sizes.cumsum(0)
    k = torch.searchsorted(ends, rank, right=True)  # shell of each rank
    m = rank - (ends[k] - sizes[k])  # rank inside the shell
    if kind == "fsq":
        sub, signs = m >> k, m & ((1 << k) - 1)
    else:
        sub, signs = m, torch.zeros_like(m)
    table = _binom_table(n, device)
    perm = torch.argsort(perm_bits, dim=-1, stable=True)  # slot c → bit/digit perm[c]
    moved = torch.zeros(rank.shape[0], n, dtype=torch.bool, device=device)
    sign = torch.ones(rank.shape[0], n, dtype=torch.int64, device=device)
    rows = torch.arange(rank.shape[0], device=device)
    for i in range(n, 0, -1):  # colex unranking of the k-subset, one element per step (loop over ≤ n slots)
        active = k >= i
        if not bool(active.any()):
            continue
        c = (table[i][None, :] <= sub[:, None]).sum(-1) - 1
        c = c.clamp_min(0)
        sub = torch.where(active, sub - table[i][c], sub)
        target = perm[rows, c]
        moved[rows[active], target[active]] = True
        neg = ((signs >> (i - 1)) & 1).bool() & active
        sign[rows[neg], target[neg]] = -1
    return moved, sign


def binary_neighbours(space: BinarySpace, ids: torch.Tensor, rank: torch.Tensor, perm_bits: torch.Tensor) -> torch.Tensor:
    """ids (M,) → the codes at candidate rank `rank` (bit flips)."""
    moved, _ = unrank_moves("binary", space.bits, rank, perm_bits)
    weights = (1 << torch.arange(space.bits, device=ids.device, dtype=torch.int64))
    mask = (moved.long() * weights).sum(-1)
    return ids ^ mask


def fsq_neighbours(space: FSQSpace, ids: torch.Tensor, rank: torch.Tensor, perm_bits: torch.Tensor) -> torch.Tensor:
    """ids (M,) → the codes at candidate rank `rank` (±1 grid steps on the moved digits, clipped per digit)."""
    n = len(space.levels)
    moved, sign = unrank_moves("fsq", n, rank, perm_bits)
    levels = torch.tensor(space.levels, dtype=torch.int64, device=ids.device)
    bases = torch.tensor(space.bases, dtype=torch.int64, device=ids.device)
    digits = (ids[:, None] // bases) % levels
    digits = torch.minimum(torch.clamp_min(digits + moved.long() * sign, 0), levels - 1)
    return (digits * bases).sum(-1)
