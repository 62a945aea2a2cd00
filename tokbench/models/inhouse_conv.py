"""tokbench's small convolutional VQ tokenizer (family `tokbench_convvq`), for small images and CPUs.

Taming-lineage layout (conv stem, residual blocks with GroupNorm + SiLU, stride-2 downsampling, mirrored decoder with
nearest-neighbour upsampling) with the same factorised cosine quantiser as the ViT variant. The blocks here are our
own compact ones; they should later be replaced by the shared taming blocks in `tokbench/nn/taming.py` (written in
parallel by the taming helper) where the structures agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Family, Preset, register_family, register_preset
from .inhouse_base import InhouseVQTokenizer, constructor_kwargs, inhouse_checkpoint_filter, init_weights

FAMILY = "tokbench_convvq"


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch >= 8 else 1, ch, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class ConvEncoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, out_ch: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        layers: list[nn.Module] = []
        cin = ch
        for i, m in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(cin, ch * m))
                cin = ch * m
            if i < len(ch_mult) - 1:
                layers.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock(cin, cin)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.mid(self.down(self.conv_in(x))))))


class Upsample(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ConvDecoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, in_ch: int) -> None:
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(in_ch, cin, 3, padding=1)
        self.mid = ResBlock(cin, cin)
        layers: list[nn.Module] = []
        for i, m in reversed(list(enumerate(ch_mult))):
            for _ in range(num_res_blocks):
                layers.append(ResBlock(cin, ch * m))
                cin = ch * m
            if i > 0:
                layers.append(Upsample(cin))
        self.up = nn.Sequential(*layers)
        self.norm_out, self.conv_out = _norm(cin), nn.Conv2d(cin, 3, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.up(self.mid(self.conv_in(h))))))


class ConvVQTokenizer(InhouseVQTokenizer):
    family = FAMILY

    def __init__(self, image_size: int = 64, ch: int = 64, ch_mult: tuple[int, ...] | list[int] = (1, 2, 2),
                 num_res_blocks: int = 1, z_channels: int = 128, codebook_size: int = 1024, lookup_dim: int = 16,
                 l2_norm: bool = True, ema_codebook: bool = False, ema_decay: float = 0.99) -> None:
        ch_mult = tuple(int(m) for m in ch_mult)
        factor = 2 ** (len(ch_mult) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the downsampling factor {factor}")
        super().__init__(image_size=image_size, grid=image_size // factor, hidden_in=z_channels,
                         hidden_out=z_channels, codebook_size=codebook_size, lookup_dim=lookup_dim, l2_norm=l2_norm,
                         ema_codebook=ema_codebook, ema_decay=ema_decay, quantizer="vq",
                         notes=f"conv VQ, downsampling {factor}, ch {ch}x{list(ch_mult)}, lookup {lookup_dim}-d, "
                               f"{'cosine' if l2_norm else 'l2'} codes{', EMA codebook' if ema_codebook else ''}")
        self.encoder = ConvEncoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = ConvDecoder(ch, ch_mult, num_res_blocks, z_channels)
        init_weights(self.encoder)
        init_weights(self.decoder)

    def encode_hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).permute(0, 2, 3, 1)

    def decode_hidden(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(h.permute(0, 3, 1, 2))

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight


def build(config: dict) -> ConvVQTokenizer:
    return ConvVQTokenizer(**constructor_kwargs(config))


register_family(Family(FAMILY, build, inhouse_checkpoint_filter,
                       description="tokbench in-house small conv VQ tokenizer (factorised cosine codes)"))
register_preset(Preset("tokbench-convvq-f4-64", FAMILY, {"constructor_kwargs": dict(
    image_size=64, ch=64, ch_mult=[1, 2, 2], num_res_blocks=1, z_channels=128, codebook_size=1024, lookup_dim=16)},
    weights=None, info={"weight_source": "none (train with `tokbench train-robust`)",
                        "notes": "architecture preset without published weights; train it with tokbench train-robust"}))
