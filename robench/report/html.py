"""Self-contained, sortable HTML rendering of a ``robench.board/1`` board.

One page, inline CSS and a small inline script that sorts a table by the clicked column (numbers
numerically from each cell's ``data-v``, text otherwise; a second click reverses). No external
scripts, fonts, stylesheets or CDN; every text from the board is escaped with ``html.escape``.
Figures written beside the page are linked by relative file name only.
"""

from __future__ import annotations

from html import escape
from typing import Any

from robench.report.render import attack_columns, fmt_prop, threat_groups

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#f0f0f0;cursor:pointer;user-select:none}th.asc:after{content:" \\25B2"}th.desc:after{content:" \\25BC"}
td.t,th.t{text-align:left}td small{color:#777}.flag{color:#a40;font-weight:600}td.diag{color:#888;font-style:italic}
.meta{color:#555}.meta code{background:#f4f4f4;padding:0 .2em}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
  t.querySelectorAll("th").forEach(function(th,i){
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


def _td(text: Any, sort: Any = None, cls: str = "", title: str = "") -> str:
    v = "" if sort is None else f' data-v="{escape(str(sort))}"'
    c = f' class="{cls}"' if cls else ""
    t = f' title="{escape(title)}"' if title else ""
    return f"<td{c}{v}{t}>{escape(str(text))}</td>"


def _prop_td(p: dict[str, Any] | None, diagonal: bool = False) -> str:
    if p is None or p.get("value") is None:
        return _td("—", "")
    if diagonal:
        note = "; diagonal: surrogate = victim (white-box in effect), not in the worst case"
        return _td(fmt_prop(p) + " diag.", p["value"], "diag", title=f"n = {p['n']}{note}")
    return _td(fmt_prop(p), p["value"], title=f"n = {p['n']}")


def _table(head: list[str], rows: list[str], text_cols: int) -> str:
    ths = "".join(
        f"<th{' class=t' if i < text_cols else ''}>{escape(h)}</th>" for i, h in enumerate(head)
    )
    return (
        f'<table class="sortable"><thead><tr>{ths}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + "\n</tbody></table>"
    )


def render_html(board: dict[str, Any], figures: list[str] | tuple[str, ...] = ()) -> str:
    """The page as a string; ``figures`` are file names (beside the page) to link."""
    b, ds, sub = board["benchmark"], board["dataset"], board["subset"]
    ver = f" v{b['version']}" if b.get("version") is not None else ""
    title = f"robench board: {b['id']}{ver}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if b.get("description"):
        parts.append(f"<p>{escape(b['description'])}</p>")
    parts.append(
        '<p class="meta">'
        f"dataset <code>{escape(str(ds['name']))}</code> (sha256 <code>{escape(str(ds['hash'])[:16])}</code>), "
        f"subset n = {int(sub['n'])} (sha256 <code>{escape(str(sub['hash'])[:16])}</code>), "
        f"schema <code>{escape(board['schema'])}</code>, robench {escape(board['generated_by']['robench'])}. "
        "Accuracies in %, 95% Wilson interval in brackets; worst case = a sample counts only if it "
        "survives every attack of its row. Click a column header to sort.</p>"
    )
    for threat, primary, entries in threat_groups(board):
        cols = attack_columns(entries)
        parts.append(f"<h2>Threat model {escape(threat)}{'' if primary else ' (eps sweep)'}</h2>")
        rows = []
        for e in entries:
            cells = [
                _td(e["victim"], e["victim"], "t", e.get("weights_sha256") or ""),
                _td(e["defense"], e["defense"], "t"),
            ]
            cells.append(_prop_td(e["clean_accuracy"]))
            for c in cols:
                a = e["attacks"].get(c)
                cells.append(
                    _prop_td(a["robust_accuracy"], bool(a.get("diagonal"))) if a else _td("—", "")
                )
            cells.append(_prop_td(e["worst_case"]))
            codes = ", ".join(sorted({f["code"] for f in e["flags"]}))
            msgs = "\n".join(f["message"] for f in e["flags"])
            cells.append(_td(codes, codes, "t flag", msgs))
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(_table(["victim", "defense", "clean", *cols, "worst case", "flags"], rows, 2))
    for t in board["transfer"]:
        parts.append(
            f"<h2>Transfer success rate: {escape(t['attack'])}, {escape(t['threat'])}</h2>"
            "<p class=meta>rows: surrogate, columns: victim; success over samples both classify correctly</p>"
        )
        rows = [
            "<tr>" + _td(s, s, "t") + "".join(_prop_td(p) for p in row) + "</tr>"
            for s, row in zip(t["surrogates"], t["success_rate"], strict=True)
        ]
        parts.append(_table(["surrogate \\ victim", *t["victims"]], rows, 1))
    flags = [(e, f) for e in board["entries"] for f in e["flags"]]
    if flags:
        parts.append("<h2>Flags</h2><ul>")
        parts += [
            f"<li>{escape(e['victim'])} / {escape(e['defense'])} / {escape(e['threat'])}: "
            f"<span class=flag>{escape(f['code'])}</span>: {escape(f['message'])}</li>"
            for e, f in flags
        ]
        parts.append("</ul>")
    if board["invalid_cells"]:
        parts.append("<h2>Invalid and failed cells (excluded from every number)</h2>")
        rows = [
            "<tr>"
            + "".join(
                _td(c.get(k), c.get(k), "t")
                for k in ("status", "victim", "attack", "surrogate", "threat", "seed", "reason")
            )
            + "</tr>"
            for c in board["invalid_cells"]
        ]
        head = ["status", "victim", "attack", "surrogate", "threat", "seed", "reason"]
        parts.append(_table(head, rows, 7))
    if figures:
        parts.append("<h2>Figures</h2><p>" + " · ".join(
            f'<a href="{escape(f)}">{escape(f)}</a>' for f in figures) + "</p>")  # fmt: skip
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
