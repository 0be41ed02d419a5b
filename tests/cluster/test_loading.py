"""Loading phases of a vLLM pod from its log (the real CPU build's, GPU lines from vLLM's
source), its status and events; merged, predicted from past loads, and against a real vLLM."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webapp.cluster.loading import (
    PHASES,
    estimate,
    fmt_duration,
    log_phases,
    median_phases,
    merge,
    pod_phases,
    pod_progress,
)

DATA = Path(__file__).parent / "data"
CPU_LOG = (DATA / "vllm-0.32.0-cpu-startup.log").read_text()
GPU_LOG = (DATA / "vllm-0.32.0-gpu-startup.log").read_text()
CPU_STARTED = datetime(2026, 12, 2, 7, 45, 55, 650812, tzinfo=UTC)  # from the log's header
CPU_HEALTHY = datetime(2026, 12, 2, 7, 50, 46, 779608, tzinfo=UTC)
GPU_POD_START = datetime(2026, 12, 1, 18, 28, 0, tzinfo=UTC)


def at(text: str, year: int = 2026) -> datetime:
    """``"12-01 18:35:16.5"`` as an aware UTC time in ``year``."""
    return datetime.strptime(f"{year}-{text}", "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("log", "reference", "expected"),
    [
        pytest.param(
            CPU_LOG,
            CPU_STARTED,
            [
                ("starting vLLM", at("12-02 07:46:39.0")),
                ("downloading weights", at("12-02 07:48:50.0")),  # Starting to load model
                ("loading weights", at("12-02 07:48:50.97")),  # 07:48:51 minus 0.03 s
                ("compiling", at("12-02 07:48:55.0")),  # Warming up model for the compilation
                ("profiling memory & KV cache", at("12-02 07:50:38.92")),  # 39 minus 0.08 s
                ("starting API server", at("12-02 07:50:42.0")),  # init engine ... took
                ("ready", at("12-02 07:50:45.0")),  # uvicorn's line takes the last time
            ],
            id="real-cpu-build",
        ),
        pytest.param(
            GPU_LOG,
            GPU_POD_START,
            [
                ("starting vLLM", at("12-01 18:31:02.0")),
                ("downloading weights", at("12-01 18:31:25.0")),
                ("loading weights", at("12-01 18:33:58.29")),  # 18:34:12 minus 13.71 s
                ("compiling", at("12-01 18:34:13.0")),  # Starting torch.compile
                ("profiling memory & KV cache", at("12-01 18:34:49.16")),  # 51 minus 1.84 s
                ("capturing graphs", at("12-01 18:34:54.0")),  # 18:35:08 minus 14 s
                ("starting API server", at("12-01 18:35:09.0")),
                ("ready", at("12-01 18:35:12.0")),
            ],
            id="gpu-build-from-source",
        ),
    ],
)
def test_phases_of_the_recorded_startup_logs(log, reference, expected):
    assert log_phases(log, reference=reference) == expected


LEGACY = """\
INFO 12-01 18:35:01 [api_server.py:1885] vLLM API server version 0.11.0
(EngineCore_DP0 pid=212) INFO 12-01 18:35:05 [gpu_model_runner.py:2602] Starting to load model m...
(EngineCore_DP0 pid=212) INFO 12-01 18:35:20 [default_loader.py:267] Loading weights took 5.00 seconds
(EngineCore_DP0 pid=212) INFO 12-01 18:35:21 [gpu_model_runner.py:2653] Model loading took 14.2 GiB and 15.3 seconds
(EngineCore_DP0 pid=212) INFO 12-01 18:35:30 [gpu_worker.py:298] Available KV cache memory: 5.42 GiB
(EngineCore_DP0 pid=212) INFO 12-01 18:35:31 [kv_cache_utils.py:1087] GPU KV cache size: 49,152 tokens
INFO 12-01 18:35:40 [api_server.py:1971] Starting vLLM API server 0 on http://0.0.0.0:8000
INFO:     Application startup complete.
"""


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        pytest.param(
            LEGACY,
            [
                ("starting vLLM", at("12-01 18:35:01.0")),
                ("downloading weights", at("12-01 18:35:05.0")),
                ("loading weights", at("12-01 18:35:15.0")),
                # eager mode: no compile line, profiling follows the model load; no graphs
                ("profiling memory & KV cache", at("12-01 18:35:21.0")),
                ("starting API server", at("12-01 18:35:40.0")),
                ("ready", at("12-01 18:35:40.0")),
            ],
            id="older-vllm-engine-core-dp0-prefix-eager",
        ),
        pytest.param(
            "\x1b[32mINFO\x1b[0m 12-01 18:35:01 [a.py:1] hello\n"
            "(Worker pid=9) \x1b[32mINFO\x1b[0m 12-01 18:35:03 [b.py:2] Starting to load model x\n",
            [
                ("starting vLLM", at("12-01 18:35:01.0")),
                ("downloading weights", at("12-01 18:35:03.0")),
            ],
            id="colours",
        ),
        pytest.param(
            "2026-12-01T18:35:01.123456789Z (APIServer pid=1) INFO 12-01 18:35:01 [a.py:1] x\n"
            "2026-12-01T19:35:02.5+01:00 (Worker pid=9) INFO 12-01 18:35:02 [b.py:2] "
            "Starting to load model x\n"
            "2026-12-01T18:35:09.75Z INFO:     Application startup complete.\n",
            [
                ("starting vLLM", at("12-01 18:35:01.123456")),
                ("downloading weights", at("12-01 18:35:02.5")),
                ("ready", at("12-01 18:35:09.75")),
            ],
            id="kubectl-logs-timestamps-win",
        ),
        pytest.param(
            "INFO 12-31 23:59:58 [a.py:1] x\nINFO 01-01 00:00:03 [b.py:2] Starting to load model m\n",
            [
                ("starting vLLM", at("12-31 23:59:58.0")),
                ("downloading weights", at("01-01 00:00:03.0", 2027)),
            ],
            id="across-new-year",
        ),
        pytest.param(
            "INFO 02-30 10:00:00 [a.py:1] no such day\nINFO 12-01 18:00:00 [a.py:1] first\n"
            "INFO 12-01 18:00:09 [b.py:2] Loading weights took 999999999.0 seconds\n",
            [("starting vLLM", at("12-01 18:00:00.0"))],
            id="impossible-date-and-absurd-duration-ignored",
        ),
        pytest.param("", [], id="empty"),
        pytest.param(
            "Traceback (most recent call last):\n\x00\xff binary \ufffd junk\n"
            "INFO:     Application startup complete.\nLoading weights took 3 seconds\n",
            [],
            id="garbage-without-any-time",
        ),
    ],
)
def test_log_variants_and_garbage(log, expected):
    assert log_phases(log, reference=datetime(2026, 12, 1, 12, tzinfo=UTC)) == expected


def _cut_before(log: str, text: str) -> str:
    """``log`` up to the line that logs ``text`` (the header comment names them too)."""
    return log[: log.rindex("\n", 0, log.index("] " + text)) + 1]


@pytest.mark.parametrize(
    ("cut_at", "current"),
    [
        ("Starting to load model", "starting vLLM"),
        ("Time spent downloading", "downloading weights"),
        ("Model loading took", "loading weights"),
        ("torch.compile took", "compiling"),
        ("GPU KV cache size", "profiling memory & KV cache"),
        ("Graph capturing finished", "capturing graphs"),  # from the KV cache line
        ("Supported tasks", "starting API server"),
    ],
)
def test_a_log_cut_half_way_says_the_phase_under_way(cut_at, current):
    partial = _cut_before(GPU_LOG, cut_at)
    now = at("12-01 18:40:00.0")
    progress = merge([], log_phases(partial, reference=GPU_POD_START), now=now)
    assert progress.current == current
    assert not progress.ready
    states = [p.state for p in progress.phases]
    assert states[PHASES.index(current) + 1 :] == ["pending"] * (
        len(PHASES) - 1 - PHASES.index(current)
    )


def test_shuffled_log_lines_still_give_phases_in_order_and_no_negative_duration():
    lines = GPU_LOG.splitlines()
    random.Random(13).shuffle(lines)
    progress = merge([], log_phases("\n".join(lines), reference=GPU_POD_START), now=None)
    starts = [p.start for p in progress.phases if p.start is not None]
    assert starts == sorted(starts)
    assert all(p.seconds is None or p.seconds >= 0 for p in progress.phases)


# ---------------------------------------------------------------- pod status and events


def pod(**status) -> dict:
    return {
        "metadata": {"name": "vllm-7c9d-x2", "creationTimestamp": "2026-12-01T18:20:00Z"},
        "status": {"phase": "Pending", **status},
    }


def event(reason: str, first: str, name: str = "vllm-7c9d-x2", **extra) -> dict:
    return {
        "involvedObject": {"kind": "Pod", "name": name},
        "reason": reason,
        "firstTimestamp": first,
        "lastTimestamp": first,
        **extra,
    }


SCHEDULED = {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T18:23:10Z"}
RUNNING = [{"name": "vllm", "state": {"running": {"startedAt": "2026-12-01T18:28:00Z"}}}]
READY = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T18:35:20Z"}


@pytest.mark.parametrize(
    ("the_pod", "events", "expected"),
    [
        pytest.param(
            pod(
                conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]
            ),
            [event("TriggeredScaleUp", "2026-12-01T18:20:05Z")],
            [("scheduled", at("12-01 18:20:00.0"))],
            id="waiting-for-a-node",
        ),
        pytest.param(
            pod(conditions=[SCHEDULED]),
            [event("Pulling", "2026-12-01T18:23:12Z")],
            [("scheduled", at("12-01 18:20:00.0")), ("pulling image", at("12-01 18:23:10.0"))],
            id="bound-to-a-node-pulling",
        ),
        pytest.param(
            pod(),
            [
                event("Scheduled", "", eventTime="2026-12-01T18:23:09.500000Z"),
                event("Scheduled", "2026-12-01T18:00:00Z", name="another-pod"),
            ],
            [("scheduled", at("12-01 18:20:00.0")), ("pulling image", at("12-01 18:23:09.5"))],
            id="scheduled-event-only-other-pods-ignored",
        ),
        pytest.param(
            pod(conditions=[SCHEDULED, READY], containerStatuses=RUNNING),
            [event("Started", "2026-12-01T18:27:59Z")],
            [
                ("scheduled", at("12-01 18:20:00.0")),
                ("pulling image", at("12-01 18:23:10.0")),
                ("starting vLLM", at("12-01 18:28:00.0")),
                ("ready", at("12-01 18:35:20.0")),
            ],
            id="running-and-ready",
        ),
        pytest.param(
            pod(conditions=[SCHEDULED]),
            [event("Started", "2026-12-01T18:27:59Z", count=3)],
            [
                ("scheduled", at("12-01 18:20:00.0")),
                ("pulling image", at("12-01 18:23:10.0")),
                ("starting vLLM", at("12-01 18:27:59.0")),
            ],
            id="started-event-when-status-lags",
        ),
        pytest.param(
            {
                "metadata": {"name": "p", "creationTimestamp": "yesterday"},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": 7}],
                    "containerStatuses": [None, {"state": {"running": {"startedAt": "soon"}}}],
                },
            },
            ["not an event", {"reason": "Pulling"}],
            [],
            id="garbage",
        ),
        pytest.param(
            {"metadata": "vllm", "status": {"conditions": "Ready", "containerStatuses": "x"}},
            [{"involvedObject": "vllm", "reason": "Pulling"}, {"reason": "Started", "x": 1}],
            [],
            id="wrong-shapes",
        ),
        pytest.param({}, [], [], id="empty"),
    ],
)
def test_pod_phases(the_pod, events, expected):
    assert pod_phases(the_pod, events) == expected


# ---------------------------------------------------------------- merge and estimate


def test_pod_and_log_merge_into_every_phase_with_its_duration():
    the_pod = pod(conditions=[SCHEDULED, READY], containerStatuses=RUNNING)
    progress = merge(
        pod_phases(the_pod, []),
        log_phases(GPU_LOG, reference=GPU_POD_START),
        now=at("12-01 18:40:00.0"),
    )
    rows = {p.phase: (p.state, p.seconds) for p in progress.phases}
    assert rows == {
        "scheduled": ("done", 190.0),  # 18:20:00 -> 18:23:10, waiting for a node
        "pulling image": ("done", 290.0),  # -> container started 18:28:00 (the pod wins)
        "starting vLLM": ("done", 205.0),  # -> Starting to load model 18:31:25
        "downloading weights": ("done", pytest.approx(153.29)),
        "loading weights": ("done", pytest.approx(14.71)),
        "compiling": ("done", pytest.approx(36.16)),
        "profiling memory & KV cache": ("done", pytest.approx(4.84)),
        "capturing graphs": ("done", 15.0),
        "starting API server": ("done", 11.0),  # -> the pod's Ready 18:35:20 (probe lag)
        "ready": ("done", 0.0),
    }
    assert progress.ready and progress.current is None
    assert progress.ready_at == at("12-01 18:35:20.0")
    assert progress.elapsed_s == pytest.approx(920.0)
    assert sum(progress.durations().values()) == pytest.approx(progress.elapsed_s)
    assert "ready" not in progress.durations()


def test_pod_progress_reads_pod_events_and_log_of_one_pod():
    """The log's year comes from the pod: read in July 2027, "12-01" is still 2026."""
    progress = pod_progress(
        pod(conditions=[SCHEDULED], containerStatuses=RUNNING),
        [event("Pulling", "2026-12-01T18:23:11Z")],
        _cut_before(GPU_LOG, "torch.compile took"),
        now=at("07-01 09:00:00.0", 2027),
    )
    assert progress.current == "compiling"
    assert [p.start for p in progress.phases[:6]] == [
        at("12-01 18:20:00.0"),
        at("12-01 18:23:10.0"),
        at("12-01 18:28:00.0"),
        at("12-01 18:31:25.0"),
        at("12-01 18:33:58.29"),
        at("12-01 18:34:13.0"),
    ]


def test_a_load_under_way_counts_the_current_phase_up_to_now():
    progress = merge(
        pod_phases(pod(conditions=[SCHEDULED], containerStatuses=RUNNING), []),
        [("downloading weights", at("12-01 18:29:00.0"))],
        now=at("12-01 18:29:40.0"),
    )
    assert progress.current == "downloading weights"
    assert progress.phases[3].seconds == 40.0
    assert [p.state for p in progress.phases[4:]] == ["pending"] * 6
    assert progress.elapsed_s == 580.0
    assert list(progress.durations()) == ["scheduled", "pulling image", "starting vLLM"]


def test_nothing_known_is_all_pending():
    progress = merge([], [], now=at("12-01 18:00:00.0"))
    assert progress.current is None and not progress.ready and progress.elapsed_s == 0.0
    assert {p.state for p in progress.phases} == {"pending"}


PAST = [
    {"scheduled": 10.0, "pulling image": 60.0, "starting vLLM": 40.0, "loading weights": 20.0},
    {"scheduled": 30.0, "pulling image": 80.0, "starting vLLM": 50.0, "loading weights": 40.0},
    {
        "scheduled": 20.0,
        "pulling image": 70.0,
        "starting vLLM": 45.0,
        "loading weights": 30.0,
        "not a phase": 1e6,
        "ready": -1,
        "compiling": float("inf"),
    },
]


def test_median_of_past_loads_per_phase():
    assert median_phases(PAST) == {
        "scheduled": 20.0,
        "pulling image": 70.0,
        "starting vLLM": 45.0,
        "loading weights": 30.0,
    }


@pytest.mark.parametrize(
    ("now", "eta", "overdue"),
    [
        ("12-01 18:20:05.0", 15.0 + 70 + 45 + 30, False),  # 5 s into scheduling
        ("12-01 18:21:00.0", 0.0 + 70 + 45 + 30, True),  # scheduling took longer than usual
    ],
)
def test_eta_is_what_is_left_of_the_current_phase_plus_the_pending_ones(now, eta, overdue):
    progress = merge(pod_phases(pod(), []), now=at(now))
    guess = estimate(progress, PAST)
    assert (guess.eta_s, guess.overdue, guess.based_on) == (eta, overdue, 3)
    assert guess.predicted_total_s == 165.0


def test_a_finished_load_against_its_prediction():
    the_pod = pod(conditions=[SCHEDULED, READY], containerStatuses=RUNNING)
    progress = merge(pod_phases(the_pod, []), now=at("12-01 19:00:00.0"))
    guess = estimate(progress, PAST)
    assert guess.eta_s == 0.0 and not guess.overdue
    assert (guess.predicted_total_s, guess.actual_total_s) == (165.0, 920.0)


def test_without_past_loads_there_is_no_eta():
    progress = merge(pod_phases(pod(), []), now=at("12-01 18:21:00.0"))
    guess = estimate(progress, [])
    assert (guess.eta_s, guess.predicted_total_s, guess.based_on) == (None, None, 0)
    assert guess.actual_total_s == 60.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (-3, "0.0 s"),
        (0.44, "0.4 s"),
        (9.94, "9.9 s"),
        (10, "10 s"),
        (59.4, "59 s"),
        (59.6, "1 min 00 s"),
        (125, "2 min 05 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 00 min"),
        (3 * 3600 + 7 * 60 + 30, "3 h 07 min"),
    ],
)
def test_fmt_duration(seconds, text):
    assert fmt_duration(seconds) == text


# ---------------------------------------------------------------- the real vLLM CPU build


@pytest.mark.vllm
def test_real_vllm_startup_log_phases_add_up_to_the_measured_start(vllm_chat):
    """The phases parsed from the real start-up log, in order, add up to the time from the
    process start to the first /health 200 within 10 % (the log's times have whole seconds
    and no year or zone: wrong year/zone handling would be off by hours)."""
    if vllm_chat.log_path is None or vllm_chat.started_at is None:
        pytest.skip("the vLLM server was reused (VLLM_TEST_CHAT_URL): no start-up log here")
    log = vllm_chat.log_path.read_text(errors="replace")
    found = log_phases(log, reference=vllm_chat.started_at)
    assert [phase for phase, _ in found] == [
        "starting vLLM",
        "downloading weights",
        "loading weights",
        "compiling",
        "profiling memory & KV cache",
        "starting API server",
        "ready",
    ]
    progress = merge([("starting vLLM", vllm_chat.started_at)], found, now=vllm_chat.ready_at)
    assert progress.ready
    starts = [p.start for p in progress.phases if p.start is not None]
    assert starts == sorted(starts)
    measured = (vllm_chat.ready_at - vllm_chat.started_at).total_seconds()
    total = sum(progress.durations().values())
    assert abs(total - measured) <= 0.1 * measured, (total, measured, progress.durations())


def test_recorded_cpu_log_adds_up_to_its_measured_start_too():
    """The same check on the recorded log (its header has the measured times)."""
    progress = merge([("starting vLLM", CPU_STARTED)], log_phases(CPU_LOG, reference=CPU_STARTED))
    measured = (CPU_HEALTHY - CPU_STARTED).total_seconds()
    assert abs(sum(progress.durations().values()) - measured) <= 0.1 * measured
    assert progress.phases[PHASES.index("capturing graphs")].state == "skipped"  # no CUDA on CPU
