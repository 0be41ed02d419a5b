"""Static HTML tables of untrusted cells (``webapp.ui.html_table``)."""

from __future__ import annotations

import pytest

from tests.support.html_tables import TableParser
from webapp.ui.html_table import cell, html_table, needs_first


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("<b>x</b> **y**", "&lt;b&gt;x&lt;/b&gt; **y**"),
        ('<img src=x onerror="alert(1)">', "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"),
        ("a & b", "a &amp; b"),
        (":red[x] `c` $x$", ":red[x] `c` $x$"),  # no markdown here: shown as is
        ("two\nlines\tand  spaces", "two lines and spaces"),
        (True, "yes"),
        (False, "no"),
        (None, ""),
        (3, "3"),
        (0.5, "0.5"),
    ],
)
def test_a_cell_is_its_text_escaped(value, shown):
    assert cell(value) == shown


def read(markup: str) -> dict:
    parser = TableParser()
    parser.feed(markup)
    (table,) = parser.tables
    return table


def test_the_table_shows_every_cell_literally_in_column_order():
    rows = [{"pod": "p<1>", "ready": False, "restarts": 2, "recent events": "<b>x</b> **y**"}]
    markup = html_table(rows, name="pods")
    assert "<b>" not in markup
    t = read(markup)
    assert t["name"] == "pods" and t["total"] == 1
    assert t["head"] == ["pod", "ready", "restarts", "recent events"]
    assert [r for r in t["rows"] if r] == [["p<1>", "no", "2", "<b>x</b> **y**"]]


@pytest.mark.parametrize(
    ("kwargs", "has", "has_not"),
    [
        ({}, 'data-total="2"', ["<caption>", 'class="attention"']),
        ({"total": 40}, 'data-total="40"', []),
        ({"attention": "status"}, "<tr><td>b</td>", ['class="attention"']),  # no such column
        (
            {"attention": "ready"},
            '<tr class="attention"><td>b</td>',
            ['<tr class="attention"><td>a'],
        ),
        ({"note": "The first <25>"}, "<caption>The first &lt;25&gt;</caption>", []),
        ({"name": 'x" onclick="y'}, 'data-table="x&quot; onclick=&quot;y"', ['onclick="y"']),
    ],
)
def test_table_options(kwargs, has, has_not):
    rows = [{"name": "a", "ready": True}, {"name": "b", "ready": False}]
    markup = html_table(rows, **({"name": "t"} | kwargs)).split("</style>")[1]
    assert has in markup
    for text in has_not:
        assert text not in markup


def test_an_empty_list_is_an_empty_table():
    t = read(html_table([], name="pools"))
    assert t["head"] == [] and t["total"] == 0


@pytest.mark.parametrize(
    ("ready", "order"),
    [
        ([True, True, True], [0, 1, 2]),
        ([True, False, True, None], [1, 3, 0, 2]),  # not ready, unknown: first, in order
        ([False, False], [0, 1]),
    ],
)
def test_rows_that_need_attention_come_first(ready, order):
    rows = [{"i": i, "ready": r} for i, r in enumerate(ready)]
    assert [r["i"] for r in needs_first(rows)] == order


def test_long_text_wraps_and_names_stay_on_one_line():
    rows = [{"pod": "vllm-3e60cd4d71-joy8e", "recent events": "Pulled: " + "x " * 30}]
    markup = html_table(rows, name="pods").split("</style>")[1]
    assert "<td>vllm-3e60cd4d71-joy8e</td>" in markup and '<td class="text">Pulled:' in markup
