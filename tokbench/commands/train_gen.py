"""`tokbench train-gen`: train the in-house AR generator on a token folder."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train-gen"
HELP = "train an AR generator (LlamaGen-style GPT or RAR) on pre-tokenised data; torchrun-ready, exact resume"
DESCRIPTION = """Train tokbench's AR generator on a folder written by `tokbench pretokenize`, with a config from
benchmarks/experiments/gen/ (tiny.yaml for CPU, gpt-b.yaml, gpt-l.yaml, rar-b.yaml, rar-l.yaml). --arch rar (or model.arch: rar)
trains RAR: random token orders with a probability annealed 1 -> 0, target-aware positions, raster sampling. AdamW, warm-up + cosine, bf16 autocast on GPU, EMA.
Multi-GPU: torchrun --nproc_per_node N -m tokbench train-gen …. Re-running the same command resumes exactly from the
last checkpoint. Writes OUT/generator.safetensors (for `tokbench sample`), OUT/state.pt and OUT/log.jsonl."""
ORDER = 61


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens", required=True, help="token folder from `tokbench pretokenize`")
    p.add_argument("--config", required=True, help="benchmarks/experiments/gen/<name>.yaml")
    p.add_argument("--out", help="output folder (default runs/gen/<config>-<tokens folder name>)")
    p.add_argument("--arch", choices=("gpt", "rar"), help="override model.arch (default: the config's, else gpt)")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--batch-size", type=int, help="override train.batch_size (global)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if OUT has a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..gen.training import RunConfig, train

    cfg = RunConfig.load(args.config)
    if args.arch:
        cfg.model["arch"] = args.arch
    if args.steps:
        cfg.train.steps, cfg.train.epochs = args.steps, None
    if args.batch_size:
        cfg.train.batch_size = args.batch_size
    out = Path(args.out) if args.out else Path("runs") / "gen" / f"{cfg.name}-{Path(args.tokens).resolve().name}"
    if args.no_resume and (out / "state.pt").exists():
        (out / "state.pt").unlink()
        if (out / "log.jsonl").exists():
            (out / "log.jsonl").unlink()
    path = train(args.tokens, cfg, out, device=args.device, progress=not args.no_progress)
    print(f"generator -> {path}")
    return 0
