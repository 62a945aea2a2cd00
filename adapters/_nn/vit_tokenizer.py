"""ViT encoder/decoder with learnable latent tokens, as in the XQ-GAN / ImageFolder / RobustTok tokenizers.

Written from the documented structure (fixture READMEs `xqgan/single`, `xqgan/imagefolder`), not from the
(non-commercial) upstream code. Standard timm pre-norm blocks with LayerScale are used as building blocks and are
always built locally (no pretrained download): the DINOv2 initialisation upstream starts from is irrelevant at
inference because the released checkpoints hold every weight.

Encoder: [cls, image patches] + pos-embed, then the latent tokens of each product branch (each + the image
pos-embed resampled to the latent grid), + a level embedding (0 = cls/image, 1 + b = branch b), blocks, final norm;
the output is the latent tokens.
Decoder: [cls, N mask tokens] + pos-embed, then [cls, latent tokens] + resampled pos-embed (the cls token appears
twice), + level embedding (0 for the first N+1, 1 for the rest), blocks, norm; the N mask outputs go through a
linear to-pixel head and are unpatchified with the colour channel fastest.
Key names follow the official checkpoints (`model.*`, `latent_tokens`, `lvl_embed`, `lvl1LC`, `mask_token`,
`to_pixel.model`).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import Block

# timm entry points the released configs name → (embed_dim, depth, num_heads)
VIT_SIZES = {
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}


def vit_size(model_name: str) -> tuple[int, int, int]:
    for prefix, dims in VIT_SIZES.items():
        if model_name.startswith(prefix):
            return dims
    raise ValueError(f"unknown ViT entry point {model_name!r}; known sizes: {', '.join(VIT_SIZES)}")


class ViTTrunk(nn.Module):
    """cls token, absolute position embedding (incl. the cls slot), pre-norm LayerScale blocks, final LayerNorm;
    optionally a patch embedding (the decoder has none)."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, patch_embed: bool = True) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not a multiple of the patch size {patch_size}")
        self.grid = img_size // patch_size
        if patch_embed:
            self.patch_embed = PatchEmbed(img_size, patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, init_values=1e-5, norm_layer=norm)
            for _ in range(depth)])
        self.norm = norm(embed_dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def with_cls(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """[cls, x] + the position embedding resampled to `grid` (bicubic, antialiased; identity when it fits)."""
        pos = resample_abs_pos_embed(self.pos_embed, new_size=grid, old_size=(self.grid, self.grid),
                                     num_prefix_tokens=1)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + pos


def _levels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), lv, dtype=torch.long) for lv, n in enumerate(counts)])[None]


class LatentViTEncoder(nn.Module):
    """Image → `branches` × (grid×grid) latent tokens (B × branches·grid² × E)."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 latent_grid: int, branches: int = 1) -> None:
        super().__init__()
        self.model = ViTTrunk(img_size, patch_size, embed_dim, depth, num_heads)
        self.latent_grid, self.branches = latent_grid, branches
        n_img = self.model.grid**2
        self.latent_tokens = nn.Parameter(torch.zeros(1, branches * latent_grid**2, embed_dim))
        nn.init.normal_(self.latent_tokens, std=0.02)
        self.lvl_embed = nn.Embedding(1 + branches, embed_dim)
        self.register_buffer("lvl1LC", _levels([1 + n_img] + [latent_grid**2] * branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, g = x.shape[0], self.latent_grid
        m = self.model
        tokens = [m.with_cls(m.patch_embed(x), (m.grid, m.grid))]
        lat = self.latent_tokens.expand(B, -1, -1).reshape(B, self.branches * g, g, -1)
        for part in lat.chunk(self.branches, dim=1):
            tokens.append(m.with_cls(part.reshape(B, g * g, -1), (g, g))[:, 1:])
        h = torch.cat(tokens, dim=1) + self.lvl_embed(self.lvl1LC)
        h = m.norm(m.blocks(h))
        return h[:, -self.branches * g * g:]


class LatentViTDecoder(nn.Module):
    """Latent tokens on a grid (B × g² × E) → image (B × 3 × H × W), unclamped."""

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 latent_grid: int) -> None:
        super().__init__()
        self.model = ViTTrunk(img_size, patch_size, embed_dim, depth, num_heads, patch_embed=False)
        self.patch_size, self.latent_grid = patch_size, latent_grid
        n_img = self.model.grid**2
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.lvl_embed = nn.Embedding(2, embed_dim)
        self.register_buffer("lvl1LC", _levels([1 + n_img, 1 + latent_grid**2]))
        self.to_pixel = nn.Module()
        self.to_pixel.model = nn.Linear(embed_dim, patch_size * patch_size * 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, g, m, p = z.shape[0], self.latent_grid, self.model, self.patch_size
        n = m.grid**2
        masks = m.with_cls(self.mask_token.expand(B, n, -1), (m.grid, m.grid))
        lat = m.with_cls(z, (g, g))
        h = torch.cat([masks, lat], dim=1) + self.lvl_embed(self.lvl1LC)
        h = m.norm(m.blocks(h))[:, 1:1 + n]
        px = self.to_pixel.model(h).reshape(B, m.grid, m.grid, p, p, 3)
        return torch.einsum("nhwpqc->nchpwq", px).reshape(B, 3, m.grid * p, m.grid * p)
