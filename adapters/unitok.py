"""UniTok (Ma et al., NeurIPS 2025, arXiv 2502.20321): multi-codebook VQ on a ViTamin encoder/decoder.

The 64-d latent of each of the 16×16 positions is split into 8 chunks of 8 dims; chunk i is quantised by its own
l2-normalised 4096-entry sub-codebook (argmax of cosine). Tokens are one group of shape (16, 16, 8): grid position ×
sub-codebook, with `spaces=(0, …, 7)`, one cosine `CodebookSpace` per sub-codebook.

Id layout: upstream `img_to_idx` returns B × n_sub × L (sub-codebook major, positions row-major). Ours is
B × h × w × n_sub: `ours = upstream.view(B, n_sub, h, w).permute(0, 2, 3, 1)`, and back
`upstream = ours.permute(0, 3, 1, 2).reshape(B, n_sub, h * w)` (`to_upstream_ids` / `from_upstream_ids`).

Only the image path is built (encoder, quant_proj, quantizer codebooks, post_quant_proj, decoder); the open_clip text
tower, fc_norm, projection, logit_scale and the `vocab_usage` training statistics are dropped by the checkpoint
filter. The ViTamin network is our own plain-torch build (`_nn.vitamin`), so it needs neither timm==1.0.8
nor any download at construction.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import CodebookSpace, Tokenizer, TokenizerInfo, TokenLayout, Tokens
from tokbench.registry import Family, Preset, register_family, register_preset
from tokbench.weights import CheckpointMismatchError, flatten_tensors
from tokbench_adapters._nn.vitamin import VITAMIN_CONFIGS, AttnProjection, ViTaminDecoder, ViTaminEncoder

FAMILY = "unitok"
PAPER = "UniTok: A Unified Tokenizer for Visual Generation and Understanding (Ma et al., NeurIPS 2025, arXiv:2502.20321)"
CODE_LICENSE = "MIT (github.com/FoundationVision/UniTok)"
WEIGHTS_LICENSE = "unverified: no licence for the released weights has been confirmed (the code is MIT)"

# Keys of the official state dict that image encode/decode never reads.
_DROP_PREFIXES = ("text_encoder.", "fc_norm.", "projection.")
_DROP_KEYS = ("logit_scale",)
_DROP_SUFFIXES = (".vocab_usage",)

# Full-size official model: utils/config.py Args defaults + launch.sh overrides (the fixture manifest's record).
OFFICIAL_KWARGS = {
    "model": "vitamin_large",
    "img_size": 256,
    "num_query": 0,
    "drop_path": 0.1,
    "grad_ckpt": True,
    "quant_proj": "attn",
    "vocab_size": 32768,
    "vocab_width": 64,
    "num_codebooks": 8,
    "vq_beta": 0.25,
    "le": 0.0,
    "e_temp": 0.01,
    "embed_dim": 768,
    "text_width": 768,
    "text_heads": 12,
    "text_layers": 12,
    "text_vocab_size": 49408,
    "text_context_length": 77,
}


def to_upstream_ids(ids: torch.Tensor) -> torch.Tensor:
    """Our B × h × w × n_sub ids → upstream's B × n_sub × (h·w)."""
    B, h, w, n = ids.shape
    return ids.permute(0, 3, 1, 2).reshape(B, n, h * w)


def from_upstream_ids(ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Upstream's B × n_sub × (h·w) ids → our B × h × w × n_sub."""
    B, n, _ = ids.shape
    return ids.reshape(B, n, h, w).permute(0, 2, 3, 1).contiguous()


class SubCodebook(nn.Module):
    """One sub-codebook; the raw rows are stored, the model assigns with their l2-normalised versions."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.codebook = nn.Embedding(size, dim)

    def normalized(self) -> torch.Tensor:
        return F.normalize(self.codebook.weight, dim=1)


class MultiCodebookQuantizer(nn.Module):
    """Channel chunk i of the latent ↔ sub-codebook i, by cosine."""

    def __init__(self, vocab_size: int, vocab_width: int, num_codebooks: int) -> None:
        super().__init__()
        if vocab_size % num_codebooks or vocab_width % num_codebooks:
            raise ValueError(f"vocab_size {vocab_size} and vocab_width {vocab_width} must divide by {num_codebooks}")
        self.num_codebooks = num_codebooks
        self.sub_size = vocab_size // num_codebooks
        self.sub_dim = vocab_width // num_codebooks
        self.codebooks = nn.ModuleList(SubCodebook(self.sub_size, self.sub_dim) for _ in range(num_codebooks))

    def f_to_idx(self, latent: torch.Tensor) -> torch.Tensor:
        """B × L × vocab_width latent → B × L × n_sub ids (argmax of normalised dot products, as upstream)."""
        B, L, _ = latent.shape
        ids = []
        for i, (chunk, cb) in enumerate(zip(latent.split(self.sub_dim, dim=-1), self.codebooks)):
            f = F.normalize(chunk.reshape(-1, self.sub_dim), dim=-1).float()
            ids.append(torch.argmax(f @ cb.normalized().float().T, dim=1).view(B, L))
        return torch.stack(ids, dim=-1)

    def idx_to_f(self, ids: torch.Tensor) -> torch.Tensor:
        """B × L × n_sub ids → B × L × vocab_width: the normalised code rows, concatenated in sub-codebook order."""
        return torch.cat([F.embedding(ids[..., i], cb.normalized()) for i, cb in enumerate(self.codebooks)], dim=-1)


class UniTokTokenizer(Tokenizer):
    """UniTok's image path. Input/output range [-1, 1]; 16× downsampling; ids B × h × w × n_sub."""

    def __init__(self, *, model: str, img_size: int, vocab_size: int, vocab_width: int, num_codebooks: int,
                 quant_proj: str = "attn") -> None:
        super().__init__()
        if model not in VITAMIN_CONFIGS:
            raise ValueError(f"unknown ViTamin variant {model!r}; known: {', '.join(VITAMIN_CONFIGS)}")
        if img_size % 16:
            raise ValueError(f"img_size must be a multiple of 16 (16× downsampling), got {img_size}")
        cfg = VITAMIN_CONFIGS[model]
        width = cfg.embed_dim
        self.grid = (img_size // 16, img_size // 16)
        self.encoder = ViTaminEncoder(cfg)
        if quant_proj == "attn":
            heads = width // vocab_width
            self.quant_proj = AttnProjection(width, vocab_width, heads)
            self.post_quant_proj = AttnProjection(vocab_width, width, heads)
        elif quant_proj == "linear":
            self.quant_proj = nn.Linear(width, vocab_width)
            self.post_quant_proj = nn.Linear(vocab_width, width)
        else:
            raise ValueError(f"quant_proj must be 'attn' or 'linear', got {quant_proj!r}")
        self.quantizer = MultiCodebookQuantizer(vocab_size, vocab_width, num_codebooks)
        self.decoder = ViTaminDecoder(cfg)

        n, sub = num_codebooks, self.quantizer.sub_size
        self.layout = TokenLayout.grid(*self.grid, num_sub=n)
        self.info = TokenizerInfo(
            family=FAMILY,
            resolution=img_size,
            crop="adm",
            value_range="[-1,1]",
            vocab_size=sub,
            tokens_per_image=self.layout.tokens_per_image,
            quantizer="multi-codebook",
            paper=PAPER,
            code_license=CODE_LICENSE,
            weights_license=WEIGHTS_LICENSE,
            notes=(f"{n} sub-codebooks of {sub} l2-normalised {self.quantizer.sub_dim}-d codes (cosine), "
                   f"{n * sub} codes in all; vocab_size is per sub-token. Ids are B×h×w×{n} "
                   "(upstream img_to_idx gives B×n_sub×(h·w): ours = upstream.view(B,n,h,w).permute(0,2,3,1)). "
                   "Upstream inference preprocesses with Resize(int(1.125·size)) + CenterCrop(size), i.e. "
                   "Resize(288)+CenterCrop(256); tokbench feeds ADM centre-cropped images. Input x/255 in float32, "
                   "then 2x-1, as upstream's normalize_01_into_pm1. Upstream idx_to_img clamps to [-1,1]."),
        )

    # --- token spaces -------------------------------------------------------------------------------------------
    @property
    def token_spaces(self) -> list[CodebookSpace]:  # type: ignore[override]
        """One cosine space per sub-codebook, with the normalised rows the model assigns and decodes with
        (computed from the current weights, so it follows `load_state_dict`)."""
        return [CodebookSpace(cb.codebook.num_embeddings, cb.normalized().detach(), "cosine")
                for cb in self.quantizer.codebooks]

    # --- value range --------------------------------------------------------------------------------------------
    def to_model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 → [-1, 1] exactly as upstream: ToTensor (float32 /255) then x + x - 1."""
        self.check_images(images)
        if tuple(images.shape[-2:]) != (self.info.resolution, self.info.resolution):
            raise ValueError(f"{FAMILY} expects {self.info.resolution}×{self.info.resolution} images, "
                             f"got {tuple(images.shape[-2:])}")
        x = images.to(self.device, torch.float32).div(255)
        return x.add(x).add_(-1).to(self.compute_dtype)

    # --- encode / decode ----------------------------------------------------------------------------------------
    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """[-1,1] images → B × L × vocab_width pre-quantisation latent (not normalised)."""
        return self.quant_proj(self.encoder(x).float())

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        z = self.latent(x)
        B = z.shape[0]
        h, w = self.grid
        ids = self.quantizer.f_to_idx(z).view(B, h, w, self.quantizer.num_codebooks)
        feats = z.view(B, h, w, self.quantizer.num_codebooks, self.quantizer.sub_dim)
        return [ids], [feats]

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """B × L × vocab_width quantised latent (concatenated normalised codes) → native image, unclamped."""
        return self.decoder(self.post_quant_proj(codes), self.grid)

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = tokens.ids[0].to(self.device)
        B = ids.shape[0]
        codes = self.quantizer.idx_to_f(ids.reshape(B, -1, self.quantizer.num_codebooks))
        return self.decode_codes(codes)


# ----------------------------------------------------------------------------------------------------------------------
# Family: config → model, official checkpoint → state dict
# ----------------------------------------------------------------------------------------------------------------------
def build(config: dict) -> UniTokTokenizer:
    kw = config.get("constructor_kwargs", config)
    if int(kw.get("num_query", 0)) != 0:
        raise ValueError("UniTok with num_query > 0 (register tokens) is not supported; the released model uses 0")
    return UniTokTokenizer(
        model=kw["model"],
        img_size=int(kw["img_size"]),
        vocab_size=int(kw["vocab_size"]),
        vocab_width=int(kw["vocab_width"]),
        num_codebooks=int(kw["num_codebooks"]),
        quant_proj=kw.get("quant_proj", "attn"),
    )


def _unitok_state_dict(raw: Any) -> dict[str, torch.Tensor]:
    """The UniTok state dict inside the official file (`ckpt['trainer']['unitok']`), inside a flattened copy of it
    (`trainer.unitok.*`, as `tokbench convert` writes), or a flat state dict with upstream names (the fixtures)."""
    if not isinstance(raw, Mapping):
        raise CheckpointMismatchError(f"UniTok checkpoint is a {type(raw).__name__}, not a dict")
    trainer = raw.get("trainer")
    if isinstance(trainer, Mapping):
        if not isinstance(trainer.get("unitok"), Mapping):
            raise CheckpointMismatchError(f"UniTok checkpoint has 'trainer' without 'unitok' (keys: {list(trainer)[:10]})")
        return flatten_tensors(trainer["unitok"])
    flat = flatten_tensors(raw)
    pref = "trainer.unitok."
    if any(k.startswith(pref) for k in flat):
        return {k[len(pref):]: v for k, v in flat.items() if k.startswith(pref)}
    for pref in ("state_dict.", "model."):  # plain wrappers
        if flat and all(k.startswith(pref) for k in flat):
            return {k[len(pref):]: v for k, v in flat.items()}
    return flat


# Fields of the file's `args` that change the image path; img_size changes no shape, so strict loading alone would
# not notice a mismatch there.
_ARCH_FIELDS = ("model", "img_size", "vocab_size", "vocab_width", "num_codebooks", "quant_proj", "num_query")


def check_args(raw: Any, config: dict) -> None:
    """The official file carries its training config (`ckpt['args']`); refuse a config that contradicts it."""
    args = raw.get("args") if isinstance(raw, Mapping) else None
    if not isinstance(args, Mapping):
        return
    kw = config.get("constructor_kwargs", config)
    bad = [f"{k}: checkpoint {args[k]!r}, config {kw[k]!r}" for k in _ARCH_FIELDS
           if k in args and k in kw and args[k] != kw[k]]
    if bad:
        raise CheckpointMismatchError("UniTok checkpoint args disagree with the config: " + "; ".join(bad))


def checkpoint_filter(raw: Any, config: dict) -> dict[str, torch.Tensor]:
    """Official UniTok checkpoint → our state dict: check its `args` against the config, unwrap `trainer.unitok`,
    drop the CLIP text branch (text tower, fc_norm, projection, logit_scale) and the `vocab_usage` statistics; every
    other key keeps its upstream name."""
    check_args(raw, config)
    sd = _unitok_state_dict(raw)
    return {k: v for k, v in sd.items()
            if not k.startswith(_DROP_PREFIXES) and k not in _DROP_KEYS and not k.endswith(_DROP_SUFFIXES)}


register_family(Family(
    name=FAMILY,
    build=build,
    checkpoint_filter=checkpoint_filter,
    description="UniTok multi-codebook VQ (8 × 4096 cosine sub-codebooks) on a ViTamin encoder/decoder",
))

register_preset(Preset(
    name="unitok",
    family=FAMILY,
    config={"constructor_kwargs": dict(OFFICIAL_KWARGS)},
    weights="hf://FoundationVision/unitok_tokenizer/unitok_tokenizer.pth",
    manual_url="https://huggingface.co/FoundationVision/unitok_tokenizer",
    info={
        "paper": PAPER,
        "code_license": CODE_LICENSE,
        "weights_license": WEIGHTS_LICENSE,
        "weight_source": "hf://FoundationVision/unitok_tokenizer/unitok_tokenizer.pth",
    },
    description="UniTok release (ViTamin-L, 16×16×8 tokens, 8 × 4096 codes; rFID 0.41 reported)",
))

BENCH_PRESETS = ["unitok"]
