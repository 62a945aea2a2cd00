"""XQ-GAN / RobustTok (single cosine codebook) and ImageFolder (product × multi-scale) ViT tokenizers.

Two families share the ViT encoder/decoder with latent tokens (`_nn.vit_tokenizer`):
- `xqgan`: 16×16 latent tokens → 1×1 quant_conv → one L2-normalised codebook (cosine assignment, looked-up codes
  re-normalised) → 1×1 post_quant_conv → decoder. Presets XQGAN-4096/8192, RobustTok(-zero), RobusTok main/post.
- `imagefolder`: 2 product branches of 11×11 latent tokens, each quantised by a VAR-style multi-scale residual VQ
  (`_nn.multiscale_vq`, cosine selection, raw rows looked up), concatenated on channels for the decoder.
  Ids are 20 groups, branch-major then scale (k = branch·10 + scale), group spaces=(branch,).

The upstream code (lxa9867/ImageFolder, Xudangliatiger/RobusTok) is under a non-commercial licence: this is an
independent implementation from the documented structure (fixture READMEs, key names and shapes). Loss-only parts
(DINOv2 semantic teacher, CLIP detail teacher, discriminator) are not built; nothing is downloaded at construction.
Official files are torch pickles with an argparse Namespace: load them with trust_checkpoint=True (or convert once).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import CodebookSpace, Tokenizer, TokenizerInfo, TokenLayout, Tokens
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import unwrap_state_dict
from tokbench_adapters._nn.multiscale_vq import MultiScaleResidualVQ, multiscale_layout
from tokbench_adapters._nn.vit_tokenizer import LatentViTDecoder, LatentViTEncoder, vit_size

# The code is Adobe Research License (lxa9867/ImageFolder; the RobusTok repo has no licence file and derives from it);
# tokbench's adapter is an independent re-implementation. The Hugging Face files state no licence of their own.
CODE_LICENSE = "Adobe Research License (non-commercial research only)"
WEIGHTS_LICENSE = "unverified; assume research-only, non-commercial"
PAPERS = {
    "xqgan": "Li et al., XQ-GAN: An Open-source Image Tokenization Framework for Autoregressive Generation (arXiv 2412.01762)",
    "robusttok": "Qiu et al., Robust Latent Matters: Boosting Image Generation with Sampling Error Synthesis (RobustTok, arXiv 2503.08354)",
    "robustok-post": "Qiu et al., RobusTok post-training (arXiv 2509.12474)",
    "imagefolder": "Li et al., ImageFolder: Autoregressive Image Generation with Folded Tokens, ICLR 2025 (arXiv 2410.01756)",
}


def _vit_kwargs(config: dict) -> dict:
    """ViT geometry: the named timm entry point's size at 256 px / patch 16 (hard-coded upstream), then the
    fixture's documented `runtime_patch.vit_model_kwargs_override`."""
    kw = config["constructor_kwargs"]
    for key in ("enc_type", "dec_type"):
        if kw.get(key, "dinov2") != "dinov2":
            raise NotImplementedError(f"{key}={kw[key]!r}: only the ViT (dinov2) encoder/decoder is implemented")
    if kw.get("lfq", False):
        raise NotImplementedError("lfq=True (MSBR10P2 binary quantiser) is not implemented")
    if kw.get("encoder_model") != kw.get("decoder_model"):
        raise NotImplementedError("encoder and decoder of different ViT sizes are not implemented")
    dim, depth, heads = vit_size(kw.get("encoder_model", "vit_base_patch14_dinov2.lvd142m"))
    out = {"img_size": int(config.get("image_size", 256)), "patch_size": 16, "embed_dim": dim, "depth": depth,
           "num_heads": heads}
    override = config.get("runtime_patch", {}).get("vit_model_kwargs_override", {})
    out.update({k: int(v) for k, v in override.items() if k in out})
    return out


class CosineCodebook(nn.Module):
    """Single l2-normalised codebook: id = argmin |ẑ - ê|² over normalised vectors; lookups re-normalised."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / vocab_size, 1.0 / vocab_size)

    def codes(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight, dim=1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z, dim=1)
        e = self.codes()
        d = (z * z).sum(1, keepdim=True) + (e * e).sum(1)[None, :] - 2 * (z @ e.T)
        return d.argmin(dim=1)


class _ViTTokenizerBase(Tokenizer):
    family = ""

    def __init__(self, config: dict, branches: int) -> None:
        super().__init__()
        kw = config["constructor_kwargs"]
        vit = _vit_kwargs(config)
        self.v_patch_nums = tuple(int(p) for p in kw["v_patch_nums"])
        g = self.v_patch_nums[-1]
        if int(kw["num_latent_tokens"]) != g * g:
            raise ValueError(f"num_latent_tokens={kw['num_latent_tokens']} is not the last scale squared ({g}x{g})")
        self.latent_grid, self.branches = g, branches
        self.vocab_size, self.code_dim = int(kw["codebook_size"]), int(kw["codebook_embed_dim"])
        self.encoder = LatentViTEncoder(latent_grid=g, branches=branches, **vit)
        self.quant_conv = nn.Conv2d(vit["embed_dim"], self.code_dim, 1)
        self.post_quant_conv = nn.Conv2d(branches * self.code_dim, vit["embed_dim"], 1)
        self.decoder = LatentViTDecoder(latent_grid=g, **vit)
        self.resolution = vit["img_size"]

    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """Upstream ToTensor + Normalize(0.5, 0.5): (u8/255 - 0.5)/0.5 in float32 (bit-exact with the fixtures)."""
        self.check_images(images)
        return images.to(self.device).float().div(255).sub(0.5).div(0.5)

    def _decode_latent(self, q: torch.Tensor) -> torch.Tensor:
        """q: B × (branches·C) × g × g → image, unclamped."""
        z = self.post_quant_conv(q)
        return self.decoder(z.flatten(2).transpose(1, 2))


class XQGANTokenizer(_ViTTokenizerBase):
    """XQ-GAN / RobustTok single-codebook ViT tokenizer: a 16×16 grid of ids from one cosine codebook."""

    def __init__(self, config: dict) -> None:
        kw = config["constructor_kwargs"]
        if int(kw.get("product_quant", 1)) != 1 or len(kw["v_patch_nums"]) != 1:
            raise ValueError("family 'xqgan' is the single-scale, single-codebook model (product_quant=1, one scale); "
                             "use family 'imagefolder' for product × multi-scale configs")
        if not kw.get("codebook_l2_norm", True):
            raise NotImplementedError("codebook_l2_norm=False is not used by any released XQ-GAN model")
        super().__init__(config, branches=1)
        self.quantize = CosineCodebook(self.vocab_size, self.code_dim)
        g = self.latent_grid
        self.layout = TokenLayout.grid(g, g)
        self.info = TokenizerInfo(
            family="xqgan", resolution=self.resolution, crop="adm", value_range="[-1,1]", vocab_size=self.vocab_size,
            tokens_per_image=g * g, quantizer="vq", paper=PAPERS["xqgan"], code_license=CODE_LICENSE,
            weights_license=WEIGHTS_LICENSE,
            notes=f"ViT latent-token tokenizer, {self.vocab_size}x{self.code_dim} l2-normalised codebook (cosine)")

    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        return [CodebookSpace(self.vocab_size, self.quantize.codes().detach(), "cosine")]

    def pre_quant(self, x: torch.Tensor) -> torch.Tensor:
        """Model input → the quant_conv output B × C × g × g (upstream `VQModel.encode`)."""
        B, g = x.shape[0], self.latent_grid
        lat = self.encoder(x).reshape(B, g, g, -1).permute(0, 3, 1, 2)
        return self.quant_conv(lat)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        z = self.pre_quant(x).permute(0, 2, 3, 1).contiguous()  # B × g × g × C
        ids = self.quantize.nearest(z.reshape(-1, self.code_dim)).view(z.shape[:3])
        return [ids], [z]

    def ids_to_latent(self, ids: torch.Tensor) -> torch.Tensor:
        return self.quantize.codes()[ids].permute(0, 3, 1, 2)

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        with torch.no_grad():
            return self._decode_latent(self.ids_to_latent(tokens.ids[0].to(self.device)))


class ImageFolderTokenizer(_ViTTokenizerBase):
    """ImageFolder product-quantised multi-scale tokenizer: per branch a VAR-style residual VQ (cosine pick, raw
    lookup); ids branch-major then scale."""

    def __init__(self, config: dict) -> None:
        kw = config["constructor_kwargs"]
        branches = int(kw.get("product_quant", 2))
        if branches < 2 or len(kw["v_patch_nums"]) < 2:
            raise NotImplementedError("family 'imagefolder' covers product × multi-scale models (MSVR…P2); "
                                      "single-scale product quantisers (VP2) are not implemented")
        super().__init__(config, branches=branches)
        self.quantizes = nn.ModuleList([
            MultiScaleResidualVQ(self.vocab_size, self.code_dim, self.v_patch_nums, quant_resi=0.5,
                                 share_quant_resi=int(kw.get("share_quant_resi", 4)), metric="cosine")
            for _ in range(branches)])
        self.layout = multiscale_layout(self.v_patch_nums, branches)
        self.info = TokenizerInfo(
            family="imagefolder", resolution=self.resolution, crop="adm", value_range="[-1,1]",
            vocab_size=self.vocab_size, tokens_per_image=self.layout.tokens_per_image,
            quantizer="product-multiscale-vq", paper=PAPERS["imagefolder"], code_license=CODE_LICENSE,
            weights_license=WEIGHTS_LICENSE,
            notes=(f"{branches} product branches x scales {','.join(map(str, self.v_patch_nums))}, "
                   f"{self.vocab_size}x{self.code_dim} codebook per branch (cosine pick, raw rows looked up); "
                   "ids branch-major then scale"))

    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        return [CodebookSpace(self.vocab_size, q.effective_codes(), "cosine") for q in self.quantizes]

    def pre_quant(self, x: torch.Tensor) -> torch.Tensor:
        """Model input → quant_conv output over all latent tokens, B × C × (branches·g²) × 1 (upstream layout)."""
        lat = self.encoder(x).transpose(1, 2).unsqueeze(-1)
        return self.quant_conv(lat)

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        B, g = x.shape[0], self.latent_grid
        ids, feats = [], []
        for b, part in enumerate(self.pre_quant(x).chunk(self.branches, dim=2)):
            i, f, _ = self.quantizes[b].encode(part.reshape(B, self.code_dim, g, g))
            ids += i
            feats += f
        return ids, feats

    def ids_to_latent(self, ids: list[torch.Tensor]) -> torch.Tensor:
        S = len(self.v_patch_nums)
        return torch.cat([q.ids_to_fhat(ids[b * S:(b + 1) * S]) for b, q in enumerate(self.quantizes)], dim=1)

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        with torch.no_grad():
            return self._decode_latent(self.ids_to_latent([t.to(self.device) for t in tokens.as_list()]))


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------------
LOSS_ONLY_PREFIXES = ("semantic_model.", "detail_model.", "sem_linear.", "discriminator.", "lpips.")
STAT_SUFFIXES = ("ema_vocab_hit_SV",)


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Official `{'model', 'ema', 'optimizer', 'discriminator', …, 'args'}` dict (or a flat state dict) → ours:
    the EMA weights (what the configs evaluate with `ema: true`), without the loss-only DINOv2/CLIP teachers and the
    codebook-usage statistics."""
    sd = unwrap_state_dict(raw, prefer=("ema", "model", "state_dict"))
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.startswith(LOSS_ONLY_PREFIXES) and not k.endswith(STAT_SUFFIXES)}


register_family(Family("xqgan", XQGANTokenizer, checkpoint_filter,
                       description="XQ-GAN / RobustTok ViT tokenizer, one l2-normalised (cosine) codebook"))
register_family(Family("imagefolder", ImageFolderTokenizer, checkpoint_filter,
                       description="ImageFolder product-quantised multi-scale ViT tokenizer (2 branches x 10 scales)"))


def _kwargs(codebook_size: int, dim: int, **over) -> dict:
    kw = {"codebook_size": codebook_size, "codebook_embed_dim": dim, "commit_loss_beta": 0.25,
          "entropy_loss_ratio": 0.0, "dropout_p": 0.0, "v_patch_nums": [16], "enc_type": "dinov2",
          "encoder_model": "vit_base_patch14_dinov2.lvd142m", "dec_type": "dinov2",
          "decoder_model": "vit_base_patch14_dinov2.lvd142m", "semantic_guide": "dinov2", "detail_guide": "none",
          "num_latent_tokens": 256, "abs_pos_embed": True, "share_quant_resi": 4, "product_quant": 1,
          "codebook_drop": 0.0, "half_sem": False, "start_drop": 3, "sem_loss_weight": 0.1,
          "detail_loss_weight": 0.1, "clip_norm": False, "sem_loss_scale": 1.0, "detail_loss_scale": 1.0,
          "guide_type_1": "class", "guide_type_2": "class", "lfq": False}
    kw.update(over)
    return {"constructor_kwargs": kw, "image_size": 256}


_SINGLE = [
    # name, file, size, dim, paper, notes
    ("xqgan-4096", "hf://qiuk6/RobustTok/XQGAN-4096.pt", 4096, 64, "xqgan",
     "XQGAN VQ-4096 (configs/VQ-4096.yaml); published rFID 0.91, pFID 6.98"),
    ("xqgan-8192", "hf://qiuk6/RobustTok/XQGAN-8192.pt", 8192, 32, "xqgan",
     "XQGAN VQ-8192 (8192x32 codebook); published rFID 0.81, pFID 7.91"),
    ("robusttok-zero", "hf://qiuk6/RobustTok/RobustTok-zero.pt", 4096, 64, "robusttok",
     "RobustTok trained with latent perturbation (configs/RobustTok.yaml); published rFID 1.02, pFID 2.28"),
    ("robustok-main", "hf://qiuk6/RobusTok/main-train.pt", 4096, 64, "robusttok",
     "RobusTok follow-up release, main training stage (configs/main-train.yaml, same architecture as RobustTok)"),
    ("robustok-post", "hf://qiuk6/RobusTok/post-train.pt", 4096, 64, "robustok-post",
     "RobusTok follow-up release after decoder post-training (encoder frozen; same keys)"),
]

for _name, _w, _v, _d, _paper, _notes in _SINGLE:
    _repo = _w[len("hf://"):].rsplit("/", 1)[0]
    register_preset(Preset(
        _name, "xqgan", _kwargs(_v, _d), weights=_w, manual_url=f"https://huggingface.co/{_repo}",
        info={"paper": PAPERS[_paper], "notes": _notes + "; official file is a pickle with an argparse Namespace: "
              "load with trust_checkpoint=True (EMA weights are used)"},
        description=_notes.split(";")[0]))

_MSVR = [
    # name, codebook size, published numbers
    ("imagefolder-msvr10p2-4096", 4096, "published rFID 0.80, pFID 7.23"),
    ("imagefolder-msvr10p2-8192", 8192, "published rFID 0.70"),
    ("imagefolder-msvr10p2-16384", 16384, "published rFID 0.67"),
]

for _name, _v, _pub in _MSVR:
    register_preset(Preset(
        _name, "imagefolder",
        _kwargs(_v, 32, v_patch_nums=[1, 1, 2, 3, 3, 4, 5, 6, 8, 11], num_latent_tokens=121, product_quant=2,
                codebook_drop=0.1, half_sem=True),
        weights=f"hf://qiuk6/XQ-GAN/MSVR10P2-{_v}/best_ckpt.pt", manual_url="https://huggingface.co/qiuk6/XQ-GAN",
        info={"notes": f"ImageFolder MSVR10P2-{_v} (XQ-GAN release, configs/MSVR10P2-{_v}.yaml): 2 branches x 286 "
                       f"ids (scales 1,1,2,3,3,4,5,6,8,11), {_v}x32 codebook per branch; {_pub}; official file is a "
                       "pickle with an argparse Namespace: load with trust_checkpoint=True (EMA weights are used)"},
        description=f"ImageFolder MSVR10P2-{_v} (2 x 286 ids)"))

BENCH_PRESETS = ["xqgan-4096", "robusttok-zero", "imagefolder-msvr10p2-4096"]
