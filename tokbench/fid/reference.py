"""Statistics files and the reference-statistics cache.

A cache entry is keyed by a hash of the data set's content (every image's bytes and the list order) and the full
protocol (extractor, its weights hash, resolution, crop, uint8 rule), so a second run never recomputes and a changed
set never reuses stale statistics. ADM-style `.npz` files (`mu`, `sigma`, e.g. VIRTUAL_imagenet256_labeled.npz) are
read as references too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .extractors import FeatureExtractor, cache_dir
from .stats import StatsAccumulator

log = logging.getLogger(__name__)


def protocol_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def save_stats(path: str | os.PathLike, acc: StatsAccumulator, protocol: dict) -> None:
    """npz with mu, sigma, n and the protocol as JSON (plus the exact sums, so merged statistics stay exact)."""
    mu, sigma = acc.mean_cov()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma, n=np.int64(acc.n), sum=acc.sum.cpu().numpy(), outer=acc.outer.cpu().numpy(),
             protocol=np.array(json.dumps(protocol, sort_keys=True, default=str)))
    os.replace(tmp, path)


def load_npz_stats(path: str | os.PathLike) -> tuple[StatsAccumulator | None, np.ndarray, np.ndarray, dict]:
    """(accumulator or None, mu, sigma, protocol) from a tokbench or ADM `.npz`. ADM reference batches carry only
    mu/sigma (no n): the accumulator is None and the protocol says so."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} has no 'mu'/'sigma' arrays (keys: {list(f.keys())})")
        mu, sigma = f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
        protocol = json.loads(str(f["protocol"])) if "protocol" in f else {"source": "external npz (ADM-style)",
                                                                           "file": path.name}
        acc = None
        if "sum" in f and "outer" in f and "n" in f:
            acc = StatsAccumulator(int(mu.shape[0]))
            acc.n = int(f["n"])
            acc.sum = torch.from_numpy(f["sum"].astype(np.float64))
            acc.outer = torch.from_numpy(f["outer"].astype(np.float64))
    protocol = dict(protocol)
    protocol.setdefault("stats_file_sha256", hashlib.sha256(path.read_bytes()).hexdigest())
    return acc, mu, sigma, protocol


def compute_stats(batches, extractor: FeatureExtractor, *, total: int | None = None, desc: str = "features") -> StatsAccumulator:
    """Stream uint8 batches (tensors, or objects with `.images`) through the extractor into one accumulator."""
    acc = StatsAccumulator(extractor.dim)
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=None) as bar:
        for b in batches:
            imgs = b.images if hasattr(b, "images") else b
            if imgs.numel() == 0:
                continue
            acc.update(extractor(imgs))
            bar.update(int(imgs.shape[0]))
    return acc


def reference_key(dataset, extractor: FeatureExtractor) -> tuple[str, dict]:
    proto = {"data": dataset.describe(), "extractor": extractor.protocol, "uint8": "round-half-up"}
    return protocol_hash(proto), proto


def reference_stats(dataset, extractor: FeatureExtractor, *, batch_size: int = 50, cache: str | os.PathLike | None = None,
                    use_cache: bool = True) -> tuple[StatsAccumulator, dict]:
    """(accumulator, protocol) of a data set, from the on-disk cache when the content and protocol match."""
    from ..data import iter_batches

    key, proto = reference_key(dataset, extractor)
    root = Path(cache) if cache is not None else cache_dir() / "reference_stats"
    path = root / f"{key}.npz"
    proto = dict(proto, cache_key=key)
    if use_cache and path.exists():
        acc, _, _, _ = load_npz_stats(path)
        if acc is not None and acc.n == len(dataset) - len(getattr(dataset, "bad_images", [])):
            log.info("reference statistics from cache %s", path)
            return acc, dict(proto, cache="hit")
    acc = compute_stats(iter_batches(dataset, batch_size), extractor, total=len(dataset), desc="reference")
    if use_cache and not getattr(dataset, "bad_images", []):
        save_stats(path, acc, proto)
    return acc, dict(proto, cache="miss")
