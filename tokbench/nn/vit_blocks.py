"""Pre-LN transformer blocks with OpenCLIP / TiTok key names (`ln_1`, `attn.in_proj_weight`, `mlp.c_fc` …).

The weights keep `nn.MultiheadAttention`'s layout (packed `in_proj_weight` (3W, W), `in_proj_bias`, `out_proj`) so
that official checkpoints load without renaming, but the computation runs batch-first through
`F.scaled_dot_product_attention` (fused kernels on GPU, no sequence-first permutes). The MLP uses the exact (erf)
GELU; a tanh approximation moves TiTok's decoded images by ~1e-3.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class PackedSelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter names and shapes, batch-first."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(b, n, 3, self.num_heads, w // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1(x)); x + mlp(ln_2(x)) with mlp = c_fc → GELU → c_proj (ratio 4)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = PackedSelfAttention(width, num_heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, hidden)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(hidden, width)),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def transformer(width: int, num_layers: int, num_heads: int) -> nn.ModuleList:
    """`transformer.{i}` blocks, as a ModuleList (TiTok's key layout)."""
    return nn.ModuleList(ResidualAttentionBlock(width, num_heads) for _ in range(num_layers))
