"""MaskGIT-VQ (Chang et al., CVPR 2022): Google's JAX VQGAN tokenizer as converted to PyTorch in bytedance/1d-tokenizer.

Family `maskgit_vq`, preset `maskgit-vq`. Input range [0, 1] (`ToTensor()` without Normalize), 16x16 ids into a
1024 x 256 codebook by plain L2 argmin, no quant_conv. The official file is a flat state dict with exactly our key
names (`encoder.*`, `decoder.*`, `quantize.embedding.weight`). The network lives in `_nn.maskgit_conv`; MAGE
(`tokbench_adapters.mage`) reuses `MaskGITVQTokenizer` with its own key renames.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from tokbench.api import CodebookSpace, Tokenizer, TokenizerInfo, TokenLayout, Tokens
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import CheckpointMismatchError, unwrap_state_dict
from tokbench_adapters._nn.maskgit_conv import Codebook, MaskGITConvConfig, MaskGITDecoder, MaskGITEncoder, l2_nearest

FAMILY = "maskgit_vq"
BENCH_PRESETS = ["maskgit-vq"]

OFFICIAL_CONV = {"channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "dropout": 0.0, "hidden_channels": 128,
                 "num_channels": 3, "num_res_blocks": 2, "resolution": 256, "z_channels": 256}
OFFICIAL_CONFIG = {
    "class": "modeling.titok.PretrainedTokenizer",
    "constructor_kwargs": {"encoder_decoder_conf": OFFICIAL_CONV,
                           "quantize": {"num_embeddings": 1024, "embedding_dim": 256, "commitment_cost": 0.25}},
    "input_range": "[0,1]",
}


class MaskGITVQTokenizer(Tokenizer):
    """MaskGIT conv encoder → L2 VQ (no projection, no normalisation) → MaskGIT conv decoder; ids B x h x w."""

    def __init__(self, conv: MaskGITConvConfig, num_embeddings: int, embedding_dim: int, info: TokenizerInfo) -> None:
        super().__init__()
        if conv.z_channels != embedding_dim:
            raise ValueError(f"z_channels={conv.z_channels} must equal the code dimension {embedding_dim} "
                             "(this architecture has no quant_conv)")
        if conv.resolution % conv.downsample_factor:
            raise ValueError(f"resolution {conv.resolution} is not a multiple of {conv.downsample_factor}")
        self.encoder = MaskGITEncoder(conv)
        self.decoder = MaskGITDecoder(conv)
        self.quantize = Codebook(num_embeddings, embedding_dim)
        g = conv.resolution // conv.downsample_factor
        self.layout = TokenLayout.grid(g, g)
        self.info = info.with_updates(resolution=conv.resolution, value_range="[0,1]", vocab_size=num_embeddings,
                                      tokens_per_image=g * g, quantizer="vq")

    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        """The raw codebook, assigned by L2 (built from the current weights)."""
        return [CodebookSpace(self.quantize.weight.shape[0], codes=self.quantize.weight.detach(), metric="l2")]

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        check_resolution(x, self.info)
        z = self.encoder(x).permute(0, 2, 3, 1)  # B h w C
        ids = l2_nearest(z.reshape(-1, z.shape[-1]), self.quantize.weight).view(z.shape[:3])
        return [ids], [z]

    def codes_to_latent(self, ids: torch.Tensor) -> torch.Tensor:
        """ids B x h x w → decoder input B x C x h x w (the plain codebook rows)."""
        return self.quantize.embedding(ids).permute(0, 3, 1, 2)

    @torch.no_grad()
    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = tokens.ids[0].to(self.quantize.weight.device)
        return self.decoder(self.codes_to_latent(ids))


# ----------------------------------------------------------------------------------------------------------------------
def check_resolution(x: torch.Tensor, info: TokenizerInfo) -> None:
    """The token layout is fixed by the resolution: refuse other image sizes with a clear message."""
    if tuple(x.shape[-2:]) != (info.resolution, info.resolution):
        raise ValueError(f"{info.preset or info.family} encodes {info.resolution}x{info.resolution} images, got "
                         f"{x.shape[-2]}x{x.shape[-1]} (resize / centre-crop first, e.g. tokbench.data)")


def _conv_config(config: Mapping[str, Any]) -> MaskGITConvConfig:
    kw = config.get("constructor_kwargs", config)
    return MaskGITConvConfig.from_dict(kw["encoder_decoder_conf"])


def build(config: dict) -> MaskGITVQTokenizer:
    kw = config.get("constructor_kwargs", config)
    q = kw.get("quantize", {"num_embeddings": 1024, "embedding_dim": 256})
    info = TokenizerInfo(
        family=FAMILY, crop="adm", paper="MaskGIT: Masked Generative Image Transformer (Chang et al., CVPR 2022)",
        code_license="Apache-2.0 (bytedance/1d-tokenizer port of Google's MaskGIT)",
        weights_license="Apache-2.0 as Google's MaskGIT release (unverified for the converted file)",
        notes="input [0,1]; upstream decode() clamps to [0,1]; no attention, avg-pool downsampling",
    )
    return MaskGITVQTokenizer(_conv_config(config), int(q["num_embeddings"]), int(q["embedding_dim"]), info)


def strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """The official file is already a flat state dict with our names. `state_dict`/`model` wrappers and a DDP
    `module.` prefix are tolerated; a TiTok checkpoint (its `pixel_*` copy of this decoder) is refused clearly."""
    sd = strip_module_prefix(unwrap_state_dict(raw))
    if any(k.startswith("pixel_decoder.") for k in sd):
        raise CheckpointMismatchError("this is a TiTok checkpoint (pixel_decoder.* keys), not a MaskGIT-VQ one: "
                                      "load it with a titok preset")
    return {k: v for k, v in sd.items() if not k.startswith(("loss.", "discriminator."))}


register_family(Family(FAMILY, build, checkpoint_filter,
                       description="MaskGIT VQGAN f16 (1d-tokenizer port), 1024 codes, L2, input [0,1]"))

register_preset(Preset(
    name="maskgit-vq",
    family=FAMILY,
    config=OFFICIAL_CONFIG,
    weights="hf://fun-research/TiTok/maskgit-vqgan-imagenet-f16-256.bin",
    manual_url="https://huggingface.co/fun-research/TiTok/blob/main/maskgit-vqgan-imagenet-f16-256.bin",
    info={"weight_source": "hf://fun-research/TiTok/maskgit-vqgan-imagenet-f16-256.bin",
          "notes": "Google's JAX MaskGIT tokenizer converted to PyTorch (open-muse script); published rFID 2.28 "
                   "(TiTok/RAR), 1.96 with MaskBit's evaluator; input [0,1]; upstream decode() clamps to [0,1]"},
    description="MaskGIT VQGAN f16, 16x16 tokens, 1024 x 256 codebook (ImageNet 256)",
))
