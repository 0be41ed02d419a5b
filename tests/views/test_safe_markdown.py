"""Untrusted markdown drawn without images or script links; code left byte for byte."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt
from mdit_py_plugins.footnote import footnote_plugin

from webapp.views.safe_markdown import (
    MAX_ROUNDS,
    as_streamlit_reads,
    may_be_unsafe,
    rewrite,
    safe_markdown,
    url_is_safe,
    verbatim,
)

U = "http://127.0.0.2:9/img?d=secret"

# (untrusted text, what is drawn instead)
CASES = [
    # images become links, whatever their form
    (f"![x]({U}) text", f"[image: x]({U}) text"),
    (f"![]({U})", f"[image]({U})"),
    (f'![a]({U} "title")', f'[image: a]({U} "title")'),
    (f"![a](<{U} v>)", f"[image: a](<{U} v>)"),
    (f"![a [b] c]({U})", f"[image: a [b] c]({U})"),
    (f"![a\nb]({U})", f"[image: a\nb]({U})"),
    (f"![a][r]\n\n[r]: {U}", f"[image: a][r]\n\n[r]: {U}"),
    (f"![a][]\n\n[a]: {U}", f"[image: a][]\n\n[a]: {U}"),  # text: its URL is not shown
    (f"![a]\n\n[a]: {U}", f"[image: a]\n\n[a]: {U}"),
    (f"[![in]({U})](http://x.example)", f"[[image: in]({U})](http://x.example)"),
    (f"![a ![b]({U})]({U})", f"[image: a [image: b]({U})]({U})"),
    (f"![a ![b ![c]({U})]({U})]({U})", f"[image: a [image: b [image: c]({U})]({U})]({U})"),
    (f"\\\\![x]({U})", f"\\\\[image: x]({U})"),  # an escaped backslash, then an image
    (f"![a]({U}) ![b]({U}) ![a]({U})", f"[image: a]({U}) [image: b]({U}) [image: a]({U})"),
    # … in every block that holds text
    (f"- ![x]({U})\n1. ![y]({U})", f"- [image: x]({U})\n1. [image: y]({U})"),
    (f"-\t![x]({U})", f"-\t[image: x]({U})"),
    (f"> - a ![q]({U}) and\n>   ![z]({U})", f"> - a [image: q]({U}) and\n>   [image: z]({U})"),
    (f"| a | b |\n|---|---|\n| ![t]({U}) | x |", f"| a | b |\n|---|---|\n| [image: t]({U}) | x |"),
    (f"# t ![h]({U}) #", f"# t [image: h]({U}) #"),
    (f"Setext ![s]({U})\n===", f"Setext [image: s]({U})\n==="),
    (f"*![e]({U})* ~~![s]({U})~~", f"*[image: e]({U})* ~~[image: s]({U})~~"),
    (
        f"x[^1]\n\n[^1]: ![f]({U})\n\n    ![g]({U})\n",
        f"x[^1]\n\n[^1]: [image: f]({U})\n\n    [image: g]({U})",  # stripped, as Streamlit does
    ),
    (f"a  \n![x]({U})  \nb", f"a  \n[image: x]({U})  \nb"),
    # nested deeper than markdown-it's default limit (20), past which it stops parsing
    (">" * 30 + f" ![x]({U})", ">" * 30 + f" [image: x]({U})"),
    ("- " * 30 + f"![x]({U})", "- " * 30 + f"[image: x]({U})"),
    ("*" * 30 + f"![x]({U})" + "*" * 30, "*" * 30 + f"[image: x]({U})" + "*" * 30),
    (">" * 3000 + f" ![x]({U})", verbatim(">" * 3000 + f" ![x]({U})")),  # too deep for Python
    (f"a\r\n![x]({U})\r\nb", f"a\r\n[image: x]({U})\r\nb"),
    (f"\0 ![x]({U})", f"\0 [image: x]({U})"),
    (f"<div>\n![x]({U})\n</div>", f"<div>\n[image: x]({U})\n</div>"),  # shown as text anyway
    (f"<span>![x]({U})</span>", f"<span>[image: x]({U})</span>"),
    # links to scripts and data become text
    ("[js](javascript:alert(1))", "\\[js](javascript:alert(1))"),
    ("<javascript:alert(1)>", "\\<javascript:alert(1)>"),
    ("[x](&#106;avascript:alert(1))", "\\[x](&#106;avascript:alert(1))"),
    ("[x](<java\tscript:alert(1)>)", "\\[x](<java\tscript:alert(1)>)"),
    ("[x][r]\n\n[r]: javascript:alert(1)", "\\[x]\\[r]\n\n[r]: javascript:alert(1)"),
    ("![x](data:image/png;base64,iVBO)", "\\[image: x](data:image/png;base64,iVBO)"),
    ("[v](VBScript:msgbox)", "\\[v](VBScript:msgbox)"),
    # left as they are: code, text that is no image, safe links, raw HTML (shown as text)
    (f"`![x]({U})` and ![y]({U})", f"`![x]({U})` and [image: y]({U})"),
    (f"`` a ` ![x]({U}) ``", None),
    (f"```rust\nlet v = vec![1, 2];\n![x]({U})\n```", None),
    (f"~~~\n![x]({U})\n~~~", None),
    (f"- item\n\n      ![x]({U})", None),  # indented code in a list item
    (f"a\n\n    ![x]({U})", None),  # indented code after a paragraph
    # Streamlit dedents and strips the text first: no indented code then
    (f"    ![x]({U})", f"[image: x]({U})"),
    (f"\t![x]({U})\n", f"[image: x]({U})"),
    (f"  a\n\n      ![x]({U})", f"a\n\n    ![x]({U})"),  # still code, dedented
    ("Rust: `vec![1, 2]` or vec![1, 2]", None),
    (f"\\![x]({U})", None),  # an escaped "!": a link
    ("![x][undefined]", None),
    (f"<{U}> [a]({U}) [m](mailto:a@b.example) [r](/admin) [f](#top)", None),
    (f'<img src="{U}"> <picture><source srcset="{U}"></picture>', None),
    ("Note: d[i](x) and a[1]: b", None),
    ("plain **bold** :red[colour] :material/home: $x^2$", None),
    ("", None),
]


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
