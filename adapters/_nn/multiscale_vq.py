"""VAR-style multi-scale residual vector quantiser (shared by the `var` and `imagefolder` adapters).

The latent f (B×C×H×W) is explained coarse to fine: at scale k the remaining residual is area-pooled to pn_k×pn_k,
each position picks its nearest code, the code map is bicubic-upsampled back to H×W, refined by one of a few
"Φ" 3×3 convolutions (h ← (1-r)·h + r·conv(h)), added to the running reconstruction and subtracted from the residual.
Decoding from ids rebuilds the same sum. Written from the VAR paper / fixture description, keys as upstream
(`embedding.weight`, `quant_resi.qresi_ls.<j>.{weight,bias}`).

Two families differ only in the assignment rule: VAR uses squared L2 on raw codes, ImageFolder picks by cosine on
L2-normalised vectors but looks up the *raw* rows.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokbench.api import TokenGroup, TokenLayout


def phi_index_table(num_scales: int, num_phi: int) -> list[int]:
    """Which Φ conv each scale uses: argmin |ticks - k/(K-1)| with ticks = linspace(1/(3n), 1-1/(3n), n).

    Several scales sit on exact ties in real arithmetic; upstream resolves them in float64 numpy, so do the same
    (never float32): for 10 scales and 4 convs this gives [0,0,1,1,1,2,2,3,3,3]."""
    if num_scales < 2:
        return [0] * num_scales
    ticks = np.linspace(1 / 3 / num_phi, 1 - 1 / 3 / num_phi, num_phi)
    return [int(np.argmin(np.abs(ticks - si / (num_scales - 1)))) for si in range(num_scales)]


def multiscale_layout(v_patch_nums: Sequence[int], branches: int = 1) -> TokenLayout:
    """One grid group per (branch, scale), branch-major: group k = branch·S + scale, with spaces=(branch,)."""
    return TokenLayout(tuple(TokenGroup((int(pn), int(pn)), "grid", si, (b,)) for b in range(branches)
                             for si, pn in enumerate(v_patch_nums)))


class PhiConv(nn.Conv2d):
    """Residual refinement of an upsampled code map: (1-r)·h + r·conv3x3(h)."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__(dim, dim, kernel_size=3, stride=1, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return h.mul(1 - self.ratio) + super().forward(h).mul_(self.ratio)


class PhiSet(nn.Module):
    """`num_phi` Φ convs shared over the scales (upstream `PhiPartiallyShared`: key prefix `qresi_ls.<j>`)."""

    def __init__(self, dim: int, ratio: float, num_phi: int) -> None:
        super().__init__()
        self.qresi_ls = nn.ModuleList([PhiConv(dim, ratio) for _ in range(num_phi)])

    def __getitem__(self, j: int) -> PhiConv:
        return self.qresi_ls[j]  # type: ignore[return-value]


class MultiScaleResidualVQ(nn.Module):
    """Residual quantiser over `v_patch_nums` scales with one codebook.

    metric: "l2" (VAR: argmin |z|²+|e|²−2z·e on raw vectors) or "cosine" (ImageFolder: argmax of the dot product
    of L2-normalised vectors; the looked-up rows stay raw).
    """

    def __init__(self, vocab_size: int, dim: int, v_patch_nums: Sequence[int], *, quant_resi: float = 0.5,
                 share_quant_resi: int = 4, metric: Literal["l2", "cosine"] = "l2") -> None:
        super().__init__()
        if share_quant_resi < 2:
            raise NotImplementedError(
                f"share_quant_resi={share_quant_resi}: only partially shared Φ convs (>= 2, as in every released "
                "VAR / ImageFolder model) are implemented")
        if abs(quant_resi) <= 1e-6:
            raise NotImplementedError("quant_resi=0 (no Φ conv) is not used by any released model")
        self.vocab_size = vocab_size
        self.dim = dim
        self.v_patch_nums = tuple(int(p) for p in v_patch_nums)
        self.metric = metric
        self.embedding = nn.Embedding(vocab_size, dim)
        self.quant_resi = PhiSet(dim, quant_resi, share_quant_resi)
        self.phi_index = phi_index_table(len(self.v_patch_nums), share_quant_resi)

    @property
    def num_scales(self) -> int:
        return len(self.v_patch_nums)

    def effective_codes(self) -> torch.Tensor:
        """The code vectors the assignment compares against (raw rows; cosine normalises them in the metric)."""
        return self.embedding.weight.detach()

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z: N×C → ids N."""
        e = self.embedding.weight
        if self.metric == "cosine":  # ImageFolder: argmax of the dot product of normalised vectors
            return (F.normalize(z, dim=1) @ F.normalize(e, dim=1).T).argmax(dim=1)
        d = (z * z).sum(1, keepdim=True) + (e * e).sum(1)[None, :]
        d = torch.addmm(d, z, e.T, beta=1, alpha=-2)
        return d.argmin(dim=1)

    def _step(self, si: int, idx: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """ids B×pn×pn of scale si → its contribution to f_hat (B×C×H×W)."""
        h = self.embedding(idx).permute(0, 3, 1, 2).contiguous()
        if si != self.num_scales - 1:
            h = F.interpolate(h, size=size, mode="bicubic").contiguous()
        return self.quant_resi[self.phi_index[si]](h)

    def encode(self, f: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """f: B×C×H×W → (ids per scale B×pn×pn, quantiser inputs per scale B×pn×pn×C, final f_hat)."""
        B, C, H, W = f.shape
        if (H, W) != (self.v_patch_nums[-1],) * 2:
            raise ValueError(f"latent of {H}x{W} does not match the last scale {self.v_patch_nums[-1]}")
        f_rest = f.clone()
        f_hat = torch.zeros_like(f)
        ids, feats = [], []
        for si, pn in enumerate(self.v_patch_nums):
            z = f_rest if (pn, pn) == (H, W) else F.interpolate(f_rest, size=(pn, pn), mode="area")
            z = z.permute(0, 2, 3, 1).contiguous()  # B×pn×pn×C
            idx = self._nearest(z.reshape(-1, C)).view(B, pn, pn)
            h = self._step(si, idx, (H, W))
            f_hat.add_(h)
            f_rest.sub_(h)
            ids.append(idx)
            feats.append(z)
        return ids, feats, f_hat

    def ids_to_fhat(self, ids: Sequence[torch.Tensor]) -> torch.Tensor:
        """ids per scale (B×pn×pn) → f_hat (B×C×H×W): the sum of every scale's Φ-refined, upsampled code map."""
        if len(ids) != self.num_scales:
            raise ValueError(f"{len(ids)} id maps for {self.num_scales} scales")
        H = W = self.v_patch_nums[-1]
        f_hat = None
        for si, idx in enumerate(ids):
            h = self._step(si, idx, (H, W))
            f_hat = h if f_hat is None else f_hat + h
        return f_hat
