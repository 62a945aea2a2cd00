"""VQGAN-LC (Zhu et al., NeurIPS 2024, "Scaling the Codebook Size of VQGAN to 100,000 with a Utilization Rate of 99%").

The taming network, quantising against a **frozen** codebook of 100,000 CLIP-feature k-means centres (768-d,
`tok_embeddings`) seen through a learned `codebook_projection` (Linear 768→8): the effective codes are
E = projection(tok_embeddings) and ids are the L2 nearest rows of E. The checkpoint carries the frozen codebook, so
the separate `codebook-100K.pth` file that upstream's constructor reads is not needed here.

Licence: the VQGAN-LC repository publishes **no licence** (all rights reserved by default): evaluate locally, do not
redistribute its code or weights.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tokbench.api import TokenizerInfo
from tokbench.nn.taming import TamingConfig
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import drop_prefixes, unwrap_state_dict
from tokbench_adapters.taming_vqgan import TamingVQTokenizer, image_size_of

FAMILY = "vqgan_lc"
BENCH_PRESETS = ["vqgan-lc-100k"]
PAPER = ("Zhu et al. Scaling the Codebook Size of VQGAN to 100,000 with a Utilization Rate of 99%. NeurIPS 2024 "
         "(arXiv 2406.11837)")
NO_LICENSE = "none (no licence file published: all rights reserved; evaluate locally, do not redistribute)"
CLIP_DIM = 768  # CLIP ViT-L/14 feature width of the official initial codebook


class VQGANLCTokenizer(TamingVQTokenizer):
    metric = "l2"

    def __init__(self, *args, codebook_dim: int = CLIP_DIM, **kw) -> None:
        self._codebook_dim = int(codebook_dim)
        super().__init__(*args, **kw)

    def _make_quantizer(self) -> None:
        self.tok_embeddings = nn.Embedding(self.n_embed, self._codebook_dim)
        self.tok_embeddings.weight.requires_grad_(False)  # frozen, as upstream
        self.codebook_projection = nn.Linear(self._codebook_dim, self.embed_dim)
        nn.init.normal_(self.codebook_projection.weight, std=self.embed_dim**-0.5)

    def codebook(self) -> torch.Tensor:
        return self.codebook_projection(self.tok_embeddings.weight)

    def _codebook_tensors(self) -> list[torch.Tensor]:
        return [self.tok_embeddings.weight, self.codebook_projection.weight, self.codebook_projection.bias]

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        # project only the rows we need instead of all 100k codes (the same maths row by row)
        return self.codebook_projection(self.tok_embeddings.weight[ids]).permute(0, 3, 1, 2).contiguous()


def _initial_codebook_shape(args: Mapping, config: Mapping) -> tuple[int, int]:
    """(rows, dim) of the frozen initial codebook, which upstream reads from the file `args.local_embedding_path`.

    Order: the documented override `codebook_dim` (with `n_vision_words`); the file's own shape when it exists, as
    upstream's constructor does; a "[N, D]" shape written in the path placeholder (the parity fixture's config);
    else `n_vision_words` × 768 (the official CLIP ViT-L/14 codebook)."""
    n = int(args.get("n_vision_words", 100000))
    if "codebook_dim" in config:
        return n, int(config["codebook_dim"])
    path = str(args.get("local_embedding_path", ""))
    if path and Path(path).expanduser().is_file():
        p = Path(path).expanduser()
        if p.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as f:
                name = "tok_embeddings.weight" if "tok_embeddings.weight" in f.keys() else next(iter(f.keys()))
                shape = f.get_slice(name).get_shape()
        else:
            t = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            shape = t.shape
        return int(shape[0]), int(shape[1])
    m = re.search(r"\[\s*(\d+)\s*,\s*(\d+)\s*\]", path)
    if m:
        return int(m.group(1)), int(m.group(2))
    return n, CLIP_DIM


def build_vqgan_lc(config: dict) -> VQGANLCTokenizer:
    kw = config["constructor_kwargs"]
    args = dict(kw.get("args", {}))
    embed_dim = int(args.get("embed_dim", kw.get("embed_dim")))  # args.embed_dim overrides the keyword, as upstream
    if embed_dim == CLIP_DIM:
        raise NotImplementedError("VQGAN-LC with embed_dim 768 (l2-normalised latent, no projection) is not supported")
    if int(args.get("use_cblinear", 1)) != 1 or int(args.get("tuning_codebook", 0)) != 0:
        raise NotImplementedError("only the released setting (frozen codebook, use_cblinear=1) is supported")
    rows, dim = _initial_codebook_shape(args, config)
    net = TamingConfig.from_ddconfig(kw["ddconfig"])
    info = TokenizerInfo(family=FAMILY, value_range="[-1,1]", quantizer="vq", paper=PAPER, code_license=NO_LICENSE,
                         weights_license=NO_LICENSE,
                         notes="frozen CLIP-feature codebook through a learned projection; L2 on the projected codes")
    return VQGANLCTokenizer(net, rows, embed_dim, image_size_of(config), info, codebook_dim=dim)


def vqgan_lc_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """`{'state_dict' | 'model': full VQModel sd}` → drop the discriminator and LPIPS keys. No EMA exists."""
    sd = unwrap_state_dict(raw, prefer=("state_dict", "model"))
    return drop_prefixes(sd, ("discriminator.", "perceptual_loss."))


_CONFIG = {
    "upstream_repo": "https://github.com/zh460045050/VQGAN-LC",
    "upstream_commit": "4708958f2257f62a996fc5d42928fecbf4282986",
    "class": "models.models_vq.VQModel",
    "constructor_kwargs": {
        "args": {"stage": 1, "embed_dim": 8, "quantizer_type": "org", "tuning_codebook": 0, "use_cblinear": 1,
                 "n_vision_words": 100000, "rate_p": 1.0, "rate_q": 1.0, "rate_d": 1.0, "disc_start": 0,
                 "local_embedding_path": "codebook-100K.pth"},
        "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                     "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                     "dropout": 0.0},
        "embed_dim": 8,
    },
    "codebook_dim": CLIP_DIM,
    "input_range": "[-1,1]",
    "image_size": 256,
}

register_family(Family(FAMILY, build_vqgan_lc, vqgan_lc_filter,
                       description="VQGAN-LC: frozen 100k CLIP-feature codebook, learned projection, L2; input [-1,1]"))

_FOLDER = "https://drive.google.com/drive/folders/12824gtaR_upGH1DJRNfAjQFiw8c1FmwJ"
register_preset(Preset(
    name="vqgan-lc-100k", family=FAMILY, config=copy.deepcopy(_CONFIG),
    # Google Drive only: tokbench never downloads it; the fragment names the file to put in the weights folder
    weights=f"{_FOLDER}#/vqgan-lc-100K-f16-dim8.pth",
    manual_url=_FOLDER,
    info={"paper": PAPER, "code_license": NO_LICENSE, "weights_license": NO_LICENSE, "quantizer": "vq",
          "vocab_size": 100000, "tokens_per_image": 256,
          "notes": "VQGAN-LC 100K f16 dim8 (vqgan-lc-100K-f16-dim8.pth, Google Drive); the checkpoint holds the "
                   "frozen codebook, codebook-100K.pth is not needed. Upstream protocol differs from ADM "
                   "(clean-fid against uncropped val)."},
    description="VQGAN-LC 100K codes, f16, 8-d projected codes",
))
