"""`tokbench leaderboard`: results/leaderboard.{md,csv,json} from the result files of a run folder."""

from __future__ import annotations

import argparse

NAME = "leaderboard"
HELP = "write results/leaderboard.{md,csv,json} from result JSONs (rows with different protocols are refused)"
ORDER = 25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", default="results/runs", help="folder with the result JSONs of `tokbench run`")
    p.add_argument("--suite", default=None, help="suite name (default: the one with most results)")
    p.add_argument("--out", default="results", help="output folder")


def run(args: argparse.Namespace) -> int:
    from ..runner.leaderboard import to_markdown, write_leaderboard

    board = write_leaderboard(args.runs, args.out, suite=args.suite)
    print(to_markdown(board))
    return 0
