"""The switch's progress: the latest model switch of this process (``actions.SWITCH``),
the new model's load phase by phase, its rollout, its Cancel button and how it ended,
polled every second."""

from __future__ import annotations

import streamlit as st

from webapp.admin import actions
from webapp.admin.jobs import JobView
from webapp.admin.messages import admin_error_message
from webapp.admin.ui.console import Console, job_to_show
from webapp.admin.ui.loading import loading_section
from webapp.cluster.rollout import RolloutSnapshot
from webapp.cluster.switch import SwitchResult
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal


@st.fragment(run_every="1s")
def show(console: Console) -> None:
    view = job_to_show(console, actions.SWITCH.kind)
    if view is None:
        return
    if view.running:
        st.session_state["switch_watched"] = view.id
    elif st.session_state.pop("switch_watched", None) == view.id:
        # just finished while this page watched it: redraw the whole page once, so the
        # status above shows the new pods at once instead of at its next refresh
        st.rerun(scope="app")
    detail: actions.SwitchDetail = view.detail
    before, after = detail.model_before, detail.model_after
    st.subheader(literal(f"Switch {before} → {after}" if before else f"Switch {after}"))
    st.caption(literal(f"Started by {view.actor} on {view.target}"))
    _state(console, view)
    if detail.load is not None:  # the new model's load: phases, predicted vs actual, ETA
        loading_section(detail.load)
    failed = detail.failed_snapshot
    if failed is not None and not view.running:
        _failure(failed)
    if detail.snapshot is not None:
        _rollout(detail.snapshot)
    with st.expander("Steps", expanded=False):
        st.text("\n".join(view.messages[-30:]))


def _state(console: Console, view: JobView) -> None:
    """Running (with Cancel), or how it ended."""
    res = view.result
    if view.running:
        st.info(
            safe_markdown(view.messages[-1] if view.messages else "Starting…"),
            icon=":material/hourglass_top:",
        )
        if st.button("Cancel and roll back", key="cancel_switch", disabled=view.cancel_requested):
            console.registry.cancel(actions.SWITCH, console.admin.actor, console.audit)
    elif isinstance(res, SwitchResult):
        text = safe_markdown(f"**{res.outcome.replace('_', ' ').capitalize()}** — {res.message}")
        if res.outcome in ("switched", "unchanged"):
            st.success(text)
        elif res.outcome == "rolled_back":
            st.warning(text)
        else:
            st.error(text)
    elif view.error is not None:
        st.error(f"The switch stopped: {admin_error_message(view.error)}")


def _failure(failed: RolloutSnapshot) -> None:
    """Why the new model failed, kept after the rollback replaced the snapshot."""
    st.caption(safe_markdown(f"Why the new model failed: {failed.summary}"))
    for e in [e for e in failed.events if e.warning][:5]:
        st.caption(
            safe_markdown(
                f":material/warning: {e.reason}: {e.message} ({e.kind}/{e.name}, x{e.count})"
            )
        )
    if failed.log_tail:
        st.caption("Last log lines of the failed pod")
        st.code("\n".join(failed.log_tail[-20:]), language=None)


def _rollout(snap: RolloutSnapshot) -> None:
    st.caption(
        safe_markdown(
            f"Deployment {snap.deployment}: {snap.state} — {snap.summary} "
            f"({snap.ready_replicas}/{snap.desired_replicas} ready)"
        )
    )
    if snap.pods:
        st.dataframe(
            [
                {"pod": p.name, "phase": p.phase, "ready": p.ready, "restarts": p.restarts,
                 "node": p.node, "new": p.new, "reason": f"{p.reason} {p.message}".strip()}
                for p in snap.pods
            ],
            key="switch_pods", hide_index=True,
        )  # fmt: skip
    if snap.conditions:
        st.caption(
            safe_markdown(
                "Conditions: "
                + "; ".join(f"{c.type}={c.status} ({c.reason})" for c in snap.conditions)
            )
        )
    if snap.events:
        st.dataframe(
            [
                {"type": e.type, "reason": e.reason, "object": f"{e.kind}/{e.name}",
                 "message": e.message, "count": e.count}
                for e in snap.events[:10]
            ],
            key="switch_events", hide_index=True,
        )  # fmt: skip
    if snap.log_tail:
        st.caption("Last log lines of the loading pod")
        st.code("\n".join(snap.log_tail[-20:]), language=None)
