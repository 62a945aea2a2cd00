"""`tokbench pretokenize`: encode a data set once into memory-mapped id shards for generator training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "pretokenize"
HELP = "encode a data set into token shards (class = sub-folder) for `train-gen`; resumable"
DESCRIPTION = """Encode every image of a data set with a tokenizer and store the ids as memory-mapped shards with class
labels (class = first-level sub-folder, as in ImageNet). Re-running the same command resumes at the first incomplete
shard. --aug flip stores (original, mirrored); --aug tencrop stores LlamaGen's ten crops of a 1.1x centre crop."""
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=True, help="preset, family (with --tokenizer-config) or tokbench checkpoint")
    p.add_argument("--tokenizer-config", help="upstream_config JSON file (needed when --tokenizer is a family)")
    p.add_argument("--weights", help="tokenizer weights (default: the preset's)")
    p.add_argument("--data", required=True, help="image folder (class = sub-folder) or 'sample'")
    p.add_argument("--aug", choices=("none", "flip", "tencrop"), default="none",
                   help="augmentation stored as extra token sets: none, horizontal flip, or ten crops (default none)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-images", type=int, help="only the first N images (sorted order)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder pass (default 64)")
    p.add_argument("--shard-size", type=int, default=4096, help="images per token shard file (default 4096)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader worker processes (default 0)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images instead of stopping")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..data import open_dataset
    from ..gen.checkpoint import TokenizerRef
    from ..gen.tokenset import pretokenize, source_resolution

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = json.loads(Path(args.tokenizer_config).read_text()) if args.tokenizer_config else None
    ref = TokenizerRef(args.tokenizer, args.weights, cfg)
    tok = ref.load(device)
    res = int(tok.info.resolution)
    ds = open_dataset(args.data, source_resolution(args.aug, res), num_images=args.num_images,
                      skip_bad_images=args.skip_bad_images)
    meta = {"tokenizer": ref.to_dict(), "tokenizer_info": tok.info.to_dict(),
            "data": {k: v for k, v in ds.describe().items()}}
    out = pretokenize(tok, ds, args.out, meta=meta, aug=args.aug, shard_size=args.shard_size,
                      batch_size=args.batch_size, num_workers=args.num_workers,
                      skip_bad_images=args.skip_bad_images, progress=not args.no_progress)
    m = json.loads((out / "meta.json").read_text())
    print(f"{m['num_images']} images x {m['variants']} variants, {len(m['classes'])} classes -> {out}")
    if m.get("bad_images"):
        print(f"skipped {len(m['bad_images'])} unreadable images (listed in meta.json)")
    return 0
