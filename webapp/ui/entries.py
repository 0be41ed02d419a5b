"""A form's entries survive a change of tab.

The admin page runs only its open tab, and Streamlit forgets the state of every widget a
run does not draw: what an admin had typed in a form was lost when they looked at another
tab. A value the script itself assigns is kept (Streamlit's documented way to keep a
widget's state across pages), so each run first assigns the entries to keep to themselves.
Only input widgets may be named here: a button's state cannot be assigned.
"""

from __future__ import annotations

from collections.abc import Iterable

import streamlit as st


def kept(key: object, names: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``names``; a name ending in ``_`` stands for every key it
    begins (a widget per model or pool: ``count_<model>``)."""
    return isinstance(key, str) and any(
        key.startswith(n) if n.endswith("_") else key == n for n in names
    )


def keep_entries(names: Iterable[str]) -> None:
    """Keep the entries of the widgets ``names`` (see ``kept``) until they are drawn again."""
    names = tuple(names)
    ss = st.session_state
    for key in [k for k in list(ss) if kept(k, names)]:
        ss[key] = ss[key]
