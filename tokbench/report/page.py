"""`index.html` beside a leaderboard: the page a researcher reads first. Order: the protocol banner (the FID
network's weights in bold when they are not the real Inception), the leaderboard formatted as in `leaderboard.md`,
pFID-versus-α curves and a rank plot, per-tokenizer failure galleries (from `--save-images`), then the correlation
analysis, with everything diagnostic collapsed. Written by `tokbench run`, `tokbench leaderboard` and
`tokbench correlate`, so it never lags behind the numbers."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any, Sequence

from ..results.result import Result, read
from ..runner.leaderboard import _fmt, gfid_lines, protocol_lines
from ..runner.schema import safe_name
from . import html as page_html
from . import plots
from . import render

GALLERY_K = 6  # images per tokenizer in a failure gallery


def _md_inline(s: str) -> str:
    """The leaderboard's protocol lines are markdown: `code` and **bold** only."""
    s = html.escape(s)
    s = re.sub(r"`([^`]*)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r'<b class="warn">\1</b>', s)


def _extractor(board: dict) -> dict:
    return ((board.get("protocol") or {}).get("fid") or {}).get("extractor") or {}


def banner(board: dict) -> str:
    """What every number on the page was measured under; the weights source in bold when not the real network."""
    if not board.get("protocol"):
        return '<div class="banner" id="protocol-banner"><p>No successful results yet.</p></div>'
    ex = _extractor(board)
    random = bool(ex.get("random_weights"))
    head = (f'<p class="weights{" random" if random else ""}">FID network: <b>'
            + (f"RANDOM-WEIGHT Inception ({html.escape(str(ex.get('weights')))}), not the real network: these "
               "numbers rank tokenizers on this page only and are not comparable with any published FID"
               if random else f"{html.escape(str(ex.get('extractor')))} with weights "
               f"{html.escape(str(ex.get('weights')))}"
               + (f" ({html.escape(str(ex['weights_source']))})" if ex.get("weights_source") else "")) + "</b></p>")
    lines = "".join(f"<li>{_md_inline(ln.lstrip('- '))}</li>" for ln in protocol_lines(board["protocol"])
                    + gfid_lines(board) if ln.strip())
    return (f'<div class="banner" id="protocol-banner" data-random-weights="{int(random)}">{head}'
            f'<p>Suite <code>{html.escape(str(board.get("suite")))}</code>; sorted by '
            f'{html.escape(str(board.get("sorted_by")))} (lower is better).</p><ul>{lines}</ul></div>')


PAGE_OMITS = ("weights", "weights_sha256", "entropy_norm", "usage/256img")  # in leaderboard.md/.csv; weights under
# Diagnostics: the table fits 1,400 px without sideways scrolling


def leaderboard_table(board: dict) -> str:
    """The rows as `leaderboard.md` prints them (same formatting, pFID ± std over seeds)."""
    if not board.get("rows"):
        return '<p class="note">No successful results in the leaderboard.</p>'
    cols = [c for c in board["columns"] if c not in PAGE_OMITS]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for r in board["rows"]:
        cells = []
        for c in cols:
            v = r.get(c)
            txt = _fmt(v, c)
            if c in board.get("pfid_columns", []) and r.get(c + " std") is not None:
                txt += f" ± {r[c + ' std']:.2f}"
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            cls = ' class="num"' if num else (' class="path"' if c == "weights" else "")
            cells.append(f'<td{cls} data-v="{html.escape(repr(v) if num else "")}">{html.escape(txt)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wrap"><table class="sortable" id="leaderboard"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div><p class="note">Weights files and their sha256, normalised '
            "entropy and per-window usage: in <code>leaderboard.md</code> / <code>.csv</code>; weights also under "
            "Diagnostics.</p>")


def _curves(results: Sequence[Result]) -> dict[str, dict[str, list]]:
    """{tokenizer: {"δ=…, mode": [[α, mean, std], …]}} with α = 0 being rFID (no token re-drawn)."""
    out: dict[str, dict[str, list]] = {}
    for r in results:
        rfid = r.metric_values()["rfid"]
        for p in r.pfid:
            key = f"δ={p.delta:g}, {p.mode} rule"
            pts = out.setdefault(r.tokenizer, {}).setdefault(key, [])
            if rfid is not None and not any(a == 0 for a, *_ in pts):
                pts.append([0.0, rfid, 0.0])
            pts.append([p.alpha, p.mean, p.std or 0.0])
    return out


def curve_svg(results: Sequence[Result], out_dir: Path) -> str:
    curves = _curves(results)
    if not curves:
        return ""
    paths = plots.pfid_curve_figure(curves, out_dir / "plots", stem="run_pfid_vs_alpha")
    svg = [p for p in paths if p.suffix == ".svg"]
    return page_html.inline_svg(svg[0]) if svg else ""


def rank_svg(board: dict, out_dir: Path) -> str:
    """Each tokenizer's rank (1 = best) under rFID, every pFID setting and gFID: crossing lines are where the
    metrics disagree."""
    rows = board.get("rows") or []
    metrics = [c for c in ["rFID", *board.get("pfid_columns", []), "gFID"]
               if sum(r.get(c) is not None for r in rows) >= 2]
    if len(rows) < 2 or len(metrics) < 2:
        return ""
    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(metrics), 0.9 + 0.32 * len(rows)))
    n = len(rows)
    for r in rows:
        xs, ys = [], []
        for i, c in enumerate(metrics):
            vals = sorted(x.get(c) for x in rows if x.get(c) is not None)
            if r.get(c) is not None:
                xs.append(i)
                ys.append(vals.index(r[c]) + 1)
        ax.plot(xs, ys, marker="o", ms=4, lw=1.2)
        if xs:
            ax.annotate(r["tokenizer"], (xs[-1], ys[-1]), xytext=(6, 0), textcoords="offset points", fontsize=7,
                        va="center")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([c.replace(" (", "\n(") for c in metrics], fontsize=7)
    ax.set_yticks(range(1, n + 1))
    ax.set_ylim(n + 0.5, 0.5)
    ax.set_xlim(-0.3, len(metrics) - 0.4)
    ax.set_ylabel("rank (1 = best)")
    ax.grid(alpha=0.25)
    ax.set_title("rank of each tokenizer under each metric", fontsize=9)
    fig.tight_layout()
    paths = plots._save(fig, out_dir / "plots", "run_ranks")
    plt.close(fig)
    return page_html.inline_svg(next(p for p in paths if p.suffix == ".svg"))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def failure_gallery(name: str, image_dir: Path, k: int = GALLERY_K) -> str:
    """The k images whose reconstruction changes most under perturbation (mean squared difference between the
    clean reconstruction and the perturbed one, per setting saved by `--save-images`)."""
    import numpy as np
    from PIL import Image

    clean = image_dir / "clean"
    settings = sorted(d for d in image_dir.iterdir() if d.is_dir() and d.name != "clean") if image_dir.is_dir() else []
    if not clean.is_dir() or not settings:
        return ""
    pert = settings[-1]  # the strongest setting by label order (a…α largest last for one δ)
    scored = []
    for p in sorted(clean.glob("*.png")):
        q = pert / p.name
        if q.is_file():
            a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64)
            b = np.asarray(Image.open(q).convert("RGB"), dtype=np.float64)
            if a.shape == b.shape:
                scored.append((float(((a - b) ** 2).mean()), p, q))
    scored.sort(key=lambda t: (-t[0], t[1].name))
    if not scored:
        return ""
    cells = "".join(
        f'<figure class="pair"><img src="{_data_uri(p)}" alt="{html.escape(name)} clean {p.stem}">'
        f'<img src="{_data_uri(q)}" alt="{html.escape(name)} perturbed {p.stem}">'
        f"<figcaption>#{int(p.stem) if p.stem.isdigit() else html.escape(p.stem)} · MSE {mse:.0f}</figcaption></figure>"
        for mse, p, q in scored[:k])
    return (f'<h3>{html.escape(name)}</h3><p class="note">left: reconstruction of the clean tokens; right: from '
            f"tokens perturbed with <code>{html.escape(pert.name)}</code>; the {min(k, len(scored))} of "
            f"{len(scored)} images that change most.</p><div class=\"gallery\">{cells}</div>")


def _read_results(runs: Sequence[str | Path]) -> list[tuple[Result, Path]]:
    """The successful results in runs (folders or files), each with its folder; other files are passed over."""
    out = []
    for d in runs:
        d = Path(d)
        for f in sorted(d.glob("*.json")) if d.is_dir() else ([d] if d.suffix == ".json" else []):
            try:
                r = read(f)
            except (OSError, ValueError):
                continue
            if r.ok and "tokenizer" in r.raw:
                out.append((r, f.parent))
    return out


def _details(summary: str, body: str, ident: str = "") -> str:
    i = f' id="{ident}"' if ident else ""
    return f"<details{i}><summary>{html.escape(summary)}</summary>{body}</details>"


def build(out_dir: str | Path, *, runs: Sequence[str | Path] = (), report: dict | None = None,
          figures: dict[str, list[Path]] | None = None, data_rows: list[dict] | None = None,
          data_columns: Sequence[str] = (), leaderboard: str | Path | None = None,
          title: str = "tokbench results") -> str:
    """The whole page. `report`: a correlation report (default: `<out_dir>/correlation.json` when present)."""
    out_dir = Path(out_dir)
    if not runs and (out_dir / "runs").is_dir():  # the leaderboard's own run folder (`tokbench run --out`'s layout)
        runs = [out_dir / "runs"]
    lb_path = Path(leaderboard) if leaderboard else out_dir / "leaderboard.json"
    board: dict[str, Any] = {}
    if lb_path.is_file():
        try:
            board = json.loads(lb_path.read_text())
        except (OSError, ValueError):
            board = {}
    if report is None and (out_dir / "correlation.json").is_file():
        try:
            report = json.loads((out_dir / "correlation.json").read_text())
            figures = {k: [out_dir / p for p in v] for k, v in (report.get("figures") or {}).items()}
        except (OSError, ValueError):
            report = None
    e = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>",
             '<meta name=viewport content="width=device-width,initial-scale=1">',
             f"<style>{page_html.CSS}{CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if board:
        parts += ["<h2>Leaderboard</h2>", banner(board), leaderboard_table(board)]
    else:
        parts.append('<p class="note">No leaderboard here yet: <code>tokbench run</code> writes one.</p>')
    results = [r for r, _ in _read_results(runs)]
    names = {r.tokenizer for r in results}
    if board.get("rows") and board.get("protocol_hash"):  # curves only of what the leaderboard shows
        keep = {r["tokenizer"] for r in board["rows"]}
        results = [r for r in results if r.tokenizer in keep and r.protocol.get("hash") == board.get("protocol_hash")]
    figs = []
    if results:
        c = curve_svg(results, out_dir)
        if c:
            figs.append(f'<figure>{c}<figcaption>pFID versus α (α = 0 is rFID: no token re-drawn).</figcaption>'
                        "</figure>")
    r_svg = rank_svg(board, out_dir) if board else ""
    if r_svg:
        figs.append(f"<figure>{r_svg}<figcaption>Ranks under each metric.</figcaption></figure>")
    if figs:
        parts += ["<h2>pFID versus α and ranks</h2>", '<div class="figs">' + "".join(figs) + "</div>"]
    galleries = []
    for runs_dir in {d for _, d in _read_results(runs)}:
        for n in sorted(names):
            g = failure_gallery(n, runs_dir / "images" / safe_name(n))
            if g:
                galleries.append(g)
    parts.append("<h2>Failure galleries</h2>")
    parts.append("".join(galleries) if galleries else
                 '<p class="note">No saved images: run with <code>--save-images</code> to see, per tokenizer, the '
                 "images whose reconstruction degrades most under perturbation.</p>")
    if report:
        parts.append(correlation_section(report, figures or {}))
    diag = []
    for k in ("failed", "refused"):
        if board.get(k):
            diag.append(f"<p>{k}:</p><ul class=msgs>" + "".join(
                f"<li>{e(str(i.get('tokenizer')))}: {e(str(i.get('reason')))}</li>" for i in board[k]) + "</ul>")
    if board.get("rows"):
        diag.append("<p>weights (sha256, first 12 hex digits):</p><ul class=msgs>" + "".join(
            f"<li>{e(str(r['tokenizer']))}: <code>{e(str(r.get('weights') or '–'))}</code> "
            f"(<code>{e(str(r.get('weights_sha256') or '–'))}</code>)</li>"
            for r in board["rows"]) + "</ul>")
    if board.get("versions"):
        diag.append(f"<p>versions: {e(', '.join(f'{k} {v}' for k, v in board['versions'].items()))}</p>")
    if data_rows:
        diag.append(page_html.table(list(data_columns), [[r.get(c) for c in data_columns] for r in data_rows],
                                    "data"))
    if diag:
        parts += ["<h2>Diagnostics</h2>", _details("failed and refused tokenizers, hashes, versions, input data",
                                                   "".join(diag), "diagnostics")]
    parts.append(f"<script>{page_html.JS}{JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def correlation_section(report: dict, figures: dict[str, list[Path]]) -> str:
    """The correlation analysis: tables and figures visible, every message and note collapsed."""
    e = html.escape
    src = report.get("inputs") or {}
    what = []
    if src.get("table"):
        what.append("tables " + ", ".join(map(str, src["table"])) + " (numbers as published, each under its paper's "
                    "own protocol; not measured here and not comparable with the leaderboard above)")
    if src.get("runs"):
        what.append("result files under " + ", ".join(map(str, src["runs"])))
    parts = [f"<h2>Which metric predicts {e(report['target'])}?</h2>",
             f'<p class="note">Inputs: {e("; ".join(what) or "–")}. {e(report["direction_note"])}</p>']
    st = report["settings"]
    notes = [f"Pearson / Spearman / Kendall τ_b; p: {st.get('p_values', 'scipy')}. {st['confidence']:.0%} CI: "
             f"{st.get('interval', st['bootstrap'])}. Verdict: {st.get('verdict', '')}. Comparisons: paired "
             f"{st['bootstrap']} bootstrap, {st['n_resamples']:,} resamples, seed {st['seed']}."]
    if report.get("coverage"):
        notes.append("Coverage (distinct tokenizers): " + render.coverage_text(report["coverage"]) + ".")
    notes += list(report.get("notes", []))
    parts.append(_details(f"how these were computed ({len(notes)} notes)",
                          "<ul class=msgs>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>"))
    for s in report["sections"]:
        parts.append(f"<h3>{e(s['label'])}</h3><p class=note>{e(render._section_head(s))}</p>")
        rows = render.metric_rows(s)
        coef = [i for i, h in enumerate(render.HEADER) if str(h).split(" ")[0] in ("Pearson", "Spearman", "Kendall")]
        if coef and all(r[i] in ("", "–") for r in rows for i in coef):  # an all-"–" table says nothing
            parts.append(f'<p class="note">Too few tokenizers for any coefficient here ({s["n_with_target"]} with '
                         f"{e(s['target'])}).</p>")
        else:
            parts.append(page_html.table(render.HEADER, rows, f"corr-{s['key']}"))
        if s["comparisons"]:
            parts.append(_details("is A a better predictor than B?",
                                  page_html.table(render.COMPARISON_HEADER, render.comparison_rows(s),
                                                  f"cmp-{s['key']}")))
        msgs = render._section_messages(s)
        if msgs:
            parts.append(_details(f"{len(msgs)} message(s)",
                                  "<ul class=msgs>" + "".join(f"<li>{e(m)}</li>" for m in msgs) + "</ul>"))
        svgs = [p for p in figures.get(s["key"], []) if Path(p).suffix == ".svg" and Path(p).is_file()]
        if svgs:
            parts.append('<div class="figs">' + "".join(
                f"<figure>{page_html.inline_svg(p)}<figcaption>{e(Path(p).stem)}</figcaption></figure>"
                for p in svgs) + "</div>")
    return "\n".join(parts)


def write_results_page(out_dir: str | Path, **kw: Any) -> Path:
    """Build and atomically write `<out_dir>/index.html`."""
    out = Path(out_dir) / "index.html"
    render.write_text_atomic(out, build(out_dir, **kw))
    return out


CSS = """
.banner{border:1px solid #c9d3e0;background:#f6f8fb;padding:8px 14px;border-radius:4px;margin:8px 0 14px}
.banner ul{margin:4px 0;padding-left:18px;font-size:12.5px}.banner li{overflow-wrap:anywhere}
.weights.random b,.warn{color:#a40000}
table.sortable{max-width:100%}
table.sortable th,table.sortable td{white-space:normal}table.sortable td.num{white-space:nowrap}
table.sortable td.path{font-size:11px;max-width:260px;white-space:normal;overflow-wrap:anywhere}
.msgs li{overflow-wrap:anywhere}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{flex:1 1 600px;min-width:0;max-width:100%}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
figure.pair{margin:0;text-align:center}figure.pair img{width:96px;height:96px;image-rendering:pixelated;
border:1px solid #ccc;margin:1px}
details{margin:8px 0 14px}summary{cursor:pointer;color:#333}
code{overflow-wrap:anywhere}
"""

JS = """
window.addEventListener('load',function(){
  var imgs=document.images,bad=0,i;
  for(i=0;i<imgs.length;i++){if(!(imgs[i].complete&&imgs[i].naturalWidth>0)){bad++;}}
  var over=0,what=[],boxes=document.querySelectorAll('.wrap,table,figure,.banner,details');
  for(i=0;i<boxes.length;i++){if(boxes[i].scrollWidth>boxes[i].clientWidth+1&&boxes[i].clientWidth>0){over++;
    what.push(boxes[i].tagName+'#'+(boxes[i].id||'')+'.'+boxes[i].className+':'+boxes[i].scrollWidth);}}
  var b=document.body;
  b.setAttribute('data-images',String(imgs.length));
  b.setAttribute('data-broken-images',String(bad));
  b.setAttribute('data-scroll-width',String(document.documentElement.scrollWidth));
  b.setAttribute('data-overflowing',String(over));
  b.setAttribute('data-overflow-what',what.slice(0,5).join(' '));
});
"""
