"""`tokbench convert`: turn a trusted pickled checkpoint into safetensors once."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a trusted pickled checkpoint (.ckpt/.pt/.pth/.bin) into safetensors"
ORDER = 60
DESCRIPTION = """Convert a checkpoint into safetensors, so that it never needs unpickling again.

Unpickling can run arbitrary code: pass --trust-checkpoint only for files from a source you trust. With --family the
family's checkpoint filter is applied (EMA selection, dropped loss keys, renames) and the result loads strictly and
directly; without it every tensor is kept under its dotted path (e.g. state_dict.encoder.conv_in.weight)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="the pickled checkpoint (.pt/.ckpt/.bin/.pth) you trust")
    p.add_argument("dst", help="output .safetensors")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling of SRC (trusted files only)")
    p.add_argument("--family", help="apply this family's checkpoint filter")
    p.add_argument("--preset", help="apply the filter of this preset's family, with its config")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..registry import get_family, get_preset
    from ..weights import FILTERED_KEY, flatten_tensors, read_checkpoint, save_safetensors

    raw = read_checkpoint(args.src, trust_checkpoint=args.trust_checkpoint)
    meta = {"tokbench.converted_from": args.src}
    if args.preset or args.family:
        preset = get_preset(args.preset) if args.preset else None
        fam = get_family(preset.family if preset else args.family)
        config = preset.get_config() if preset else {}
        sd = fam.checkpoint_filter(raw, config)
        meta[FILTERED_KEY] = fam.name
    else:
        sd = flatten_tensors(raw)
    if not args.dst.endswith(".safetensors"):
        raise ValueError("the output must be a .safetensors file")
    save_safetensors(sd, args.dst, meta)
    print(f"wrote {args.dst} ({len(sd)} tensors)")
    return 0
