"""Which tokenizer metric predicts the target (gFID)? Every metric column against the target: Pearson, Spearman,
Kendall τ-b with p-values, bootstrap CIs over tokenizers, leave-one-out ranges, and paired bootstrap comparisons
of two metrics. Everything that reduces the data (missing values, ties, duplicate rows, too few tokenizers,
constant columns, degenerate resamples) is recorded in the result, never dropped silently.

Direction: FID-like metrics are lower-is-better on both sides, so *agreement* shows as a positive coefficient;
for higher-is-better metrics (PSNR, usage) against gFID agreement is negative. Each coefficient therefore also
comes as `agreement` = coefficient × expected sign (positive = the metric orders tokenizers as the target does).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from . import stats
from .inputs import NAME_COLUMN, direction, expected_sign

SCHEMA = "tokbench.correlation/1"
MIN_N_COEF = 3    # below: no coefficient at all (two points always lie on a line)
MIN_N_RESAMPLE = 4  # below: no bootstrap / leave-one-out (too few distinct resamples to mean anything)


def _row_label(row: pd.Series) -> str:
    for c in ("generator", "source"):
        v = row.get(c)
        if isinstance(v, str) and v:
            return f"{c} {v}"
    return f"row {row.name}"


def collapse_duplicates(df: pd.DataFrame, target: str, how: str = "best") -> tuple[pd.DataFrame, list[str]]:
    """Several rows of one tokenizer (e.g. one per generator) → one. `best`: the row with the best target value
    (lowest for lower-is-better targets); `first`: the first row; `error`: refuse, naming the tokenizers."""
    dup = df[NAME_COLUMN].duplicated(keep=False)
    if not dup.any():
        return df, []
    names = list(dict.fromkeys(df.loc[dup, NAME_COLUMN]))
    if how == "error":
        raise ValueError(f"{len(names)} tokenizer(s) have more than one row: {', '.join(names)}; pick rows with "
                         "--where (e.g. --where generator=RAR-B), analyse per group with --by generator, or "
                         "--collapse best|first")
    if how not in ("best", "first"):
        raise ValueError(f"--collapse {how!r}: choose best, first or error")
    higher = direction(target) == "higher"
    keep, notes = [], []
    for name, g in df.groupby(NAME_COLUMN, sort=False):
        if len(g) == 1:
            keep.append(g.index[0])
            continue
        if how == "best" and target in g.columns and g[target].notna().any():
            best = g[target].idxmax() if higher else g[target].idxmin()
        else:
            best = g.index[0]
        keep.append(best)
        dropped = [f"{_row_label(g.loc[i])} ({target} {_num(g.loc[i].get(target))})" for i in g.index if i != best]
        notes.append(f"{name}: {len(g)} rows; kept {_row_label(g.loc[best])} ({target} "
                     f"{_num(g.loc[best].get(target))}), dropped {', '.join(dropped)}")
    return df.loc[sorted(keep)], notes


def _num(v) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "missing"
    return "missing" if math.isnan(f) else f"{f:g}"


def analyse_pair(df: pd.DataFrame, metric: str, target: str, *, methods: Sequence[str] = stats.METHODS,
                 n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    names_all = df[NAME_COLUMN].astype(str).tolist()
    x_all = df[metric].to_numpy(dtype=float)
    y_all = df[target].to_numpy(dtype=float)
    missing = []
    for name, a, b in zip(names_all, x_all, y_all):
        lack = [c for c, v in ((metric, a), (target, b)) if np.isnan(v)]
        if lack:
            missing.append({"tokenizer": name, "missing": lack})
    ok = ~np.isnan(x_all) & ~np.isnan(y_all)
    names = [n for n, k in zip(names_all, ok) if k]
    x, y = x_all[ok], y_all[ok]
    n = len(x)
    sign = expected_sign(metric, target)
    res = {"metric": metric, "target": target, "metric_direction": direction(metric),
           "target_direction": direction(target), "expected_sign": sign, "n": n, "tokenizers": names,
           "values": [{"tokenizer": a, "metric": float(b), "target": float(c)} for a, b, c in zip(names, x, y)],
           "missing": missing, "ties_metric": stats.ties(x, names), "ties_target": stats.ties(y, names),
           "coefficients": {}, "status": "ok", "messages": []}
    msg = res["messages"]
    if missing:
        groups: dict[str, list[str]] = {}
        for m in missing:
            groups.setdefault(" / ".join(m["missing"]), []).append(m["tokenizer"])
        msg.append(f"{len(missing)} tokenizer(s) left out for a missing value — "
                   + "; ".join(f"no {k}: {', '.join(v)}" for k, v in groups.items()))
    for col in (metric, target):
        pcol = f"{col.split('@')[0]}_protocol"
        if pcol in df.columns:
            used = df.loc[ok, pcol].astype(str)
            kinds = sorted({v for v in used if v and v != "nan"})
            if len(kinds) > 1:
                msg.append(f"the {col} values come from {len(kinds)} different protocols ({pcol}): they were not "
                           "measured the same way, so part of the spread is protocol, not tokenizer")
    if sign is None:
        msg.append(f"direction of {metric!r} or {target!r} unknown: `agreement` not computed, read the raw sign")
    if n < MIN_N_COEF:
        res["status"] = "too_few"
        msg.append(f"only {n} tokenizer(s) have both {metric} and {target}: no correlation computed "
                   f"(needs at least {MIN_N_COEF})")
        return res
    for col, v in ((metric, x), (target, y)):
        if stats.is_constant(v):
            res["status"] = "constant"
            msg.append(f"{col} is constant ({v[0]:g}) over the {n} tokenizers: correlation undefined")
            return res
    for kind, t in (("metric", res["ties_metric"]), ("target", res["ties_target"])):
        for g in t:
            msg.append(f"tie in {metric if kind == 'metric' else target}: {', '.join(g['tokenizers'])} share "
                       f"{g['value']:g} (mean ranks; τ-b corrects for ties)")
    for m in methods:
        sig = stats.significance(m, x, y)
        value = sig["value"]
        res["coefficients"][m] = {"value": value, "p": sig["p"], "p_method": sig["p_method"],
                                  "agreement": None if sign is None else sign * value,
                                  "interval": stats.interval(m, value, n, confidence)}
    res["verdict"] = _verdict(res, confidence)
    if n < stats.MIN_N_INTERVAL:
        msg.append(f"n = {n}: exact permutation p-values but no interval (Fisher-z intervals need at least "
                   f"{stats.MIN_N_INTERVAL} tokenizers)")
    if n < MIN_N_RESAMPLE:
        res["status"] = "few"
        msg.append(f"only {n} tokenizers: point estimates and p-values only; no bootstrap CI or leave-one-out "
                   f"(needs at least {MIN_N_RESAMPLE})")
        return res
    boot = stats.bootstrap(x, y, methods, n_resamples=n_resamples, seed=seed, confidence=confidence)
    loo = stats.leave_one_out(x, y, names, methods)
    for m in methods:
        res["coefficients"][m]["bootstrap"] = boot[m]
        res["coefficients"][m]["loo"] = loo[m]
        if boot[m]["n_degenerate"]:
            msg.append(f"{stats.SYMBOL[m]}: {boot[m]['n_degenerate']} of {boot[m]['n_resamples']} bootstrap "
                       "resamples were degenerate (a constant column: coefficient undefined) and are excluded "
                       "from the interval")
    if n < 10:
        msg.append(f"n = {n}: with so few tokenizers one tokenizer can move the verdict; read the leave-one-out "
                   "range and the CI, not only the point estimate")
    return res


def _verdict(res: dict, confidence: float) -> str:
    """The one verdict (Spearman's p and interval; stats.verdict): never contradicts the printed p and CI."""
    c = res["coefficients"].get("spearman")
    if not c:
        return "–"
    return stats.verdict(c.get("agreement"), c.get("p"), c.get("interval"), res["expected_sign"], 1.0 - confidence)


def compare_pair(df: pd.DataFrame, a: str, b: str, target: str, *, methods: Sequence[str] = ("spearman", "kendall"),
                 n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95) -> dict:
    """Is A a better predictor of the target than B? Paired bootstrap of agreement(A) − agreement(B) on the
    tokenizers that have A, B and the target."""
    for c in (a, b):
        if c not in df.columns:
            raise ValueError(f"--compare: no column {c!r}")
    sub = df[[NAME_COLUMN, a, b, target]]
    ok = sub[[a, b, target]].notna().all(axis=1)
    names = sub.loc[ok, NAME_COLUMN].astype(str).tolist()
    n = len(names)
    res = {"a": a, "b": b, "target": target, "n": n, "tokenizers": names,
           "left_out": sub.loc[~ok, NAME_COLUMN].astype(str).tolist(), "methods": {}, "status": "ok",
           "messages": []}
    sa, sb = expected_sign(a, target), expected_sign(b, target)
    if sa is None or sb is None:
        res["messages"].append("a direction is unknown: compared raw coefficients (sign +1)")
    sa, sb = sa or 1.0, sb or 1.0
    if res["left_out"]:
        res["messages"].append(f"left out for a missing {a}, {b} or {target}: {', '.join(res['left_out'])}")
    if n < MIN_N_RESAMPLE:
        res["status"] = "too_few"
        res["messages"].append(f"only {n} tokenizer(s) have {a}, {b} and {target}: no comparison "
                               f"(needs at least {MIN_N_RESAMPLE})")
        return res
    xa, xb, y = (sub.loc[ok, c].to_numpy(dtype=float) for c in (a, b, target))
    for col, v in ((a, xa), (b, xb), (target, y)):
        if stats.is_constant(v):
            res["status"] = "constant"
            res["messages"].append(f"{col} is constant over these {n} tokenizers: no comparison")
            return res
    for m in methods:
        d = stats.paired_difference(xa, xb, y, m, sa, sb, n_resamples=n_resamples, seed=seed, confidence=confidence)
        res["methods"][m] = d
        if d["n_degenerate"]:
            res["messages"].append(f"{stats.SYMBOL[m]}: {d['n_degenerate']} of {d['n_resamples']} paired resamples "
                                   "degenerate (a constant column) and excluded")
    return res


def default_comparisons(metrics: Sequence[str]) -> list[tuple[str, str]]:
    """Every pFID setting against rFID: the question tokbench exists to answer."""
    if "rfid" not in metrics:
        return []
    return [(m, "rfid") for m in metrics if m == "pfid" or m.startswith("pfid@")]


def analyse(df: pd.DataFrame, target: str, metrics: Sequence[str], *, label: str = "all rows", key: str = "all",
            collapse: str = "best", compare: Sequence[tuple[str, str]] | None = None,
            methods: Sequence[str] = stats.METHODS, n_resamples: int = 10_000, seed: int = 0,
            confidence: float = 0.95) -> dict:
    """One section of the report: every metric against the target on these rows."""
    if target not in df.columns:
        raise ValueError(f"no target column {target!r} (columns: {', '.join(map(str, df.columns))})")
    df, collapse_notes = collapse_duplicates(df, target, collapse)
    section = {"key": key, "label": label, "target": target, "target_direction": direction(target),
               "n_rows": int(len(df)),
               "n_with_target": int(df[target].notna().sum()), "collapsed": collapse_notes, "metrics": [],
               "comparisons": []}
    if "generator" in df.columns:
        gens = sorted({g for g in df.loc[df[target].notna(), "generator"].astype(str) if g and g != "nan"})
        section["generators"] = gens
    kw = dict(n_resamples=n_resamples, seed=seed, confidence=confidence)
    for m in metrics:
        section["metrics"].append(analyse_pair(df, m, target, methods=methods, **kw))
    pairs = list(compare) if compare is not None else default_comparisons(metrics)
    for a, b in pairs:
        if a in df.columns and b in df.columns:
            section["comparisons"].append(compare_pair(df, a, b, target,
                                                       methods=[m for m in methods if m != "pearson"] or methods,
                                                       **kw))
    return section


def group_values(df: pd.DataFrame, by: str) -> list[str]:
    if by not in df.columns:
        raise ValueError(f"--by: no column {by!r} (columns: {', '.join(map(str, df.columns))})")
    vals = df[by].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return list(dict.fromkeys(vals))


def build_report(df: pd.DataFrame, target: str, metrics: Sequence[str], *, by: str | None = None,
                 collapse: str = "best", compare: Sequence[tuple[str, str]] | None = None,
                 methods: Sequence[str] = stats.METHODS, n_resamples: int = 10_000, seed: int = 0,
                 confidence: float = 0.95, inputs: dict | None = None, notes: Sequence[str] = ()) -> dict:
    """The whole report: a pooled section over all rows, then one section per value of `by` (if given)."""
    if n_resamples < 1:
        raise ValueError("--resamples must be at least 1")
    if not 0 < confidence < 1:
        raise ValueError("--confidence must lie in (0, 1)")
    kw = dict(collapse=collapse, compare=compare, methods=methods, n_resamples=n_resamples, seed=seed,
              confidence=confidence)
    notes = list(notes)
    pooled_label = "all rows"
    if df[NAME_COLUMN].duplicated().any():
        pooled_label = (f"all rows, one per tokenizer ({collapse} {target} over its rows"
                        + (f", i.e. over {by} values: mixed {by}s, confounded" if by else "") + ")")
    sections = [analyse(df, target, metrics, label=pooled_label, key="all", **kw)]
    if by:
        for v in group_values(df, by):
            sub = df[df[by].map(lambda c: "" if c is None or (isinstance(c, float) and math.isnan(c)) else str(c))
                     == v]
            with_t = sub.loc[sub[target].notna(), NAME_COLUMN].astype(str).unique().tolist()
            if len(with_t) < MIN_N_COEF:
                notes.append(f"{by} = {v or '(empty)'}: {len(with_t)} tokenizer(s) with {target}"
                             + (f" ({', '.join(with_t)})" if with_t else "")
                             + f": too few for a correlation (needs at least {MIN_N_COEF}); no section")
                continue
            sections.append(analyse(sub, target, metrics, label=f"{by} = {v or '(empty)'}",
                                    key=f"{by}-{v or 'empty'}", **kw))
    return {"schema": SCHEMA, "target": target, "target_direction": direction(target), "metrics": list(metrics),
            "by": by, "collapse": collapse, "inputs": inputs or {}, "notes": notes,
            "settings": {"methods": list(methods), "n_resamples": n_resamples, "seed": seed,
                         "confidence": confidence, "bootstrap": "percentile, resampling tokenizers with replacement",
                         "p_values": P_VALUE_NOTE, "interval": INTERVAL_NOTE, "verdict": VERDICT_NOTE,
                         "min_n_coefficient": MIN_N_COEF, "min_n_bootstrap": MIN_N_RESAMPLE,
                         "min_n_interval": stats.MIN_N_INTERVAL},
            "direction_note": DIRECTION_NOTE, "sections": sections}


DIRECTION_NOTE = ("FID-like metrics (rFID, pFID, gFID) are lower-is-better, so a metric that predicts gFID shows a "
                  "positive correlation with it; higher-is-better metrics (PSNR, SSIM, usage, perplexity) agree "
                  "with gFID through a negative one. `agreement` = coefficient × expected sign: positive means the "
                  "metric orders tokenizers as the target does.")

P_VALUE_NOTE = ("two-sided permutation p-values: Spearman without ties exact over all n! orderings; Kendall without "
                "ties scipy's exact distribution; Pearson or ties scipy.stats.permutation_test, exact while n ≤ 8, "
                f"else {stats.MC_RESAMPLES:,} Monte Carlo resamples (seed {stats.MC_SEED})")
INTERVAL_NOTE = ("Fisher-z intervals (Pearson se 1/sqrt(n-3); Spearman Bonett-Wright sqrt((1+ρ²/2)/(n-3)); Kendall "
                 f"sqrt(0.437/(n-4))) for n ≥ {stats.MIN_N_INTERVAL}; coverage checked by simulation at n = 8; "
                 "the percentile bootstrap is kept for reference and paired comparisons")
VERDICT_NOTE = ("'agrees?' from Spearman: yes / reversed only when p < 1 − confidence AND the interval excludes 0 "
                "on that side; otherwise unclear, saying why")
