"""`tokbench correlate`: which tokenizer metric predicts generation quality? Rank statistics between every metric
and the target (gFID), with bootstrap intervals over tokenizers, leave-one-out ranges and paired comparisons
(pFID vs rFID); writes `<out>/correlation.{md,json}`, figures under `<out>/plots/` and `<out>/index.html`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ._defaults import RESULTS_DIR, RUNS_DIR

NAME = "correlate"
HELP = "correlation of tokenizer metrics (rFID, pFID, usage, …) with gFID, bootstrap CIs, plots and a static page"
ORDER = 60
DESCRIPTION = HELP + """

Inputs are result files of `tokbench run` (--runs) and/or a CSV table (--table) with a `tokenizer` column, metric
columns (rfid, pfid, gfid, psnr, …) and optionally `generator` and `source`. FID-like metrics are lower-is-better on
both sides, so a metric that predicts gFID correlates *positively* with it; the report also gives each coefficient
as `agreement` (positive = same ordering as the target).

examples:
  tokbench correlate --table results/published.csv --out results/
  tokbench correlate --table results/published.csv --where generator=RAR-B,RAR-L --by generator
  tokbench correlate --runs tokbench-results/runs --target gfid --metrics rfid,pfid --compare pfid@alpha=0.5,delta=280:rfid
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", action="append", metavar="DIR|FILE",
                   help=f"result files or folders (repeatable; default {RUNS_DIR} when no --table is given)")
    p.add_argument("--table", action="append", metavar="CSV", help="a CSV table, one row per tokenizer "
                   "(or per tokenizer × generator) (repeatable)")
    p.add_argument("--target", default="gfid", help="the column to predict (default gfid)")
    p.add_argument("--metrics", help="comma-separated metric columns; `pfid` selects every `pfid@…` setting "
                   "(default: every numeric metric column)")
    p.add_argument("--where", action="append", metavar="COL=V[,V…]|COL!=V",
                   help="keep only matching rows (repeatable, all must hold); e.g. --where generator=RAR-B")
    p.add_argument("--by", default="auto", metavar="COL|auto|none",
                   help="also analyse each value of this column separately (auto: `generator` when the target "
                        "comes from more than one generator)")
    p.add_argument("--collapse", default="best", choices=["best", "first", "error"],
                   help="a tokenizer with several rows (e.g. one per generator) counts once in a section: its best "
                        "target value (default), its first row, or refuse")
    p.add_argument("--compare", action="append", metavar="A:B",
                   help="paired bootstrap: is A a better predictor than B? (default: every pfid column vs rfid)")
    p.add_argument("--methods", default="pearson,spearman,kendall", help="coefficients (default all three)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--out", default=RESULTS_DIR, help=f"output folder (default {RESULTS_DIR}/)")
    p.add_argument("--name", default="correlation", help="file stem of the md/json outputs (default correlation)")
    p.add_argument("--leaderboard", help="leaderboard JSON to show on the page (default <out>/leaderboard.json)")
    p.add_argument("--no-plots", action="store_true", help="skip figures")
    p.add_argument("--no-html", action="store_true", help="skip index.html")


def request(args: argparse.Namespace):
    """The parsed options as the library's typed `CorrelateRequest` (no --runs and no --table: the default runs
    folder). The library is imported here, not at the top: the CLI imports every command to build --help, and the
    analysis stack (pandas, scipy) should load only when this command runs."""
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..report.correlate import CorrelateRequest, parse_compare

    runs = args.runs
    if not runs and not args.table:
        if not Path(RUNS_DIR).is_dir():
            raise UsageError(f"nothing to correlate: no {RUNS_DIR}/ here (run `tokbench run` first), or give --runs "
                             "DIR and/or --table CSV")
        runs = [RUNS_DIR]
    return CorrelateRequest(
        out=args.out, runs=runs, tables=args.table, target=args.target,
        metrics=args.metrics.split(",") if args.metrics else None, where=args.where, by=args.by,
        collapse=args.collapse, compare=parse_compare(args.compare),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()], resamples=args.resamples, seed=args.seed,
        confidence=args.confidence, name=args.name, leaderboard=args.leaderboard, plots=not args.no_plots,
        html=not args.no_html)


def run(args: argparse.Namespace) -> int:
    # deferred on purpose: start-up time (see tokbench/commands/__init__.py)
    from ..report import correlate

    correlate.run(request(args))
    return 0
