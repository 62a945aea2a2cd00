"""taming-transformers VQGAN (Esser et al., CVPR 2021) and the shared single-codebook VQ tokenizer of its lineage.

`TamingVQTokenizer` is encoder → quant_conv → nearest code → post_quant_conv → decoder on the shared
`tokbench.nn.taming` network. LlamaGen VQ (cosine), IBQ (dot product) and VQGAN-LC (projected frozen codebook) subclass
it and change only the quantiser and their checkpoint filters. Decoding goes from ids through a codebook lookup (never
through the straight-through latent), as upstream `decode_to_img` does; upstream `VQModel.decode_code` is broken.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from tokbench.api import CodebookSpace, Metric, TokenizerInfo, TokenLayout, Tokenizer, Tokens, TokenSpace
from tokbench.nn.quantize import nearest_code
from tokbench.nn.taming import Decoder, Encoder, TamingConfig
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import drop_prefixes, unwrap_state_dict

FAMILY = "taming_vqgan"
BENCH_PRESETS = ["taming-vqgan-f16-1024", "taming-vqgan-f16-16384"]


class Codebook(nn.Module):
    """`quantize.embedding.weight` (N×D), as taming's `VectorQuantizer2` stores it."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)


class TamingVQTokenizer(Tokenizer):
    """Single-codebook VQ on a taming encoder/decoder; ids are one B×h×w grid.

    Subclasses change `metric`, `_make_quantizer` and `codebook()` (the effective codes the model assigns with)."""

    metric: Metric = "l2"

    def __init__(self, net: TamingConfig, n_embed: int, embed_dim: int, image_size: int, info: TokenizerInfo,
                 decoder_net: TamingConfig | None = None) -> None:
        super().__init__()
        decoder_net = net if decoder_net is None else decoder_net
        self.net_config, self.decoder_config = net, decoder_net
        self.n_embed, self.embed_dim, self.image_size = int(n_embed), int(embed_dim), int(image_size)
        self.encoder = Encoder(net)
        self.decoder = Decoder(decoder_net)
        self.quant_conv = nn.Conv2d(net.z_channels * (2 if net.double_z else 1), embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, decoder_net.z_channels, 1)
        self._make_quantizer()
        f = net.downsample_factor
        if image_size % f:
            raise ValueError(f"image size {image_size} is not a multiple of the downsampling factor {f}")
        self.layout = TokenLayout.grid(image_size // f, image_size // f)
        self.info = info.with_updates(resolution=image_size, vocab_size=self.n_embed,
                                      tokens_per_image=self.layout.tokens_per_image)
        self._space_cache: tuple | None = None

    # --- quantiser (overridden per family) ------------------------------------------------------------------------
    def _make_quantizer(self) -> None:
        self.quantize = Codebook(self.n_embed, self.embed_dim)

    def codebook(self) -> torch.Tensor:
        """The effective N×D code vectors, exactly as assignment and decoding use them."""
        return self.quantize.embedding.weight

    def _codebook_tensors(self) -> list[torch.Tensor]:
        """The tensors the effective codes derive from (their versions key the token-space cache)."""
        return list(self.quantize.parameters())

    def _codebook_version(self) -> tuple | None:
        try:
            return tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in self._codebook_tensors())
        except RuntimeError:  # inference tensors carry no version counter: do not cache
            return None

    @property
    def token_spaces(self) -> list[TokenSpace]:  # type: ignore[override]
        key = self._codebook_version()
        if key is None or self._space_cache is None or self._space_cache[0] != key:
            with torch.no_grad():
                codes = self.codebook().detach().clone()
            self._space_cache = (key, [CodebookSpace(self.n_embed, codes=codes, metric=self.metric)])
        return self._space_cache[1]

    # --- the model's steps ------------------------------------------------------------------------------------------
    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Native-range images → pre-quantisation latent z (B×D×h×w), the quantiser's input."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"{self.info.family}: expected {self.image_size}x{self.image_size} images "
                             f"(the tokenizer's resolution), got {tuple(x.shape[-2:])}")
        return self.quant_conv(self.encoder(x))

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Latent B×D×h×w → ids B×h×w under the family's metric."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d).float()  # search in fp32 even under bf16 autocast
        with torch.autocast(device_type=z.device.type, enabled=False):
            return nearest_code(flat, self.assignment_codes().float(), self.metric).view(b, h, w)

    def assignment_codes(self) -> torch.Tensor:
        """The codes handed to the nearest-code search (the metric may normalise them further)."""
        return self.codebook()

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids B×h×w → quantised latent B×D×h×w (contiguous NCHW)."""
        codes = self.codebook()
        return codes[ids].permute(0, 3, 1, 2).contiguous()

    def quantize_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(quantised latent, ids) of a latent, as the model's forward pass quantises it."""
        ids = self.assign(z)
        return self.lookup(ids), ids

    def decode_latent(self, zq: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(zq))

    # --- Tokenizer API ----------------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        z = self.encode_latent(x)
        ids = self.assign(z)
        feats = [z.permute(0, 2, 3, 1).contiguous()] if self.keep_features else None
        return [ids], feats

    @torch.no_grad()
    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        return self.decode_latent(self.lookup(tokens.ids[0].to(self.device)))


# ----------------------------------------------------------------------------------------------------------------------
# taming VQGAN family
# ----------------------------------------------------------------------------------------------------------------------
PAPER = "Esser, Rombach, Ommer. Taming Transformers for High-Resolution Image Synthesis. CVPR 2021 (arXiv 2012.09841)"


def image_size_of(config: Mapping, default: int | None = None) -> int:
    """The tokenizer's image side: `image_size` when the config gives it, else the ddconfig `resolution`."""
    if "image_size" in config:
        return int(config["image_size"])
    kw = config.get("constructor_kwargs", {})
    dd = kw.get("ddconfig", {})
    if "resolution" in dd:
        return int(dd["resolution"])
    if default is None:
        raise ValueError("config gives neither image_size nor constructor_kwargs.ddconfig.resolution")
    return default


def build_taming(config: dict) -> TamingVQTokenizer:
    kw = config["constructor_kwargs"]
    net = TamingConfig.from_ddconfig(kw["ddconfig"])
    info = TokenizerInfo(family=FAMILY, value_range="[-1,1]", quantizer="vq", paper=PAPER, code_license="MIT",
                         weights_license="none stated (taming-transformers repository is MIT; unverified)",
                         notes="L2 nearest code; decoder output unbounded (upstream clamps to [-1,1] for display)")
    return TamingVQTokenizer(net, kw["n_embed"], kw["embed_dim"], image_size_of(config), info)


def taming_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Lightning `last.ckpt` → our state dict: take `state_dict` (or `model`), drop the `loss.*` LPIPS/discriminator
    keys. A flat state dict with upstream names passes through unchanged."""
    return drop_prefixes(unwrap_state_dict(raw, prefer=("state_dict", "model")), ("loss.",))


def _taming_config(n_embed: int) -> dict:
    return {
        "upstream_repo": "https://github.com/CompVis/taming-transformers",
        "upstream_commit": "3ba01b241669f5ade541ce990f7650a3b8f65318",
        "class": "taming.models.vqgan.VQModel",
        "constructor_kwargs": {
            "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                         "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                         "dropout": 0.0},
            "lossconfig": {"target": "torch.nn.Identity"},
            "n_embed": n_embed,
            "embed_dim": 256,
        },
        "input_range": "[-1,1]",
        "image_size": 256,
    }


register_family(Family(FAMILY, build_taming, taming_filter,
                       description="taming-transformers VQGAN (VQModel), L2 VQ, input [-1,1]"))

# heibox links cannot be fetched by tokbench; the URL fragment names the file the user puts in the weights folder.
for _n, _ckpt, _folder in (
    (1024, "https://heibox.uni-heidelberg.de/f/140747ba53464f49b476/?dl=1#/vqgan_imagenet_f16_1024.ckpt",
     "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/"),
    (16384, "https://heibox.uni-heidelberg.de/f/867b05fc8c4841768640/?dl=1#/vqgan_imagenet_f16_16384.ckpt",
     "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/"),
):
    register_preset(Preset(
        name=f"taming-vqgan-f16-{_n}", family=FAMILY, config=copy.deepcopy(_taming_config(_n)), weights=_ckpt,
        manual_url=_folder,
        info={"paper": PAPER, "code_license": "MIT",
              "weights_license": "none stated (taming-transformers repository is MIT; unverified)",
              "quantizer": "vq", "vocab_size": _n, "tokens_per_image": 256,
              "notes": f"ImageNet f16 VQGAN, {_n} x 256 codebook, L2. Official file: {_folder} "
                       "(checkpoints/last.ckpt, a Lightning pickle: convert once with `tokbench convert "
                       "--trust-checkpoint`). Published rFID (torch-fidelity, val): "
                       + ("7.94" if _n == 1024 else "4.98")},
        description=f"taming VQGAN ImageNet f16, {_n} codes",
    ))
