"""The admin page draws its status first and the sections below it right after.

A page open used to send the whole page in one script run: the browser built the deploy
form, the node pool forms and the audit log in the same frames as the status tables, which
appeared only once all of it was drawn (bench/RESULTS.md 3b). Now a session's first run
draws the status and a one-shot fragment (the "kick") with a short ``run_every``. The
browser's timer can fire only when its main thread is free, that is after it has drawn the
status; the kick's run then asks for a full run, which draws the whole page with the status
the first run read (``carried``, not read again). Every later run of the session draws the
whole page at once. A full run clears the browser's auto-rerun timers, so the kick fires
once; a late tick for it is skipped by Streamlit.
"""

from __future__ import annotations

import time

import streamlit as st

REST_KEY = "admin_rest_drawn"  # this session's page has drawn everything once
_ARMED = "admin_rest_armed"
_CARRY = "admin_status_carry"
KICK_S = 0.1  # the kick's timer; the browser runs it when the status is drawn
CARRY_S = 5.0  # a carried status older than this is read again
PENDING = "Loading the deploy form, node pools, usage and the audit log…"


def rest_now() -> bool:
    """Whether this run draws the sections below the status: False in a session's first run,
    which then says they are coming and arms the kick."""
    if st.session_state.get(REST_KEY):
        return True
    st.fragment(_kick, run_every=KICK_S)()
    return False


def _kick() -> None:
    if st.session_state.get(_ARMED):  # a run after the first: the status is drawn
        st.session_state[REST_KEY] = True
        st.rerun(scope="app")
    st.session_state[_ARMED] = True
    st.caption(PENDING)


def carry(status: object) -> None:
    """Keep the first run's status read for the full run the kick asks for."""
    if not st.session_state.get(REST_KEY):
        st.session_state[_CARRY] = (time.monotonic(), status)


def carried() -> object | None:
    """The status the first run read, once, if recent; else None (read it)."""
    kept = st.session_state.pop(_CARRY, None)
    if kept is None or time.monotonic() - kept[0] > CARRY_S:
        return None
    return kept[1]
