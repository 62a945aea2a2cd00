"""LlamaGen VQ image tokenizer (Sun et al. 2024, "Autoregressive Model Beats Diffusion"): VQ-16 and VQ-8.

The taming network (attention only at the lowest level and in the middle, 2 blocks per encoder level, 3 per decoder
level) with a 16384 × 8 codebook. Both the latent and the codes are l2-normalised before an L2 nearest-neighbour
search, so assignment is cosine, and the decoder receives the *normalised* code. Upstream names its levels
`conv_blocks.{i}` (decoder index 0 = lowest resolution) and its middle `mid.{0,1,2}`; the filter renames them.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import TokenizerInfo
from tokbench.nn.taming import TamingConfig
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import unwrap_state_dict
from tokbench_adapters.taming_vqgan import TamingVQTokenizer

FAMILY = "llamagen_vq"
BENCH_PRESETS = ["llamagen-vq16", "llamagen-vq8"]
PAPER = "Sun et al. Autoregressive Model Beats Diffusion: Llama for Scalable Image Generation. arXiv 2406.06525 (2024)"
USAGE_BUFFER = 65536  # upstream `codebook_used` history length


class LlamaGenCodebook(nn.Module):
    """`quantize.embedding.weight` plus, when `show_usage`, the training-only `codebook_used` buffer (kept so that the
    official state dict loads strictly; never read at inference)."""

    def __init__(self, n_embed: int, embed_dim: int, l2_norm: bool, show_usage: bool) -> None:
        super().__init__()
        self.l2_norm = l2_norm
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)
        if show_usage:
            self.register_buffer("codebook_used", torch.zeros(USAGE_BUFFER))


class LlamaGenVQTokenizer(TamingVQTokenizer):
    metric = "cosine"

    def __init__(self, *args, l2_norm: bool = True, show_usage: bool = True, **kw) -> None:
        self._l2_norm, self._show_usage = l2_norm, show_usage
        super().__init__(*args, **kw)
        if not l2_norm:
            self.metric = "l2"

    def _make_quantizer(self) -> None:
        self.quantize = LlamaGenCodebook(self.n_embed, self.embed_dim, self._l2_norm, self._show_usage)

    def codebook(self) -> torch.Tensor:
        w = self.quantize.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self._l2_norm else w

    def assignment_codes(self) -> torch.Tensor:
        # the cosine search normalises once, as upstream does; normalising the normalised codes again could move an ulp
        return self.quantize.embedding.weight

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """ToTensor() + Normalize(0.5, 0.5) in float32, as LlamaGen's reconstruction script does."""
        self.check_images(images)
        x = images.to(self.device, torch.float32).div(255.0)
        return (x - 0.5) / 0.5


def build_llamagen(config: dict) -> LlamaGenVQTokenizer:
    cfg = config["constructor_kwargs"]["config"]
    over = config.get("constructor_overrides", {})
    enc_ch = int(over.get("tokenizer.tokenizer_image.vq_model.Encoder", {}).get("ch", 128))
    dec_ch = int(over.get("tokenizer.tokenizer_image.vq_model.Decoder", {}).get("ch", 128))

    def net(ch: int, mult) -> TamingConfig:
        mult = tuple(int(m) for m in mult)
        return TamingConfig(ch=ch, ch_mult=mult, num_res_blocks=2, attn_levels=(len(mult) - 1,),
                            z_channels=int(cfg["z_channels"]), dropout=float(cfg.get("dropout_p", 0.0)))

    enc, dec = net(enc_ch, cfg["encoder_ch_mult"]), net(dec_ch, cfg["decoder_ch_mult"])
    image_size = int(config.get("image_size", 256))
    info = TokenizerInfo(family=FAMILY, value_range="[-1,1]", quantizer="vq", paper=PAPER, code_license="MIT",
                         weights_license="none stated (LlamaGen repository is MIT; unverified)",
                         notes="l2-normalised latent and codes (cosine assignment); decoder gets the normalised code")
    return LlamaGenVQTokenizer(enc, cfg["codebook_size"], cfg["codebook_embed_dim"], image_size, info, dec,
                               l2_norm=bool(cfg.get("codebook_l2_norm", True)),
                               show_usage=bool(cfg.get("codebook_show_usage", True)))


_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}


def llamagen_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """`{'model': sd}` (or `ema` when present, as LlamaGen's own eval scripts prefer) → our key names."""
    sd = unwrap_state_dict(raw, prefer=("ema", "model", "state_dict"))
    levels = len(config["constructor_kwargs"]["config"]["decoder_ch_mult"])
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^encoder\.conv_blocks\.(\d+)\.res\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"^encoder\.conv_blocks\.", "encoder.down.", k)
        m = re.match(r"^decoder\.conv_blocks\.(\d+)\.(res|attn|upsample)(.*)$", k)
        if m:
            part = "block" if m.group(2) == "res" else m.group(2)
            k = f"decoder.up.{levels - 1 - int(m.group(1))}.{part}{m.group(3)}"
        k = re.sub(r"^(encoder|decoder)\.mid\.([012])\.", lambda mm: f"{mm.group(1)}.mid.{_MID[mm.group(2)]}.", k)
        out[k] = v
    return out


def _config(ch_mult: list[int]) -> dict:
    return {
        "upstream_repo": "https://github.com/FoundationVision/LlamaGen",
        "upstream_commit": "ce98ec41803a74a90ce68c40ababa9eaeffeb4ec",
        "class": "tokenizer.tokenizer_image.vq_model.VQModel",
        "constructor_kwargs": {"config": {
            "codebook_size": 16384, "codebook_embed_dim": 8, "codebook_l2_norm": True, "codebook_show_usage": True,
            "commit_loss_beta": 0.25, "entropy_loss_ratio": 0.0, "encoder_ch_mult": list(ch_mult),
            "decoder_ch_mult": list(ch_mult), "z_channels": 256, "dropout_p": 0.0}},
        "constructor_overrides": {"tokenizer.tokenizer_image.vq_model.Encoder": {"ch": 128},
                                  "tokenizer.tokenizer_image.vq_model.Decoder": {"ch": 128}},
        "input_range": "[-1,1]",
        "image_size": 256,
    }


register_family(Family(FAMILY, build_llamagen, llamagen_filter,
                       description="LlamaGen VQ (VQ-16 / VQ-8), cosine VQ on 8-d l2-normalised codes, input [-1,1]"))

for _name, _file, _mult, _side, _note in (
    ("llamagen-vq16", "vq_ds16_c2i.pt", [1, 1, 2, 2, 4], 16, "VQ-16 (f16), ImageNet c2i; published rFID 2.19 (ADM)"),
    ("llamagen-vq8", "vq_ds8_c2i.pt", [1, 2, 2, 4], 32, "VQ-8 (f8), ImageNet c2i; published rFID 0.59 (ADM)"),
):
    register_preset(Preset(
        name=_name, family=FAMILY, config=copy.deepcopy(_config(_mult)),
        weights=f"hf://FoundationVision/LlamaGen/{_file}",
        manual_url=f"https://huggingface.co/FoundationVision/LlamaGen/blob/main/{_file}",
        info={"paper": PAPER, "code_license": "MIT",
              "weights_license": "none stated (LlamaGen repository is MIT; unverified)", "quantizer": "vq",
              "vocab_size": 16384, "tokens_per_image": _side * _side, "notes": _note + "; 16384 x 8 codes, cosine"},
        description=_note,
    ))
