"""Which tokenizer metric predicts generation quality? The library side of `tokbench correlate`: read result files
and/or CSV tables, rank statistics between every metric and the target (gFID) with bootstrap intervals over
tokenizers, leave-one-out ranges and paired comparisons, then write `<out>/<name>.{md,json}`, figures under
`<out>/plots/` and `<out>/index.html`.

The command (`tokbench.commands.correlate`) only parses its options into a `CorrelateRequest`; the zoo, the pool and
the paper experiment build the same request in Python, so every caller runs one code path. `request.argv()` is the
equivalent command line, recorded by callers for provenance.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from . import analysis, inputs, page, plots, render, stats

DEFAULT_METHODS: tuple[str, ...] = ("pearson", "spearman", "kendall")
COLLAPSE_CHOICES: tuple[str, ...] = ("best", "first", "error")


@dataclass
class CorrelateRequest:
    """Everything one correlation report depends on (the options of `tokbench correlate`, typed)."""

    out: str | Path
    runs: Sequence[str | Path] | None = None  # result files or folders of `tokbench run`
    tables: Sequence[str | Path] | None = None  # CSV tables, one row per tokenizer (× generator)
    target: str = "gfid"
    metrics: Sequence[str] | None = None  # None: every numeric metric column; `pfid` selects every `pfid@…`
    where: Sequence[str] | None = None  # row filters, `COL=V[,V…]` or `COL!=V`, all must hold
    by: str = "auto"  # a column to analyse per value, "auto" (`generator` when needed) or "none"
    collapse: str = "best"
    compare: Sequence[tuple[str, str]] | None = None  # (A, B): is A a better predictor than B?
    methods: Sequence[str] = DEFAULT_METHODS
    resamples: int = 10_000
    seed: int = 0
    confidence: float = 0.95
    name: str = "correlation"  # file stem of the md/json outputs
    leaderboard: str | Path | None = None  # shown on the page (default <out>/leaderboard.json)
    plots: bool = True
    html: bool = True

    def argv(self) -> list[str]:
        """The equivalent `tokbench correlate` arguments (provenance for the files a caller writes)."""
        a: list[str] = []
        for r in self.runs or []:
            a += ["--runs", str(r)]
        for t in self.tables or []:
            a += ["--table", str(t)]
        a += ["--target", self.target]
        if self.by != "auto":
            a += ["--by", self.by]
        if self.metrics is not None:
            a += ["--metrics", ",".join(self.metrics)]
        for w in self.where or []:
            a += ["--where", w]
        if self.collapse != "best":
            a += ["--collapse", self.collapse]
        if tuple(self.methods) != DEFAULT_METHODS:
            a += ["--methods", ",".join(self.methods)]
        a += ["--resamples", str(int(self.resamples)), "--seed", str(int(self.seed))]
        if self.confidence != 0.95:
            a += ["--confidence", str(self.confidence)]
        a += ["--out", str(self.out)]
        if self.name != "correlation":
            a += ["--name", self.name]
        if self.leaderboard is not None:
            a += ["--leaderboard", str(self.leaderboard)]
        for x, y in self.compare or []:
            a += ["--compare", f"{x}:{y}"]
        if not self.plots:
            a.append("--no-plots")
        if not self.html:
            a.append("--no-html")
        return a

    def command(self) -> str:
        """The equivalent shell command."""
        return "tokbench correlate " + " ".join(shlex.quote(x) for x in self.argv())


@dataclass
class Correlation:
    """An analysed report before it is written: the report dict (as `<name>.json` holds it), the rows it was computed
    from, the metric columns, and the pFID-versus-α curves read from result files."""

    report: dict
    data: pd.DataFrame
    metrics: list[str]
    curves: dict = field(default_factory=dict)


def parse_compare(items: Sequence[str] | None) -> list[tuple[str, str]] | None:
    """`A:B` strings → pairs (the metric names may contain ':' only before the last one)."""
    if not items:
        return None
    out = []
    for it in items:
        a, sep, b = it.rpartition(":")
        if not sep or not a or not b:
            raise ValueError(f"--compare {it!r}: expected METRIC_A:METRIC_B")
        out.append((a, b))
    return out


def auto_by(df: pd.DataFrame, target: str) -> str | None:
    """`generator` when the target comes from more than one generator, else None."""
    if "generator" not in df.columns or target not in df.columns:
        return None
    gens = {str(g) for g in df.loc[df[target].notna(), "generator"] if isinstance(g, str) and g}
    return "generator" if len(gens) > 1 else None


def coverage(df: pd.DataFrame, target: str, metrics: list[str]) -> dict:
    """How many distinct tokenizers have each metric, the target, and both: the honest size of the evidence."""
    name = inputs.NAME_COLUMN
    out = {"tokenizers": int(df[name].nunique()),
           "with_target": int(df.loc[df[target].notna(), name].nunique())}
    for m in metrics:
        out[f"with_{m}"] = int(df.loc[df[m].notna(), name].nunique())
        out[f"with_{m}_and_target"] = int(df.loc[df[m].notna() & df[target].notna(), name].nunique())
    pf = [m for m in metrics if m == "pfid" or m.startswith("pfid@")]
    if "rfid" in metrics and pf:
        allm = df[["rfid", pf[0], target]].notna().all(axis=1)
        out[f"with_rfid_{pf[0]}_and_target"] = int(df.loc[allm, name].nunique())
    return out


def correlate(req: CorrelateRequest) -> Correlation:
    """Read the inputs, filter, pick the metrics and analyse them against the target. Raises ValueError on bad input."""
    if not req.runs and not req.tables:
        raise ValueError("nothing to correlate: give result files/folders (runs) and/or CSV tables")
    methods = list(req.methods)
    for m in methods:
        if m not in stats.METHODS:
            raise ValueError(f"--methods: unknown {m!r}; choose from {', '.join(stats.METHODS)}")
    notes: list[str] = []
    runs_df, curves = None, {}
    if req.runs:
        runs_df = inputs.rows_from_results(req.runs)
        curves = runs_df.attrs.get("curves", {})
        for s in runs_df.attrs.get("skipped", []):
            notes.append(f"not used: {s['file']}: {s['reason']}")
        if "protocol_hash" in runs_df.columns and runs_df["protocol_hash"].nunique() > 1:
            notes.append(f"the result files were measured under {runs_df['protocol_hash'].nunique()} different "
                         "protocols (see protocol_hash): their metrics are not directly comparable")
    table_df = None
    if req.tables:
        table_df = pd.concat([inputs.read_table(t) for t in req.tables], ignore_index=True)
    df, merge_notes = inputs.merge_sources(runs_df, table_df)
    notes += merge_notes
    if df.empty or inputs.NAME_COLUMN not in df.columns:
        raise ValueError("no tokenizer rows in the inputs")
    n_before = len(df)
    where = list(req.where) if req.where else None
    filters = inputs.parse_where(where)
    df = inputs.apply_where(df, filters).reset_index(drop=True)
    if filters:
        notes.append(f"--where {' and '.join(where)}: {len(df)} of {n_before} rows kept")
    if df.empty:
        raise ValueError(f"no rows left after --where {' '.join(where or [])}")
    target = req.target
    if target not in df.columns:
        raise ValueError(f"no target column {target!r} in the inputs (columns: {', '.join(map(str, df.columns))})")
    if not pd.api.types.is_numeric_dtype(df[target]):
        raise ValueError(f"target column {target!r} is not numeric")
    metrics = inputs.select_metrics(df, list(req.metrics) if req.metrics else None, target)
    if not metrics:
        raise ValueError(f"no metric columns besides the target {target!r}")
    by = {"auto": auto_by(df, target), "none": None}.get(req.by, req.by)
    if req.by == "auto" and by:
        notes.append(f"{target} comes from several {by}s: each {by} is also analysed on its own (--by none to skip)")
    runs = [str(r) for r in req.runs] if req.runs else None
    tables = [str(t) for t in req.tables] if req.tables else None
    report = analysis.build_report(
        df, target, metrics, by=by, collapse=req.collapse, compare=list(req.compare) if req.compare else None,
        methods=methods, n_resamples=req.resamples, seed=req.seed, confidence=req.confidence,
        inputs={"runs": runs, "result_files_used": None if runs_df is None else int(len(runs_df)),
                "table": tables, "where": where, "rows": int(len(df))}, notes=notes)
    report["coverage"] = coverage(df, target, metrics)
    return Correlation(report=report, data=df, metrics=metrics, curves=curves)


def write_report(res: Correlation, req: CorrelateRequest) -> tuple[list[Path], int]:
    """Write `<name>.{json,md}`, the figures (unless `plots` is off) and `index.html` (unless `html` is off) under
    `req.out`; adds the figure paths to `res.report`. Returns (the md/json/html files written, number of figures)."""
    out = Path(req.out)
    report = res.report
    figures, curve_paths = {}, []
    if req.plots:
        figures = plots.section_figures(report, out / "plots")
        curve_paths = plots.pfid_curve_figure(res.curves, out / "plots") if res.curves else []
    rel = {k: [str(p.relative_to(out)) for p in v if p.suffix == ".png"] for k, v in figures.items()}
    rel_by_label = {s["label"]: rel.get(s["key"], []) for s in report["sections"]}
    report["figures"] = {k: [str(p.relative_to(out)) for p in v] for k, v in figures.items()}
    report["pfid_curve_figure"] = [str(p.relative_to(out)) for p in curve_paths]
    render.write_text_atomic(out / f"{req.name}.json", render.to_json(report))
    md = render.to_markdown(report, rel_by_label)
    if curve_paths:
        md += f"\n## pFID versus α\n\n![pfid_vs_alpha]({curve_paths[0].relative_to(out)})\n"
    render.write_text_atomic(out / f"{req.name}.md", md)
    written = [out / f"{req.name}.md", out / f"{req.name}.json"]
    if req.html:
        df = res.data
        cols = [c for c in [inputs.NAME_COLUMN, "generator", *res.metrics, req.target, "source"] if c in df.columns]
        rows = [{c: _plain(r[c]) for c in cols} for _, r in df.iterrows()]
        page.write_results_page(out, runs=[str(r) for r in req.runs or []], report=report, figures=figures,
                                data_rows=rows, data_columns=cols,
                                leaderboard=req.leaderboard or out / "leaderboard.json")
        written.append(out / "index.html")
    return written, sum(len(v) for v in figures.values()) + len(curve_paths)


def _echo(text: str) -> None:
    print(text, end="")


def run(req: CorrelateRequest, log: Callable[[str], Any] | None = _echo) -> Correlation:
    """Analyse and write; the console summary and the list of files written go to `log` as text with its newlines
    (default: stdout; None: silent)."""
    res = correlate(req)
    if log:
        log(render.to_console(res.report))
    written, n_fig = write_report(res, req)
    if log:
        figs = f" and {n_fig} figure files under {Path(req.out) / 'plots'}" if n_fig else ""
        log(f"wrote {', '.join(map(str, written))}{figs}\n")
    return res


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if hasattr(v, "item") else v
