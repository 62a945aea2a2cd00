"""`tokbench paper`: a paper experiment over frozen official tokenizers (e.g. RobustTok's 11 tokenizers x 2 AR
generators) as one resumable command."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "paper"
HELP = "paper experiment: frozen tokenizers x (GPT, RAR) generators, rFID/pFID/gFID, correlate (resumable)"
ORDER = 71
DESCRIPTION = HELP + """

Stages per tokenizer (tokbench.experiments.paper): pretokenize the train folder (ten-crop + flips, as LlamaGen) → train
one generator per architecture of the config's `generators` (one recipe each) → rFID / pFID / codebook statistics on
the validation folder (the runner) → gFID of every generator against the reference .npz; then OUT/paper.csv (one row
per tokenizer x generator) and `tokbench correlate --by generator`. Re-running the same command skips finished
stages and resumes unfinished ones (markers in OUT/state/, checkpoints and token shards in OUT/work/).

examples:
  tokbench paper --config benchmarks/experiments/papers/robusttok-11x2.yaml --out results/papers/robusttok-11x2
  tokbench paper --config benchmarks/experiments/papers/robusttok-11x2-dryrun.yaml --out /tmp/dryrun --device cpu   # CPU, minutes
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="benchmarks/experiments/papers/<name>.yaml")
    p.add_argument("--out", required=True, help="output folder (paper.csv, correlation.md, runs/, summary.json)")
    p.add_argument("--work", default=None, help="checkpoints and token shards (default OUT/work)")
    p.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..experiments.paper import PaperOptions, load, run_paper

    cfg = load(args.config)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    opts = PaperOptions(out=Path(args.out), work=Path(args.work) if args.work else None, device=device,
                        progress=not args.no_progress)
    summary = run_paper(cfg, opts)
    print(f"paper {summary['name']}: {len(summary['table'])} rows -> {opts.out}/paper.csv, {opts.out}/correlation.md")
    return 0 if summary["correlate"]["exit_code"] == 0 else 3
