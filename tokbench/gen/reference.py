"""gFID references, resolved one way for `tokbench run`, the zoo pipeline and `tokbench sample`.

A reference is given as an `.npz` of statistics (tokbench's, or an ADM reference batch such as
VIRTUAL_imagenet256_labeled.npz), a data spec (image folder, `sample`, `sample:train`, …) or an opened data set; a
data set's statistics are computed by `tokbench.fid.reference_stats` and cached. `resolve_reference` returns what
`tokbench.gen.gfid` takes plus a stable description for up-to-date keys; `fd_reference` turns any accepted form into
what `frechet_distance` takes and the description the gFID protocol records.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import open_dataset
from ..fid import StatsAccumulator, load_npz_stats, reference_stats
from ..weights import sha256_file


@dataclass
class GfidReference:
    """stats: an `.npz` path, or a data set's (accumulator, protocol) from `reference_stats`; key: a stable description
    (`{"npz", "sha256"}` or `{"data", "cache_key", "n"}`); n: its number of images (None for an `.npz`)."""

    stats: Any
    key: dict
    n: int | None


def is_npz(spec: Any) -> bool:
    return isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".npz")


def resolve_reference(spec: str | os.PathLike | Any, extractor, *, resolution: int | None = None,
                      num_images: int | None = None, crop: str | None = None, batch_size: int | None = None,
                      cache: str | os.PathLike | None = None, keep: str = "auto") -> GfidReference:
    """`spec`: an `.npz` path, a data spec opened at `resolution` (first `num_images`, `crop`), or an opened data set.
    Options left None keep `open_dataset` / `reference_stats` defaults; `keep="all"` keeps every feature row (KID)."""
    if is_npz(spec):
        return GfidReference(str(spec), {"npz": str(spec), "sha256": sha256_file(spec)}, None)
    if isinstance(spec, (str, os.PathLike)):
        ds = open_dataset(spec, resolution, num_images=num_images, **({"crop": crop} if crop is not None else {}))
        desc = str(spec)
    else:
        ds, desc = spec, None
    ref = reference_stats(ds, extractor, **({"batch_size": batch_size} if batch_size is not None else {}), cache=cache,
                          keep=keep)
    key = {"cache_key": ref[1].get("cache_key"), "n": ref[0].n}
    return GfidReference(ref, {"data": desc, **key} if desc is not None else key, int(ref[0].n))


def fd_reference(reference: Any) -> tuple[Any, dict]:
    """What `frechet_distance` takes, plus a description for the protocol. Accepts the path of an .npz (tokbench
    statistics or an ADM reference batch), an accumulator, the (accumulator, protocol) pair of
    `tokbench.fid.reference_stats`, a (mu, sigma) pair, or a `GfidReference`."""
    if isinstance(reference, GfidReference):
        reference = reference.stats
    if isinstance(reference, (str, Path)):
        acc, mu, sigma, proto = load_npz_stats(reference)
        return (acc if acc is not None else (mu, sigma)), {"kind": "npz", "path": str(reference), **proto}
    if isinstance(reference, StatsAccumulator):
        return reference, {"kind": "accumulator", "n": reference.n}
    if isinstance(reference, tuple) and len(reference) == 2 and isinstance(reference[0], StatsAccumulator):
        return reference[0], {"kind": "dataset", "n": reference[0].n, **dict(reference[1])}
    if isinstance(reference, tuple) and len(reference) == 2:
        return reference, {"kind": "mu_sigma"}
    raise TypeError(f"unsupported gFID reference {type(reference).__name__}")
