"""`tokbench fid A B`: FID (and KID) between two image folders or statistics files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ._fidargs import add_extractor_arguments, stats_of

NAME = "fid"
HELP = "FID and KID between two image folders or .npz statistics files (TF-exact Inception, float64)"
ORDER = 40

log = logging.getLogger(__name__)


FRECHET_CHOICES = ("auto", "eigh", "small-n", "sqrtm")  # tokbench.fid.FRECHET_METHODS (a test keeps them equal);
# spelled out here so that `tokbench --help` does not import torch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="DIR_OR_NPZ")
    p.add_argument("b", metavar="DIR_OR_NPZ")
    add_extractor_arguments(p)
    p.add_argument("--frechet", choices=FRECHET_CHOICES, default="auto",
                   help="Fréchet distance method: auto (exact small-n form when N ≤ d, else eigh), small-n, eigh, or "
                        "sqrtm (scipy + ADM eps, to reproduce older results)")
    p.add_argument("--no-kid", action="store_true", help="FID only (KID needs every feature row of both sides)")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--kid-subset-size", type=int, default=1000, help="capped at the smaller side's N")
    p.add_argument("--json", action="store_true", help="print only JSON: the values with their full protocol")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from .. import __version__
    from ..fid import SMALL_SAMPLE_NOTE, FRECHET_METHODS, frechet_details, get_extractor, kernel_inception_distance

    extractor = get_extractor(args.extractor, args.fid_weights, args.device)
    keep = "auto" if args.no_kid else "all"
    acc1, mu1, s1, p1 = stats_of(args.a, args, extractor, keep=keep)
    acc2, mu2, s2, p2 = stats_of(args.b, args, extractor, keep=keep)
    for p in (p1, p2):
        ext = p.get("extractor")
        if isinstance(ext, dict) and ext.get("weights_sha256") != extractor.protocol["weights_sha256"]:
            raise ValueError(f"statistics were computed with other feature-extractor weights ({ext.get('weights')}); "
                             "FIDs of different protocols are not comparable")
    a = acc1 if acc1 is not None else (mu1, s1)
    b = acc2 if acc2 is not None else (mu2, s2)
    t = time.perf_counter()
    fd = frechet_details(a, b, args.frechet)
    print(f"Fréchet distance: {fd['method']}, N={fd['n1']}/{fd['n2']}, d={fd['dim']}, "
          f"{time.perf_counter() - t:.2f} s", file=sys.stderr)
    kid = None
    if not args.no_kid:
        if acc1 is not None and acc2 is not None and acc1.has_features and acc2.has_features:
            kid = kernel_inception_distance(acc1.features(), acc2.features(), args.kid_subsets, args.kid_subset_size)
        else:
            log.warning("KID skipped: a side is a statistics file without feature rows")
    if args.json:
        print(json.dumps({"fid": fd["value"], "kid": kid and kid["kid"], "kid_std": kid and kid["kid_std"],
                          "kid_protocol": kid and kid["protocol"], "frechet": {
                              **{k: fd[k] for k in ("method", "n1", "n2", "dim", "small_sample")},
                              "description": FRECHET_METHODS[args.frechet]},
                          "a": p1, "b": p2, "extractor": extractor.protocol, "tokbench": __version__},
                         indent=1, default=str))
    else:
        flag = "  (RANDOM-WEIGHT Inception: not comparable with real FIDs)" if extractor.protocol["random_weights"] else ""
        line = f"{fd['value']:.9g}"  # FID first: scripts read the first field
        if kid is not None:
            line += f"  KID {kid['kid']:.6g} ± {kid['kid_std']:.2g} (subsets {kid['protocol']['subsets']}×" \
                    f"{kid['protocol']['subset_size']})"
        print(line + flag)
        if fd["small_sample"]:
            print(f"note: {SMALL_SAMPLE_NOTE}", file=sys.stderr)
    return 0
