"""Statistics files and the reference-statistics cache.

A cache entry is keyed by a hash of the data set's content (every image's bytes and the list order) and the full
protocol (extractor, its weights hash, resolution, crop, uint8 rule), so a second run never recomputes and a changed
set never reuses stale statistics; the key and a content checksum are stored inside the entry (`cache_io`). ADM-style `.npz` files (`mu`, `sigma`, e.g. VIRTUAL_imagenet256_labeled.npz) are
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

from ..data import iter_batches
from .cache_io import read_checked_stats, stats_checksum, write_stats_npz
from .extractors import FeatureExtractor, cache_dir
from .stats import StatsAccumulator

log = logging.getLogger(__name__)


def protocol_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def stats_arrays(acc: StatsAccumulator) -> dict:
    mu, sigma = acc.mean_cov()
    arrays = {"mu": mu, "sigma": sigma, "n": np.int64(acc.n), "sum": acc.sum.cpu().numpy(),
              "outer": acc.outer.cpu().numpy()}
    if acc.has_features:
        arrays["features"] = acc.features().numpy()
    return arrays


def save_stats(path: str | os.PathLike, acc: StatsAccumulator, protocol: dict, cache_key: str | None = None) -> None:
    """npz with mu, sigma, n and the protocol as JSON, plus the exact sums (merged statistics stay exact), the feature
    rows when kept (n ≤ d or KID), a content checksum and, for cache entries, the cache key."""
    write_stats_npz(path, stats_arrays(acc), protocol, cache_key)


def _accumulator(f, mu: np.ndarray) -> StatsAccumulator | None:
    if not ("sum" in f and "outer" in f and "n" in f):
        return None
    feats = torch.from_numpy(np.asarray(f["features"], dtype=np.float64)) if "features" in f else None
    return StatsAccumulator.from_state_dict({
        "dim": int(mu.shape[0]), "n": int(f["n"]), "sum": torch.from_numpy(np.asarray(f["sum"], dtype=np.float64)),
        "outer": torch.from_numpy(np.asarray(f["outer"], dtype=np.float64)), "features": feats,
        "keep": "all" if feats is not None and int(f["n"]) > mu.shape[0] else "auto"})


def load_npz_stats(path: str | os.PathLike) -> tuple[StatsAccumulator | None, np.ndarray, np.ndarray, dict]:
    """(accumulator or None, mu, sigma, protocol) from a tokbench or ADM `.npz`. ADM reference batches carry only
    mu/sigma (no n): the accumulator is None and the protocol says so."""
    path = Path(path)
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - truncated, empty, not an npz
        raise ValueError(f"{path}: not a readable .npz statistics file ({type(e).__name__}: {e})") from e
    with f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path} has no 'mu'/'sigma' arrays (keys: {list(f.keys())})")
        arrays = {k: f[k] for k in f.files}
    if "checksum" in arrays and str(arrays["checksum"]) != stats_checksum(arrays):
        raise ValueError(f"{path}: content checksum mismatch (the file was altered or corrupted)")
    mu, sigma = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
    protocol = json.loads(str(arrays["protocol"])) if "protocol" in arrays else {
        "source": "external npz (ADM-style)", "file": path.name}
    acc = _accumulator(arrays, mu)
    protocol = dict(protocol)
    protocol.setdefault("stats_file_sha256", hashlib.sha256(path.read_bytes()).hexdigest())
    return acc, mu, sigma, protocol


def compute_stats(batches, extractor: FeatureExtractor, *, total: int | None = None, desc: str = "features",
                  keep: str = "auto") -> StatsAccumulator:
    """Stream uint8 batches (tensors, or objects with `.images`) through the extractor into one accumulator
    (`keep="all"` keeps every feature row, for KID)."""
    acc = StatsAccumulator(extractor.dim, keep=keep)
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
                    use_cache: bool = True, keep: str = "auto") -> tuple[StatsAccumulator, dict]:
    """(accumulator, protocol) of a data set, from the on-disk cache when the content and protocol match.

    A cache entry carries its key and a checksum inside; a truncated, empty, foreign or altered one is named in a log
    line, discarded and rebuilt. `keep="all"` (KID) needs the entry's feature rows: an entry without them is rebuilt."""
    key, proto = reference_key(dataset, extractor)
    root = Path(cache) if cache is not None else cache_dir() / "reference_stats"
    path = root / f"{key}.npz"
    proto = dict(proto, cache_key=key)
    expected_n = len(dataset) - len(getattr(dataset, "bad_images", []))
    if use_cache and path.exists():
        arrays = read_checked_stats(path, key)
        acc = _accumulator(arrays, arrays["mu"]) if arrays is not None else None
        if acc is not None and acc.n == expected_n and (keep != "all" or acc.has_features or acc.n == 0):
            log.info("reference statistics from cache %s", path)
            return acc, dict(proto, cache="hit")
        if acc is not None:
            log.info("reference statistics %s lack what is needed now (n=%d, features=%s): recomputing", path, acc.n,
                     acc.has_features)
    acc = compute_stats(iter_batches(dataset, batch_size), extractor, total=len(dataset), desc="reference", keep=keep)
    if use_cache and not getattr(dataset, "bad_images", []):
        save_stats(path, acc, proto, cache_key=key)
    return acc, dict(proto, cache="miss")
