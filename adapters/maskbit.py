"""MaskBit (LFQ bit tokens) and VQGAN+ (lookup VQ): the two tokenizer kinds of `markweberdev/maskbit`.

Both are upstream's `ConvVQModel` (encoder/decoder in `_nn.maskbit_conv`); only the quantiser differs:
- `maskbit`: lookup-free quantisation, bit_c = z_c > 0, id = Σ_c bit_c·2^c (channel 0 LSB), code values ±1;
- `vqgan_plus`: a learned codebook, L2 argmin without normalisation.
Input is [0,1] (uint8/255 in float32, as torchvision's ToTensor); the decoder output is unclamped. Official files
are plain state dicts (`torch.save`), loaded strictly; the LFQ files also carry the quantiser buffers
`quantize.bits_to_indices` / `quantize.codebook`, which we keep (and check) so that the official file loads as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tokbench.api import BinarySpace, CodebookSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens, TokenSpace
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import CheckpointMismatchError, WeightsNotFoundError, read_checkpoint, unwrap_state_dict
from tokbench_adapters._nn.maskbit_conv import ConvDecoder, ConvEncoder

PAPER = "Weber et al., MaskBit: Embedding-free Image Generation via Bit Tokens, TMLR 2024 (arXiv:2409.16211)"
CODE_LICENSE = "Apache-2.0"
WEIGHTS_LICENSE = "Apache-2.0 (the README adds: 'for research purposes')"
UPSTREAM_EVAL_NOTE = "upstream eval: Resize(256, bilinear) + CenterCrop(256), output clamped to [0,1]"

BENCH_PRESETS = ["maskbit-10bit", "maskbit-12bit", "maskbit-14bit", "maskbit-16bit", "maskbit-18bit",
                 "vqgan-plus-10bit", "vqgan-plus-12bit"]


# ----------------------------------------------------------------------------------------------------------------------
# Quantisers
# ----------------------------------------------------------------------------------------------------------------------
def lfq_codebook(bits: int) -> torch.Tensor:
    """Row i holds the ±1 code of id i: component c is +1 when bit c of i is set (channel 0 = LSB)."""
    ids = torch.arange(2**bits, dtype=torch.int64)
    return ((ids[:, None] >> torch.arange(bits)) & 1).float() * 2 - 1


class LookupFreeQuantizer(nn.Module):
    """LFQ with the official buffers (kept so the published state dict loads strictly)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("bits_to_indices", 2 ** torch.arange(bits, dtype=torch.int32))
        self.register_buffer("codebook", lfq_codebook(bits))

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        """z: B × K × h × w → B × h × w ids (a value of exactly 0 counts as bit 0)."""
        weights = 2 ** torch.arange(self.bits, device=z.device, dtype=torch.int64)
        return ((z > 0).long() * weights[None, :, None, None]).sum(1)

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """ids B × h × w → B × K × h × w ±1 codes (computed from the bits; equal to the `codebook` rows)."""
        shifts = torch.arange(self.bits, device=ids.device)
        bits = (ids[..., None] >> shifts) & 1
        return (bits.float() * 2 - 1).permute(0, 3, 1, 2).contiguous()


class LookupQuantizer(nn.Module):
    """Plain VQ: `quantize.embedding.weight` rows, L2 argmin in upstream's expanded form, no normalisation."""

    def __init__(self, codebook_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        e = self.embedding.weight
        dist = (flat**2).sum(1, keepdim=True) + (e**2).sum(1)[None, :] - 2 * torch.einsum("bd,dn->bn", flat, e.t())
        return dist.argmin(1).reshape(b, h, w)

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------------------------------
# The tokenizer
# ----------------------------------------------------------------------------------------------------------------------
def _kwargs(config: dict) -> dict:
    if "constructor_kwargs" not in config:
        raise ValueError("maskbit config needs 'constructor_kwargs' (the ConvVQModel config, as in the fixture config.json)")
    kw = dict(config["constructor_kwargs"])
    if kw.get("model_class", "vqgan+") != "vqgan+":
        raise ValueError(f"model_class {kw.get('model_class')!r} is not ConvVQModel's 'vqgan+' (taming/maskgit re-hosts "
                         "belong to the taming_vqgan / maskgit_vq families)")
    if len(kw["channel_mult"]) != kw["num_resolutions"]:
        raise ValueError(f"channel_mult {kw['channel_mult']} does not have num_resolutions={kw['num_resolutions']} entries")
    return kw


class MaskBitTokenizer(Tokenizer):
    """ConvVQModel with either quantiser; 16×16 ids at 256 px (f = 2**(num_resolutions-1))."""

    def __init__(self, config: dict, family: str) -> None:
        super().__init__()
        kw = _kwargs(config)
        self.lfq = kw["quantizer_type"] == "lookup-free"
        if not self.lfq and kw["quantizer_type"] != "lookup":
            raise ValueError(f"unknown quantizer_type {kw['quantizer_type']!r} (expected 'lookup-free' or 'lookup')")
        if (family == "maskbit") != self.lfq:
            raise ValueError(f"family {family!r} does not fit quantizer_type {kw['quantizer_type']!r}: "
                             "use 'maskbit' for lookup-free, 'vqgan_plus' for lookup")
        if kw.get("use_l2_normalisation", False):
            raise NotImplementedError("use_l2_normalisation=True is not used by any official MaskBit/VQGAN+ model")
        k = int(kw["token_size"])
        args = (kw.get("num_channels", 3), kw["hidden_channels"], kw["channel_mult"], kw["num_res_blocks"], k)
        self.encoder = ConvEncoder(*args)
        self.decoder = ConvDecoder(*args)
        vocab = 2**k if self.lfq else int(kw["codebook_size"])
        self.quantize = LookupFreeQuantizer(k) if self.lfq else LookupQuantizer(vocab, k)
        resolution = int(config.get("image_size", 256))
        self.factor = 2 ** (kw["num_resolutions"] - 1)
        side = resolution // self.factor
        self.layout = TokenLayout.grid(side, side)
        self.info = TokenizerInfo(
            family=family, resolution=resolution, value_range="[0,1]", vocab_size=vocab,
            tokens_per_image=side * side, quantizer="lfq" if self.lfq else "vq", paper=PAPER,
            code_license=CODE_LICENSE, weights_license=WEIGHTS_LICENSE,
            notes=(f"LFQ {k} bits, id = sum_c [z_c>0]*2^c (channel 0 LSB)" if self.lfq else
                   f"lookup VQ {vocab} x {k}, L2 argmin, no normalisation") + "; " + UPSTREAM_EVAL_NOTE,
        )

    @property
    def token_spaces(self) -> list[TokenSpace]:  # type: ignore[override]
        if self.lfq:
            return [BinarySpace(self.info.vocab_size, bits=self.quantize.bits)]
        return [CodebookSpace(self.info.vocab_size, codes=self.quantize.embedding.weight.detach(), metric="l2")]

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 → float32 / 255, exactly as torchvision's ToTensor (upstream's data pipeline)."""
        self.check_images(images)
        return images.to(self.device, torch.float32).div(255)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        if tuple(x.shape[-2:]) != (self.info.resolution,) * 2:
            raise ValueError(f"{self.info.family} expects {self.info.resolution}x{self.info.resolution} images, "
                             f"got {tuple(x.shape[-2:])}")
        z = self.encoder(x)
        ids = self.quantize.ids(z)
        return [ids], [z.permute(0, 2, 3, 1).contiguous()]

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        return self.decoder(self.quantize.codes(tokens.ids[0].to(self.device)))


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------------
def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Official files are plain state dicts; also accept `state_dict`/`model` wrappers. The LFQ buffers are checked
    against the canonical ±1 codes (a wrong one would silently change every decode)."""
    sd = unwrap_state_dict(raw)
    kw = _kwargs(config)
    if kw["quantizer_type"] == "lookup-free":
        k = int(kw["token_size"])
        for key, want in (("quantize.bits_to_indices", 2 ** torch.arange(k, dtype=torch.int32)),
                          ("quantize.codebook", lfq_codebook(k))):
            got = sd.get(key)
            if got is None:  # some re-saves drop buffers: supply upstream's constants
                sd[key] = want
            elif got.device.type != "meta" and (tuple(got.shape) != tuple(want.shape) or not torch.equal(got.to(want.dtype), want)):
                raise CheckpointMismatchError(f"{key} in the checkpoint is not the canonical LFQ constant for {k} bits")
    return sd


def read_weights(path: Path, config: dict, trust_checkpoint: bool) -> Any:
    """A file, or a folder (Hub snapshot) holding exactly one weight file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".safetensors", ".ckpt"))
        if len(files) != 1:
            raise WeightsNotFoundError(f"folder {path} should hold exactly one weight file (.bin/.pt/.safetensors), "
                                       f"found {[p.name for p in files]}")
        path = files[0]
    return read_checkpoint(path, trust_checkpoint=trust_checkpoint)


register_family(Family("maskbit", lambda cfg: MaskBitTokenizer(cfg, "maskbit"), checkpoint_filter, read_weights,
                       description="MaskBit LFQ bit tokenizers (ConvVQModel, lookup-free)"))
register_family(Family("vqgan_plus", lambda cfg: MaskBitTokenizer(cfg, "vqgan_plus"), checkpoint_filter, read_weights,
                       description="VQGAN+ from the MaskBit repo (ConvVQModel, lookup VQ)"))


def _official_kwargs(quantizer_type: str, codebook_size: int, token_size: int) -> dict:
    return {"model_class": "vqgan+", "quantizer_type": quantizer_type, "codebook_size": codebook_size,
            "token_size": token_size, "commitment_cost": 0.25,
            "entropy_loss_weight": 0.02 if quantizer_type == "lookup-free" else 0.0,
            "entropy_loss_temperature": 0.01, "entropy_gamma": 1.0, "num_channels": 3, "hidden_channels": 128,
            "channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "num_res_blocks": 2, "sample_with_conv": True}


for _bits in (10, 12, 14, 16, 18):
    _repo = f"markweber/maskbit_tokenizer_{_bits}bit"
    register_preset(Preset(
        f"maskbit-{_bits}bit", "maskbit",
        {"constructor_kwargs": _official_kwargs("lookup-free", 2**_bits, _bits), "image_size": 256, "input_range": "[0,1]"},
        weights=f"hf://{_repo}/maskbit_tokenizer_{_bits}bit.bin", manual_url=f"https://huggingface.co/{_repo}",
        info={"notes": f"LFQ {_bits} bits, id = sum_c [z_c>0]*2^c (channel 0 LSB); " + UPSTREAM_EVAL_NOTE
              + ("; the README says only 17 of the 18 bits are used in practice" if _bits == 18 else "")},
    ))

register_preset(Preset(
    "vqgan-plus-10bit", "vqgan_plus",
    {"constructor_kwargs": _official_kwargs("lookup", 1024, 256), "image_size": 256, "input_range": "[0,1]"},
    weights="hf://markweber/vqgan_plus_paper", manual_url="https://huggingface.co/markweber/vqgan_plus_paper",
    info={"notes": "VQGAN+ from the paper (vqgan_plus_10bit.yaml): 1024 x 256 codebook, L2; the weight file name in "
                   "the HF repo is unverified, so the whole snapshot is fetched and its single weight file read; "
                   + UPSTREAM_EVAL_NOTE},
))
register_preset(Preset(
    "vqgan-plus-12bit", "vqgan_plus",
    {"constructor_kwargs": _official_kwargs("lookup", 4096, 64), "image_size": 256, "input_range": "[0,1]"},
    weights="hf://markweber/vqgan_plus_12bit/vqgan_plus_12bit.bin",
    manual_url="https://huggingface.co/markweber/vqgan_plus_12bit",
    info={"notes": "VQGAN+ 12 bit: 4096 x 64 codebook, L2; " + UPSTREAM_EVAL_NOTE},
))
