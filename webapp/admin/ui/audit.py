"""The audit log section: the last 20 admin actions, refreshed every 5 seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from webapp.admin.audit import AuditError
from webapp.admin.messages import admin_error_message
from webapp.admin.ui.console import Console, age, still_admin


@st.fragment(run_every="5s")
def show(console: Console) -> None:
    if not still_admin(console):
        return
    try:
        entries = console.audit.recent(20)
    except AuditError as exc:
        st.error(admin_error_message(exc))
        return
    if not entries:
        st.caption("No admin actions recorded yet.")
        return
    now = datetime.now(UTC)
    st.dataframe(
        [
            {"when": f"{age((now - e.at).total_seconds())} ago", "who": e.actor,
             "action": e.action, "target": e.target, "result": e.result,
             "details": ", ".join(f"{k}={v}" for k, v in e.details.items())}
            for e in entries
        ],
        key="audit", hide_index=True,
    )  # fmt: skip
