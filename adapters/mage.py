"""MAGE's VQGAN tokenizer (Li et al., CVPR 2023): the MaskGIT VQGAN network under MAGE's own `taming` key names.

Family `mage`, preset `mage-vqgan` (`vqgan_jax_strongaug.ckpt`, trained by the MAGE authors with strong
augmentation: different weights from MaskGIT's). Same modules as `maskgit_vq`; the checkpoint filter renames
`mid.block_1/2` → `mid.0/1` and `up.{i}.upsample.conv` → `up.{i}.upsample_conv`. Input [0,1], output unclamped.
MAGE's `ddconfig` keeps `attn_resolutions` but builds no attention; `VQModel.decode_code` is broken upstream, so ids
are decoded through the codebook lookup as MAGE's own scripts do.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from tokbench.api import TokenizerInfo
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import unwrap_state_dict
from tokbench_adapters._nn.maskgit_conv import MaskGITConvConfig
from tokbench_adapters.maskgit_vq import MaskGITVQTokenizer, strip_module_prefix

FAMILY = "mage"
BENCH_PRESETS = ["mage-vqgan"]

DRIVE_ID = "13S_unB87n6KKuuMdyMnyExW0G1kplTbP"
FILE = "vqgan_jax_strongaug.ckpt"

OFFICIAL_CONFIG = {
    "class": "taming.models.vqgan.VQModel",
    "constructor_kwargs": {
        "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                     "dropout": 0.0},
        "n_embed": 1024,
        "embed_dim": 256,
    },
    "input_range": "[0,1]",
}


def conv_config(ddconfig: Mapping[str, Any]) -> MaskGITConvConfig:
    """MAGE `ddconfig` → our conv config; refuses options this architecture does not have."""
    if ddconfig.get("double_z", False):
        raise ValueError("MAGE VQGAN: double_z=True is not supported (the tokenizer has no double_z)")
    cin, cout = int(ddconfig.get("in_channels", 3)), int(ddconfig.get("out_ch", 3))
    if cin != cout:
        raise ValueError(f"MAGE VQGAN: in_channels={cin} and out_ch={cout} must be equal")
    return MaskGITConvConfig(
        hidden_channels=int(ddconfig["ch"]), channel_mult=tuple(int(c) for c in ddconfig["ch_mult"]),
        num_res_blocks=int(ddconfig["num_res_blocks"]), z_channels=int(ddconfig["z_channels"]), num_channels=cin,
        resolution=int(ddconfig["resolution"]), dropout=float(ddconfig.get("dropout", 0.0)),
        num_mid_blocks=2,  # MAGE's taming copy: mid.block_1, mid.block_2 whatever num_res_blocks is
    )


def build(config: dict) -> MaskGITVQTokenizer:
    kw = config.get("constructor_kwargs", config)
    info = TokenizerInfo(
        family=FAMILY, crop="adm",
        paper="MAGE: MAsked Generative Encoder to Unify Representation Learning and Image Synthesis (Li et al., CVPR 2023)",
        code_license="MIT (LTH14/mage)",
        weights_license="none stated separately (MIT repository)",
        notes="MaskGIT VQGAN architecture trained by the MAGE authors with strong augmentation; input [0,1], "
              "output unclamped; no published tokenizer rFID",
    )
    return MaskGITVQTokenizer(conv_config(kw["ddconfig"]), int(kw["n_embed"]), int(kw["embed_dim"]), info)


_RENAMES = (
    (re.compile(r"^(encoder|decoder)\.mid\.block_(\d+)\."), lambda m: f"{m[1]}.mid.{int(m[2]) - 1}."),
    (re.compile(r"^decoder\.up\.(\d+)\.upsample\.conv\."), lambda m: f"decoder.up.{m[1]}.upsample_conv."),
)


def rename_key(k: str) -> str:
    for pat, rep in _RENAMES:
        k = pat.sub(rep, k)
    return k


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """`vqgan_jax_strongaug.ckpt` is a plain state dict (a `state_dict` wrapper is tolerated, as MAGE's loader does).
    A MAGE ViT checkpoint embeds the tokenizer under `model` with prefix `vqgan.`: that is accepted too."""
    sd = strip_module_prefix(unwrap_state_dict(raw))
    if any(k.startswith("vqgan.") for k in sd):
        sd = {k[len("vqgan."):]: v for k, v in sd.items() if k.startswith("vqgan.")}
    return {rename_key(k): v for k, v in sd.items() if not k.startswith(("loss.", "discriminator."))}


register_family(Family(FAMILY, build, checkpoint_filter,
                       description="MAGE VQGAN f16 (MaskGIT architecture, MAGE key names), 1024 codes, L2, input [0,1]"))

register_preset(Preset(
    name="mage-vqgan",
    family=FAMILY,
    config=OFFICIAL_CONFIG,
    # Google Drive only. The URL fragment names the file, so that the "put it at …" message shows the right name.
    weights=f"https://drive.google.com/uc?export=download&id={DRIVE_ID}#/{FILE}",
    manual_url=f"https://drive.google.com/file/d/{DRIVE_ID}/view?usp=sharing",
    info={"weight_source": f"Google Drive {DRIVE_ID} ({FILE}, linked from github.com/LTH14/mage)"},
    description="MAGE VQGAN f16, 16x16 tokens, 1024 x 256 codebook (ImageNet 256, strong augmentation)",
))
