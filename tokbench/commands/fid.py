"""`tokbench fid A B`: FID between two image folders or statistics files."""

from __future__ import annotations

import argparse
import json

from ._fidargs import add_extractor_arguments, stats_of

NAME = "fid"
HELP = "FID between two image folders or .npz statistics files (TF-exact Inception, float64)"
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="DIR_OR_NPZ")
    p.add_argument("b", metavar="DIR_OR_NPZ")
    add_extractor_arguments(p)
    p.add_argument("--json", action="store_true", help="print the value with its full protocol as JSON")


def run(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..fid import SQRT_METHOD, frechet_distance, get_extractor

    extractor = get_extractor(args.extractor, args.fid_weights, args.device)
    _, mu1, s1, p1 = stats_of(args.a, args, extractor)
    _, mu2, s2, p2 = stats_of(args.b, args, extractor)
    for p in (p1, p2):
        ext = p.get("extractor")
        if isinstance(ext, dict) and ext.get("weights_sha256") != extractor.protocol["weights_sha256"]:
            raise ValueError(f"statistics were computed with other feature-extractor weights ({ext.get('weights')}); "
                             "FIDs of different protocols are not comparable")
    value = frechet_distance((mu1, s1), (mu2, s2))
    if args.json:
        print(json.dumps({"fid": value, "a": p1, "b": p2, "extractor": extractor.protocol, "sqrt": SQRT_METHOD,
                          "tokbench": __version__}, indent=1, default=str))
    else:
        flag = "  (RANDOM-WEIGHT Inception: not comparable with real FIDs)" if extractor.protocol["random_weights"] else ""
        print(f"{value:.9g}{flag}")
    return 0
