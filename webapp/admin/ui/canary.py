"""The Canary section: switch a model pool's model by traffic share (``canary_fleet``).

The form (behind a toggle, so a closed section reads nothing from the cluster) chooses the
pool, what changes (the model's weights, a new vLLM image — its version — and/or vLLM flags;
empty fields keep the pool's) and the thresholds; the progress, which says what changed, polled every second, shows the steps
(5 → 25 → 50 → 100 %), the current weights, each judged window's signals (requests, errors,
TTFT p95 of the canary against the stable pool) and the decision with its reason."""

from __future__ import annotations

import streamlit as st

from webapp.admin.canary import CanaryPlan, PoolSignals, percent, seconds
from webapp.admin.canary_change import WantedChange, serving_now
from webapp.admin.canary_fleet import FLEET_CANARY, FleetCanaryRequest, canary_candidates
from webapp.admin.canary_runner import CanaryResult, CanaryStep
from webapp.admin.capacity import quota_reader
from webapp.admin.catalog import CatalogError
from webapp.admin.errors import AdminError
from webapp.admin.jobs import JobView
from webapp.admin.messages import admin_error_message
from webapp.admin.ui.console import Console, catalog, job_to_show
from webapp.cluster.errors import ClusterError
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

#: the canary form's entries, kept while another tab is open (``webapp.ui.entries``)
ENTRIES = ("canary_open", "canary_pool", "canary_model", "canary_ttft", "canary_errors",
           "canary_soak", "canary_need", "canary_image", "canary_max_model_len",
           "canary_stream_interval", "canary_gpu_memory_utilization")  # fmt: skip
PHASES = {
    "creating": "Creating the canary pool",
    "loading": "Waiting for the canary's replicas",
    "shifting": "Moving traffic step by step",
    "promoting": "Promoting the canary",
    "rolling_back": "Rolling back",
    "done": "Done",
}


def show(console: Console) -> None:
    if console.cluster is None:
        return
    st.subheader("Canary")
    progress(console)
    if st.toggle("Switch a pool's model as a canary", key="canary_open"):
        _form(console)


def _form(console: Console) -> None:
    ns = console.settings.k8s_namespace
    try:
        pools = {p.name: p for p in canary_candidates(console.cluster, ns)}
        models = [m.id for m in catalog().models]
    except (ClusterError, CatalogError) as exc:
        st.warning(admin_error_message(exc))
        return
    if not pools:
        st.info("No pool can take a canary now: a canary needs a pool of its own (not the "
                "default pool) that serves one model alone. Deploy a model as a pool first.")  # fmt: skip
        return
    st.caption("A second pool with the new model, vLLM version or flags takes 5% → 25% → 50% "
               "→ 100% of the pool's model name; each step is judged on both pools' live vLLM "
               "metrics and rolls back by itself when the canary is worse than the limits.")  # fmt: skip
    st.caption(literal("Now: " + "; ".join(serving_now(p) for p in pools.values())))
    # plain widgets, not st.form: a form's entries stay in the browser until sent, and
    # would be lost on a change of tab (``ENTRIES``)
    with st.container(border=True, key="canary_form"):
        pool = st.selectbox("Pool", list(pools), key="canary_pool", format_func=lambda n: (
            f"{n} — {pools[n].model}, {pools[n].replicas} replica(s)"))  # fmt: skip
        model = st.selectbox("New model (its weights, served under the pool's model name)",
                             models, index=None, placeholder="Keep the pool's weights",
                             key="canary_model")  # fmt: skip
        wanted = _version_inputs(model)
        ttft = st.number_input("Max TTFT p95 ratio (canary / stable)", 1.0, 20.0, 1.5, 0.1,
                               key="canary_ttft")  # fmt: skip
        errors = st.number_input("Max error-rate increase (percentage points)", 0.1, 100.0,
                                 2.0, key="canary_errors")  # fmt: skip
        soak = st.number_input("Soak seconds per step", 1, 3600, 120, key="canary_soak")
        need = st.number_input("Canary requests needed to judge a step", 1, 10_000, 20,
                               key="canary_need")  # fmt: skip
        start = st.button("Start canary", key="canary_start")
    if start:
        plan = CanaryPlan(soak_s=float(soak), max_ttft_ratio=float(ttft),
                          max_error_rate_increase=float(errors), min_requests=int(need))  # fmt: skip
        _start(console, pool, wanted, plan)


def _version_inputs(model: str | None) -> WantedChange:
    """The new vLLM image and flag values (empty: the pool's), checked when the canary
    starts (``pool_overrides``): an image of the pool's repository or vllm/vllm-openai."""
    c1, c2 = st.columns(2)
    image = c1.text_input("New vLLM image (version)", key="canary_image",
                          placeholder="vllm/vllm-openai:<release tag> (empty: the pool's)")  # fmt: skip
    context = c2.number_input("--max-model-len (empty: the pool's, or the new model's)", 16,
                              10_485_760, None, 256, key="canary_max_model_len")  # fmt: skip
    interval = c1.number_input("--stream-interval (empty: the pool's)", 1, 64, None,
                               key="canary_stream_interval")  # fmt: skip
    util = c2.number_input("--gpu-memory-utilization (empty: the pool's)", 0.10, 0.99, None,
                           0.01, key="canary_gpu_memory_utilization")  # fmt: skip
    return WantedChange(
        model, image.strip() or None, None if context is None else int(context),
        None if interval is None else int(interval), None if util is None else float(util),
    )  # fmt: skip


def _start(console: Console, pool: str, wanted: WantedChange, plan: CanaryPlan) -> None:
    settings = console.settings
    req = FleetCanaryRequest(
        console.cluster, settings.k8s_namespace, pool, wanted.model, plan, catalog(),
        image=wanted.image, max_model_len=wanted.max_model_len,
        stream_interval=wanted.stream_interval,
        gpu_memory_utilization=wanted.gpu_memory_utilization,
        node_pools=console.pools, read_quota=quota_reader(settings),
    )  # fmt: skip
    try:
        console.registry.start(FLEET_CANARY, req, actor=console.admin.actor, audit=console.audit)
    except (ClusterError, AdminError) as exc:
        st.error(f"Canary not started: {admin_error_message(exc)}")
        return
    st.rerun(scope="app")


@st.fragment(run_every="1s")
def progress(console: Console) -> None:
    """The latest canary of this process, while it runs and after it ended."""
    view = job_to_show(console, FLEET_CANARY.kind)
    if view is None:
        return
    if view.running:
        st.session_state["canary_watched"] = view.id
    elif st.session_state.pop("canary_watched", None) == view.id:
        st.rerun(scope="app")  # just ended while watched: the pools table above shows it now
    d = view.detail
    what = f"{d.new_model} as {d.served or '…'}" if d.new_model else d.served or "…"
    st.markdown(f"**{literal(f'Canary of pool {d.stable}: {what}')}**")
    if d.changes:
        st.markdown(f"**Changes:** {literal(' · '.join(d.changes))}")
    st.caption(literal(f"Started by {view.actor} · {PHASES.get(d.phase, d.phase)}"))
    _state(console, view)
    _steps(d.shares, d.steps, d.weights, d.result)
    stable, canary = d.weights
    st.markdown(safe_markdown(f"**Traffic now:** {d.stable} {stable}% · {d.canary} {canary}%"))
    if d.steps:
        st.dataframe([_row(s) for s in d.steps], key="canary_windows", hide_index=True)
    if d.phase == "loading":
        st.caption(f"Canary replicas ready: {d.ready[0]} of {d.ready[1]}")
    with st.expander("Messages", expanded=False):
        st.text("\n".join(view.messages[-30:]))


def _state(console: Console, view: JobView) -> None:
    res = view.result
    if view.running:
        st.info(safe_markdown(view.messages[-1] if view.messages else "Starting…"),
                icon=":material/hourglass_top:")  # fmt: skip
        if st.button("Cancel and roll back", key="cancel_canary", disabled=view.cancel_requested):
            console.registry.cancel(FLEET_CANARY, console.admin.actor, console.audit)
    elif res is not None:
        words = {"promoted": "Promoted", "rolled_back": "Rolled back", "cancelled": "Cancelled"}
        text = safe_markdown(f"**{words.get(res.outcome, res.outcome)}** — {res.reason} "
                             f"{res.serving} serves the model; pool {res.removed} was removed.")  # fmt: skip
        (st.success if res.outcome == "promoted" else st.warning)(text)
    elif view.error is not None:
        st.error(f"The canary stopped: {admin_error_message(view.error)}")


def _steps(
    shares: tuple[int, ...],
    steps: tuple[CanaryStep, ...],
    weights: tuple[int, int],
    result: CanaryResult | None,
) -> None:
    """One line: each step's share with ✓ (passed), ✗ (rolled back there), … (current)."""
    passed = {s.share for s in steps if s.decision.verdict == "promote"}
    failed = {s.share for s in steps if s.decision.verdict == "rollback"}
    current = weights[1] if result is None else None
    marks = []
    for share in shares:
        mark = "✓" if share in passed else "✗" if share in failed else ""
        mark = mark or ("…" if share == current else "")
        marks.append(f"{share}% {mark}".strip())
    st.markdown("**Steps:** " + " → ".join(marks))
    if steps:
        last = steps[-1].decision
        st.markdown(safe_markdown(f"**Decision ({last.verdict}):** {last.reason}"))


def _row(step: CanaryStep) -> dict:
    sig = step.signals
    c, s = sig.canary, sig.stable
    return {
        "step": f"{step.step} ({step.share}%)",
        "canary requests": None if c is None else int(c.requests),
        "canary errors": None if c is None else percent(c.error_rate),
        "stable requests": None if s is None else int(s.requests),
        "stable errors": None if s is None else percent(s.error_rate),
        "TTFT p95 canary": _ttft(c),
        "TTFT p95 stable": _ttft(s),
        "decision": step.decision.verdict + (f": {sig.problem}" if sig.problem else ""),
    }


def _ttft(pool: PoolSignals | None) -> str:
    return "—" if pool is None or pool.ttft_p95_s is None else seconds(pool.ttft_p95_s)
