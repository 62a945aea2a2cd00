"""Open-MAGVIT2 (Luo et al. 2024, TencentARC SEED-Voken): lookup-free quantisation with 2^18 ids.

The network is the MAGVIT-2 variant of the taming design, different enough to have its own small blocks here:
bias-free ResNet convs, no attention anywhere, a symmetric-padding stride-2 conv to downsample, a conv + DCR
depth-to-space upsampler, and an adaptive GroupNorm at the start of every decoder level whose scale and shift come
from the statistics of the quantised code map. LFQ: bit c = [z_c > 0], id = Σ_c bit_c·2^c (channel 0 the least
significant bit), code value ±1; there is no codebook and no quant_conv. Published numbers use the LitEma weights.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from tokbench.api import BinarySpace, TokenizerInfo, TokenLayout, Tokenizer, Tokens, TokenSpace
from tokbench.nn.taming import Normalize, swish
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import unwrap_state_dict
from tokbench_adapters.ibq import select_lit_ema

FAMILY = "open_magvit2"
BENCH_PRESETS = ["open-magvit2-256-l"]
PAPER = ("Luo et al. Open-MAGVIT2: An Open-Source Project Toward Democratizing Auto-regressive Visual Generation. "
         "arXiv 2409.04410 (2024)")
LICENSE = "Apache-2.0"


# ----------------------------------------------------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """norm1 → swish → conv1 → norm2 → swish → conv2 (3×3, no bias), plus the input through a bias-free 1×1
    `nin_shortcut` when the width changes."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.norm1 = Normalize(in_ch)
        self.norm2 = Normalize(out_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(swish(self.norm2(self.conv1(swish(self.norm1(x))))))
        return h + (self.nin_shortcut(x) if self.in_ch != self.out_ch else x)


def depth_to_space_dcr(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """Depth-to-space in DCR order (channel index = (i·block + j)·C' + c), as TensorFlow's; not `F.pixel_shuffle`."""
    b, c, h, w = x.shape
    x = x.view(b, block, block, c // block**2, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c // block**2, h * block, w * block)


class Upsampler(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, 4 * ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depth_to_space_dcr(self.conv1(x), 2)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm without affine, then scale = gamma(std_hw(code)), shift = beta(mean_hw(code)), where `code` is the
    decoder's input code map and std uses torch's unbiased variance plus eps (as upstream computes it)."""

    def __init__(self, z_channels: int, ch: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(32, ch, eps=eps, affine=False)
        self.gamma = nn.Linear(z_channels, ch)
        self.beta = nn.Linear(z_channels, ch)
        self.eps = eps

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        flat = code.flatten(2)
        scale = self.gamma((flat.var(dim=-1) + self.eps).sqrt())[..., None, None]
        shift = self.beta(flat.mean(dim=-1))[..., None, None]
        return self.gn(x) * scale + shift


class _Level(nn.Module):
    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)


class MAGVIT2Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int, in_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1, bias=False)
        in_mult = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i, m in enumerate(ch_mult):
            block_in, block_out = ch * in_mult[i], ch * m
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(block_in, block_out))
                block_in = block_out
            level = _Level(blocks)
            if i < len(ch_mult) - 1:
                level.downsample = nn.Conv2d(block_out, block_out, 3, stride=2, padding=1)
            self.down.append(level)
        self.mid_block = nn.ModuleList(ResBlock(block_in, block_in) for _ in range(num_res_blocks))
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for blk in level.block:
                h = blk(h)
            if i < len(self.down) - 1:
                h = level.downsample(h)
        for blk in self.mid_block:
            h = blk(h)
        return self.conv_out(swish(self.norm_out(h)))


class MAGVIT2Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int, out_ch: int = 3):
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid_block = nn.ModuleList(ResBlock(block_in, block_in) for _ in range(num_res_blocks))
        ups, adaptive = [], []
        for i in reversed(range(len(ch_mult))):
            block_out = ch * ch_mult[i]
            adaptive.insert(0, AdaptiveGroupNorm(z_channels, block_in))
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(block_in, block_out))
                block_in = block_out
            level = _Level(blocks)
            if i > 0:
                level.upsample = Upsampler(block_in)
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(code)
        for blk in self.mid_block:
            h = blk(h)
        for i in reversed(range(len(self.up))):
            h = self.adaptive[i](h, code)
            for blk in self.up[i].block:
                h = blk(h)
            if i > 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------------
class OpenMAGVIT2Tokenizer(Tokenizer):
    """LFQ tokenizer: ids B×h×w in [0, 2**bits), one `BinarySpace`."""

    def __init__(self, ch: int, ch_mult, num_res_blocks: int, bits: int, image_size: int, info: TokenizerInfo) -> None:
        super().__init__()
        ch_mult = tuple(int(m) for m in ch_mult)
        self.bits, self.image_size = int(bits), int(image_size)
        self.encoder = MAGVIT2Encoder(ch, ch_mult, num_res_blocks, self.bits)
        self.decoder = MAGVIT2Decoder(ch, ch_mult, num_res_blocks, self.bits)
        f = 2 ** (len(ch_mult) - 1)
        if image_size % f:
            raise ValueError(f"image size {image_size} is not a multiple of the downsampling factor {f}")
        self.layout = TokenLayout.grid(image_size // f, image_size // f)
        self._space = BinarySpace(2**self.bits, bits=self.bits, lsb_first=True)
        self.info = info.with_updates(resolution=image_size, vocab_size=2**self.bits,
                                      tokens_per_image=self.layout.tokens_per_image)
        self.register_buffer("_bit_weights", 2 ** torch.arange(self.bits, dtype=torch.int64), persistent=False)

    @property
    def token_spaces(self) -> list[TokenSpace]:  # type: ignore[override]
        return [self._space]

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.info.family}: expected {self.image_size}x{self.image_size} images "
                             f"(the tokenizer's resolution), got {tuple(x.shape[-2:])}")
        return self.encoder(x)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """bit c = [z_c > 0] (exactly 0 gives 0), id = Σ bit_c·2^c."""
        return ((z > 0).long() * self._bit_weights.view(1, -1, 1, 1)).sum(1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids B×h×w → ±1 code map B×bits×h×w."""
        bits = (ids.unsqueeze(1) >> torch.arange(self.bits, device=ids.device).view(1, -1, 1, 1)) & 1
        return bits.to(self.compute_dtype) * 2.0 - 1.0

    def quantize_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.assign(z)
        return self.lookup(ids), ids

    def decode_latent(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        z = self.encode_latent(x)
        feats = [z.permute(0, 2, 3, 1).contiguous()] if self.keep_features else None
        return [self.assign(z)], feats

    @torch.no_grad()
    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        return self.decode_latent(self.lookup(tokens.ids[0].to(self.device)))


def build_open_magvit2(config: dict) -> OpenMAGVIT2Tokenizer:
    kw = config["constructor_kwargs"]
    dd = kw["ddconfig"]
    n_embed, embed_dim = int(kw["n_embed"]), int(kw["embed_dim"])
    bits = int(round(math.log2(n_embed)))
    if 2**bits != n_embed or bits != embed_dim or int(dd["z_channels"]) != embed_dim:
        raise ValueError(f"Open-MAGVIT2 LFQ needs n_embed = 2**embed_dim = 2**z_channels; got n_embed={n_embed}, "
                         f"embed_dim={embed_dim}, z_channels={dd['z_channels']}")
    info = TokenizerInfo(family=FAMILY, value_range="[-1,1]", quantizer="lfq", paper=PAPER, code_license=LICENSE,
                         weights_license=LICENSE + " (SEED-Voken model cards)",
                         notes="LFQ: bit c = [z_c > 0], id = sum_c bit_c 2^c (channel 0 = LSB); EMA weights. The AR "
                               "models factorise ids as bits 0-5 + 64 * bits 6-17.")
    # ddconfig.resolution is unused by this architecture; the image size comes from the config (default 256)
    return OpenMAGVIT2Tokenizer(int(dd["ch"]), dd["ch_mult"], int(dd["num_res_blocks"]), bits,
                                int(config.get("image_size", 256)), info)


def open_magvit2_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Lightning `.ckpt` → `state_dict` → EMA generator weights (`model_ema.<key without dots>`)."""
    sd = unwrap_state_dict(raw, prefer=("state_dict",))
    return select_lit_ema(sd, use_ema=bool(config.get("use_ema_weights", True)), what=FAMILY)


_CONFIG_256_L = {
    "upstream_repo": "https://github.com/TencentARC/SEED-Voken",
    "upstream_commit": "b9a17eac8e2c0779c12a5429b0bfd6c502788484",
    "class": "src.Open_MAGVIT2.models.lfqgan.VQModel",
    "constructor_kwargs": {
        "ddconfig": {"double_z": False, "z_channels": 18, "resolution": 128, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 4},
        "n_embed": 262144, "embed_dim": 18, "sample_minimization_weight": 1.0, "batch_maximization_weight": 1.0,
        "use_ema": True,
    },
    "input_range": "[-1,1]",
    "image_size": 256,
    "use_ema_weights": True,
}

register_family(Family(FAMILY, build_open_magvit2, open_magvit2_filter,
                       description="Open-MAGVIT2 (SEED-Voken) LFQ tokenizer, 18 bits, EMA weights, input [-1,1]"))

register_preset(Preset(
    name="open-magvit2-256-l", family=FAMILY, config=copy.deepcopy(_CONFIG_256_L),
    weights="hf://TencentARC/Open-MAGVIT2-Tokenizer-256-resolution/imagenet_256_L.ckpt",
    manual_url="https://huggingface.co/TencentARC/Open-MAGVIT2-Tokenizer-256-resolution",
    info={"paper": PAPER, "code_license": LICENSE, "weights_license": LICENSE + " (SEED-Voken model cards)",
          "quantizer": "lfq", "vocab_size": 262144, "tokens_per_image": 256,
          "notes": "Open-MAGVIT2 IN256-L, 18-bit LFQ, 16x16 tokens, EMA weights (Lightning .ckpt: convert once with "
                   "`tokbench convert --trust-checkpoint`)"},
    description="Open-MAGVIT2 ImageNet 256 L, 2^18 LFQ",
))
