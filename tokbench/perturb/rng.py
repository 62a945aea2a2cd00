"""Counter-based random numbers: a pure function of (seed, stream, image index, position).

Why not `torch.Generator`: a generator's stream depends on how many numbers were drawn before, hence on batch size,
process count and device. Hashing the counters instead makes every draw a function of *which* token it is for, so the
perturbed tokens of an image never depend on how the data set was batched or sharded, and the computation is plain
integer tensor arithmetic that runs the same on CPU and GPU.

The mixer is Chris Wellons' `lowbias32` (two multiply-xorshift rounds), applied in int64 tensors masked to 32 bits.
The 32x32-bit products are split into 16-bit halves so that no intermediate leaves the signed int64 range.
"""

from __future__ import annotations

import torch

M32 = 0xFFFFFFFF

# streams: independent families of draws
STREAM_IMAGE = 0x1B873593  # is this image perturbed (β)
STREAM_SELECT = 0x2545F491  # is this token re-drawn (α)
STREAM_RANK = 0x4F1BBCDD  # which candidate rank j in [0, δ)
STREAM_PERM = 0x68E31DA4  # random tie-break order of bits / digits (binary and FSQ shells)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    lo, hi = c & 0xFFFF, (c >> 16) & 0xFFFF
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & M32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int64 tensors holding 32-bit values."""
    x = x & M32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


def image_keys(seed: int, stream: int, image_index: torch.Tensor) -> torch.Tensor:
    """One 32-bit key per image (B,), from the seed, the stream and the global image index."""
    idx = image_index.to(torch.int64)
    s = torch.tensor([seed & M32, (seed >> 32) & M32, stream & M32], dtype=torch.int64, device=idx.device)
    h = hash32(hash32(hash32(s[0]) ^ s[1]) ^ s[2])
    h = hash32(h ^ (idx & M32))
    return hash32(h ^ ((idx >> 32) & M32))


def token_bits(seed: int, stream: int, image_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """32 random bits per (image, position): shape B x positions.shape, int64 in [0, 2^32)."""
    k = image_keys(seed, stream, image_index)
    k = k.reshape(-1, *([1] * positions.ndim))
    return hash32(hash32(k ^ (positions.to(torch.int64) & M32)) + 0x9E3779B9)


def token_uniform(seed: int, stream: int, image_index: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Uniform float64 in (0, 1) per (image, position): (h + 0.5) / 2^32, never exactly 0 or 1."""
    return (token_bits(seed, stream, image_index, positions).to(torch.float64) + 0.5) / 4294967296.0


def image_uniform(seed: int, stream: int, image_index: torch.Tensor) -> torch.Tensor:
    """Uniform float64 in (0, 1) per image."""
    return (hash32(image_keys(seed, stream, image_index) + 0x7F4A7C15).to(torch.float64) + 0.5) / 4294967296.0
