"""A rebuild of NVIDIA Cosmos' discrete image tokenizer network ("torch mode"), with the official key names.

The official weights are TorchScript only; this module lets tokbench check their key layout on the meta device, load
their state dict strictly, and run the network without TorchScript. Written from the documented structure (fixture
README `cosmos_di` and the traced graphs' operations):
- Haar wavelet patcher: log2(patch_size) levels of a 2×2 Haar transform (reflect pad right/bottom, ÷2 per level),
  channel order [LL, LH, HL, HH] per level; the unpatcher inverts it with transposed convs (×2 per level).
- Encoder/decoder: taming-style ResnetBlocks (convs with bias, `nin_shortcut` on the input), mid
  [block, attention, block], GroupNorm(32, eps 1e-6), swish; downsample = pad (0,1,0,1) + 3×3 stride-2 conv;
  upsample = repeat_interleave ×2 + 3×3 conv. The decoder's `up[i]` is level i (up[last] runs first).
- FSQ with levels (8,8,8,5,5,5): bound z with tanh, round, id = Σ digit_d·basis_d (dimension 0 least significant).
The constants (wavelets, FSQ levels) are upstream's non-persistent buffers: we compute them, so they are not keys.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

HAAR = 2**-0.5  # upstream's wavelets buffer holds float32(1/sqrt(2)) twice


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _haar_filters(groups: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.full((2,), HAAR, dtype=torch.float32, device=device)
    low = w.flip(0).reshape(1, 1, -1).repeat(groups, 1, 1).to(dtype)
    high = (w * torch.tensor([1.0, -1.0], device=device)).reshape(1, 1, -1).repeat(groups, 1, 1).to(dtype)
    return low, high


def haar_patch(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """B×C×H×W → B×(C·p²)×(H/p)×(W/p), computed in x's dtype."""
    for _ in range(int(math.log2(patch_size))):
        g = x.shape[1]
        low, high = _haar_filters(g, x.dtype, x.device)
        x = F.pad(x, (0, 1, 0, 1), mode="reflect")
        xl = F.conv2d(x, low.unsqueeze(2), stride=(1, 2), groups=g)
        xh = F.conv2d(x, high.unsqueeze(2), stride=(1, 2), groups=g)
        parts = [F.conv2d(src, f.unsqueeze(3), stride=(2, 1), groups=g) for src in (xl, xh) for f in (low, high)]
        x = torch.cat(parts, 1) / 2
    return x


def haar_unpatch(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of `haar_patch`."""
    for _ in range(int(math.log2(patch_size))):
        g = x.shape[1] // 4
        low, high = _haar_filters(g, x.dtype, x.device)
        xll, xlh, xhl, xhh = torch.chunk(x, 4, 1)
        yl = F.conv_transpose2d(xll, low.unsqueeze(3), stride=(2, 1), groups=g)
        yl = yl + F.conv_transpose2d(xlh, high.unsqueeze(3), stride=(2, 1), groups=g)
        yh = F.conv_transpose2d(xhl, low.unsqueeze(3), stride=(2, 1), groups=g)
        yh = yh + F.conv_transpose2d(xhh, high.unsqueeze(3), stride=(2, 1), groups=g)
        y = F.conv_transpose2d(yl, low.unsqueeze(2), stride=(1, 2), groups=g)
        y = y + F.conv_transpose2d(yh, high.unsqueeze(2), stride=(1, 2), groups=g)
        x = y * 2
    return x


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(swish(self.norm2(self.conv1(swish(self.norm1(x))))))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1 q/k/v/proj convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        attn = torch.bmm(q.reshape(b, c, hh * ww).permute(0, 2, 1), k.reshape(b, c, hh * ww)) * (c**-0.5)
        attn = torch.softmax(attn, dim=2)
        out = torch.bmm(v.reshape(b, c, hh * ww), attn.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


class _Level(nn.Module):
    """One resolution level: `block` list (and `downsample`/`upsample` when the level changes resolution)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


def _num_resamples(spatial_compression: int, patch_size: int) -> int:
    n = int(math.log2(spatial_compression // patch_size))
    if 2**n * patch_size != spatial_compression:
        raise ValueError(f"spatial_compression {spatial_compression} is not patch_size {patch_size} times a power of 2")
    return n


def _check_no_level_attention(attn_resolutions: Sequence[int], resolutions: Sequence[int]) -> None:
    hits = sorted(set(attn_resolutions) & set(resolutions))
    if hits:
        raise NotImplementedError(f"attention at level resolutions {hits} is not rebuilt (no official Cosmos-DI model "
                                  "uses it: attn_resolutions=[32] never matches a level)")


class CosmosEncoder(nn.Module):
    def __init__(self, in_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 z_channels: int, patch_size: int, spatial_compression: int, resolution: int,
                 attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        num_down = _num_resamples(spatial_compression, patch_size)
        res = resolution // patch_size
        self.conv_in = nn.Conv2d(in_channels * patch_size**2, channels, 3, padding=1)
        levels, seen, prev = [], [], channels
        for i, mult in enumerate(channels_mult):
            out = channels * mult
            seen.append(res)
            level = _Level([ResnetBlock(prev if j == 0 else out, out) for j in range(num_res_blocks)])
            if i < num_down:
                level.downsample = Downsample(out)
                res //= 2
            levels.append(level)
            prev = out
        _check_no_level_attention(attn_resolutions, seen)
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(prev)
        self.norm_out = group_norm(prev)
        self.conv_out = nn.Conv2d(prev, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(haar_patch(x.to(self.conv_in.weight.dtype), self.patch_size))
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.conv_out(swish(self.norm_out(self.mid(h))))


class CosmosDecoder(nn.Module):
    def __init__(self, out_channels: int, channels: int, channels_mult: Sequence[int], num_res_blocks: int,
                 z_channels: int, patch_size: int, spatial_compression: int, resolution: int,
                 attn_resolutions: Sequence[int]) -> None:
        super().__init__()
        self.patch_size = patch_size
        num_up = _num_resamples(spatial_compression, patch_size)
        n = len(channels_mult)
        block_in = channels * channels_mult[-1]
        res = resolution // spatial_compression
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in)
        levels: list[nn.Module] = [None] * n  # type: ignore[list-item]
        seen = []
        for i in reversed(range(n)):
            out = channels * channels_mult[i]
            seen.append(res)
            level = _Level([ResnetBlock(block_in if j == 0 else out, out) for j in range(num_res_blocks + 1)])
            if i >= n - num_up:
                level.upsample = Upsample(out)
                res *= 2
            levels[i] = level
            block_in = out
        _check_no_level_attention(attn_resolutions, seen)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels * patch_size**2, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return haar_unpatch(self.conv_out(swish(self.norm_out(h))), self.patch_size)


class FSQ(nn.Module):
    """Finite scalar quantisation with upstream's arithmetic (float32 constants, straight-through code values)."""

    def __init__(self, levels: Sequence[int]) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        basis, b = [], 1
        for lv in self.levels:
            basis.append(b)
            b *= lv
        self.basis = tuple(basis)
        self.codebook_size = b

    def _consts(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        levels = torch.tensor(self.levels, dtype=torch.int32, device=device)
        half_l = (levels - 1) * 1.001 / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_l)
        return levels, half_l, offset, shift, levels // 2

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """z: … × D → the value that is rounded (level units, centred at 0)."""
        _, half_l, offset, shift, _ = self._consts(z.device)
        return torch.tanh(z + shift) * half_l - offset

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z: B × D × h × w pre-quantisation → (ids B × h × w int64, codes B × D × h × w, continuous codes B×h×w×D).

        The continuous codes are `bound(z) / half_width`, in the units of the grid codes, so that the nearest grid
        point of each dimension is the chosen digit."""
        levels, half_l, offset, shift, half_width = self._consts(z.device)
        x = z.permute(0, 2, 3, 1)
        bounded = torch.tanh(x + shift) * half_l - offset
        quantized = bounded + (torch.round(bounded) - bounded)
        codes = quantized / half_width
        digits = (codes * half_width + half_width).float()
        basis = torch.tensor(self.basis, dtype=torch.int32, device=z.device)
        ids = (digits * basis).sum(-1).to(torch.int32).long()
        return ids, codes.permute(0, 3, 1, 2).to(z.dtype), (bounded / half_width).float()

    def codes_from_ids(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """ids B × h × w → B × D × h × w grid codes (digit_d - half_width_d) / half_width_d."""
        levels = torch.tensor(self.levels, dtype=torch.int64, device=ids.device)
        basis = torch.tensor(self.basis, dtype=torch.int64, device=ids.device)
        digits = torch.remainder(torch.floor_divide(ids[..., None], basis), levels)
        half_width = levels // 2
        return ((digits - half_width) / half_width).permute(0, 3, 1, 2).to(dtype)


class DiscreteImageNet(nn.Module):
    """encoder → quant_conv → FSQ → post_quant_conv → decoder, with the official state-dict keys."""

    def __init__(self, *, in_channels: int = 3, out_channels: int = 3, channels: int = 128,
                 channels_mult: Sequence[int] = (2, 4, 4), num_res_blocks: int = 2, z_channels: int = 256,
                 z_factor: int = 1, patch_size: int = 4, patch_method: str = "haar", spatial_compression: int = 16,
                 resolution: int = 1024, attn_resolutions: Sequence[int] = (32,), embedding_dim: int = 6,
                 levels: Sequence[int] = (8, 8, 8, 5, 5, 5), dropout: float = 0.0, quantizer: str = "FSQ",
                 **ignored) -> None:
        super().__init__()
        if patch_method != "haar":
            raise NotImplementedError(f"patch_method {patch_method!r}: only the Haar patcher of Cosmos-DI is rebuilt")
        if quantizer != "FSQ":
            raise NotImplementedError(f"quantizer {quantizer!r}: only FSQ (Cosmos-DI) is rebuilt")
        if embedding_dim != len(levels):
            raise NotImplementedError("embedding_dim != len(levels) needs FSQ projections, which Cosmos-DI does not use")
        common = dict(channels=channels, channels_mult=channels_mult, num_res_blocks=num_res_blocks,
                      z_channels=z_channels * z_factor, patch_size=patch_size,
                      spatial_compression=spatial_compression, resolution=resolution,
                      attn_resolutions=attn_resolutions)
        self.encoder = CosmosEncoder(in_channels, **common)
        self.decoder = CosmosDecoder(out_channels, **{**common, "z_channels": z_channels})
        self.quant_conv = nn.Conv2d(z_channels * z_factor, embedding_dim, 1)
        self.post_quant_conv = nn.Conv2d(embedding_dim, z_channels, 1)
        self.quantizer = FSQ(levels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.quantizer.quantize(self.quant_conv(self.encoder(x)))

    def decode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        codes = self.quantizer.codes_from_ids(ids, self.post_quant_conv.weight.dtype)
        return self.decoder(self.post_quant_conv(codes))
