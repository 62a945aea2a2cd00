"""Metrics other than FID: codebook statistics (usage, perplexity, entropy, per-256-image usage) and PSNR/SSIM."""

from .codebook import CodebookStats, histogram_stats
from .image import PSNR_PROTOCOL, SSIM_PROTOCOL, ImageQuality, psnr, ssim

__all__ = ["CodebookStats", "histogram_stats", "ImageQuality", "psnr", "ssim", "PSNR_PROTOCOL", "SSIM_PROTOCOL"]
