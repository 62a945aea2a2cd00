"""The MaskGIT VQGAN convolutional encoder/decoder (Google's JAX tokenizer as ported to PyTorch).

Used by three families: `maskgit_vq` (bytedance/1d-tokenizer key names), `mage` (the same network under MAGE's
`taming` key names, renamed by its checkpoint filter) and `titok` (the pixel decoder of the two-stage models).
It is *not* the taming Encoder/Decoder (`tokbench.nn.taming`); the differences that matter for parity:

- no attention anywhere; ResnetBlock and `encoder.conv_in` convolutions have no bias;
- the residual shortcut, where the width changes, is a 1x1 `nin_shortcut` (out→out, no bias) applied to the block's
  *output*: the block returns `h + nin_shortcut(h)`, not `h + shortcut(x)`;
- the encoder downsamples with `avg_pool2d(2)` (no parameters), the decoder upsamples with nearest x2 + 3x3 conv;
- `num_res_blocks` blocks per level in both encoder and decoder (not +1), and `num_res_blocks` mid blocks;
- GroupNorm(32, eps=1e-6) + SiLU; TF "SAME" padding, which for the odd stride-1 kernels used here is symmetric k//2.

Key names follow 1d-tokenizer: `down.{i}.block.{j}`, `mid.{k}`, `up.{i}.block.{j}`, `up.{i}.upsample_conv`
(`up[i]` is level i, 0 = full resolution; the decoder visits them from the coarsest level down).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MaskGITConvConfig:
    """The `encoder_decoder_conf` of 1d-tokenizer (MAGE's `ddconfig` maps onto it: ch → hidden_channels …)."""

    hidden_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    num_channels: int = 3
    resolution: int = 256
    dropout: float = 0.0
    num_mid_blocks: int | None = None  # None: num_res_blocks (1d-tokenizer); MAGE's taming copy always has 2

    @property
    def num_resolutions(self) -> int:
        return len(self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (self.num_resolutions - 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MaskGITConvConfig":
        cm = tuple(int(c) for c in d.get("channel_mult", cls.channel_mult))
        if "num_resolutions" in d and int(d["num_resolutions"]) != len(cm):
            raise ValueError(f"num_resolutions={d['num_resolutions']} does not match channel_mult {list(cm)}")
        return cls(
            hidden_channels=int(d.get("hidden_channels", cls.hidden_channels)),
            channel_mult=cm,
            num_res_blocks=int(d.get("num_res_blocks", cls.num_res_blocks)),
            z_channels=int(d.get("z_channels", cls.z_channels)),
            num_channels=int(d.get("num_channels", cls.num_channels)),
            resolution=int(d.get("resolution", cls.resolution)),
            dropout=float(d.get("dropout", 0.0)),
            num_mid_blocks=d.get("num_mid_blocks"),
        )

    @property
    def mid_blocks(self) -> int:
        return self.num_res_blocks if self.num_mid_blocks is None else int(self.num_mid_blocks)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


def _conv(cin: int, cout: int, k: int, bias: bool) -> nn.Conv2d:
    # TF "SAME" padding for an odd kernel at stride 1 is symmetric k // 2.
    return nn.Conv2d(cin, cout, k, stride=1, padding=k // 2, bias=bias)


class MaskGITResBlock(nn.Module):
    """norm-SiLU-conv twice, bias-free; the width-changing shortcut acts on the block output (MaskGIT quirk)."""

    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = _conv(cin, cout, 3, bias=False)
        self.norm2 = _norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv(cout, cout, 3, bias=False)
        self.nin_shortcut = _conv(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + (self.nin_shortcut(h) if self.nin_shortcut is not None else x)


class _Level(nn.Module):
    """One resolution level: `block.{j}` ResBlocks, plus the decoder's `upsample_conv` where it upsamples."""

    def __init__(self, cin: int, cout: int, n: int, dropout: float, upsample: bool = False) -> None:
        super().__init__()
        self.block = nn.ModuleList(MaskGITResBlock(cin if j == 0 else cout, cout, dropout) for j in range(n))
        self.upsample_conv = _conv(cout, cout, 3, bias=True) if upsample else None


class MaskGITEncoder(nn.Module):
    """Image (B, 3, H, W) → latent (B, z_channels, H/f, W/f), f = 2**(levels-1)."""

    def __init__(self, cfg: MaskGITConvConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hid, mult = cfg.hidden_channels, cfg.channel_mult
        self.conv_in = _conv(cfg.num_channels, hid, 3, bias=False)
        ins = (1,) + tuple(mult)
        self.down = nn.ModuleList(
            _Level(hid * ins[i], hid * mult[i], cfg.num_res_blocks, cfg.dropout) for i in range(len(mult))
        )
        mid = hid * mult[-1]
        self.mid = nn.ModuleList(MaskGITResBlock(mid, mid, cfg.dropout) for _ in range(cfg.mid_blocks))
        self.norm_out = _norm(mid)
        self.conv_out = _conv(mid, cfg.z_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for blk in level.block:
                h = blk(h)
            if i != last:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        for blk in self.mid:
            h = blk(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskGITDecoder(nn.Module):
    """Latent (B, z_channels, h, w) → image (B, 3, h·f, w·f), unclamped."""

    def __init__(self, cfg: MaskGITConvConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hid, mult, n = cfg.hidden_channels, cfg.channel_mult, cfg.num_res_blocks
        top = hid * mult[-1]
        self.conv_in = _conv(cfg.z_channels, top, 3, bias=True)
        self.mid = nn.ModuleList(MaskGITResBlock(top, top, cfg.dropout) for _ in range(cfg.mid_blocks))
        levels = []
        for i in range(len(mult)):
            cin = hid * (mult[i + 1] if i + 1 < len(mult) else mult[-1])
            levels.append(_Level(cin, hid * mult[i], n, cfg.dropout, upsample=i != 0))
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(hid * mult[0])
        self.conv_out = _conv(hid * mult[0], cfg.num_channels, 3, bias=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for blk in self.mid:
            h = blk(h)
        for level in reversed(self.up):
            for blk in level.block:
                h = blk(h)
            if level.upsample_conv is not None:
                h = level.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class Codebook(nn.Module):
    """Holds `embedding.weight` (the key name shared by every MaskGIT-lineage quantizer)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight


def l2_nearest(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """argmin_j |z - e_j|² computed the upstream way (|z|² + |e|² − 2 z·e), z: (M, D), codes: (N, D) → (M,)."""
    d = torch.addmm((z * z).sum(1, keepdim=True) + (codes * codes).sum(1)[None, :], z, codes.t(), alpha=-2.0)
    return d.argmin(dim=1)
