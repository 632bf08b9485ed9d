"""The audit report as text: a table, JSON, or one self-contained HTML page (pure)."""

from __future__ import annotations

import json
from html import escape

from swapper.controller.audit.collect import Report, Row
from swapper.mutation import Outcome

DECISIONS = [o.value for o in Outcome]
"""Decisions in the order they are shown."""

COLORS = {
    Outcome.SWAPPED.value: "#2e9d5b",
    Outcome.SKIPPED_FILTER.value: "#8a94a6",
    Outcome.SKIPPED_ORIGIN.value: "#3f7fd9",
    Outcome.NOT_FOUND.value: "#e3a21a",
    Outcome.INVALID_REFERENCE.value: "#d64545",
    Outcome.NO_PULL_SECRET.value: "#b5651d",
    Outcome.NO_SOURCE_ACCESS.value: "#8e5cc2",
    Outcome.UNVERIFIED.value: "#c27ba0",
    Outcome.ORIGIN_PRIVATE.value: "#6b3fa0",
    Outcome.ORIGIN_UNVERIFIED.value: "#a05c86",
    Outcome.ERROR.value: "#8b1e1e",
}


def _order(decision: str) -> int:
    return DECISIONS.index(decision) if decision in DECISIONS else len(DECISIONS)


def summary(report: Report) -> list[tuple[str, int, int, dict[str, int]]]:
    """Per namespace: pods read, distinct images, and images per decision."""
    images: dict[str, set[str]] = {}
    decisions: dict[str, dict[str, int]] = {}
    for row in report.rows:
        images.setdefault(row.namespace, set()).add(row.image)
        counts = decisions.setdefault(row.namespace, {})
        counts[row.decision] = counts.get(row.decision, 0) + 1
    names = sorted(set(report.namespaces) | set(images))
    return [
        (n, report.namespaces.get(n, 0), len(images.get(n, ())), decisions.get(n, {}))
        for n in names
    ]


def _present(report: Report) -> list[str]:
    return sorted({row.decision for row in report.rows}, key=_order)


def _grid(header: list[str], lines: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = []
    for line in [header, *lines]:
        cells = [
            cell.rjust(w) if i in right else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def _tri(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def render_table(report: Report) -> str:
    """A summary per namespace (pods, images, images per decision), then one line per row."""
    present = _present(report)
    lines = [
        [ns, str(pods), str(images), *(str(counts.get(d, 0)) for d in present)]
        for ns, pods, images, counts in summary(report)
    ]
    right = set(range(1, 3 + len(present)))
    out = _grid(["NAMESPACE", "PODS", "IMAGES", *(d.upper() for d in present)], lines, right)
    out.append("")
    header = ["NAMESPACE", "IMAGE", "PODS", "DECISION", "TARGET"]
    if report.checked:
        header += ["MIRRORED", "SOURCE"]
    header.append("REASON")
    rows = []
    for row in report.rows:
        cells = [row.namespace, row.image, str(row.pods), row.decision, row.target or "-"]
        if report.checked:
            cells += [_tri(row.mirrored), row.source or "-"]
        cells.append(row.reason)
        rows.append(cells)
    out += _grid(header, rows, {2})
    out += _footer(report)
    return "\n".join(out) + "\n"


def _footer(report: Report) -> list[str]:
    out = [""] if report.forbidden or report.notes else []
    for namespace, message in report.forbidden:
        out.append(f"forbidden: {namespace or '(all namespaces)'}: {message}")
    out += [f"note: {note}" for note in report.notes]
    if report.cleanup is not None:
        out += ["", *report.cleanup.lines()]
    return out


def render_json(report: Report) -> str:
    """``{"items": [...], ...}``: one object per row (README.md documents the schema)."""
    document = {
        "items": [row.as_json() for row in report.rows],
        "pods": report.pods,
        "skipped": report.skipped,
        "namespaces": report.namespaces,
        "forbidden": [{"namespace": ns, "message": m} for ns, m in report.forbidden],
        "notes": report.notes,
    }
    if report.cleanup is not None:
        document["cleanup"] = report.cleanup.as_json()
    return json.dumps(document, indent=2) + "\n"


# -- HTML -----------------------------------------------------------------------------------

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1d2330;background:#f4f6fa}
header{background:#1d2a44;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;color:#b9c3d6;font-size:13px}
main{padding:20px 32px 40px;max-width:1400px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:12px 18px;min-width:150px;
box-shadow:0 1px 3px rgba(20,30,60,.12)}
.card b{display:block;font-size:24px;font-weight:650}
.card span{color:#5b6478;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:18px;
box-shadow:0 1px 3px rgba(20,30,60,.12)}
h2{margin:0 0 10px;font-size:16px}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:4px 0 10px;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
svg text{font:12px system-ui,sans-serif;fill:#1d2330}
input{padding:6px 10px;border:1px solid #c5ccd9;border-radius:6px;width:320px;
margin-bottom:10px;font:inherit}
table{border-collapse:collapse;width:100%;font-size:13px}
th{background:#eef1f7;text-align:left;padding:7px 9px;cursor:pointer;user-select:none;
white-space:nowrap;position:sticky;top:0}
th:after{content:" \\2195";color:#9aa3b5}
th.asc:after{content:" \\2191";color:#1d2330}th.desc:after{content:" \\2193";color:#1d2330}
td{padding:6px 9px;border-top:1px solid #e5e9f0;vertical-align:top;overflow-wrap:anywhere}
td.n,td.s{text-align:right;white-space:nowrap}td.s{text-align:left}
td.ref{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
tr:hover td{background:#f7f9fc}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
white-space:nowrap}
.muted{color:#8a94a6}
ul{margin:6px 0 0 18px;padding:0}
"""

_JS = """
(function(){
var table=document.getElementById('rows'),body=table.tBodies[0];
var heads=table.tHead.rows[0].cells;
Array.prototype.forEach.call(heads,function(th,col){
  th.addEventListener('click',function(){
    var asc=!th.classList.contains('asc');
    Array.prototype.forEach.call(heads,function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var num=th.hasAttribute('data-num');
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=a.cells[col].getAttribute('data-v'),y=b.cells[col].getAttribute('data-v');
      var c=num?(parseFloat(x)-parseFloat(y)):x.localeCompare(y);
      return asc?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);});
  });
});
var want=/^#sort=([a-z]+)(-desc)?$/.exec(location.hash);
Array.prototype.forEach.call(heads,function(th){
  if(want&&th.textContent===want[1]){th.click();if(want[2]){th.click();}}
});
var filter=document.getElementById('filter');
filter.addEventListener('input',function(){
  var q=filter.value.toLowerCase();
  Array.prototype.forEach.call(body.rows,function(r){
    r.style.display=r.textContent.toLowerCase().indexOf(q)<0?'none':'';
  });
});
})();
"""


def _e(text: str) -> str:
    return escape(text, quote=True)


def _chart(report: Report) -> str:
    """An SVG bar per namespace: its images, stacked by decision."""
    rows = [(ns, counts) for ns, _, _, counts in summary(report) if counts]
    if not rows:
        return '<p class="muted">No images.</p>'
    label, bar, height, gap = 230, 780, 20, 8
    most = max(sum(c.values()) for _, c in rows)
    parts = []
    for i, (namespace, counts) in enumerate(rows):
        y = i * (height + gap)
        short = namespace if len(namespace) <= 30 else namespace[:29] + "\u2026"
        parts.append(
            f'<text x="{label - 10}" y="{y + 14}" text-anchor="end">'
            f"<title>{_e(namespace)}</title>{_e(short)}</text>"
        )
        x = float(label)
        for decision in sorted(counts, key=_order):
            width = bar * counts[decision] / most
            color = COLORS.get(decision, "#555")
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{height}" rx="2" '
                f'fill="{color}"><title>{_e(namespace)}: {counts[decision]} '
                f"{_e(decision)}</title></rect>"
            )
            x += width
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 14}">{sum(counts.values())}</text>')
    total = len(rows) * (height + gap)
    return (
        f'<svg role="img" width="100%" '
        f'viewBox="0 0 {label + bar + 60} {total}" aria-label="images per decision, '
        f'per namespace">{"".join(parts)}</svg>'
    )


def _tag(decision: str) -> str:
    color = COLORS.get(decision, "#555")
    return f'<span class="tag" style="background:{color}">{_e(decision)}</span>'


def _cell(value: str, shown: str | None = None, css: str = "") -> str:
    kind = f' class="{css}"' if css else ""
    return f'<td{kind} data-v="{_e(value)}">{shown if shown is not None else _e(value)}</td>'


def _reference(text: str) -> str:
    """An image reference, escaped, that may wrap after each ``/``."""
    return _e(text).replace("/", "/<wbr>")


def _table_row(row: Row, checked: bool) -> str:
    cells = [
        _cell(row.namespace),
        _cell(row.image, _reference(row.image), "ref"),
        _cell(str(row.pods), css="n"),
        _cell(row.decision, _tag(row.decision), "s"),
        _cell(
            row.target or "",
            _reference(row.target) if row.target else '<span class="muted">-</span>',
            "ref",
        ),
    ]
    if checked:
        cells.append(_cell(_tri(row.mirrored), css="s"))
        cells.append(_cell(row.source or "-", css="s"))
    cells.append(_cell(row.reason))
    return f"<tr>{''.join(cells)}</tr>"


def render_html(report: Report, title: str = "swapper audit") -> str:
    """One self-contained page: no external resource; every string from the cluster escaped."""
    present = _present(report)
    swapped = sum(r.pods for r in report.rows if r.decision == Outcome.SWAPPED.value)
    containers = sum(r.pods for r in report.rows)
    cards = [
        (str(report.pods), "pods read"),
        (str(len(report.namespaces)), "namespaces"),
        (str(len({(r.namespace, r.image) for r in report.rows})), "images"),
        (f"{100 * swapped / containers:.0f}%" if containers else "-", "would be swapped"),
        (str(report.skipped), "pods skipped"),
    ]
    legend = "".join(
        f'<span><i style="background:{COLORS.get(d, "#555")}"></i>{_e(d)}</span>' for d in present
    )
    headers = ["namespace", "image", "pods", "decision", "target"]
    if report.checked:
        headers += ["mirrored", "source"]
    headers.append("reason")
    head = "".join(f"<th{' data-num' if h == 'pods' else ''}>{h}</th>" for h in headers)
    body = "\n".join(_table_row(row, report.checked) for row in report.rows)
    notes = [
        f"forbidden: {_e(ns or '(all namespaces)')}: {_e(message)}"
        for ns, message in report.forbidden
    ] + [_e(note) for note in report.notes]
    notes_html = (
        "<section><h2>Notes</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul></section>"
        if notes
        else ""
    )
    if report.cleanup is not None:
        lines = report.cleanup.lines()
        notes_html += (
            f"<section><h2>{_e(lines[0])}</h2><ul>"
            + "".join(f'<li class="ref">{_e(line)}</li>' for line in lines[1:])
            + "</ul></section>"
        )
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{k}</span></div>' for v, k in cards)
    checked = "mirror and sources asked" if report.checked else "registries not asked"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{_e(title)}</h1>
<p>What admission would decide for the pods already running ({checked}).</p></header>
<main>
<div class="cards">{cards_html}</div>
<section><h2>Images per decision, by namespace</h2><div class="legend">{legend}</div>
{_chart(report)}</section>
<section><h2>Images</h2>
<input id="filter" type="search" placeholder="Filter rows" aria-label="filter rows">
<table id="rows"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table></section>
{notes_html}
</main><script>{_JS}</script></body></html>
"""
