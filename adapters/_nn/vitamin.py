"""ViTamin hybrid encoder, ViTamin decoder and the attention projection, as UniTok uses them.

UniTok builds its encoder with `timm.create_model("vitamin_large", ...)` from its own `models/vitamin.py`, which only
constructs with timm==1.0.8. We do not pin an old timm for one adapter: this module writes the same network with plain
torch (no timm import, no forward pass at construction, so it builds on the meta device), with the module names of the
upstream state dict:

- encoder: `patch_embed.backbone` (MbConv stem → two MbConv stages → strided-conv "pool"), a zero `pos_embed`,
  pre-norm transformer `blocks` whose MLP is a GeGLU with its own LayerNorm, and a final `norm`.
- decoder: transformer `blocks` + `norm` (same block type), then nearest-×2 upsampling convs and inverted MbConv
  blocks back to pixels (×16 in total).
- `AttnProjection`: the attention-pooling projection between the transformer width and the quantiser width.

Numerics follow upstream: LayerNorm2d = channels-last `layer_norm`; exact-erf GELU in the conv blocks, tanh GELU in
the GeGLU; SDPA attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Channel rounding of the timm MbConv blocks (expanded width = out · 4 rounded to a multiple of 8)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class ViTaminConfig:
    """Widths of one ViTamin variant: conv stages, transformer, and the decoder's conv widths."""

    conv_dims: tuple[int, int]  # the two MbConv stages
    stem_width: int
    conv_depths: tuple[int, int]
    embed_dim: int  # transformer width (the strided conv projects to it)
    depth: int
    num_heads: int
    mlp_ratio: float = 2.0
    decoder_dims: tuple[int, int, int] | None = None  # upstream ViTaminDecoder's hard-coded table
    decoder_depths: tuple[int, int] = (4, 2)


VITAMIN_CONFIGS: dict[str, ViTaminConfig] = {
    "vitamin_small": ViTaminConfig((64, 128), 64, (2, 4), 384, 14, 6),  # no decoder widths upstream
    "vitamin_base": ViTaminConfig((128, 256), 128, (2, 4), 768, 14, 12, decoder_dims=(768, 256, 128)),
    "vitamin_large": ViTaminConfig((160, 320), 160, (2, 4), 1024, 31, 16, decoder_dims=(1024, 320, 160)),
    # The parity fixture's reduced model (registered by its harness with the vitamin_large builder).
    "vitamin_fxtiny": ViTaminConfig((16, 32), 16, (2, 4), 64, 2, 4, decoder_dims=(64, 32, 16)),
}


# ----------------------------------------------------------------------------------------------------------------------
# Conv pieces
# ----------------------------------------------------------------------------------------------------------------------
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor (eps 1e-6), optionally followed by exact GELU (timm LayerNormAct2d)."""

    def __init__(self, channels: int, eps: float = 1e-6, act: bool = False) -> None:
        super().__init__(channels, eps=eps)
        self.act = nn.GELU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return self.act(x.permute(0, 3, 1, 2))


class ConvStem(nn.Module):
    """3×3 stride-2 conv → LayerNorm2d + GELU → 3×3 conv."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)
        self.norm1 = LayerNorm2d(out_chs, act=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.norm1(self.conv1(x)))


class Downsample2d(nn.Module):
    """Shortcut of a stride-2 MbConv block: 3×3/2 average pool (padding not counted), 1×1 conv if widths differ."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.expand = nn.Conv2d(in_chs, out_chs, 1) if in_chs != out_chs else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.pool(x))


class Upsample2d(nn.Module):
    """Nearest ×2 then 3×3 conv."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class MbConvBlock(nn.Module):
    """Pre-norm inverted bottleneck: LN2d → 1×1 expand → GELU → depthwise 3×3 (strided) → GELU → 1×1, plus shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, expand_ratio: float = 4.0) -> None:
        super().__init__()
        mid = make_divisible(out_chs * expand_ratio)
        if stride == 2:
            self.shortcut = Downsample2d(in_chs, out_chs)
        elif in_chs != out_chs:
            self.shortcut = nn.Conv2d(in_chs, out_chs, 1)
        else:
            self.shortcut = nn.Identity()
        self.pre_norm = LayerNorm2d(in_chs)
        self.conv1_1x1 = nn.Conv2d(in_chs, mid, 1)
        self.conv2_kxk = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, groups=mid)
        self.conv3_1x1 = nn.Conv2d(mid, out_chs, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.act(self.conv1_1x1(self.pre_norm(x)))
        x = self.act(self.conv2_kxk(x))
        return self.conv3_1x1(x) + shortcut


class InvMbConvBlock(nn.Module):
    """Decoder counterpart of `MbConvBlock`: a stride-2 block upsamples (shortcut and main path: nearest ×2 + 3×3
    conv; the main path upsamples the expanded channels before the depthwise conv)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, expand_ratio: float = 4.0) -> None:
        super().__init__()
        mid = make_divisible(out_chs * expand_ratio)
        if stride == 2:
            self.shortcut = Upsample2d(in_chs, out_chs)
        elif in_chs != out_chs:
            self.shortcut = nn.Conv2d(in_chs, out_chs, 1)
        else:
            self.shortcut = nn.Identity()
        self.pre_norm = LayerNorm2d(in_chs)
        self.conv1_1x1 = nn.Conv2d(in_chs, mid, 1)
        self.up = Upsample2d(mid, mid) if stride == 2 else nn.Identity()
        self.conv2_kxk = nn.Conv2d(mid, mid, 3, padding=1, groups=mid)
        self.conv3_1x1 = nn.Conv2d(mid, out_chs, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.shortcut(x)
        x = self.up(self.act(self.conv1_1x1(self.pre_norm(x))))
        x = self.act(self.conv2_kxk(x))
        return self.conv3_1x1(x) + shortcut


class InvStem(nn.Module):
    """Last decoder stage: nearest ×2 + 3×3 conv → LN2d + GELU → 3×3 conv to RGB."""

    def __init__(self, in_chs: int, out_chs: int = 3) -> None:
        super().__init__()
        self.conv1 = Upsample2d(in_chs, in_chs)
        self.norm1 = LayerNorm2d(in_chs, act=True)
        self.conv2 = nn.Conv2d(in_chs, out_chs, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.norm1(self.conv1(x)))


class StridedConv(nn.Module):
    """LayerNorm2d → 3×3 stride-2 conv to the transformer width (upstream's `pool`)."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_chs)
        self.proj = nn.Conv2d(in_chs, out_chs, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class MbConvStages(nn.Module):
    """Stem (/2) → stage 0 (/2) → stage 1 (/2) → strided conv (/2): a 16× downsampling conv backbone."""

    def __init__(self, cfg: ViTaminConfig, in_chans: int = 3) -> None:
        super().__init__()
        self.stem = ConvStem(in_chans, cfg.stem_width)
        stages, prev = [], cfg.stem_width
        for dim, depth in zip(cfg.conv_dims, cfg.conv_depths):
            stages.append(nn.Sequential(*[MbConvBlock(prev if d == 0 else dim, dim, stride=2 if d == 0 else 1)
                                          for d in range(depth)]))
            prev = dim
        self.stages = nn.ModuleList(stages)
        self.pool = StridedConv(prev, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.pool(x)


class HybridEmbed(nn.Module):
    """Conv backbone feature map → B × (h·w) × C tokens, row-major."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------------------
# Transformer pieces
# ----------------------------------------------------------------------------------------------------------------------
class GeGluMlp(nn.Module):
    """LayerNorm (eps 1e-6) → gelu_tanh(w0 x) · w1 x → w2. It carries its own norm, so a block normalises twice."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features, eps=1e-6)
        self.act = nn.GELU(approximate="tanh")
        self.w0 = nn.Linear(in_features, hidden_features)
        self.w1 = nn.Linear(in_features, hidden_features)
        self.w2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.w2(self.act(self.w0(x)) * self.w1(x))


class Attention(nn.Module):
    """Multi-head self-attention with a biased fused qkv (timm `Attention` without q/k norm)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, no layer scale) with a GeGLU MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = GeGluMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTaminEncoder(nn.Module):
    """Image → B × (H/16 · W/16) × embed_dim tokens (no class token, no fc_norm, zero `pos_embed`)."""

    def __init__(self, cfg: ViTaminConfig) -> None:
        super().__init__()
        self.embed_dim = cfg.embed_dim
        self.patch_embed = HybridEmbed(MbConvStages(cfg))
        # Upstream replaces timm's table by a frozen zero parameter; it is in the official state dict, so we keep it.
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim), requires_grad=False)
        self.blocks = nn.Sequential(*[Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        return self.norm(self.blocks(x))


class ViTaminDecoder(nn.Module):
    """B × (h·w) × embed_dim tokens → B × 3 × 16h × 16w pixels (unclamped)."""

    def __init__(self, cfg: ViTaminConfig) -> None:
        super().__init__()
        if cfg.decoder_dims is None:
            raise ValueError("this ViTamin variant has no decoder widths (upstream lists vitamin_base / vitamin_large)")
        d0, d1, d2 = cfg.decoder_dims
        n1, n2 = cfg.decoder_depths
        self.blocks = nn.Sequential(*[Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.up_conv1 = Upsample2d(d0, d1)
        self.up_conv2 = nn.Sequential(*[InvMbConvBlock(d1, d1, stride=2 if d == 0 else 1) for d in range(n1)])
        self.up_conv3 = nn.Sequential(*[InvMbConvBlock(d1 if d == 0 else d2, d2, stride=2 if d == 0 else 1)
                                        for d in range(n2)])
        self.up_conv4 = InvStem(d2, 3)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, L, C = x.shape
        h, w = hw
        if h * w != L:
            raise ValueError(f"{L} tokens do not form a {h}×{w} grid")
        x = self.norm(self.blocks(x))
        x = x.view(B, h, w, C).permute(0, 3, 1, 2)
        x = self.up_conv3(self.up_conv2(self.up_conv1(x)))
        return self.up_conv4(x)


# ----------------------------------------------------------------------------------------------------------------------
# UniTok's attention projection (models/vqvae.py)
# ----------------------------------------------------------------------------------------------------------------------
class PlainAttention(nn.Module):
    """Attention between two widths. qkv has no bias of its own; its bias is (q_bias, a constant zero k bias, v_bias).

    in > out: heads of in/heads dims, averaged over heads (then pooled to `out` if the head width differs);
    in ≤ out: heads of out/heads dims, concatenated. Then `proj` (out → out)."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int) -> None:
        super().__init__()
        inner = in_dim if in_dim > out_dim else out_dim
        self.in_dim, self.out_dim, self.num_heads = in_dim, out_dim, num_heads
        self.head_dim = inner // num_heads
        self.qkv = nn.Linear(in_dim, inner * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(inner))
        self.v_bias = nn.Parameter(torch.zeros(inner))
        self.register_buffer("zero_k_bias", torch.zeros(inner))
        self.proj = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        if self.in_dim > self.out_dim:
            x = x.mean(dim=1)
            if self.head_dim != self.out_dim:
                x = F.adaptive_avg_pool1d(x, self.out_dim)
        else:
            x = x.transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class AttnProjection(nn.Module):
    """x → proj(norm3 x) + attn(norm1 x), then + mlp(norm2 ·). Norms are LayerNorm with the default eps 1e-5."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if out_dim % in_dim and in_dim % out_dim:
            raise ValueError(f"AttnProjection needs one width to divide the other, got {in_dim} and {out_dim}")
        self.norm1 = nn.LayerNorm(in_dim)
        self.attn = PlainAttention(in_dim, out_dim, num_heads)
        self.proj = nn.Linear(in_dim, out_dim)
        self.norm3 = nn.LayerNorm(in_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = GeGluMlp(out_dim, int(out_dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.norm3(x)) + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
