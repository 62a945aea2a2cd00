"""`tokbench leaderboard`: results/leaderboard.{md,csv,json} from the result files of a run folder."""

from __future__ import annotations

import argparse

from ._defaults import RESULTS_DIR, RUNS_DIR

NAME = "leaderboard"
HELP = "write leaderboard.{md,csv,json} and index.html from result JSONs (rows with different protocols are refused)"
ORDER = 25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default=RUNS_DIR, metavar="DIR",
                   help=f"folder with the result JSONs of `tokbench run` (default {RUNS_DIR})")
    p.add_argument("--suite", default=None, help="suite name (default: the one with most results)")
    p.add_argument("--out", default=RESULTS_DIR, metavar="DIR", help=f"output folder (default {RESULTS_DIR})")


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from pathlib import Path

    from ..errors import UsageError
    from ..report.page import write_results_page
    from ..runner.leaderboard import to_markdown, write_leaderboard

    if not Path(args.runs).is_dir():
        raise UsageError(f"--runs {args.runs}: no such folder (the --out of `tokbench run`)")
    board = write_leaderboard(args.runs, args.out, suite=args.suite)
    write_results_page(args.out, runs=[args.runs])
    print(to_markdown(board))
    return 0
