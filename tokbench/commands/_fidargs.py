"""Arguments and helpers shared by `tokbench fid` and `tokbench stats`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _device(s: str) -> str:
    """'auto' → cuda when available, else cpu; resolved only when the command runs (no torch import for --help)."""
    if s != "auto":
        return s
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_extractor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fid-weights", metavar="PATH",
                   help="Inception weights file (weights-inception-2015-12-05-6726825d.pth); also TOKBENCH_FID_WEIGHTS")
    p.add_argument("--extractor", default="inception-v3-compat",
                   help="feature extractor: inception-v3-compat (default) or a torch-fidelity name (dinov2-vit-b-14, …)")
    p.add_argument("--resolution", type=int, help="ADM centre-crop every image to this size (default: as they are)")
    p.add_argument("--num-images", type=int, help="only the first N images (sorted by path)")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception forward pass (default 50)")
    p.add_argument("--device", default="auto", type=_device, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images (listed) instead of stopping")


def folder_batches(ds, batch_size: int):
    """uint8 batches of consecutive same-size images (folders of mixed sizes are fine without --resolution)."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..data import BadImageError

    buf: list = []
    for i in range(len(ds)):
        try:
            x = ds[i]
        except BadImageError as e:
            if not getattr(ds, "skip_bad_images", False):
                raise
            ds.bad_images.append({"index": i, "path": e.path, "reason": e.reason})
            continue
        if buf and (x.shape != buf[0].shape or len(buf) == batch_size):
            yield torch.stack(buf)
            buf = []
        buf.append(x)
    if buf:
        yield torch.stack(buf)


def stats_of(spec: str, args, extractor, keep: str = "auto"):
    """(accumulator or None, mu, sigma, protocol) of a folder or an .npz statistics file (`keep="all"`: every feature
    row too, for KID)."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..data import open_dataset
    from ..fid import compute_stats, load_npz_stats

    if Path(spec).suffix == ".npz":
        return load_npz_stats(spec)
    ds = open_dataset(spec, args.resolution, num_images=args.num_images, crop="adm" if args.resolution else "none",
                      skip_bad_images=args.skip_bad_images)
    acc = compute_stats(folder_batches(ds, args.batch_size), extractor, total=len(ds), desc=Path(spec).name,
                        keep=keep)
    mu, sigma = acc.mean_cov()
    proto = {"data": {**ds.describe(), "bad_images": ds.bad_images}, "extractor": extractor.protocol}
    return acc, mu, sigma, proto
