"""Untrusted text shown literally in markdown elements."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from webapp.ui.text import literal


@pytest.mark.parametrize(
    "text",
    [
        "llama_2_7b",
        "**bold** and `code`",
        "![x](http://attacker.example/?d=1)",
        "[link](http://attacker.example)",
        "<img src=x onerror=alert(1)>",
        "# heading",
        "a\\b",
        "1. item",
        "admin@example.com www.example.com/x",
    ],
)
def test_literal_renders_as_the_same_text(text):
    html = MarkdownIt("commonmark").renderInline(literal(text))
    assert "<" not in html.replace("&lt;", "")  # no tag made from the text
    unescaped = html.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    assert unescaped.replace("&amp;", "&") == text


def test_literal_folds_newlines_and_stops_streamlit_directives():
    assert literal("a\n\nb") == "a b"
    assert literal(":red[x]") == "\\:red\\[x\\]"
    assert literal(":material/home:") == "\\:material\\/home\\:"
