"""`tokbench correlate`: which tokenizer metric predicts generation quality? Rank statistics between every metric
and the target (gFID), with bootstrap intervals over tokenizers, leave-one-out ranges and paired comparisons
(pFID vs rFID); writes `<out>/correlation.{md,json}`, figures under `<out>/plots/` and `<out>/index.html`."""

from __future__ import annotations

import argparse
import math
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


def _parse_compare(items: list[str] | None) -> list[tuple[str, str]] | None:
    if not items:
        return None
    out = []
    for it in items:
        a, sep, b = it.rpartition(":")
        if not sep or not a or not b:
            raise ValueError(f"--compare {it!r}: expected METRIC_A:METRIC_B")
        out.append((a, b))
    return out


def _auto_by(df, target: str) -> str | None:
    if "generator" not in df.columns or target not in df.columns:
        return None
    gens = {str(g) for g in df.loc[df[target].notna(), "generator"] if isinstance(g, str) and g}
    return "generator" if len(gens) > 1 else None


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..report import analysis, inputs, page, plots, render, stats

    if not args.runs and not args.table:
        if not Path(RUNS_DIR).is_dir():
            raise UsageError(f"nothing to correlate: no {RUNS_DIR}/ here (run `tokbench run` first), or give --runs "
                             "DIR and/or --table CSV")
        args.runs = [RUNS_DIR]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in stats.METHODS:
            raise ValueError(f"--methods: unknown {m!r}; choose from {', '.join(stats.METHODS)}")
    notes: list[str] = []
    runs_df, curves, skipped = None, {}, []
    if args.runs:
        runs_df = inputs.rows_from_results(args.runs)
        curves, skipped = runs_df.attrs.get("curves", {}), runs_df.attrs.get("skipped", [])
        for s in skipped:
            notes.append(f"not used: {s['file']}: {s['reason']}")
        if "protocol_hash" in runs_df.columns and runs_df["protocol_hash"].nunique() > 1:
            notes.append(f"the result files were measured under {runs_df['protocol_hash'].nunique()} different "
                         "protocols (see protocol_hash): their metrics are not directly comparable")
    table_df = None
    if args.table:
        table_df = pd.concat([inputs.read_table(t) for t in args.table], ignore_index=True)
    df, merge_notes = inputs.merge_sources(runs_df, table_df)
    notes += merge_notes
    if df.empty or inputs.NAME_COLUMN not in df.columns:
        raise ValueError("no tokenizer rows in the inputs")
    n_before = len(df)
    filters = inputs.parse_where(args.where)
    df = inputs.apply_where(df, filters).reset_index(drop=True)
    if filters:
        notes.append(f"--where {' and '.join(args.where)}: {len(df)} of {n_before} rows kept")
    if df.empty:
        raise ValueError(f"no rows left after --where {' '.join(args.where)}")
    if args.target not in df.columns:
        raise ValueError(f"no target column {args.target!r} in the inputs (columns: {', '.join(map(str, df.columns))})")
    if not pd.api.types.is_numeric_dtype(df[args.target]):
        raise ValueError(f"target column {args.target!r} is not numeric")
    metrics = inputs.select_metrics(df, args.metrics.split(",") if args.metrics else None, args.target)
    if not metrics:
        raise ValueError(f"no metric columns besides the target {args.target!r}")
    by = {"auto": _auto_by(df, args.target), "none": None}.get(args.by, args.by)
    if args.by == "auto" and by:
        notes.append(f"{args.target} comes from several {by}s: each {by} is also analysed on its own "
                     f"(--by none to skip)")
    report = analysis.build_report(
        df, args.target, metrics, by=by, collapse=args.collapse, compare=_parse_compare(args.compare),
        methods=methods, n_resamples=args.resamples, seed=args.seed, confidence=args.confidence,
        inputs={"runs": args.runs, "result_files_used": None if runs_df is None else int(len(runs_df)),
                "table": args.table, "where": args.where, "rows": int(len(df))}, notes=notes)
    report["coverage"] = coverage(df, args.target, metrics)
    print(render.to_console(report), end="")

    out = Path(args.out)
    figures, curve_paths = {}, []
    if not args.no_plots:
        figures = plots.section_figures(report, out / "plots")
        curve_paths = plots.pfid_curve_figure(curves, out / "plots") if curves else []
    rel = {k: [str(p.relative_to(out)) for p in v if p.suffix == ".png"] for k, v in figures.items()}
    rel_by_label = {s["label"]: rel.get(s["key"], []) for s in report["sections"]}
    report["figures"] = {k: [str(p.relative_to(out)) for p in v] for k, v in figures.items()}
    report["pfid_curve_figure"] = [str(p.relative_to(out)) for p in curve_paths]
    render.write_text_atomic(out / f"{args.name}.json", render.to_json(report))
    md = render.to_markdown(report, rel_by_label)
    if curve_paths:
        md += f"\n## pFID versus α\n\n![pfid_vs_alpha]({curve_paths[0].relative_to(out)})\n"
    render.write_text_atomic(out / f"{args.name}.md", md)
    written = [out / f"{args.name}.md", out / f"{args.name}.json"]
    if not args.no_html:
        cols = [c for c in [inputs.NAME_COLUMN, "generator", *metrics, args.target, "source"] if c in df.columns]
        rows = [{c: _plain(r[c]) for c in cols} for _, r in df.iterrows()]
        page.write_results_page(out, runs=args.runs or [], report=report, figures=figures, data_rows=rows,
                                data_columns=cols, leaderboard=args.leaderboard or out / "leaderboard.json")
        written.append(out / "index.html")
    n_fig = sum(len(v) for v in figures.values()) + len(curve_paths)
    print(f"wrote {', '.join(map(str, written))}" + (f" and {n_fig} figure files under {out / 'plots'}" if n_fig
                                                      else ""))
    return 0


def _plain(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v


def coverage(df, target: str, metrics: list[str]) -> dict:
    """How many distinct tokenizers have each metric, the target, and both: the honest size of the evidence."""
    from ..report.inputs import NAME_COLUMN

    out = {"tokenizers": int(df[NAME_COLUMN].nunique()),
           "with_target": int(df.loc[df[target].notna(), NAME_COLUMN].nunique())}
    for m in metrics:
        out[f"with_{m}"] = int(df.loc[df[m].notna(), NAME_COLUMN].nunique())
        out[f"with_{m}_and_target"] = int(df.loc[df[m].notna() & df[target].notna(), NAME_COLUMN].nunique())
    pf = [m for m in metrics if m == "pfid" or m.startswith("pfid@")]
    if "rfid" in metrics and pf:
        allm = df[["rfid", pf[0], target]].notna().all(axis=1)
        out[f"with_rfid_{pf[0]}_and_target"] = int(df.loc[allm, NAME_COLUMN].nunique())
    return out
