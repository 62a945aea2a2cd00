"""`tokbench zoo`: train the in-house tokenizer zoo and one generator per tokenizer, measure rFID/pFID/gFID on one
protocol, correlate, and write `results/zoo/`; resumable."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

NAME = "zoo"
HELP = "the in-house zoo: train tokenizers + generators, measure rFID/pFID/gFID, correlate (resumable)"
ORDER = 70
DESCRIPTION = HELP + """

Stages per tokenizer: train (train-robust) → pretokenize the training split → train-gen → measure on the held-out
split (the runner: rFID, pFID over α, codebook statistics, PSNR/SSIM) → gFID; then the leaderboard, `tokbench
correlate` and README.md. Re-running the same command skips finished stages and resumes unfinished ones from their
checkpoints. Checkpoints and token shards go to OUT/work/ (not results; ignored by git).

examples:
  tokbench zoo                                   # benchmarks/experiments/zoo.yaml, the embedded sample set, results/zoo
  tokbench zoo --quick --out /tmp/zoo-quick      # tiny models, few steps: minutes
  tokbench zoo --config benchmarks/experiments/zoo.yaml --data /data/images --out results/zoo-mydata
  tokbench zoo --seed 1 --out results/zoo-seed1                        # a training-seed replicate
  tokbench zoo --pool results/zoo --pool results/zoo-seed1 --out results/zoo-pooled
  tokbench zoo --shard 0/2 & tokbench zoo --shard 1/2; wait; tokbench zoo   # two processes, then the report
"""


def default_config() -> Path:
    return Path(__file__).resolve().parents[2] / "benchmarks" / "experiments" / "zoo.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="zoo YAML (default benchmarks/experiments/zoo.yaml; with --quick and no --config: "
                        "benchmarks/experiments/zoo-quick.yaml)")
    p.add_argument("--data", default=None, help="image folder or 'sample' (default: the config's, i.e. sample)")
    p.add_argument("--out", default="results/zoo", help="output folder (default results/zoo)")
    p.add_argument("--work", default=None, help="checkpoints and token shards (default OUT/work)")
    p.add_argument("--quick", action="store_true", help="tiny models and few steps (the config's `quick` section)")
    p.add_argument("--device", default=None, help="cpu, cuda, … (default: cuda when available)")
    p.add_argument("--fid-weights", default=None, help="Inception weights file (pt_inception-2015-12-05 format)")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed of every tokenizer and generator (default: the config's); another seed is a "
                        "replicate that measures seed-to-seed spread (data split and measurement stay the same)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run only tokenizers i with i %% N == K and write no report: start N such processes on one "
                        "--out (e.g. one per core or GPU, each with OMP_NUM_THREADS set), then run the same command "
                        "without --shard, which finds every stage done and writes the report; the numbers are those "
                        "of one unsharded run")
    p.add_argument("--pool", action="append", default=None, metavar="DIR",
                   help="do not run: pool finished replicate zoos (repeatable; made with --seed) into --out: means, "
                        "seed-to-seed consistency of every metric, correlation of the means")
    p.add_argument("--export-weights", default=None, metavar="DIR",
                   help="do not run: copy the smallest trained tokenizers + generators of the finished zoo in --out "
                        "into DIR (e.g. tokbench/zoo_weights), registered as presets by tokbench.models.shipped_zoo")
    p.add_argument("--export-budget-mb", type=float, default=3.0, help="size budget of --export-weights (default 3)")
    p.add_argument("--export-names", default=None, metavar="A,B,…",
                   help="with --export-weights: exactly these zoo tokenizers (within the budget) instead of the smallest")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SystemExit(f"tokbench zoo: --shard {text!r}: expected K/N, e.g. 0/2") from None
    if not (n >= 1 and 0 <= k < n):
        raise SystemExit(f"tokbench zoo: --shard {text!r}: need 0 <= K < N")
    return k, n


def command_line(args: argparse.Namespace) -> str:
    """The command as given (recorded in OUT/commands.sh), rebuilt from the parsed arguments; without --shard, which
    changes who computes a stage, not what it computes."""
    parts = ["tokbench", "zoo"]
    for flag, val in (("--config", args.config), ("--data", args.data), ("--out", args.out), ("--work", args.work),
                      ("--device", args.device), ("--fid-weights", args.fid_weights), ("--seed", args.seed)):
        if val is not None:
            parts += [flag, str(val)]
    if args.quick:
        parts.append("--quick")
    if args.no_progress:
        parts.append("--no-progress")
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    import torch

    from ..experiments import ZooOptions, resolve, run_zoo
    from ..experiments.config import read_raw, with_seed

    if args.pool:
        # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
        from ..experiments.pool import pool

        cmd = "tokbench zoo " + " ".join(f"--pool {shlex.quote(d)}" for d in args.pool) + f" --out {shlex.quote(args.out)}"
        res = pool(args.pool, args.out, command=cmd)
        print(f"pooled {len(res['replicates'])} replicates -> {args.out}/README.md")
        return 0 if res["correlate"]["exit_code"] == 0 else 3
    if args.export_weights:
        # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
        from ..experiments.export import export

        names = [n.strip() for n in args.export_names.split(",") if n.strip()] if args.export_names else None
        rows = export(args.out, args.export_weights, budget_mb=args.export_budget_mb, names=names)
        for r in rows:
            print(f"{r['preset']}: {r['tokenizer']} + {r['generator']} ({r['bytes'] / 1e6:.2f} MB)")
        print(f"{len(rows)} zoo tokenizers with their generators in {args.export_weights}")
        return 0
    if args.config:
        path, quick = Path(args.config), args.quick
    elif args.quick:
        path, quick = default_config().with_name("zoo-quick.yaml"), False
    else:
        path, quick = default_config(), False
    raw = read_raw(path)
    if args.data:
        raw.setdefault("data", {})["spec"] = args.data
    if args.fid_weights:
        raw.setdefault("measure", {}).setdefault("fid", {})["weights"] = str(args.fid_weights)
    if args.seed is not None:
        raw = with_seed(raw, args.seed)
    cfg = resolve(raw, quick=quick, where=str(path))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cmd = command_line(args)
    opts = ZooOptions(out=Path(args.out), work=Path(args.work) if args.work else None, device=device,
                      progress=not args.no_progress, command=cmd, config_file=str(path), quick=args.quick,
                      shard=parse_shard(args.shard))
    summary = run_zoo(cfg, opts)
    if opts.shard is not None:
        print(f"zoo {summary['name']}: shard {args.shard} done ({len(summary['tokenizers'])} tokenizers); run the "
              "command without --shard for the report")
        return 0
    print(f"zoo {summary['name']}: {len(summary['tokenizers'])} tokenizers -> {opts.out}/README.md")
    return 0 if summary.get("correlate", {}).get("exit_code", 0) == 0 else 3
