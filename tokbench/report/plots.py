"""Figures of a correlation report (matplotlib, Agg backend, PNG + SVG): each metric against the target with
tokenizer labels, in value space (least-squares line) and rank space (the rank fit: the least-squares line through
the mean ranks, whose slope is Spearman's ρ when there are no ties); and pFID-versus-α curves of all tokenizers.

Output is deterministic (fixed SVG hash salt, no dates in metadata) so committed figures only change when the
numbers do."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..io import atomic_path
from .stats import SYMBOL

_META_SVG = {"Date": None, "Creator": "tokbench correlate"}
_META_PNG = {"Software": "tokbench correlate"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "tokbench", "svg.fonttype": "none", "font.size": 9})
    return plt


def slug(s: str) -> str:
    s = s.replace("@", "_").replace("=", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, meta in (("png", _META_PNG), ("svg", _META_SVG)):
        p = out_dir / f"{stem}.{ext}"
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=ext, dpi=120 if ext == "png" else None, metadata=meta, bbox_inches="tight")
        paths.append(p)
    return paths


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.2f}"


def _label_points(ax, xs, ys, names):
    for x, y, n in zip(xs, ys, names):
        ax.annotate(n, (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7, alpha=0.85)


def _line(ax, xs, ys, **kw):
    if len(set(xs)) < 2:
        return
    a, b = np.polyfit(xs, ys, 1)
    t = np.linspace(min(xs), max(xs), 2)
    ax.plot(t, a * t + b, **kw)


def metric_figure(result: dict, section_label: str, out_dir: Path, stem: str) -> list[Path]:
    """Two panels: values with a least-squares line, and ranks with the rank fit."""
    from scipy.stats import rankdata

    plt = _plt()
    names = [v["tokenizer"] for v in result["values"]]
    x = np.array([v["metric"] for v in result["values"]])
    y = np.array([v["target"] for v in result["values"]])
    c = result["coefficients"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    a1.scatter(x, y, s=22, color="#1f77b4", zorder=3)
    _label_points(a1, x, y, names)
    _line(a1, x, y, color="#999", lw=1, ls="--", label="least squares")
    a1.set_xlabel(f"{result['metric']} ({result['metric_direction']} is better)")
    a1.set_ylabel(f"{result['target']} ({result['target_direction']} is better)")
    a1.set_title(f"values: Pearson r = {_fmt(c.get('pearson', {}).get('value'))}")
    rx, ry = rankdata(x), rankdata(y)
    a2.scatter(rx, ry, s=22, color="#d62728", zorder=3)
    _label_points(a2, rx, ry, names)
    _line(a2, rx, ry, color="#d62728", lw=1, alpha=0.6, label="rank fit")
    a2.set_xlabel(f"rank of {result['metric']} (1 = lowest)")
    a2.set_ylabel(f"rank of {result['target']} (1 = lowest)")
    sp, kd = c.get("spearman", {}), c.get("kendall", {})
    ci = sp.get("interval")
    ci_txt = f", {ci['confidence']:.0%} CI [{_fmt(ci['ci_low'])}, {_fmt(ci['ci_high'])}]" if ci else ""
    a2.set_title(f"ranks: {SYMBOL['spearman']} = {_fmt(sp.get('value'))}{ci_txt}, "
                 f"{SYMBOL['kendall']} = {_fmt(kd.get('value'))}")
    for ax in (a1, a2):
        ax.grid(alpha=0.25)
        ax.legend(loc="best", fontsize=7, frameon=False)
    sign = result.get("expected_sign")
    good = {1.0: "positive", -1.0: "negative"}.get(sign, "unknown")
    fig.suptitle(f"{result['metric']} vs {result['target']} — {section_label} (n = {result['n']}; agreement is a "
                 f"{good} coefficient)", fontsize=9)
    fig.tight_layout()
    paths = _save(fig, out_dir, stem)
    plt.close(fig)
    return paths


def section_figures(report: dict, out_dir: str | Path) -> dict[str, list[Path]]:
    """{section key: [png, svg, png, svg, …]} for every metric with computed coefficients."""
    out_dir = Path(out_dir)
    made: dict[str, list[Path]] = {}
    for s in report["sections"]:
        for r in s["metrics"]:
            if not r["coefficients"]:
                continue
            stem = f"{slug(s['key'])}__{slug(r['metric'])}_vs_{slug(r['target'])}"
            made.setdefault(s["key"], []).extend(metric_figure(r, s["label"], out_dir, stem))
    return made


def pfid_curve_figure(curves: dict[str, dict[str, list]], out_dir: str | Path,
                      stem: str = "pfid_vs_alpha") -> list[Path]:
    """All tokenizers' pFID-versus-α curves in one figure, one panel per (δ, mode) setting; error bars = std over
    seeds. `curves`: {tokenizer: {"delta=<δ>,mode=<m>": [[α, mean, std], …]}}."""
    keys = sorted({k for c in curves.values() for k in c})
    if not keys:
        return []
    plt = _plt()
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4.0 * nrow), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name in sorted(curves):
            pts = curves[name].get(key)
            if not pts:
                continue
            pts = sorted(pts, key=lambda p: p[0])
            a = [p[0] for p in pts]
            m = [p[1] for p in pts]
            s = [p[2] if len(p) > 2 and p[2] is not None else 0.0 for p in pts]
            ax.errorbar(a, m, yerr=s, marker="o", ms=3, capsize=2, lw=1, label=name)
        ax.set_title(key)
        ax.set_xlabel("α (share of tokens re-drawn)")
        ax.set_ylabel("pFID (lower is better)")
        ax.grid(alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle("pFID versus α, all tokenizers (mean ± std over seeds)", fontsize=9)
    fig.tight_layout()
    paths = _save(fig, Path(out_dir), stem)
    plt.close(fig)
    return paths
