"""Static HTML tables for lists drawn when a page opens (the admin status: pods, GPU nodes,
node pools). Pure: unit-tested.

Why not ``st.dataframe``: its glide data grid (a lazily loaded chunk, a canvas, a resize
pass) took ~0.8 s in Chromium here from its data arriving to its rows drawn, per grid and
page open (bench/RESULTS.md 3b); a plain ``<table>`` is drawn in the page's first frames.
The interactive grid stays available on demand (sort, search, every row).

Every cell is untrusted text (pod reasons, event messages from the cluster): escaped
here, so it is shown character for character, never as markup.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

#: Scoped by class; colours from the theme's text colour, so light and dark themes read.
STYLE = """<style>
.static-table-box { overflow-x: auto; margin-bottom: 0.5rem; }
.static-table { border-collapse: collapse; font-size: 0.8rem; line-height: 1.4; width: 100%; }
.static-table th { text-align: left; font-weight: 600; white-space: nowrap;
  background: rgba(128, 128, 128, 0.10); }
.static-table th, .static-table td { padding: 0.25rem 0.6rem; vertical-align: top;
  border-bottom: 1px solid rgba(128, 128, 128, 0.2); }
.static-table td { white-space: nowrap; }
.static-table td.text { white-space: normal; overflow-wrap: break-word; min-width: 16rem; }
.static-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.static-table tr.attention td { background: rgba(255, 164, 33, 0.12); }
.static-table caption { caption-side: bottom; text-align: left; padding-top: 0.3rem;
  font-size: 0.8rem; opacity: 0.7; }
</style>"""


def cell(value: object) -> str:
    """One cell as escaped HTML text: yes/no for a flag, empty for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(" ".join(str(value).split()), quote=True)


#: A cell longer than this (an event message) wraps; shorter ones (names) stay on one line.
LONG = 40


def _td(value: object) -> str:
    text = cell(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{text}</td>'
    return f'<td class="text">{text}</td>' if len(str(value)) > LONG else f"<td>{text}</td>"


def needs_first(rows: Sequence[Mapping[str, object]], flag: str = "ready") -> list:
    """``rows`` with those whose ``flag`` is not true first (a pod or node not ready is what
    an admin looks for); otherwise in their order."""
    return sorted(rows, key=lambda r: r.get(flag) is True)


def html_table(
    rows: Sequence[Mapping[str, object]], *, name: str, total: int | None = None,
    attention: str | None = None, note: str = "",
) -> str:  # fmt: skip
    """``rows`` (dicts with the same keys, the columns) as one escaped ``<table>``, with
    :data:`STYLE`. ``name`` is its ``data-table`` attribute; ``total`` (``data-total``)
    how many rows the list has when ``rows`` are only its first ones; a row whose
    ``attention`` column is not true is highlighted; ``note`` (plain text) is shown
    under it."""
    columns = list(rows[0]) if rows else []
    attention = attention if attention in columns else None
    head = "".join(f"<th>{cell(c)}</th>" for c in columns)
    body = []
    for r in rows:
        mark = ' class="attention"' if attention and r.get(attention) is not True else ""
        body.append(f"<tr{mark}>" + "".join(_td(r.get(c)) for c in columns) + "</tr>")
    count = len(rows) if total is None else total
    caption = f"<caption>{cell(note)}</caption>" if note else ""
    return (
        f'{STYLE}<div class="static-table-box"><table class="static-table" '
        f'data-table="{cell(name)}" data-total="{count}">{caption}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )
