"""Untrusted markdown drawn without images or script links; code left byte for byte."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.footnote import footnote_plugin

from tests.ui.markdown_cases import CASES, U
from webapp.ui.safe_markdown import (
    MAX_ROUNDS,
    as_streamlit_reads,
    may_be_unsafe,
    rewrite,
    safe_markdown,
    url_is_safe,
    verbatim,
)


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_safe_markdown(text, expected):
    assert safe_markdown(text) == (text if expected is None else expected)


def _renderer() -> MarkdownIt:
    """An independent GFM-ish reading (tables on) that keeps every URL, to check results."""
    md = MarkdownIt("commonmark", {"maxNesting": 100}).enable("table").use(footnote_plugin)
    md.validateLink = lambda url: True
    md.normalizeLink = lambda url: url
    return md


def _walk(tokens):
    for t in tokens:
        yield t
        yield from _walk(t.children or [])


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_result_has_no_image_no_unsafe_link_and_the_same_code(text, expected):
    md = _renderer()
    before = list(_walk(md.parse(as_streamlit_reads(text))))
    after = list(_walk(md.parse(safe_markdown(text))))
    assert not [t for t in after if t.type == "image"]
    assert all(url_is_safe(t.attrGet("href")) for t in after if t.type == "link_open")
    if expected == verbatim(text):
        return  # shown as a code block: all of it is code now
    code = ("code_inline", "code_block", "fence")
    assert [t.content for t in after if t.type in code] == [
        t.content for t in before if t.type in code
    ]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_text_passed_without_parsing_needs_no_rewrite(text, expected):
    if not may_be_unsafe(text):
        assert rewrite(text) == as_streamlit_reads(text)


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("http://x.example", True),
        ("HTTPS://x.example", True),
        ("mailto:a@b.example", True),
        ("/admin?chat=1", True),
        ("#top", True),
        ("//x.example/a", True),
        ("a/b:c", True),
        ("javascript:alert(1)", False),
        (" \x01JavaScript:alert(1)", False),
        ("java\tscr\nipt:alert(1)", False),
        ("data:text/html,hi", False),
        ("vbscript:x", False),
        ("file:///etc/passwd", False),
        ("note: x", False),  # any other scheme: text, to be sure
    ],
)
def test_url_is_safe(url, safe):
    assert url_is_safe(url) is safe


def test_too_deeply_nested_images_are_shown_verbatim():
    text = "x"
    for i in range(MAX_ROUNDS + 1):
        text = f"![{i} {text}]({U})"
    out = safe_markdown(text)
    assert out == verbatim(text)
    assert not [t for t in _walk(_renderer().parse(out)) if t.type == "image"]


@pytest.mark.parametrize(
    ("text", "fence"),
    [("a", "```"), ("a ``` b", "````"), ("`````", "``````")],
)
def test_verbatim_fence_is_longer_than_any_backtick_run(text, fence):
    assert verbatim(text) == f"{fence}\n{text}\n{fence}"
    (block,) = _renderer().parse(verbatim(text))
    assert block.type == "fence" and block.content == text + "\n"
