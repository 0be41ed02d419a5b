"""Reading back the static HTML tables (``webapp.ui.html_table``) an AppTest run drew."""

from __future__ import annotations

from html.parser import HTMLParser

import pandas as pd


class TableParser(HTMLParser):
    """Every ``<table data-table=…>``: its name, ``data-total``, header and cell texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[dict] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self.tables.append(
                {"name": a["data-table"], "total": int(a["data-total"]), "head": [], "rows": []}
            )
        elif self.tables and tag == "tr":
            self.tables[-1]["rows"].append([])
        elif self.tables and tag in ("th", "td"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            t = self.tables[-1]
            (t["head"] if tag == "th" else t["rows"][-1]).append("".join(self._cell))
            self._cell = None


def static_tables(at) -> dict[str, tuple[pd.DataFrame, int]]:
    """name -> (the table's rows as strings, how many rows its list has) of ``at``'s run."""
    found = {}
    for element in at.get("html"):
        parser = TableParser()
        parser.feed(element.proto.body)
        for t in parser.tables:
            rows = [r for r in t["rows"] if r]
            found[t["name"]] = (pd.DataFrame(rows, columns=t["head"]), t["total"])
    return found
