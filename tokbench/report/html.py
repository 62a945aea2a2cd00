"""`results/index.html`: one static, self-contained page (inline CSS and JS, figures as inline SVG) with sortable
tables of the leaderboard, the analysed data and the correlations, and the figures. Opens from disk, no server."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from . import render

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;
padding:0 16px;color:#1b1b1b;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin-top:22px}
.note{color:#555;font-size:13px}.wrap{overflow-x:auto}
table.sortable{border-collapse:collapse;margin:8px 0 12px;font-size:12.5px}
table.sortable th,table.sortable td{border:1px solid #d8d8d8;padding:3px 7px;text-align:left;white-space:nowrap}
table.sortable th{background:#f3f5f8;cursor:pointer;user-select:none;position:sticky;top:0}
table.sortable th:after{content:" \\2195";color:#aaa;font-size:11px}
table.sortable th.asc:after{content:" \\2191";color:#333}table.sortable th.desc:after{content:" \\2193";color:#333}
table.sortable tr:nth-child(even) td{background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
ul.msgs{font-size:12.5px;color:#444}
figure{margin:12px 0 24px}figure svg{max-width:100%;height:auto}
figcaption{font-size:12px;color:#555}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute('data-v'),y=b.cells[i].getAttribute('data-v');
        var nx=parseFloat(x),ny=parseFloat(y);
        var ex=(x===null||x===''||isNaN(nx)),ey=(y===null||y===''||isNaN(ny));
        var r;
        if(!ex&&!ey){r=nx-ny;}else if(ex&&ey){r=a.cells[i].textContent.localeCompare(b.cells[i].textContent);}
        else{return ex?1:-1;}
        return asc?r:-r;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
document.body.setAttribute('data-tables', String(document.querySelectorAll('table.sortable').length));
"""

_NUM = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)")


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<td data-v="">–</td>'
    if isinstance(v, bool):
        return f'<td data-v="{int(v)}">{"yes" if v else "no"}</td>'
    if isinstance(v, (int, float)):
        txt = f"{v:g}" if isinstance(v, float) else str(v)
        return f'<td class="num" data-v="{v!r}">{html.escape(txt)}</td>'
    s = str(v)
    m = _NUM.match(s)
    dv = m.group(1) if m else ""
    cls = ' class="num"' if m else ""
    return f'<td{cls} data-v="{html.escape(dv)}">{html.escape(s)}</td>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in r) + "</tr>" for r in rows)
    tid = f' id="{html.escape(table_id)}"' if table_id else ""
    return (f'<div class="wrap"><table class="sortable"{tid}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def inline_svg(path: str | Path) -> str:
    """An SVG file's <svg> element, without the XML prolog / doctype, for inlining."""
    text = Path(path).read_text()
    i = text.find("<svg")
    return text[i:] if i >= 0 else ""


def leaderboard_html(path: str | Path | None) -> str:
    if path is None or not Path(path).is_file():
        return '<p class="note">No <code>leaderboard.json</code> next to this page yet (written by ' \
               "<code>tokbench run</code> / <code>tokbench leaderboard</code>).</p>"
    try:
        board = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f'<p class="note">leaderboard.json unreadable: {html.escape(str(e))}</p>'
    rows = board.get("rows") if isinstance(board, dict) else board
    if not isinstance(rows, list) or not rows:
        return '<p class="note">The leaderboard has no rows.</p>'
    cols = board.get("columns") if isinstance(board, dict) and board.get("columns") else list(
        dict.fromkeys(k for r in rows for k in r))
    out = []
    if isinstance(board, dict) and board.get("suite"):
        out.append(f'<p class="note">suite <code>{html.escape(str(board["suite"]))}</code>'
                   + (f', protocol hash <code>{html.escape(str(board.get("protocol_hash", ""))[:16])}</code>'
                      if board.get("protocol_hash") else "") + "</p>")
    out.append(table(cols, [[r.get(c) for c in cols] for r in rows], "leaderboard"))
    for k in ("failed", "refused"):
        items = board.get(k) if isinstance(board, dict) else None
        if items:
            out.append(f"<p>{k}:</p><ul class=msgs>" + "".join(
                f"<li>{html.escape(str(i.get('tokenizer')))}: {html.escape(str(i.get('reason')))}</li>"
                for i in items) + "</ul>")
    return "\n".join(out)


def page(report: dict, *, data_rows: list[dict] | None = None, data_columns: Sequence[str] = (),
         figures: dict[str, list[Path]] | None = None, curve_figure: Sequence[Path] = (),
         leaderboard: str | Path | None = None, title: str = "tokbench results") -> str:
    """The whole page as one string."""
    figures = figures or {}
    e = html.escape
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>",
             '<meta name=viewport content="width=device-width,initial-scale=1">',
             f"<style>{CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             '<p class="note">Static page generated by <code>tokbench correlate</code>; click a column header to '
             "sort.</p>",
             "<h2>Leaderboard</h2>", leaderboard_html(leaderboard),
             f"<h2>Which metric predicts {e(report['target'])}?</h2>",
             f"<p>{e(report['direction_note'])}</p>"]
    st = report["settings"]
    parts.append(f'<p class="note">Pearson / Spearman / Kendall τ_b; p: {e(st.get("p_values", "scipy"))}. '
                 f"{st['confidence']:.0%} CI: {e(st.get('interval', st['bootstrap']))}. Verdict: "
                 f"{e(st.get('verdict', ''))}. Comparisons: paired {e(st['bootstrap'])} bootstrap, "
                 f"{st['n_resamples']:,} resamples, seed {st['seed']}.</p>")
    if report.get("coverage"):
        parts.append(f"<p><b>Coverage</b> (distinct tokenizers): {e(render.coverage_text(report['coverage']))}.</p>")
    for n in report.get("notes", []):
        parts.append(f'<p class="note">{e(n)}</p>')
    for s in report["sections"]:
        parts.append(f"<h3>{e(s['label'])}</h3><p class=note>{e(render._section_head(s))}</p>")
        parts.append(table(render.HEADER, render.metric_rows(s), f"corr-{s['key']}"))
        if s["comparisons"]:
            parts.append("<p>Is A a better predictor than B?</p>")
            parts.append(table(render.COMPARISON_HEADER, render.comparison_rows(s), f"cmp-{s['key']}"))
        msgs = render._section_messages(s)
        if msgs:
            parts.append("<ul class=msgs>" + "".join(f"<li>{e(m)}</li>" for m in msgs) + "</ul>")
        for p in figures.get(s["key"], []):
            if Path(p).suffix == ".svg":
                parts.append(f"<figure>{inline_svg(p)}<figcaption>{e(Path(p).stem)}</figcaption></figure>")
    svg = [p for p in curve_figure if Path(p).suffix == ".svg"]
    parts.append("<h2>pFID versus α</h2>")
    if svg:
        parts.append(f"<figure>{inline_svg(svg[0])}</figure>")
    else:
        parts.append('<p class="note">No pFID-versus-α curves in these inputs (result files carry them when a '
                     "suite sweeps α at a fixed δ).</p>")
    if data_rows:
        parts.append("<h2>Data</h2>")
        parts.append(table(list(data_columns), [[r.get(c) for c in data_columns] for r in data_rows], "data"))
    parts.append(f"<script>{JS}</script></body></html>")
    return "\n".join(parts) + "\n"
