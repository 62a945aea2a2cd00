"""`tokbench stats DIR --out X.npz`: save feature statistics of a folder."""

from __future__ import annotations

import argparse

from ._fidargs import add_extractor_arguments, stats_of

NAME = "stats"
HELP = "compute and save Inception statistics (mu, sigma, exact sums, protocol) of an image folder"
ORDER = 41


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="image folder (recursive; png, jpg, jpeg, webp)")
    p.add_argument("--out", required=True, metavar="X.npz", help="statistics file to write (mu, sigma, protocol)")
    add_extractor_arguments(p)


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..fid import get_extractor, save_stats

    extractor = get_extractor(args.extractor, args.fid_weights, args.device)
    acc, _, _, proto = stats_of(args.folder, args, extractor)
    save_stats(args.out, acc, proto)
    print(f"wrote {args.out} ({acc.n} images)")
    return 0
