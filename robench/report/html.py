"""Self-contained, sortable HTML rendering of a ``robench.board/2`` board.

One page: inline CSS, a small inline script that sorts a table by the clicked column (numbers
numerically from each cell's ``data-v``, text otherwise; a second click reverses), and the figures
embedded as ``data:`` PNG images. No external scripts, fonts, stylesheets, images or CDN; every text
from the board is escaped with ``html.escape``. The sections are those of
:func:`robench.report.render.board_sections`: the headline table of each threat model comes first so
that victim, clean accuracy and worst case are in the first screen; wide tables scroll sideways
with the victim column kept in view (sticky).
"""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from robench.report.render import Cell, Table, board_sections, header_lines

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em 2em;color:#222;max-width:1360px}
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.1em;margin:1.6em 0 .3em}h3{font-size:.95em;margin:1em 0 .2em}
.scroll{overflow-x:auto;max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:0 2.2em;align-items:flex-start}.grid>div{max-width:100%}
table{border-collapse:separate;border-spacing:0;margin:.3em 0;font-size:.86em}
th,td{border-right:1px solid #ddd;border-bottom:1px solid #ddd;padding:.25em .55em;text-align:right;white-space:nowrap;background:#fff}
tr>:first-child{position:sticky;left:0;z-index:1;border-left:1px solid #ddd;box-shadow:2px 0 2px -1px #ccc}
thead th{background:#f0f0f0;cursor:pointer;user-select:none;border-top:1px solid #ddd;vertical-align:bottom}
th small{display:block;font-weight:400;color:#666}th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td small{display:block;color:#777;font-size:.82em}td.t,th.t{text-align:left}
td.worst{font-weight:700}td.diag{color:#888;font-style:italic;background:#f6f6f6}.flag{color:#a40;font-weight:600}
td.wrap{white-space:normal;min-width:16em;max-width:26em}td.cfg{white-space:normal;min-width:28em;max-width:60em;font-family:ui-monospace,monospace;font-size:.85em}
.meta,.note{color:#555;font-size:.88em;margin:.2em 0}.meta code{background:#f4f4f4;padding:0 .2em}
img.fig{max-width:100%;border:1px solid #eee;margin:.4em 0}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("thead th").forEach(function(th,i){
    th.addEventListener("click",function(){
      var asc=!th.classList.contains("asc");
      t.querySelectorAll("th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc?"asc":"desc");
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[i].getAttribute("data-v"),y=b.cells[i].getAttribute("data-v");
        var nx=parseFloat(x),ny=parseFloat(y),r;
        if(!isNaN(nx)&&!isNaN(ny)){r=nx-ny;}else if(!isNaN(nx)){r=-1;}else if(!isNaN(ny)){r=1;}
        else{r=(x||"").localeCompare(y||"");}
        return asc?r:-r;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def _td(c: Cell) -> str:
    v = "" if c.sort is None else f' data-v="{escape(str(c.sort))}"'
    cls = f' class="{escape(c.cls)}"' if c.cls else ""
    title = f' title="{escape(c.title)}"' if c.title else ""
    sub = f"<small>{escape(c.sub)}</small>" if c.sub else ""
    return f"<td{cls}{v}{title}>{escape(c.text)}{sub}</td>"


def _table(t: Table, show_title: bool, figures: dict[str, bytes]) -> str:
    subs = t.head_sub or [""] * len(t.head)
    ths = "".join(
        f"<th{' class=t' if i < t.text_cols else ''}>{escape(h)}"
        + (f"<small>{escape(s)}</small>" if s else "")
        + "</th>"
        for i, (h, s) in enumerate(zip(t.head, subs, strict=False))
    )
    body = "\n".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in t.rows)
    parts = [f"<div><h3>{escape(t.title)}</h3>"] if show_title else ["<div>"]
    parts.append(
        f'<div class="scroll"><table class="sortable"><thead><tr>{ths}</tr></thead><tbody>\n'
        f"{body}\n</tbody></table></div>"
    )
    if t.note:
        parts.append(f'<p class="note">{escape(t.note)}</p>')
    parts.append("</div>")
    if t.figure in figures:
        parts.append(_figure(t.figure, figures))
    return "\n".join(parts)


def _figure(name: str, figures: dict[str, bytes]) -> str:
    data = base64.b64encode(figures[name]).decode("ascii")
    return f'<img class="fig" alt="{escape(name)}" src="data:image/png;base64,{data}">'


def render_html(board: dict[str, Any], figures: dict[str, bytes] | None = None) -> str:
    """The page as a string; ``figures`` maps a figure's file name to its PNG bytes (embedded)."""
    figures = dict(figures or {})
    b = board["benchmark"]
    ver = f" v{b['version']}" if b.get("version") is not None else ""
    title = f"robench board: {b['id']}{ver}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="meta">'
        + " · ".join(escape(line) for line in header_lines(board))
        + " · click a column header to sort</p>",
    ]
    for i, sec in enumerate(board_sections(board)):
        parts.append(f"<h2>{escape(sec.title)}</h2>")
        if sec.note:
            parts.append(f'<p class="note">{escape(sec.note)}</p>')
        many = len(sec.tables) > 1
        if many:  # small tables side by side; their figure below them all
            parts.append('<div class="grid">')
        for t in sec.tables:
            parts.append(_table(t, t.show_title, figures if not many else {}))
        if many:
            parts.append("</div>")
            parts += [_figure(t.figure, figures) for t in sec.tables if t.figure in figures]
        if sec.items:
            parts.append(
                "<ul>" + "".join(f"<li>{_bold(escape(item))}</li>" for item in sec.items) + "</ul>"
            )
        if i == 0 and b.get("description"):  # after the first headline: the first screen is numbers
            parts.append(f'<p class="note">{escape(b["description"])}</p>')
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def _bold(text: str) -> str:
    """``**code**`` (from the flag items) -> ``<span class=flag>code</span>``, on escaped text."""
    chunks = text.split("**")
    return "".join(f"<span class=flag>{c}</span>" if j % 2 else c for j, c in enumerate(chunks))
