"""tokbench's ViT-VQGAN-style tokenizer (family `tokbench_vitvq`).

Design (ViT-VQGAN, arXiv 2110.04627; no official code exists, this is our own implementation from the paper):
- patch embedding (a p×p, stride-p conv) + learned absolute position embedding, a pre-norm ViT encoder (timm `Block`),
  a final LayerNorm; the factorised, L2-normalised quantiser of `inhouse_quant` (project to `lookup_dim`, cosine
  assignment, project back up);
- a ViT decoder of the same kind, then the paper's 2-layer FFN with tanh in between mapping each token to its p×p×3
  patch (no output sigmoid / logit-Laplace, as Parti and the unofficial ports do).
Sizes are set by config, from a 2-block 64-wide toy to ViT-B (12 blocks, 768 wide, 12 heads); encoder and decoder are
sized independently (SS, BB, SL as in the paper).
"""

from __future__ import annotations

import torch
from torch import nn
from timm.models.vision_transformer import Block

from ..registry import Family, Preset, register_family, register_preset
from .inhouse_base import InhouseVQTokenizer, constructor_kwargs, inhouse_checkpoint_filter, init_weights

FAMILY = "tokbench_vitvq"

# ViT sizes of the paper's Table 1 plus a toy one for CPU tests and smoke runs.
VIT_SIZES = {
    "tiny": dict(width=64, depth=2, heads=4, mlp_ratio=4.0),
    "small": dict(width=512, depth=8, heads=8, mlp_ratio=4.0),
    "base": dict(width=768, depth=12, heads=12, mlp_ratio=4.0),
    "large": dict(width=1280, depth=32, heads=16, mlp_ratio=4.0),
}


class ViTStack(nn.Module):
    """Tokens (B x L x C) + position embedding → blocks → LayerNorm."""

    def __init__(self, num_tokens: int, width: int, depth: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio=mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed.to(x.dtype)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class ViTVQTokenizer(InhouseVQTokenizer):
    family = FAMILY

    def __init__(self, image_size: int = 256, patch_size: int = 8, encoder_size: str | None = "small",
                 decoder_size: str | None = "small", enc_width: int | None = None, enc_depth: int | None = None,
                 enc_heads: int | None = None, dec_width: int | None = None, dec_depth: int | None = None,
                 dec_heads: int | None = None, mlp_ratio: float | None = None, codebook_size: int = 8192,
                 lookup_dim: int = 32, l2_norm: bool = True, ema_codebook: bool = False,
                 ema_decay: float = 0.99) -> None:
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        enc = dict(VIT_SIZES[encoder_size]) if encoder_size else {}
        dec = dict(VIT_SIZES[decoder_size]) if decoder_size else {}
        for d, w, dp, h in ((enc, enc_width, enc_depth, enc_heads), (dec, dec_width, dec_depth, dec_heads)):
            d.update({k: v for k, v in dict(width=w, depth=dp, heads=h).items() if v is not None})
            if mlp_ratio is not None:
                d["mlp_ratio"] = mlp_ratio
            missing = {"width", "depth", "heads", "mlp_ratio"} - set(d)
            if missing:
                raise ValueError(f"ViT size incomplete, missing {sorted(missing)}: give encoder_size/decoder_size "
                                 f"({', '.join(VIT_SIZES)}) or explicit widths/depths/heads")
        grid = image_size // patch_size
        super().__init__(image_size=image_size, grid=grid, hidden_in=enc["width"], hidden_out=dec["width"],
                         codebook_size=codebook_size, lookup_dim=lookup_dim, l2_norm=l2_norm,
                         ema_codebook=ema_codebook, ema_decay=ema_decay, quantizer="vq",
                         notes=f"ViT-VQGAN-style, patch {patch_size}, enc {enc['width']}x{enc['depth']}, "
                               f"dec {dec['width']}x{dec['depth']}, lookup {lookup_dim}-d, "
                               f"{'cosine' if l2_norm else 'l2'} codes{', EMA codebook' if ema_codebook else ''}")
        self.patch_size = int(patch_size)
        self.patch_embed = nn.Conv2d(3, enc["width"], patch_size, stride=patch_size)
        self.encoder = ViTStack(grid * grid, enc["width"], enc["depth"], enc["heads"], enc["mlp_ratio"])
        self.decoder = ViTStack(grid * grid, dec["width"], dec["depth"], dec["heads"], dec["mlp_ratio"])
        self.to_pixels = nn.Sequential(nn.Linear(dec["width"], dec["width"]), nn.Tanh(),
                                       nn.Linear(dec["width"], 3 * patch_size * patch_size))
        for m in (self.patch_embed, self.encoder, self.decoder, self.to_pixels):
            init_weights(m)

    def encode_hidden(self, x: torch.Tensor) -> torch.Tensor:
        t = self.patch_embed(x).flatten(2).transpose(1, 2)  # B x L x C
        t = self.encoder(t)
        return t.reshape(t.shape[0], self.grid, self.grid, t.shape[-1])

    def decode_hidden(self, h: torch.Tensor) -> torch.Tensor:
        b, p, g = h.shape[0], self.patch_size, self.grid
        t = self.to_pixels(self.decoder(h.reshape(b, g * g, h.shape[-1])))  # B x L x (3 p p)
        t = t.reshape(b, g, g, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return t.reshape(b, 3, g * p, g * p)

    def last_layer(self) -> torch.Tensor:
        return self.to_pixels[-1].weight


def build(config: dict) -> ViTVQTokenizer:
    return ViTVQTokenizer(**constructor_kwargs(config))


register_family(Family(FAMILY, build, inhouse_checkpoint_filter,
                       description="tokbench in-house ViT-VQGAN-style tokenizer (factorised cosine codes)"))

_INFO = {"weight_source": "none (train with `tokbench train-robust`)",
         "notes": "architecture preset without published weights; train it with tokbench train-robust"}
for _name, _enc, _dec in (("tokbench-vitvq-ss-256", "small", "small"), ("tokbench-vitvq-bb-256", "base", "base"),
                          ("tokbench-vitvq-sl-256", "small", "large")):
    register_preset(Preset(_name, FAMILY, {"constructor_kwargs": dict(
        image_size=256, patch_size=8, encoder_size=_enc, decoder_size=_dec, codebook_size=8192, lookup_dim=32,
        l2_norm=True, ema_codebook=False)}, weights=None, info=dict(_INFO)))
