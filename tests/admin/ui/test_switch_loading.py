"""AppTest of a switch whose new pod loads phase by phase (issue 13.2): the fake cluster
holds the new pod before Ready while the test replays the recorded GPU start-up log
(``tests/cluster/data``) line by line into its log, with today's times; the admin page
shows each phase as it begins, the load is stored, the chat page's view of it (the load in
progress) follows, and the next load of the same model shows a prediction."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from tests.admin.ui import test_admin_page as admin_page
from tests.admin.ui.test_admin_page import _deploy, run_until, texts
from tests.fakes.k8s_server import arg_value, pod_args
from tests.support.cluster import LLAMA, NS
from webapp.cluster.loading import PHASES, log_phases
from webapp.store import ConversationStore
from webapp.store.loads import current_load, past_loads

GPU_LOG = Path(__file__).resolve().parents[2] / "cluster" / "data" / "vllm-0.32.0-gpu-startup.log"
_WHEN = re.compile(r"\b\d\d-\d\d \d\d:\d\d:\d\d\b")
NEW = "mistral-7b"
world, page = admin_page.world, admin_page.page  # the admin page's fixtures


def recorded_lines() -> list[str]:
    return [line for line in GPU_LOG.read_text().splitlines() if not line.startswith("#")]


def loading_pod(world, model: str) -> str | None:
    """The running, not yet ready pod that serves ``model``, if there is one."""
    for p in world.fc.list("pods", NS):
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in p["status"].get("conditions") or [])  # fmt: skip
        served = arg_value(pod_args(p["spec"]), "--served-model-name") == model
        if served and p["status"].get("phase") == "Running" and not ready:
            return p["metadata"]["name"]
    return None


def phase_states(at) -> dict[str, str]:
    """{phase: state} of the loading section's table."""
    table = next((d.value for d in at.dataframe if "predicted" in d.value.columns), None)
    return {} if table is None else dict(zip(table["phase"], table["state"], strict=True))


def label(phase: str) -> str:
    return phase[:1].upper() + phase[1:]


def replay(world, at, pod: str) -> tuple[list[str], list[str]]:
    """Append the recorded log line by line (times rewritten to now); after each line that
    starts a phase, rerun the page until it shows that phase in progress (or done). The
    phases seen in progress, and the headlines shown."""
    key, text, seen, headlines = (NS, pod), "", [], []
    current = None
    for line in recorded_lines():
        line = _WHEN.sub(datetime.now(UTC).strftime("%m-%d %H:%M:%S"), line)
        with world.fc.lock:
            world.fc.pod_logs.setdefault(key, []).append(line)
        text += line + "\n"
        found = [p for p, _ in log_phases(text)]
        if not found or found[-1] == current:
            continue
        current = found[-1]
        want = ("done",) if current == PHASES[-1] else ("in progress", "done")
        run_until(at, lambda a, c=current, w=want: phase_states(a).get(label(c)) in w)
        if phase_states(at)[label(current)] == "in progress":
            seen.append(current)
            shown = [re.sub(r"\\(.)", r"\1", i.value) for i in at.info]  # escapes undone
            headlines += [h for h in shown if h.startswith(label(current))]
    return seen, headlines


def test_a_switch_shows_each_load_phase_records_it_and_predicts_the_next(world, page, tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path / 'app.db'}")
    world.fc.inject_fault(kind="slow", model=NEW)
    world.fc.slow_factor = 1e6  # the new pod stays not ready until the test lets it go
    world.fc.time_scale = 1.0  # and the progress deadline is its real 30 min
    at = _deploy(page(world))
    at = run_until(at, lambda a: loading_pod(world, NEW) is not None)
    seen, headlines = replay(world, at, loading_pod(world, NEW))
    # each phase of the log, in order, on the page; "Model loading took" first claims
    # profiling (a build that does not compile) until the next line says compiling comes first
    profiling = "profiling memory & KV cache"
    assert seen == [*PHASES[2:5], profiling, *PHASES[5:-1]]
    assert len(headlines) == len(seen) and all("so far" in h for h in headlines), headlines
    shown = texts(at)
    assert f"Loading {NEW} on nvidia-l4" in shown
    assert "No finished load of this model on nvidia-l4 yet" in shown
    # the finished load is stored with its phases; nothing is left "in progress"
    [done] = past_loads(store, NEW, "nvidia-l4")
    assert {"downloading weights", "loading weights", "compiling"} <= set(done.phases)
    assert done.ready_at is not None and current_load(store) is None

    world.fc.slow_factor = 1.0  # the pod becomes Ready: the switch ends
    at = run_until(at, lambda a: "Switched" in texts(a), timeout=60)
    at = run_until(_deploy(at, LLAMA.name), lambda a: "Switched" in texts(a), timeout=60)

    # the next load of the same model on the same GPU type: predicted, and the chat can tell
    world.fc.slow_factor = 1e6
    at = run_until(_deploy(at), lambda a: "median of the last 1 load" in texts(a), timeout=60)
    table = next(d.value for d in at.dataframe if "predicted" in d.value.columns)
    assert all(table["predicted"][table["phase"].isin(["Downloading weights", "Compiling"])])
    now = current_load(store)
    assert now is not None and now.model == NEW and now.gpu_type == "nvidia-l4"
    world.fc.slow_factor = 1.0
    run_until(at, lambda a: "Switched" in texts(a), timeout=60)
    assert len(past_loads(store, NEW, "nvidia-l4")) == 2
