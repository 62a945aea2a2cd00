"""VAR multi-scale residual VQ-VAE (Tian et al., NeurIPS 2024; FoundationVision/VAR, MIT).

Tokens are one id map per scale (1×1, 2×2, … 16×16 = 680 ids at 256 px), all from one shared 4096×32 L2 codebook.
The conv encoder/decoder follow the VAR `basic_vae` structure (fused-qkv attention, so not the taming blocks); the
quantiser is `_nn.multiscale_vq`. Key names are upstream's so that the official plain state dict loads after
dropping the training statistics buffer `quantize.ema_vocab_hit_SV`.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import CodebookSpace, Tokenizer, TokenizerInfo, Tokens
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import unwrap_state_dict
from tokbench_adapters._nn.multiscale_vq import MultiScaleResidualVQ, multiscale_layout

FAMILY = "var"
PAPER = "Tian et al., Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction, NeurIPS 2024 (arXiv 2404.02905)"
WEIGHTS = "hf://FoundationVision/var/vae_ch160v4096z32.pth"


# ----------------------------------------------------------------------------------------------------------------------
# Conv blocks (VAR's VAE: GroupNorm(32, eps 1e-6), SiLU, fused-qkv single-head attention)
# ----------------------------------------------------------------------------------------------------------------------
def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one 1×1 conv producing q, k and v."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        attn = torch.softmax(torch.bmm(q.transpose(1, 2), k) * C ** -0.5, dim=2)  # B × HWq × HWk
        h = torch.bmm(v, attn.transpose(1, 2)).reshape(B, C, H, W)
        return x + self.proj_out(h)


class Down(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class _Level(nn.Module):
    """One resolution: `block` res blocks, `attn` (only at the lowest resolution), optional resampling."""

    def __init__(self, cin: int, cout: int, n: int, attn: bool, resample: nn.Module | None, name: str) -> None:
        super().__init__()
        self.block = nn.ModuleList([ResBlock(cin if i == 0 else cout, cout) for i in range(n)])
        self.attn = nn.ModuleList([AttnBlock(cout) for _ in range(n)] if attn else [])
        if resample is not None:
            setattr(self, name, resample)
        self._resample_name = name if resample is not None else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, blk in enumerate(self.block):
            h = blk(h)
            if len(self.attn):
                h = self.attn[i](h)
        if self._resample_name:
            h = getattr(self, self._resample_name)(h)
        return h


class _Mid(nn.Module):
    def __init__(self, ch: int, attn: bool) -> None:
        super().__init__()
        self.block_1 = ResBlock(ch, ch)
        self.attn_1 = AttnBlock(ch) if attn else nn.Identity()
        self.block_2 = ResBlock(ch, ch)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, in_channels: int = 3,
                 using_sa: bool = True, using_mid_sa: bool = True) -> None:
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        mults = (1,) + tuple(ch_mult)
        self.down = nn.ModuleList()
        for i in range(n):
            cin, cout = ch * mults[i], ch * ch_mult[i]
            last = i == n - 1
            self.down.append(_Level(cin, cout, num_res_blocks, last and using_sa, None if last else Down(cout),
                                    "downsample"))
        top = ch * ch_mult[-1]
        self.mid = _Mid(top, using_mid_sa)
        self.norm_out = _norm(top)
        self.conv_out = nn.Conv2d(top, z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int, out_channels: int = 3,
                 using_sa: bool = True, using_mid_sa: bool = True) -> None:
        super().__init__()
        n = len(ch_mult)
        top = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, 1, 1)
        self.mid = _Mid(top, using_mid_sa)
        levels: list[nn.Module] = []
        cin = top
        for i in reversed(range(n)):
            cout = ch * ch_mult[i]
            levels.insert(0, _Level(cin, cout, num_res_blocks + 1, i == n - 1 and using_sa,
                                    Up(cout) if i != 0 else None, "upsample"))
            cin = cout
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------------------------------
DEFAULT_DDCONFIG = {"ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "using_sa": True, "using_mid_sa": True}


class VARTokenizer(Tokenizer):
    """VAR VQ-VAE: conv encoder → 3×3 quant_conv → multi-scale residual VQ → 3×3 post_quant_conv → conv decoder."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        kw = config["constructor_kwargs"]
        dd = {**DEFAULT_DDCONFIG, **{k: v for k, v in config.get("ddconfig", {}).items() if k in DEFAULT_DDCONFIG}}
        if kw.get("using_znorm", False):
            raise NotImplementedError("using_znorm=True (cosine VAR quantiser) is not used by the released VAE")
        ch, z = int(kw["ch"]), int(kw["z_channels"])
        ks = int(kw.get("quant_conv_ks", 3))
        self.encoder = Encoder(ch, dd["ch_mult"], dd["num_res_blocks"], z, using_sa=dd["using_sa"],
                               using_mid_sa=dd["using_mid_sa"])
        self.decoder = Decoder(ch, dd["ch_mult"], dd["num_res_blocks"], z, using_sa=dd["using_sa"],
                               using_mid_sa=dd["using_mid_sa"])
        self.quant_conv = nn.Conv2d(z, z, ks, 1, ks // 2)
        self.post_quant_conv = nn.Conv2d(z, z, ks, 1, ks // 2)
        self.quantize = MultiScaleResidualVQ(int(kw["vocab_size"]), z, kw["v_patch_nums"],
                                             quant_resi=float(kw.get("quant_resi", 0.5)),
                                             share_quant_resi=int(kw.get("share_quant_resi", 4)), metric="l2")
        pns = self.quantize.v_patch_nums
        downsample = 2 ** (len(dd["ch_mult"]) - 1)
        self.layout = multiscale_layout(pns)
        self.info = TokenizerInfo(
            family=FAMILY, resolution=int(config.get("image_size", pns[-1] * downsample)), crop="adm",
            value_range="[-1,1]", vocab_size=int(kw["vocab_size"]), tokens_per_image=self.layout.tokens_per_image,
            quantizer="multiscale-vq", paper=PAPER, code_license="MIT",
            weights_license="MIT",
            weight_source="", notes="scales " + ",".join(map(str, pns)) + "; decoded outputs clamp to [-1,1] upstream")

    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        """One shared L2 codebook for every scale (built on access, so it follows loading and `.to()`)."""
        return [CodebookSpace(self.quantize.vocab_size, self.quantize.effective_codes(), "l2")]

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """Upstream `normalize_01_into_pm1`: u8/255 in float32, then x + x - 1 (bit-exact with the fixtures)."""
        self.check_images(images)
        x = images.to(self.device).float().div(255)
        return x.add(x).add_(-1)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        f = self.quant_conv(self.encoder(x))
        ids, feats, _ = self.quantize.encode(f)
        return ids, feats

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = [t.to(self.device) for t in tokens.as_list()]
        with torch.no_grad():
            return self.decoder(self.post_quant_conv(self.quantize.ids_to_fhat(ids)))


def build(config: dict) -> VARTokenizer:
    return VARTokenizer(config)


STAT_SUFFIXES = ("ema_vocab_hit_SV",)


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Plain VAR state dict (or wrapped in model/state_dict) → ours: drop the codebook-usage statistics buffer."""
    sd = unwrap_state_dict(raw, prefer=("state_dict", "model"))
    return {k: v for k, v in sd.items() if not k.endswith(STAT_SUFFIXES)}


register_family(Family(FAMILY, build, checkpoint_filter,
                       description="VAR multi-scale residual VQ-VAE (one id map per scale, shared L2 codebook)"))


def _preset_config(v_patch_nums: list[int], image_size: int) -> dict:
    return {
        "constructor_kwargs": {"vocab_size": 4096, "z_channels": 32, "ch": 160, "dropout": 0.0, "beta": 0.25,
                               "using_znorm": False, "quant_conv_ks": 3, "quant_resi": 0.5, "share_quant_resi": 4,
                               "default_qresi_counts": 0, "v_patch_nums": v_patch_nums, "test_mode": True},
        "ddconfig": {"ch": 160, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "using_sa": True,
                     "using_mid_sa": True, "z_channels": 32},
        "image_size": image_size,
    }


register_preset(Preset(
    "var-vq-256", FAMILY, _preset_config([1, 2, 3, 4, 5, 6, 8, 10, 13, 16], 256), weights=WEIGHTS,
    manual_url="https://huggingface.co/FoundationVision/var",
    info={"notes": "VAR VQ-VAE at 256 px: 10 scales (1,2,3,4,5,6,8,10,13,16) = 680 tokens, 4096x32 L2 codebook; "
                   "published rFID 0.90 (cited by RobustTok/UniTok), pFID 17.46 (RobustTok); decoded outputs clamp "
                   "to [-1,1] upstream"},
    description="VAR VQ-VAE, 256 px schedule (680 tokens)"))

register_preset(Preset(
    "var-vq-512", FAMILY, _preset_config([1, 2, 3, 4, 6, 9, 13, 18, 24, 32], 512), weights=WEIGHTS,
    manual_url="https://huggingface.co/FoundationVision/var",
    info={"notes": "VAR VQ-VAE at 512 px (VAR-d36 schedule): 10 scales (1,2,3,4,6,9,13,18,24,32) = 2240 tokens; "
                   "same weights file as var-vq-256"},
    description="VAR VQ-VAE, 512 px schedule (2240 tokens)"))

BENCH_PRESETS = ["var-vq-256"]
