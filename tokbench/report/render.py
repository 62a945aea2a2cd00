"""Text forms of a correlation report: the printed table, `correlation.md` and `correlation.json`."""

from __future__ import annotations

import json
import math
from typing import Any

from ..io import write_text_atomic  # noqa: F401 - re-exported (one implementation)
from .stats import SYMBOL

STATUS_TEXT = {"ok": "", "few": "point estimates only", "too_few": "too few tokenizers", "constant": "constant column"}


def clean_json(obj: Any) -> Any:
    """NaN/inf → null (JSON has no NaN), numpy scalars → Python."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(report: dict) -> str:
    return json.dumps(clean_json(report), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _f(v, fmt="+.3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt)


def _p(p) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def coef_cell(c: dict | None) -> str:
    if not c:
        return "–"
    return f"{_f(c['value'])} (p={_p(c['p'])})"


def ci_cell(c: dict | None) -> str:
    b = (c or {}).get("interval")
    if not b:
        return "–"
    return f"[{_f(b['ci_low'])}, {_f(b['ci_high'])}]"


def loo_cell(c: dict | None) -> str:
    lo = (c or {}).get("loo")
    if not lo or lo.get("min") is None or math.isnan(lo["min"]):
        return "–"
    return f"{_f(lo['min'])} … {_f(lo['max'])}"


def metric_rows(section: dict) -> list[list[str]]:
    """One row per metric: the table both the console and the markdown print."""
    out = []
    for r in section["metrics"]:
        c = r["coefficients"]
        out.append([r["metric"], r["metric_direction"], str(r["n"]), coef_cell(c.get("pearson")),
                    coef_cell(c.get("spearman")), ci_cell(c.get("spearman")), loo_cell(c.get("spearman")),
                    coef_cell(c.get("kendall")), ci_cell(c.get("kendall")), loo_cell(c.get("kendall")),
                    _agreement(r), STATUS_TEXT.get(r["status"], r["status"])])
    return out


HEADER = ["metric", "better", "n", "Pearson r (p)", "Spearman ρ (p)", "ρ 95% CI", "ρ leave-one-out",
          "Kendall τ_b (p)", "τ_b 95% CI", "τ_b leave-one-out", "agrees?", "note"]


def _agreement(r: dict) -> str:
    """The analysis' one verdict (stats.verdict on Spearman's printed p and interval)."""
    return r.get("verdict") or "–"


def comparison_rows(section: dict) -> list[list[str]]:
    out = []
    for c in section["comparisons"]:
        if not c["methods"]:
            out.append([f"{c['a']} vs {c['b']}", str(c["n"]), "–", "–", "–", "–", "; ".join(c["messages"])])
            continue
        for m, d in c["methods"].items():
            out.append([f"{c['a']} vs {c['b']}", str(c["n"]), SYMBOL[m], _f(d["delta"]),
                        f"[{_f(d['ci_low'])}, {_f(d['ci_high'])}]", _f(d["share_a_better"], ".1%"),
                        f"{d['n_degenerate']} degenerate" if d["n_degenerate"] else ""])
    return out


COMPARISON_HEADER = ["A vs B", "n", "coef", "Δ agreement (A − B)", "95% CI", "resamples A better", "note"]


def _table_text(header: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(header))]
    lines += ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    return "\n".join(lines)


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _section_messages(section: dict) -> list[str]:
    out = []
    for n in section.get("collapsed", []):
        out.append(f"duplicate rows: {n}")
    for r in section["metrics"]:
        for m in r["messages"]:
            out.append(f"{r['metric']}: {m}")
        for meth, c in r["coefficients"].items():
            lo = c.get("loo")
            if lo and lo.get("min_without"):
                out.append(f"{r['metric']}: leave-one-out {SYMBOL[meth]} lowest {_f(lo['min'])} without "
                           f"{lo['min_without']}, highest {_f(lo['max'])} without {lo['max_without']}")
    for c in section["comparisons"]:
        for m in c["messages"]:
            out.append(f"{c['a']} vs {c['b']}: {m}")
    return out


def _section_head(section: dict) -> str:
    s = (f"{section['label']} — target {section['target']} ({section['target_direction']} is better); "
         f"{section['n_rows']} row(s), {section['n_with_target']} with {section['target']}")
    if section.get("generators"):
        s += f"; generators: {', '.join(section['generators'])}"
    return s


def coverage_text(cov: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in cov.items())


def _short(m: str, limit: int = 260) -> str:
    return m if len(m) <= limit else m[:limit].rsplit(" ", 1)[0] + " … (full list in the .md/.json)"


def to_console(report: dict) -> str:
    out = []
    for s in report["sections"]:
        out += ["", "== " + _section_head(s) + " ==", _table_text(HEADER, metric_rows(s))]
        if s["comparisons"]:
            out += ["", _table_text(COMPARISON_HEADER, comparison_rows(s))]
        msgs = _section_messages(s)
        if msgs:
            out += [""] + [f"  - {_short(m)}" for m in msgs]
    if report.get("coverage"):
        out.append("coverage (distinct tokenizers): " + coverage_text(report["coverage"]))
    for n in report.get("notes", []):
        out.append(f"note: {_short(n)}")
    out += ["", report["direction_note"]]
    return "\n".join(out).lstrip("\n") + "\n"


def to_markdown(report: dict, plots: dict[str, list[str]] | None = None) -> str:
    st = report["settings"]
    out = [f"# Which tokenizer metric predicts {report['target']}?", "",
           "Generated by `tokbench correlate`; do not edit by hand.", "",
           f"**Direction.** {report['direction_note']}", "",
           f"**Statistics.** Pearson r, Spearman ρ and Kendall τ_b; p: {st.get('p_values', 'scipy')}. "
           f"{st['confidence']:.0%} CI: {st.get('interval', st['bootstrap'])}. Verdict: {st.get('verdict', '')}. "
           f"Leave-one-out = the coefficient with each tokenizer removed in turn. Coefficients need ≥ "
           f"{st['min_n_coefficient']} tokenizers. Comparisons: paired {st['bootstrap']} bootstrap "
           f"({st['n_resamples']:,} resamples, seed {st['seed']}; the same tokenizers drawn for both metrics) of the "
           "difference in agreement.", ""]
    inp = report.get("inputs") or {}
    if inp:
        out += ["**Inputs.** " + "; ".join(f"{k}: {v}" for k, v in inp.items() if v not in (None, "", [])), ""]
    cov = report.get("coverage")
    if cov:
        out += ["**Coverage** (distinct tokenizers): " + coverage_text(cov) + ".", ""]
    for n in report.get("notes", []):
        out.append(f"- {n}")
    if report.get("notes"):
        out.append("")
    for s in report["sections"]:
        out += [f"## {s['label']}", "", _section_head(s) + ".", "", _table_md(HEADER, metric_rows(s)), ""]
        if s["comparisons"]:
            out += ["Is A a better predictor than B? (Δ > 0 and a CI above 0: A is)", "",
                    _table_md(COMPARISON_HEADER, comparison_rows(s)), ""]
        for r in s["metrics"]:
            if r["n"]:
                vals = ", ".join(f"{v['tokenizer']} ({v['metric']:g}, {v['target']:g})" for v in r["values"])
                out.append(f"- {r['metric']} vs {r['target']} on {r['n']} tokenizer(s): {vals}")
        msgs = _section_messages(s)
        out += [f"- {m}" for m in msgs]
        for key in (plots or {}).get(s["label"], []):
            out += ["", f"![{key}]({key})"]
        out.append("")
    return "\n".join(out).rstrip() + "\n"
