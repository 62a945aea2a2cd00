"""Streaming float64 feature statistics that merge exactly across batches, shards and processes, and the Fréchet
distance (scipy `sqrtm` with the ADM/TTUR eps fallback, float64)."""

from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

SQRT_METHOD = "scipy.linalg.sqrtm (float64; eps=1e-6 offset fallback as in ADM/TTUR)"


class StatsAccumulator:
    """n, Σx and Σxxᵀ in float64. `update` per batch, `merge` across shards, `all_reduce` across processes."""

    def __init__(self, dim: int, device: str | torch.device = "cpu"):
        self.dim = dim
        self.n = 0
        self.sum = torch.zeros(dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, features: torch.Tensor) -> None:
        f = features.detach().to(self.sum.device, torch.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features of shape {tuple(f.shape)} for a {self.dim}-d accumulator")
        if not torch.isfinite(f).all():
            raise FloatingPointError("non-finite features (NaN/inf images?)")
        self.n += int(f.shape[0])
        self.sum += f.sum(0)
        self.outer += f.T @ f

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        if other.dim != self.dim:
            raise ValueError("cannot merge accumulators of different dimension")
        self.n += other.n
        self.sum += other.sum.to(self.sum.device)
        self.outer += other.outer.to(self.outer.device)
        return self

    def all_reduce(self) -> "StatsAccumulator":
        """Sum over all processes of the default torch.distributed group (no-op when not distributed)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.sum.device)
            for t in (n, self.sum, self.outer):
                dist.all_reduce(t)
            self.n = int(n.item())
        return self

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, have {self.n}")
        mu = self.sum / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.cpu().numpy(), cov.cpu().numpy()

    def state_dict(self) -> dict:
        return {"dim": self.dim, "n": self.n, "sum": self.sum.cpu(), "outer": self.outer.cpu()}

    def load_state_dict(self, sd: dict) -> "StatsAccumulator":
        self.dim, self.n = int(sd["dim"]), int(sd["n"])
        self.sum = sd["sum"].to(self.sum.device, torch.float64).clone()
        self.outer = sd["outer"].to(self.outer.device, torch.float64).clone()
        return self

    @classmethod
    def from_state_dict(cls, sd: dict) -> "StatsAccumulator":
        return cls(int(sd["dim"])).load_state_dict(sd)

    @classmethod
    def from_mean_cov(cls, mu: np.ndarray, sigma: np.ndarray, n: int) -> "StatsAccumulator":
        """Rebuild the sums from (mu, sigma, n), e.g. from a statistics file."""
        acc = cls(int(mu.shape[0]))
        m = torch.as_tensor(mu, dtype=torch.float64)
        acc.n = int(n)
        acc.sum = m * n
        acc.outer = torch.as_tensor(sigma, dtype=torch.float64) * (n - 1) + n * torch.outer(m, m)
        return acc


def frechet_distance(a, b, eps: float = 1e-6) -> float:
    """FID between two accumulators or (mu, sigma) pairs, in float64.

    d² = |mu1 − mu2|² + tr(S1 + S2 − 2·sqrtm(S1·S2)); when sqrtm is not finite, the ADM/TTUR fallback adds eps·I to
    both covariances; a negligible imaginary part is dropped (a large one is an error)."""
    from scipy import linalg

    mu1, s1 = a.mean_cov() if isinstance(a, StatsAccumulator) else (np.asarray(a[0]), np.asarray(a[1]))
    mu2, s2 = b.mean_cov() if isinstance(b, StatsAccumulator) else (np.asarray(b[0]), np.asarray(b[1]))
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different shapes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    with np.errstate(all="ignore"):
        covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        log.warning("FID: singular product; adding %g to the covariance diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
