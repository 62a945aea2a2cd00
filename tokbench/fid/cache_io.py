"""Self-checking FID cache entries: each file carries its own key (what it was built for) and a checksum of its
content, so a truncated, empty, foreign or altered entry is named in a log line, discarded and rebuilt, never used.

- Inception state dicts (converted or random weights): a torch file that torch-fidelity loads as it is; the key,
  provenance and a sha256 over every tensor live in the state dict's `_metadata["tokbench"]` (ignored by
  `load_state_dict`).
- Reference statistics: an `.npz` whose `cache_key` and `checksum` (sha256 over n, Σx, Σxxᵀ, mu, sigma and any kept
  feature rows) are arrays inside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path

log = logging.getLogger(__name__)

META = "tokbench"


def _key_str(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def tensors_sha256(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sd:
        t = sd[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def discard(path: Path, why: str) -> None:
    log.warning("FID cache: discarding %s (%s); it will be rebuilt", path, why)
    Path(path).unlink(missing_ok=True)


def save_checked_state_dict(path: str | Path, sd: dict, key: dict, provenance: dict | None = None) -> None:
    out = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in sd.items())
    meta = {"key": _key_str(key), "content_sha256": tensors_sha256(out),
            "provenance": json.dumps(provenance or {}, sort_keys=True, default=str)}
    out._metadata = OrderedDict({META: meta})  # type: ignore[attr-defined]
    buf = io.BytesIO()  # not the temporary name: torch.save records the file's stem, and the bytes must not vary
    torch.save(out, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_checked_state_dict(path: str | Path, key: dict, *, weights_only_check: bool = True) -> dict | None:
    """The entry's provenance (plus its content sha256) when `path` is intact and built for `key`; else None (and the
    file is gone)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            discard(path, "empty file")
            return None
        sd = torch.load(path, map_location="cpu", weights_only=weights_only_check)
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - any unreadable entry is rebuilt
        discard(path, f"unreadable: {type(e).__name__}: {str(e)[:120]}")
        return None
    meta = (getattr(sd, "_metadata", None) or {}).get(META)
    if not isinstance(meta, dict) or "key" not in meta:
        discard(path, "no tokbench key/checksum inside (older or foreign file)")
        return None
    if meta["key"] != _key_str(key):
        discard(path, f"built for another key {meta['key'][:120]}")
        return None
    plain = OrderedDict((k, v) for k, v in sd.items())
    if tensors_sha256(plain) != meta.get("content_sha256"):
        discard(path, "content checksum mismatch (corrupted)")
        return None
    return dict(json.loads(meta.get("provenance") or "{}"), content_sha256=meta["content_sha256"])


# ----------------------------------------------------------------------------------------------------------------------
# Statistics npz
# ----------------------------------------------------------------------------------------------------------------------
STATS_ARRAYS = ("n", "sum", "outer", "mu", "sigma", "features")


def stats_checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in STATS_ARRAYS:
        if k in arrays:
            a = np.ascontiguousarray(arrays[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}\0".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def write_stats_npz(path: str | Path, arrays: dict, protocol: dict, cache_key: str | None = None) -> None:
    arrays = dict(arrays)
    extra = {"protocol": np.array(json.dumps(protocol, sort_keys=True, default=str)),
             "checksum": np.array(stats_checksum(arrays))}
    if cache_key is not None:
        extra["cache_key"] = np.array(cache_key)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays, **extra)


def read_checked_stats(path: str | Path, cache_key: str) -> dict | None:
    """The arrays of a reference-statistics cache entry when intact and built for `cache_key`; else None (discarded)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            discard(path, "empty file")
            return None
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - truncated zip, bad header, …
        discard(path, f"unreadable: {type(e).__name__}: {str(e)[:120]}")
        return None
    if str(arrays.get("cache_key", "")) != cache_key:
        discard(path, "built for another key" if "cache_key" in arrays else "no cache key inside (older file)")
        return None
    if "checksum" not in arrays or str(arrays["checksum"]) != stats_checksum(arrays):
        discard(path, "content checksum mismatch (corrupted)")
        return None
    return arrays
