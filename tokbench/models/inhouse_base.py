"""Common base of tokbench's in-house VQ tokenizers (ViT and conv variants).

A subclass provides `encode_hidden(x) -> B x h x w x C` (encoder output on the token grid) and
`decode_hidden(h) -> B x 3 x H x W` (decoder from up-projected codes on the token grid), plus `last_layer()` (the
weight the adversarial adaptive weight is measured on). Everything else — quantiser, token space, encode/decode,
checkpoint metadata — is shared. Configs are `{"constructor_kwargs": {...}}` dicts, as for the adapters, so that a
trained checkpoint carries its config in its safetensors metadata and `tokbench.load_tokenizer(path)` rebuilds it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..api import CodebookSpace, TokenLayout, Tokenizer, TokenizerInfo, Tokens
from ..weights import unwrap_state_dict
from .inhouse_quant import FactorizedVQ

LICENSE = "Apache-2.0 (tokbench)"


class InhouseVQTokenizer(Tokenizer):
    """Shared encode/decode around a `FactorizedVQ`; grid layout of `grid x grid` tokens."""

    family: str = ""

    def __init__(self, *, image_size: int, grid: int, hidden_in: int, hidden_out: int, codebook_size: int,
                 lookup_dim: int, l2_norm: bool, ema_codebook: bool, ema_decay: float, quantizer: str,
                 notes: str = "") -> None:
        super().__init__()
        self.image_size, self.grid = int(image_size), int(grid)
        self.quantize = FactorizedVQ(hidden_in, hidden_out, codebook_size, lookup_dim, l2_norm=l2_norm,
                                     ema=ema_codebook, ema_decay=ema_decay)
        self.layout = TokenLayout.grid(self.grid, self.grid)
        self.info = TokenizerInfo(
            family=self.family, preset=None, resolution=self.image_size, crop="adm", value_range="[-1,1]",
            vocab_size=int(codebook_size), tokens_per_image=self.grid * self.grid, quantizer=quantizer,
            paper="tokbench in-house (ViT-VQGAN arXiv 2110.04627 design; RobustTok arXiv 2503.08354 training)",
            code_license=LICENSE, weights_license="none published (train with `tokbench train-robust`)",
            weight_source="none", notes=notes)

    # --- subclass hooks ---------------------------------------------------------------------------------------------
    def encode_hidden(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode_hidden(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_layer(self) -> torch.Tensor:
        raise NotImplementedError

    # --- pieces the trainer uses ------------------------------------------------------------------------------------
    def encode_features(self, x: torch.Tensor) -> torch.Tensor:
        """Native image → projected (un-normalised) lookup features, B x h x w x d."""
        return self.quantize.proj_in(self.encode_hidden(x))

    def decode_codes(self, q: torch.Tensor) -> torch.Tensor:
        """Lookup-space codes B x h x w x d (possibly straight-through) → native image, unclamped."""
        return self.decode_hidden(self.quantize.proj_out(q))

    # --- Tokenizer API ----------------------------------------------------------------------------------------------
    @property
    def token_spaces(self) -> list:  # type: ignore[override]
        return [CodebookSpace(self.info.vocab_size, codes=self.quantize.codes().detach().float(),
                              metric=self.quantize.metric)]

    @token_spaces.setter
    def token_spaces(self, value) -> None:  # the base class may assign; the codes always come from the weights
        pass

    def _encode(self, x: torch.Tensor):
        z = self.encode_features(x).float()
        ids = self.quantize.assign(z)
        return [ids], [z]

    def decode_raw(self, tokens: Tokens) -> torch.Tensor:
        self.check_tokens(tokens)
        ids = tokens.ids[0].to(self.device)
        return self.decode_codes(self.quantize.lookup(ids))


def inhouse_checkpoint_filter(raw, config: dict) -> dict[str, torch.Tensor]:
    """Our checkpoints are already our state dicts; accept the trainer's full resume file too (its EMA copy wins)."""
    if isinstance(raw, dict) and "ema" in raw and isinstance(raw["ema"], dict):
        return unwrap_state_dict(raw["ema"])
    sd = unwrap_state_dict(raw)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def constructor_kwargs(config: dict) -> dict:
    if "constructor_kwargs" not in config:
        raise ValueError("in-house tokenizer config needs a 'constructor_kwargs' dict")
    return dict(config["constructor_kwargs"])


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear/conv init (timm habit); LayerNorm/GroupNorm to identity."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
