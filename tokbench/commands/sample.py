"""`tokbench sample`: sample images from a trained generator; optional PNGs and gFID against a reference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..io import write_text_atomic

NAME = "sample"
HELP = "sample from an AR generator (KV cache, CFG, top-k/p); PNGs and/or gFID against a reference"
DESCRIPTION = """Sample N images from a generator checkpoint (`train-gen` output), decoded by the tokenizer it was trained
on. Class-conditional models sample classes evenly (50 000 samples of a 1000-class model = 50 per class), each sample
with its own fixed seed. With --reference (an ADM .npz such as VIRTUAL_imagenet256_labeled.npz, tokbench statistics,
or an image folder / 'sample' whose statistics are computed and cached) the images stream into the FID engine and
OUT/gfid.json records the value with its full protocol (sampler settings included)."""
ORDER = 62


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", required=True, help="generator .safetensors from train-gen")
    p.add_argument("--num", type=int, required=True, help="number of samples (50000 for ImageNet gFID)")
    p.add_argument("--cfg", type=float, help="guidance scale w (default: the checkpoint's; 1 = none)")
    p.add_argument("--cfg-schedule", choices=("constant", "power"),
                   help="guidance over the sequence: constant or rising as a power of the position (default: the checkpoint's)")
    p.add_argument("--cfg-power", type=float, help="RAR cosine-power p for --cfg-schedule power")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the checkpoint's, else 1)")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens (0 = all)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass (1 = off)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--out", help="output folder (gfid.json, images/)")
    p.add_argument("--save-png", action="store_true", help="write every sample to OUT/images as PNG")
    p.add_argument("--reference", help="ADM/tokbench .npz, image folder or 'sample': compute gFID against it")
    p.add_argument("--extractor", default="inception-v3-compat",
                   help="feature extractor for the FID (default inception-v3-compat)")
    p.add_argument("--fid-weights", "--extractor-weights", dest="extractor_weights",
                   help="local Inception weights file (README: The FID protocol); random weights are flagged")
    p.add_argument("--tokenizer", help="override the checkpoint's tokenizer (preset / path)")
    p.add_argument("--tokenizer-weights", help="tokenizer weights file (default: the one the generator records)")
    p.add_argument("--no-cache", action="store_true", help="sample without the KV cache (slow; for checks)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def settings_from_args(args: argparse.Namespace, defaults: dict):
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..gen.sampling import SamplingConfig

    d = dict(defaults)
    for k in ("cfg", "cfg_schedule", "cfg_power", "temperature", "top_k", "top_p"):
        v = getattr(args, k)
        if v is not None:
            d[k] = v
    d["use_cache"] = not args.no_cache
    return SamplingConfig.from_dict(d)


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..gen.checkpoint import TokenizerRef, load_generator
    from ..gen.gfid import gfid, sample_images

    if args.num <= 0:
        raise ValueError("--num must be positive")
    if not (args.reference or args.save_png):
        raise ValueError("nothing to do: give --reference (gFID) and/or --save-png")
    if args.save_png and not args.out:
        raise ValueError("--save-png needs --out")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_generator(args.generator, device)
    ref = meta.tokenizer
    if args.tokenizer:
        ref = TokenizerRef(args.tokenizer, args.tokenizer_weights)
    tok = ref.load(device)
    if [sp.vocab_size for sp in tok.token_spaces] != list(meta.spec.vocab_sizes) or tok.layout != meta.spec.layout:
        raise ValueError(f"tokenizer {ref.name} does not have the layout/vocabulary the generator was trained on")
    settings = settings_from_args(args, meta.sampling)
    out = Path(args.out) if args.out else None
    png_dir = out / "images" if (out and args.save_png) else None
    if not args.reference:
        n = 0
        # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
        from ..gen.gfid import _save_pngs

        for idx, labels, images in sample_images(model, tok, num=args.num, settings=settings, seed=args.seed,
                                                 batch_size=args.batch_size, progress=not args.no_progress):
            _save_pngs(png_dir, idx, labels, images)
            n += len(idx)
        print(f"{n} samples -> {png_dir}")
        return 0

    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..fid import get_extractor
    from ..gen.reference import resolve_reference

    extractor = get_extractor(args.extractor, args.extractor_weights, device)
    reference = resolve_reference(args.reference, extractor, resolution=int(tok.info.resolution))
    value, protocol = gfid(model, tok, reference.stats, extractor, settings=settings, num=args.num, seed=args.seed,
                           batch_size=args.batch_size, save_dir=png_dir, progress=not args.no_progress)
    record = {"metric": "gfid", "value": value, "protocol": protocol}
    print(json.dumps({"gfid": value, "num": args.num, "sampling": protocol["sampling"]}))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "gfid.json", json.dumps(record, indent=1, default=str))
    return 0
