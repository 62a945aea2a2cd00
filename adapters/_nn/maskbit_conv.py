"""The convolutional encoder/decoder of MaskBit's `ConvVQModel` (MaskBit LFQ and VQGAN+ tokenizers).

Written from the documented structure (fixture README `maskbit/lfq`), with the official key names so that the
published state dicts load strictly. It differs from the taming lineage in ways that matter for parity:
- convs inside residual blocks have no bias, and the encoder's `conv_in` has none either;
- the stride-2 downsampling conv uses TF-style SAME padding, which for even inputs pads 0 before and 1 after;
- a residual block whose width changes applies its 1×1 `nin_shortcut` to the block's *output* (`h + W h`);
- the decoder's `up[0]` is the lowest resolution; there is no attention and no quant_conv/post_quant_conv.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size (asymmetric for stride 2 on even sizes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1]):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ResidualBlock(nn.Module):
    """GN → SiLU → conv3×3 → GN → SiLU → conv3×3 (bias-free); shortcut `h + nin(h)` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = SameConv2d(in_channels, out_channels, 3, bias=False)
        self.norm2 = group_norm(out_channels)
        self.conv2 = SameConv2d(out_channels, out_channels, 3, bias=False)
        self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            return h + self.nin_shortcut(h)
        return h + x


class ResidualStage(nn.Module):
    """`num_blocks` residual blocks; the first one changes the width."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            [ResidualBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(num_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class DownsamplingStage(ResidualStage):
    """Residual blocks, then a 3×3 stride-2 SAME conv (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int) -> None:
        super().__init__(in_channels, out_channels, num_blocks)
        self.down_conv = SameConv2d(out_channels, out_channels, 3, stride=2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_conv(super().forward(x))


class UpsamplingStage(ResidualStage):
    """Residual blocks, then nearest ×2 and a 3×3 conv (with bias)."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int) -> None:
        super().__init__(in_channels, out_channels, num_blocks)
        self.upsample_conv = SameConv2d(out_channels, out_channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvEncoder(nn.Module):
    """Image → `token_size`-channel latent at 1/2**(num_resolutions-1) resolution."""

    def __init__(self, num_channels: int, hidden_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 token_size: int) -> None:
        super().__init__()
        widths = [hidden_channels * m for m in channel_mult]
        self.conv_in = SameConv2d(num_channels, hidden_channels, 3, bias=False)
        stages, prev = [], hidden_channels
        for i, w in enumerate(widths):
            last = i == len(widths) - 1
            stages.append((ResidualStage if last else DownsamplingStage)(prev, w, num_res_blocks))
            prev = w
        self.down = nn.ModuleList(stages)
        self.mid = ResidualStage(prev, prev, num_res_blocks)
        self.norm_out = group_norm(prev)
        self.conv_out = nn.Conv2d(prev, token_size, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class ConvDecoder(nn.Module):
    """Latent → image; `up[0]` works at the lowest resolution."""

    def __init__(self, num_channels: int, hidden_channels: int, channel_mult: Sequence[int], num_res_blocks: int,
                 token_size: int) -> None:
        super().__init__()
        widths = [hidden_channels * m for m in channel_mult][::-1]
        self.conv_in = SameConv2d(token_size, widths[0], 3, bias=True)
        self.mid = ResidualStage(widths[0], widths[0], num_res_blocks)
        stages, prev = [], widths[0]
        for j, w in enumerate(widths):
            last = j == len(widths) - 1
            stages.append((ResidualStage if last else UpsamplingStage)(prev, w, num_res_blocks))
            prev = w
        self.up = nn.ModuleList(stages)
        self.norm_out = group_norm(prev)
        self.conv_out = SameConv2d(prev, num_channels, 3, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in self.up:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(h)))
