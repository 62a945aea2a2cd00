"""Building blocks of the static results page (`tokbench.report.page`): inline CSS and the sortable-table script,
sortable tables, inline SVG. The page opens from disk, no server."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any, Sequence


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
