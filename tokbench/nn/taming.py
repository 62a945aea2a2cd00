"""The taming-transformers convolutional encoder/decoder, written once for every family of its lineage.

taming VQGAN, VQGAN-LC, LlamaGen VQ and IBQ all use this network (Esser et al. 2021): GroupNorm(32, eps 1e-6) + swish
ResNet blocks, single-head spatial self-attention at chosen levels and in the middle, an asymmetrically padded stride-2
downsampling conv, nearest ×2 upsampling + conv, and `num_res_blocks + 1` blocks per decoder level. The families differ
only in widths, where attention sits, and in key names; our modules use the taming key names
(`down.{i}.block.{j}`, `mid.block_1`, `up.{i}.attn.{j}` …) and each adapter's checkpoint filter renames its own.

Build from a `TamingConfig`; `TamingConfig.from_ddconfig` reads a taming-style `ddconfig` dict, where attention
placement follows the `resolution` key (evaluated at construction, not from the input size, as upstream does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TamingConfig", "Normalize", "ResnetBlock", "AttnBlock", "Downsample", "Upsample", "Encoder", "Decoder"]


def Normalize(channels: int, num_groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """The lineage's normalisation: affine GroupNorm with 32 groups and eps 1e-6."""
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=eps, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


@dataclass(frozen=True)
class TamingConfig:
    """Shape of a taming-style encoder/decoder pair.

    ch, ch_mult: base width and per-level multipliers (len(ch_mult) levels, downsampling 2**(len-1)).
    num_res_blocks: ResNet blocks per encoder level (the decoder has `num_res_blocks + decoder_extra_blocks`).
    attn_levels: level indices (0 = full resolution) with an attention block after every ResNet block.
    mid_attn: attention between the two middle ResNet blocks.
    z_channels: encoder output / decoder input channels (the encoder emits 2*z_channels when double_z).
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (4,)
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 256
    double_z: bool = False
    dropout: float = 0.0
    mid_attn: bool = True
    decoder_extra_blocks: int = 1

    def __post_init__(self) -> None:
        bad = [i for i in self.attn_levels if not 0 <= i < len(self.ch_mult)]
        if bad:
            raise ValueError(f"attn_levels {bad} outside the {len(self.ch_mult)} levels of ch_mult {self.ch_mult}")
        if self.ch % 32 or any((self.ch * m) % 32 for m in self.ch_mult):
            raise ValueError(f"every width ch*ch_mult must be a multiple of 32 (GroupNorm(32)); got ch={self.ch}, "
                             f"ch_mult={self.ch_mult}")

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (self.num_levels - 1)

    @classmethod
    def from_ddconfig(cls, dd: Mapping, **overrides) -> "TamingConfig":
        """A taming `ddconfig` (ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, …)."""
        ch_mult = tuple(int(m) for m in dd["ch_mult"])
        kw = dict(
            ch=int(dd.get("ch", 128)),
            ch_mult=ch_mult,
            num_res_blocks=int(dd["num_res_blocks"]),
            attn_levels=attn_levels_from_resolutions(int(dd["resolution"]), dd.get("attn_resolutions", ()), len(ch_mult)),
            in_channels=int(dd.get("in_channels", 3)),
            out_ch=int(dd.get("out_ch", 3)),
            z_channels=int(dd["z_channels"]),
            double_z=bool(dd.get("double_z", False)),
            dropout=float(dd.get("dropout", 0.0)),
        )
        kw.update(overrides)
        return cls(**kw)


def attn_levels_from_resolutions(resolution: int, attn_resolutions: Sequence[int], num_levels: int) -> tuple[int, ...]:
    """Levels whose feature-map side (at the configured `resolution`) is in `attn_resolutions`, as taming decides."""
    wanted = {int(r) for r in attn_resolutions}
    return tuple(i for i in range(num_levels) if resolution // (2**i) in wanted)


# ----------------------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """norm1 → swish → conv1 → norm2 → swish → (dropout) → conv2, plus the input (through a 1×1 `nin_shortcut`
    when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1×1 conv projections, scale C**-0.5, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / sqrt(c)) v, fused where the device can
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a 3×3 stride-2 conv without padding (taming's asymmetric downsample)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float, attn: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels) if attn else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: `block` (ResNet blocks), `attn` (one after each block, or empty), and optionally a
    `downsample`/`upsample`."""

    def __init__(self, blocks: list[nn.Module], attns: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for j, blk in enumerate(self.block):
            h = blk(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


# ----------------------------------------------------------------------------------------------------------------------
# Encoder / decoder
# ----------------------------------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """Image B×in_channels×H×W → latent B×z_channels×H/f×W/f (f = 2**(levels-1))."""

    def __init__(self, config: TamingConfig) -> None:
        super().__init__()
        self.config = c = config
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        in_mult = (1,) + tuple(c.ch_mult)
        self.down = nn.ModuleList()
        block_in = c.ch
        for i in range(c.num_levels):
            block_in, block_out = c.ch * in_mult[i], c.ch * c.ch_mult[i]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, c.dropout))
                block_in = block_out
                if i in c.attn_levels:
                    attns.append(AttnBlock(block_in))
            level = _Level(blocks, attns)
            if i != c.num_levels - 1:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in, c.dropout, c.mid_attn)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * c.z_channels if c.double_z else c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            h = level.run_blocks(h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent B×z_channels×h×w → image B×out_ch×(h·f)×(w·f), unbounded (no tanh)."""

    def __init__(self, config: TamingConfig) -> None:
        super().__init__()
        self.config = c = config
        block_in = c.ch * c.ch_mult[-1]
        self.conv_in = nn.Conv2d(c.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, c.dropout, c.mid_attn)
        levels: list[nn.Module] = []
        for i in reversed(range(c.num_levels)):
            block_out = c.ch * c.ch_mult[i]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks + c.decoder_extra_blocks):
                blocks.append(ResnetBlock(block_in, block_out, c.dropout))
                block_in = block_out
                if i in c.attn_levels:
                    attns.append(AttnBlock(block_in))
            level = _Level(blocks, attns)
            if i != 0:
                level.upsample = Upsample(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # up[i] works at level i; run from the lowest resolution up
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, c.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            h = self.up[i].run_blocks(h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))
