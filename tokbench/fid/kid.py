"""Kernel Inception Distance: torch-fidelity 0.4.0's unbiased MMD² estimator with the cubic polynomial kernel
k(x, y) = (x·y / d + 1)³, averaged over random subsets drawn the way torch-fidelity draws them
(`numpy.random.RandomState(seed).choice(n, size, replace=False)`, first side then second, per subset).

KID is unbiased at every N, which is why it is the statistic to read at the sample sizes an offline run affords (FID
is biased upward when N is small). The subset size is min(1000, n₁, n₂) (torch-fidelity's default 1000 needs ≥ 1000
images); subset size, count, seed and kernel go into every record.
"""

from __future__ import annotations

import numpy as np
import torch

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's rng_seed default


def kid_protocol(n1: int, n2: int, subsets: int = KID_SUBSETS, subset_size: int | None = None,
                 seed: int = KID_SEED) -> dict:
    size = min(KID_SUBSET_SIZE if subset_size is None else subset_size, n1, n2)
    return {"estimator": "unbiased MMD² (torch-fidelity 0.4.0 kid_features_to_metric)",
            "kernel": "polynomial (x·y/d + 1)^3", "subsets": subsets, "subset_size": size, "seed": seed,
            "sampling": "numpy RandomState(seed).choice without replacement, side 1 then side 2 per subset"}


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    m = x.shape[0]
    k_xx = (x @ x.T / d + 1) ** 3
    k_yy = (y @ y.T / d + 1) ** 3
    k_xy = (x @ y.T / d + 1) ** 3
    kt_xx = k_xx.sum(axis=1) - np.diagonal(k_xx)
    kt_yy = k_yy.sum(axis=1) - np.diagonal(k_yy)
    return float((kt_xx.sum() + kt_yy.sum()) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kernel_inception_distance(f1, f2, subsets: int = KID_SUBSETS, subset_size: int | None = None,
                              seed: int = KID_SEED) -> dict:
    """{kid (mean over subsets), kid_std, protocol} from two feature matrices (n × d tensors or arrays, float64)."""
    a = f1.detach().cpu().numpy() if torch.is_tensor(f1) else np.asarray(f1)
    b = f2.detach().cpu().numpy() if torch.is_tensor(f2) else np.asarray(f2)
    a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs two n × d feature matrices of the same d, got {a.shape} and {b.shape}")
    proto = kid_protocol(len(a), len(b), subsets, subset_size, seed)
    size = proto["subset_size"]
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per side, have {len(a)} and {len(b)}")
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        mmds[i] = _mmd2_unbiased(x, y)
    return {"kid": float(np.mean(mmds)), "kid_std": float(np.std(mmds)), "protocol": proto}
