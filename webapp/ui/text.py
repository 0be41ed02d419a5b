"""Showing untrusted text (model names, pod reasons, titles) literally in Streamlit's
markdown elements, which would otherwise format ``*``, ``_``, backticks, links, images,
``:material/…:`` icons and ``:red[…]`` colours found in it. Pure: unit-tested."""

from __future__ import annotations

import re
import string

# CommonMark lets every ASCII punctuation character be escaped with a backslash; ':' and
# '[' also stop Streamlit's icon/colour directives, '$' its LaTeX, '@' and '/' GFM's
# autolinks of e-mail addresses and URLs. Only Streamlit's typography stays (`` -- ``
# becomes a dash, ``->`` an arrow): it runs on the text, not the markup.
_SPECIAL = re.compile(f"([{re.escape(string.punctuation)}])")


def literal(text: str) -> str:
    """``text`` escaped so that markdown shows it character for character, on one line."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
