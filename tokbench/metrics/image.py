"""PSNR and SSIM of uint8 image pairs, batched in torch (float64), matching scikit-image's defaults.

SSIM follows `skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=255)`: 7x7 uniform window,
K1 = 0.01, K2 = 0.03, sample covariance (N/(N-1)), the mean over the window-valid interior, averaged over channels.
PSNR is per image over all pixels and channels, 10·log10(255² / MSE); identical images give +inf and are counted
separately so that one lossless image does not make the mean infinite.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_PROTOCOL = "skimage.metrics.structural_similarity defaults: 7x7 uniform window, K1=0.01, K2=0.03, " \
                "sample covariance, data_range=255, mean over RGB channels"
PSNR_PROTOCOL = "per image 10*log10(255^2/MSE) on uint8 pairs, mean over images with MSE>0"


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 B x C x H x W pairs (inf where identical)."""
    mse = (a.to(torch.float64) - b.to(torch.float64)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM of uint8 B x C x H x W pairs (scikit-image's default definition, channels averaged)."""
    if min(a.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(a.shape[-2:])} are smaller than the {win_size}x{win_size} SSIM window")
    x, y = a.to(torch.float64), b.to(torch.float64)
    B, C, H, W = x.shape
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # B x 5C x H x W
    m = F.avg_pool2d(stack, win_size, stride=1)  # valid interior = skimage's map after cropping (win-1)/2
    ux, uy, uxx, uyy, uxy = m.split(C, dim=1)
    np_ = win_size * win_size
    cov = np_ / (np_ - 1)
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * 255.0) ** 2, (k2 * 255.0) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(2, 3)).mean(1)


class ImageQuality:
    """Streaming mean PSNR / SSIM over a data set (float64 sums; merge across shards by summing)."""

    def __init__(self) -> None:
        self.n = 0
        self.psnr_sum = 0.0
        self.psnr_n = 0  # images with MSE > 0
        self.lossless = 0
        self.ssim_sum = 0.0

    def update(self, ref: torch.Tensor, rec: torch.Tensor, want_psnr: bool = True, want_ssim: bool = True) -> None:
        self.n += int(ref.shape[0])
        if want_psnr:
            p = psnr(ref, rec)
            fin = torch.isfinite(p)
            self.psnr_sum += float(p[fin].sum())
            self.psnr_n += int(fin.sum())
            self.lossless += int((~fin).sum())
        if want_ssim:
            self.ssim_sum += float(ssim(ref, rec).sum())

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([self.n, self.psnr_sum, self.psnr_n, self.lossless, self.ssim_sum], dtype=torch.float64)

    def load_tensor(self, t: torch.Tensor) -> "ImageQuality":
        n, ps, pn, ll, ss = t.tolist()
        self.n, self.psnr_sum, self.psnr_n, self.lossless, self.ssim_sum = int(n), ps, int(pn), int(ll), ss
        return self

    def state_dict(self) -> dict:
        return {"values": self.as_tensor()}

    def load_state_dict(self, sd: dict) -> "ImageQuality":
        return self.load_tensor(sd["values"])

    def summary(self) -> dict:
        return {"psnr": self.psnr_sum / self.psnr_n if self.psnr_n else (math.inf if self.lossless else None),
                "psnr_lossless_images": self.lossless,
                "ssim": self.ssim_sum / self.n if self.n else None, "n": self.n,
                "psnr_definition": PSNR_PROTOCOL, "ssim_definition": SSIM_PROTOCOL}
