"""The phases of a vLLM pod starting up, read from its status, events and log. Pure, no I/O.

vLLM's own ``/metrics`` is silent while it loads, so the phases come from three places:

- the pod (``pod_phases``): created (``scheduled``: waiting for a node, a scale-up
  included), bound to a node (``pulling image``: pull, volumes, container creation),
  container started (``starting vLLM``), Ready condition (``ready``);
- the vLLM log (``log_phases``): lines of the real CPU build's start-up log and, for the
  GPU build, of vLLM's source (``tests/cluster/data`` holds both, with the source lines);
- past loads of the same model on the same GPU type (``estimate``): the median of each
  phase predicts the current load, gives an ETA and the predicted-vs-actual comparison.

``merge`` joins pod and log into one ``LoadProgress``: each phase done / current / skipped
(absent, e.g. no CUDA graphs on CPU, no download when the weights are cached) / pending.

vLLM's log times (``INFO 12-01 18:35:16``) have no year and no time zone: they are read
as UTC (containers run in UTC; the tests start vLLM with ``TZ=UTC``) in the year of the
reference time (the pod's start), moved across New Year when that is closer. Lines that
``kubectl logs --timestamps`` (the API's ``timestamps=true``) prefixes with an RFC 3339
time use that time instead. Lines without a time (uvicorn's) take the last time seen.
"""

from __future__ import annotations

import contextlib
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PHASES: tuple[str, ...] = (
    "scheduled",
    "pulling image",
    "starting vLLM",
    "downloading weights",
    "loading weights",
    "compiling",
    "profiling memory & KV cache",
    "capturing graphs",
    "starting API server",
    "ready",
)
READY = PHASES[-1]
_ORDER = {phase: n for n, phase in enumerate(PHASES)}
_MAX_TOOK_S = 7 * 24 * 3600.0  # a "took N s" beyond this is garbage, not a phase
_MAX_LINE = 4096  # characters of a log line looked at (the markers are near its start)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_K8S_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)\s?(.*)$")
_VLLM_LINE = re.compile(
    r"^(?:\S*\s*)?(?:\([^()]*\)\s+)?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+"
    r"(\d\d)-(\d\d)\s+(\d\d):(\d\d):(\d\d)(?:[.,]\d+)?\s+(?:\[[^\]]*\]\s?)?(.*)$"
)
_S = r"(?P<s>\d{1,9}(?:\.\d+)?)"


@dataclass(frozen=True)
class _Marker:
    """A log line telling that ``phase`` has begun: at the line's time, or ``took`` seconds
    (group ``s``) before it. ``unless``: a fallback, dropped when one of these phases is
    found too (it would claim a phase that has not begun, or never happens)."""

    phase: str
    pattern: re.Pattern[str]
    took: bool = False
    unless: tuple[str, ...] = ()


def _m(phase: str, pattern: str, *, took: bool = False, unless: tuple[str, ...] = ()) -> _Marker:
    return _Marker(phase, re.compile(pattern), took, unless)


# Per phase, in order of preference (the first that matches any line wins).
MARKERS: tuple[_Marker, ...] = (
    _m("downloading weights", r"Starting to load model "),
    _m("loading weights", rf"Loading weights took {_S} s", took=True),
    _m("loading weights", r"Time spent downloading weights for "),
    _m("compiling", r"Starting torch\.compile"),
    _m("compiling", r"Warming up model for the compilation"),  # CPU build
    _m("compiling", rf"Dynamo bytecode transform time: {_S} s", took=True),
    _m("compiling", r"Using cache directory: .* for vLLM's torch\.compile"),
    _m("profiling memory & KV cache", rf"Initial profiling/warmup run took {_S} s", took=True),
    _m("profiling memory & KV cache", r"torch\.compile (?:and .* )?took [\d.]+ s in total"),
    _m("profiling memory & KV cache", r"Warming up done"),  # CPU build
    _m("profiling memory & KV cache", r"Model loading took ", unless=("compiling",)),
    _m("capturing graphs", rf"Graph capturing finished in {_S} secs", took=True),
    # no line starts the capture: the KV cache is sized just before; once the engine is ready
    # without a "Graph capturing finished" line, no graphs were captured (eager mode)
    _m("capturing graphs", r"GPU KV cache size: ", unless=("starting API server", READY)),
    _m("starting API server", r"init engine \(profile, create kv cache, warmup model\) took"),
    _m("starting API server", r"Starting vLLM (?:API )?server"),
    _m(READY, r"Application startup complete"),
)


# ---------------------------------------------------------------- reading the log


def _log_time(month: int, day: int, clock: tuple[int, int, int], ref: datetime) -> datetime | None:
    """A month-day time in the year of ``ref`` or the one next to it, whichever is nearest
    (a pod started on 31 December logs in January); None for no such day (30 February)."""
    candidates = []
    for year in (ref.year - 1, ref.year, ref.year + 1):
        with contextlib.suppress(ValueError):
            candidates.append(datetime(year, month, day, *clock, tzinfo=UTC))
    return min(candidates, key=lambda t: abs(t - ref), default=None)


def _line_time(line: str, reference: datetime) -> tuple[datetime | None, str]:
    """(time, message) of one log line; time None when the line carries none."""
    stamped: datetime | None = None
    if k8s := _K8S_TIME.match(line):
        stamped = _time(k8s[1] + (k8s[2] or "")[:7] + k8s[3])  # ns -> us
        line = k8s[4] if stamped else line
    vllm = _VLLM_LINE.match(line)
    if vllm is None:
        return stamped, line
    month, day, hh, mm, ss = (int(g) for g in vllm.groups()[:5])
    logged = _log_time(month, day, (hh, mm, ss), reference)
    if logged is None:  # no such day: not a vLLM time after all
        return stamped, line
    return stamped or logged, vllm[6]


def timed_lines(log_text: str, reference: datetime) -> list[tuple[datetime, str]]:
    """Each line with the time it was written (lines before the first time are dropped)."""
    reference = _aware(reference)
    out: list[tuple[datetime, str]] = []
    last: datetime | None = None
    for raw in log_text.splitlines():
        line = _ANSI.sub("", raw[:_MAX_LINE]).strip()
        when, message = _line_time(line, reference)
        last = when or last
        if last is not None and message:
            out.append((last, message))
    return out


def log_phases(log_text: str, *, reference: datetime | None = None) -> list[tuple[str, datetime]]:
    """[(phase, start)] found in a vLLM log, in ``PHASES`` order (each phase at most once).

    ``reference`` (the pod's or process's start; default now) gives the log times their
    year. ``starting vLLM`` is the first timed line; the pod's container start is better
    when known (``merge`` prefers it). Garbage lines are skipped."""
    lines = timed_lines(log_text, reference or datetime.now(UTC))
    if not lines:
        return []
    found: dict[str, datetime] = {"starting vLLM": lines[0][0]}
    fallbacks: dict[str, _Marker] = {}
    for marker in MARKERS:
        if marker.phase in found:
            continue
        start = _first_match(marker, lines)
        if start is not None:
            found[marker.phase] = start
            if marker.unless:
                fallbacks[marker.phase] = marker
    for phase, marker in fallbacks.items():
        if any(p in found for p in marker.unless):
            del found[phase]
    return sorted(found.items(), key=lambda item: _ORDER[item[0]])


def _first_match(marker: _Marker, lines: Sequence[tuple[datetime, str]]) -> datetime | None:
    for when, message in lines:
        hit = marker.pattern.search(message)
        if not hit:
            continue
        if not marker.took:
            return when
        seconds = float(hit["s"])
        if seconds <= _MAX_TOOK_S:
            return when - timedelta(seconds=seconds)
    return None


# ---------------------------------------------------------------- reading the pod


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(value: object) -> datetime | None:
    """An API server time (RFC 3339, ``Z`` or offset) as aware UTC; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _map(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _condition(status: Mapping, kind: str) -> datetime | None:
    for cond in map(_map, status.get("conditions") or []):
        if cond.get("type") == kind and cond.get("status") == "True":
            return _time(cond.get("lastTransitionTime"))
    return None


def _first_event(events: Sequence[object], reason: str, pod: str) -> datetime | None:
    """When the first event ``reason`` about pod ``pod`` happened."""
    times = []
    for event in map(_map, events):
        obj = _map(event.get("involvedObject") or event.get("regarding"))
        if event.get("reason") == reason and obj.get("name") == pod:
            first = event.get("firstTimestamp") or event.get("eventTime")
            times.append(_time(first or _map(event.get("metadata")).get("creationTimestamp")))
    return min((t for t in times if t is not None), default=None)


def _container_started(status: Mapping) -> datetime | None:
    for cs in map(_map, status.get("containerStatuses") or []):
        if started := _time(_map(_map(cs.get("state")).get("running")).get("startedAt")):
            return started
    return None


def pod_phases(pod: Mapping, events: Iterable[object] = ()) -> list[tuple[str, datetime]]:
    """[(phase, start)] a core/v1 Pod dict and its core/v1 Event dicts tell, in order:
    ``scheduled`` (created), ``pulling image`` (bound to a node), ``starting vLLM``
    (container running), ``ready`` (Ready condition). Malformed parts are ignored."""
    meta, status = _map(pod.get("metadata")), _map(pod.get("status"))
    name = meta.get("name") or ""
    events = list(events)
    found = {
        "scheduled": _time(meta.get("creationTimestamp")),
        "pulling image": _condition(status, "PodScheduled")
        or _first_event(events, "Scheduled", name)
        or _first_event(events, "Pulling", name),
        "starting vLLM": _container_started(status) or _first_event(events, "Started", name),
        READY: _condition(status, "Ready"),
    }
    return [(phase, start) for phase, start in found.items() if start is not None]


def pod_progress(
    pod: Mapping, events: Iterable[object] = (), log_text: str = "", *, now: datetime | None = None
) -> LoadProgress:
    """The load of one pod from its status, events and log (log years from the pod's start)."""
    from_pod = pod_phases(pod, events)
    reference = from_pod[-1][1] if from_pod else (now or datetime.now(UTC))
    return merge(from_pod, log_phases(log_text, reference=reference), now=now)


# ---------------------------------------------------------------- one view of a load


@dataclass(frozen=True)
class PhaseTiming:
    """A phase of one load. ``seconds``: how long it took (done), has taken so far
    (current), 0 (skipped), None (pending)."""

    phase: str
    state: str  # done | current | skipped | pending
    start: datetime | None
    seconds: float | None


@dataclass(frozen=True)
class LoadProgress:
    """Where a load is: every phase of ``PHASES`` in order, and the time it was read."""

    phases: tuple[PhaseTiming, ...]
    now: datetime

    @property
    def current(self) -> str | None:
        """The phase under way; None before anything is known and once ready."""
        return next((p.phase for p in self.phases if p.state == "current"), None)

    @property
    def ready(self) -> bool:
        return self.phases[-1].state == "done"

    @property
    def started_at(self) -> datetime | None:
        return next((p.start for p in self.phases if p.start is not None), None)

    @property
    def ready_at(self) -> datetime | None:
        return self.phases[-1].start if self.ready else None

    @property
    def elapsed_s(self) -> float:
        """From the first phase to ready (or to ``now`` while loading)."""
        start = self.started_at
        return 0.0 if start is None else _seconds((self.ready_at or self.now) - start)

    def durations(self) -> dict[str, float]:
        """{phase: seconds} of the phases behind (done or skipped): what a finished load
        stores; ``ready`` itself has no duration."""
        return {
            p.phase: float(p.seconds or 0.0)
            for p in self.phases
            if p.state in ("done", "skipped") and p.phase != READY
        }


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def merge(
    pod: Iterable[tuple[str, datetime]],
    log: Iterable[tuple[str, datetime]] = (),
    *,
    now: datetime | None = None,
) -> LoadProgress:
    """One ``LoadProgress`` from the pod's phases and the log's (the pod wins where both
    know a phase). Starts are made monotonic in ``PHASES`` order (a start before the one of
    the phase before it is moved up to it), so logs out of order or clocks that disagree
    give zero-length phases, never negative ones."""
    now = _aware(now or datetime.now(UTC))
    starts: dict[str, datetime] = {}
    for phase, start in [*pod, *log]:
        if phase in _ORDER and phase not in starts:
            starts[phase] = _aware(start)
    known = [phase for phase in PHASES if phase in starts]
    last = known[-1] if known else None
    for before, phase in zip(known, known[1:], strict=False):
        starts[phase] = max(starts[phase], starts[before])
    timings = []
    for n, phase in enumerate(PHASES):
        if phase in starts:
            later = next((starts[p] for p in PHASES[n + 1 :] if p in starts), None)
            ends = later or (starts[phase] if phase == READY else max(now, starts[phase]))
            state = "current" if later is None and phase != READY else "done"
            timings.append(PhaseTiming(phase, state, starts[phase], _seconds(ends - starts[phase])))
        elif last is not None and _ORDER[phase] < _ORDER[last]:
            timings.append(PhaseTiming(phase, "skipped", None, 0.0))
        else:
            timings.append(PhaseTiming(phase, "pending", None, None))
    return LoadProgress(tuple(timings), now)


# ---------------------------------------------------------------- prediction


@dataclass(frozen=True)
class Estimate:
    """A load against the past loads of the same model on the same GPU type.

    ``predicted``: the median seconds of each phase; ``eta_s``: seconds until ready (0 once
    ready; None without past loads); ``overdue``: the current phase already took longer
    than predicted (the ETA then counts it as ending now)."""

    based_on: int
    predicted: dict[str, float]
    eta_s: float | None
    overdue: bool
    predicted_total_s: float | None
    actual_total_s: float


def median_phases(past: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """{phase: median seconds} over the past loads that have the phase."""
    samples: dict[str, list[float]] = {}
    for load in past:
        for phase, seconds in load.items():
            if phase in _ORDER and isinstance(seconds, int | float) and 0 <= seconds < math.inf:
                samples.setdefault(phase, []).append(float(seconds))
    return {p: statistics.median(samples[p]) for p in PHASES if p in samples}


def estimate(progress: LoadProgress, past: Sequence[Mapping[str, float]]) -> Estimate:
    """Predict ``progress`` from ``past`` loads' {phase: seconds} (newest first or any order)."""
    predicted = median_phases(past)
    if not predicted:
        return Estimate(0, {}, 0.0 if progress.ready else None, False, None, progress.elapsed_s)
    left, overdue, total = 0.0, False, sum(predicted.values())
    for timing in progress.phases:
        guess = predicted.get(timing.phase, 0.0)
        if timing.state == "current":
            overdue = (timing.seconds or 0.0) > guess
            left += max(0.0, guess - (timing.seconds or 0.0))
        elif timing.state == "pending":
            left += guess
    return Estimate(len(past), predicted, left, overdue, total, progress.elapsed_s)


def fmt_duration(seconds: float | None) -> str:
    """Seconds for people: "0.4 s", "45 s", "2 min 05 s", "1 h 02 min"; None is "—"."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
