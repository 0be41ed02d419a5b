"""Untrusted markdown cases: each with what safe_markdown makes of it (unit tests), and
all of them drawn by Streamlit in Chromium (tests/e2e/test_safe_markdown_browser.py), where
``U`` is replaced by a server that counts what reaches it."""

from __future__ import annotations

from webapp.ui.safe_markdown import verbatim

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
    ("[x](javascript&#58;alert(1))", "\\[x](javascript&#58;alert(1))"),
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


def _image(tag: str) -> str:
    return f"![{tag}]({U}&w={tag})"


# More ways to write an image, for the browser only: what Streamlit's renderer (not
# markdown-it) makes of them is the question.
RENDERER_CASES = [
    f"| a | b |\n|---|---|\n| {_image('t1')} \\| x | y |",
    f"| a |\n|---|\n| `x \\| y` {_image('t2')} |",
    f"> a\n{_image('lazy')}",
    f"- a\n{_image('lazylist')}",
    f"[^1]\n\n[^1]: a\n{_image('footlazy')}",
    f"[^n]\n\n[^n]:\n    {_image('footind')}",
    f"<!-- c -->{_image('aftercomment')}",
    f"<details>\n\n{_image('details')}\n\n</details>",
    f"$$\n{_image('math')}\n$$",
    f"${_image('imath')}$",
    f"a\\\n{_image('hardbreak')}",
    f"Setext\n{_image('setext2')}\n---",
    f"- a\n\n  {_image('listpara')}",
    f"1) {_image('paren')}",
    f"* * *\n{_image('afterhr')}",
    f"~{_image('tilde')}~",
    f":red[{_image('color')}] :blue-background[{_image('bg')}]",
    f"![x][ref]\n\n[ref]:\n  {U}&w=refnl\n  'title'",
    f"> [r2]: {U}&w=refquote\n\n![x][r2]",
    f"- [r3]: {U}&w=reflist\n\n![x][r3]",
    f"``a\n{_image('codespan')}",
    f"\t{_image('tab')}",
    f" \t{_image('spacetab')}",
    f"\u00a0{_image('nbsp')}",
    f"\ufeff{_image('bom')}",
    f"[a [b]({U}&w=l1) {_image('inlinklink')}]({U}&w=l2)",
    f'![a]({U}&w=nospace"t")',
    f"![a]( {U}&w=spaces )",
    f"[{_image('linkimgref')}][r9]\n\n[r9]: http://x.example",
    f"# {_image('h1')}\n## {_image('h2')} ##",
    f"Term\n: {_image('deflist')}",
    f"- [ ] {_image('task')}",
    f"www.example.com/{_image('autolit')}",
    f"a\r{_image('cr')}\rb",
    f"[x]: {U}&w=deffirst\n{_image('afterdef')}",
    f"![x]({U}&w=paren(1))",
    f"![x]({U}&w=p\\)q)",
]
