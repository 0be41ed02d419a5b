"""Admin page section: a model server loading, phase by phase (``webapp.admin.loading``).

The model name and the log lines come from outside: they are drawn literally (``literal``,
a data table, a code block), never as markdown.
"""

from __future__ import annotations

import streamlit as st

from webapp.admin.loading import LoadView
from webapp.ui.text import literal


def loading_section(view: LoadView) -> None:
    """Draw ``view``: headline, progress bar, the phase table, the prediction note, log tail."""
    where = f" on {view.gpu_type}" if view.gpu_type else ""
    st.subheader(literal(f"Loading {view.model}{where}"))
    st.progress(view.fraction)
    if view.ready:
        st.success(literal(view.headline), icon=":material/check_circle:")
    else:
        st.info(literal(view.headline), icon=":material/hourglass_top:")
    st.dataframe(
        [
            {"phase": r.phase, "state": r.state, "took": r.took, "predicted": r.predicted}
            for r in view.rows
        ],
        key="loading_phases",
        hide_index=True,
    )
    st.caption(literal(view.note))
    if view.log_tail:
        with st.expander("Last lines of the model server's log", expanded=False):
            st.code("\n".join(view.log_tail), language=None)
