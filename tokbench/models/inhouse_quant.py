"""The quantiser of tokbench's in-house tokenizers: factorised, optionally L2-normalised codes (ViT-VQGAN §3.2).

The encoder output (width C) is projected by a linear map to a low lookup dimension d (8–32), where the nearest code
is found; the chosen code is projected back up to the decoder width by a second linear map. With `l2_norm` both the
projected feature and the codes are L2-normalised, so the assignment is cosine (the largest single gain in the
ViT-VQGAN ablation). With `ema` the codebook is not trained by the codebook loss but by exponential moving averages of
the assigned features (VQ-VAE-2 style); the commitment loss still trains the encoder.

The trainer (tokenizer_training) drives the steps one by one (clean assignment, VQ losses, Reg-VQ stochastic assignment,
latent perturbation, straight-through), so this module only offers the pieces, not a fused forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FactorizedVQ(nn.Module):
    """Codebook of `codebook_size` codes in a `lookup_dim`-d space with in/out projections.

    Parameters / buffers (state-dict keys): `proj_in.{weight,bias}`, `embedding.weight` (raw codes, N x d),
    `proj_out.{weight,bias}`, and with `ema`: `ema_cluster_size` (N), `ema_embed_sum` (N x d).
    """

    def __init__(self, in_dim: int, out_dim: int, codebook_size: int, lookup_dim: int, *, l2_norm: bool = True,
                 ema: bool = False, ema_decay: float = 0.99, ema_eps: float = 1e-5) -> None:
        super().__init__()
        self.codebook_size, self.lookup_dim = int(codebook_size), int(lookup_dim)
        self.l2_norm, self.ema, self.ema_decay, self.ema_eps = bool(l2_norm), bool(ema), float(ema_decay), float(ema_eps)
        self.proj_in = nn.Linear(in_dim, lookup_dim)
        self.embedding = nn.Embedding(codebook_size, lookup_dim)
        nn.init.normal_(self.embedding.weight)  # ViT-VQGAN: codebook initialised from a normal distribution
        self.proj_out = nn.Linear(lookup_dim, out_dim)
        if self.ema:
            self.embedding.weight.requires_grad_(False)
            self.register_buffer("ema_cluster_size", torch.ones(codebook_size))
            self.register_buffer("ema_embed_sum", self.embedding.weight.detach().clone())

    @property
    def metric(self) -> str:
        return "cosine" if self.l2_norm else "l2"

    def prep(self, z: torch.Tensor) -> torch.Tensor:
        """The feature as it is compared with the codes (normalised when the codebook is)."""
        return F.normalize(z, dim=-1) if self.l2_norm else z

    def codes(self) -> torch.Tensor:
        """The effective code vectors (N x d) exactly as the assignment uses them."""
        w = self.embedding.weight
        return F.normalize(w, dim=-1) if self.l2_norm else w

    def neg_sqdist(self, zp: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """−‖ẑ − ê‖² for prepared features `zp` (… x d) against every code: … x N (higher = nearer). For unit vectors
        this ranks exactly as cosine similarity."""
        c = self.codes() if codes is None else codes
        c = c.to(zp.dtype)
        flat = zp.reshape(-1, zp.shape[-1])
        d = (flat * flat).sum(-1, keepdim=True) - 2 * flat @ c.T + (c * c).sum(-1)[None]
        return (-d).reshape(*zp.shape[:-1], c.shape[0])

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code ids of raw projected features z (… x d)."""
        return self.neg_sqdist(self.prep(z).float()).argmax(-1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.codes())

    def vq_losses(self, zp: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook loss ‖sg[ẑ] − e‖², commitment loss ‖ẑ − sg[e]‖²), both means, on the given (clean) ids.
        With EMA updates the codebook loss is a zero (the codebook moves by `ema_update`)."""
        e = self.lookup(ids)
        commit = F.mse_loss(zp, e.detach())
        codebook = zp.new_zeros(()) if self.ema else F.mse_loss(e, zp.detach())
        return codebook, commit

    @torch.no_grad()
    def ema_update(self, zp: torch.Tensor, ids: torch.Tensor) -> None:
        """One EMA step of cluster sizes and sums (all-reduced across processes when distributed)."""
        if not self.ema:
            return
        flat = zp.detach().reshape(-1, zp.shape[-1]).float()
        onehot = F.one_hot(ids.reshape(-1), self.codebook_size).to(flat.dtype)
        counts, sums = onehot.sum(0), onehot.T @ flat
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.ema_cluster_size.mul_(self.ema_decay).add_(counts, alpha=1 - self.ema_decay)
        self.ema_embed_sum.mul_(self.ema_decay).add_(sums, alpha=1 - self.ema_decay)
        n = self.ema_cluster_size.sum()
        size = (self.ema_cluster_size + self.ema_eps) / (n + self.codebook_size * self.ema_eps) * n
        self.embedding.weight.copy_(self.ema_embed_sum / size[:, None])
