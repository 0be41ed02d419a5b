"""Live load of the vLLM server, from its Prometheus ``/metrics`` endpoint.

``fetch_metrics`` GETs the text, ``parse_metrics`` turns it into a typed
``MetricsSnapshot`` (pure), ``rates`` turns two snapshots into per-second
figures, and ``MetricsHistory`` keeps a bounded window of samples for charts.

vLLM metric names used (all prefixed ``vllm:``, usually labelled ``model_name``):
``num_requests_running``, ``num_requests_waiting``, ``kv_cache_usage_perc``
(older releases: ``gpu_cache_usage_perc``; a 0..1 fraction despite the name),
the ``time_to_first_token_seconds`` histogram and the ``prompt_tokens`` /
``generation_tokens`` counters (exposed with a ``_total`` suffix).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from webapp.llm.errors import LLMError

KV_USAGE_NAMES = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
TTFT = "vllm:time_to_first_token_seconds"


class MetricsUnavailable(LLMError):
    """The metrics endpoint could not be read or did not contain vLLM metrics."""


@dataclass(frozen=True)
class Sample:
    """One Prometheus sample line."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram summed over label sets: (upper bound, cumulative count) pairs."""

    buckets: tuple[tuple[float, float], ...]
    total: float  # _sum
    count: float  # _count

    @property
    def mean(self) -> float | None:
        """Mean observation, or None when nothing was observed."""
        return self.total / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Approximate quantile by linear interpolation inside the bucket (like PromQL)."""
        return bucket_quantile(self.buckets, q)


@dataclass(frozen=True)
class MetricsSnapshot:
    """The server's load at one moment."""

    taken_at: float  # seconds (time.time()) when fetched
    num_requests_running: float
    num_requests_waiting: float
    kv_cache_usage: float | None  # 0..1
    prompt_tokens_total: float
    generation_tokens_total: float
    ttft: Histogram | None

    @property
    def ttft_mean_s(self) -> float | None:
        return self.ttft.mean if self.ttft else None

    @property
    def ttft_p50_s(self) -> float | None:
        return self.ttft.quantile(0.5) if self.ttft else None


@dataclass(frozen=True)
class Rates:
    """What happened between two snapshots."""

    interval_s: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    ttft_mean_s: float | None  # mean TTFT of requests that started in the interval


@dataclass(frozen=True)
class ChartPoint:
    """One point of the load charts."""

    taken_at: float
    running: float
    waiting: float
    kv_cache_usage: float | None
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None


def parse_samples(text: str) -> list[Sample]:
    """Parse Prometheus text exposition into samples with ``prometheus_client``'s parser.

    A line the parser rejects is skipped, not fatal: one odd line from a proxy or a newer
    server must not hide every gauge (the rest is parsed again without it).
    """
    return [
        Sample(s.name, tuple(sorted(s.labels.items())), float(s.value))
        for family in _families(text)
        for s in family.samples
    ]


def _families(text: str) -> list[Any]:
    try:
        return list(text_string_to_metric_families(text))
    except ValueError:
        pass
    kept = [line for line in text.splitlines() if _parses(line)]
    try:
        return list(text_string_to_metric_families("\n".join(kept) + "\n"))
    except ValueError:  # lines fine alone, wrong together (e.g. a sample under a bad TYPE)
        return [f for line in kept for f in text_string_to_metric_families(line + "\n")]


def _parses(line: str) -> bool:
    try:
        list(text_string_to_metric_families(line + "\n"))
    except ValueError:
        return False
    return True


def bucket_quantile(buckets: Iterable[tuple[float, float]], q: float) -> float | None:
    """Quantile ``q`` (0..1) from cumulative (le, count) buckets; None without observations.

    Interpolates linearly inside the bucket that holds the rank; a rank in the +Inf
    bucket returns the largest finite bound (as PromQL's histogram_quantile does).
    """
    b = sorted((le, c) for le, c in buckets if not math.isnan(c))
    if not b or b[-1][1] <= 0:
        return None
    total = b[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in b:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def _sum(samples: list[Sample], name: str) -> float | None:
    vals = [s.value for s in samples if s.name == name and not math.isnan(s.value)]
    return sum(vals) if vals else None


def histogram(samples: list[Sample], name: str) -> Histogram | None:
    """The histogram ``name`` summed over its label sets, or None when it is absent."""
    by_le: dict[float, float] = {}
    for s in samples:
        if s.name == name + "_bucket" and not math.isnan(s.value):
            le = dict(s.labels).get("le")
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            by_le[bound] = by_le.get(bound, 0.0) + s.value
    count = _sum(samples, name + "_count")
    if not by_le and count is None:
        return None
    return Histogram(
        buckets=tuple(sorted(by_le.items())),
        total=_sum(samples, name + "_sum") or 0.0,
        count=count or 0.0,
    )


def _counter(samples: list[Sample], name: str) -> float:
    # prometheus_client exposes counters as NAME_total; accept the bare name too
    v = _sum(samples, name + "_total")
    return v if v is not None else (_sum(samples, name) or 0.0)


def parse_metrics(text: str, taken_at: float | None = None) -> MetricsSnapshot:
    """Parse vLLM's /metrics text into a snapshot; MetricsUnavailable if no vLLM gauges."""
    samples = parse_samples(text)
    running = _sum(samples, "vllm:num_requests_running")
    waiting = _sum(samples, "vllm:num_requests_waiting")
    if running is None and waiting is None:
        raise MetricsUnavailable("the metrics text has no vllm:num_requests_* gauges")
    kv = None
    for name in KV_USAGE_NAMES:
        vals = [s.value for s in samples if s.name == name and not math.isnan(s.value)]
        if vals:
            kv = max(vals)  # several engines: the fullest one is the bottleneck
            break
    return MetricsSnapshot(
        taken_at=time.time() if taken_at is None else taken_at,
        num_requests_running=running or 0.0,
        num_requests_waiting=waiting or 0.0,
        kv_cache_usage=kv,
        prompt_tokens_total=_counter(samples, "vllm:prompt_tokens"),
        generation_tokens_total=_counter(samples, "vllm:generation_tokens"),
        ttft=histogram(samples, TTFT),
    )


def fetch_metrics(
    base_url: str,
    api_key: str | None = None,
    timeout: float = 3.0,
    *,
    client: httpx.Client | None = None,
) -> MetricsSnapshot:
    """GET ``{base_url}/metrics`` and parse it; MetricsUnavailable on any failure."""
    return parse_metrics(fetch_metrics_text(base_url, api_key, timeout, client=client))


def fetch_metrics_text(
    base_url: str,
    api_key: str | None = None,
    timeout: float = 3.0,
    *,
    client: httpx.Client | None = None,
) -> str:
    """The text of ``{base_url}/metrics`` as served (the canary reads series the snapshot
    leaves out); MetricsUnavailable on any failure."""
    url = base_url.rstrip("/") + "/metrics"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        if client is not None:
            r = client.get(url, headers=headers, timeout=timeout)
        else:
            r = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise MetricsUnavailable(
            f"the model server's metrics did not answer in {timeout:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise MetricsUnavailable(
            f"cannot reach the model server's metrics: {type(exc).__name__}"
        ) from None
    if r.status_code == 404:
        raise MetricsUnavailable("the model server does not expose /metrics")
    if r.status_code in (401, 403):
        raise MetricsUnavailable("the model server refused the metrics request (API key?)")
    if r.status_code != 200:
        raise MetricsUnavailable(f"the model server's metrics answered HTTP {r.status_code}")
    return r.text


def rates(before: MetricsSnapshot, after: MetricsSnapshot) -> Rates | None:
    """Per-second token rates between two snapshots; None if the interval is not positive.

    A counter that went down was reset (server restart): the new value is the increase.
    """
    dt = after.taken_at - before.taken_at
    if dt <= 0:
        return None

    def inc(a: float, b: float) -> float:
        return b - a if b >= a else b

    ttft_mean = None
    if before.ttft and after.ttft:
        reset = after.ttft.count < before.ttft.count
        dc = after.ttft.count if reset else after.ttft.count - before.ttft.count
        ds = after.ttft.total if reset else after.ttft.total - before.ttft.total
        ttft_mean = ds / dc if dc > 0 else None
    return Rates(
        interval_s=dt,
        prompt_tokens_per_s=inc(before.prompt_tokens_total, after.prompt_tokens_total) / dt,
        generation_tokens_per_s=inc(before.generation_tokens_total, after.generation_tokens_total)
        / dt,
        ttft_mean_s=ttft_mean,
    )


class MetricsHistory:
    """A bounded ring buffer of snapshots for the load charts (thread-safe).

    Keeps at most ``max_samples`` snapshots and none older than ``window_s``
    seconds before the newest one.
    """

    def __init__(self, max_samples: int = 120, window_s: float = 600.0) -> None:
        if max_samples < 2:
            raise ValueError("max_samples must be at least 2")
        self._buf: deque[MetricsSnapshot] = deque(maxlen=max_samples)
        self._window = window_s
        self._lock = threading.Lock()

    def add(self, snapshot: MetricsSnapshot) -> None:
        """Append a snapshot (older-than-newest snapshots are ignored) and drop expired ones."""
        with self._lock:
            if self._buf and snapshot.taken_at <= self._buf[-1].taken_at:
                return
            self._buf.append(snapshot)
            cutoff = snapshot.taken_at - self._window
            while self._buf and self._buf[0].taken_at < cutoff:
                self._buf.popleft()

    def __len__(self) -> int:
        with self._lock:
            return len(self._buf)

    def latest(self) -> MetricsSnapshot | None:
        with self._lock:
            return self._buf[-1] if self._buf else None

    def points(self) -> list[ChartPoint]:
        """Chart points, oldest first; rates come from each snapshot and its predecessor."""
        with self._lock:
            snaps = list(self._buf)
        out: list[ChartPoint] = []
        for i, s in enumerate(snaps):
            r = rates(snaps[i - 1], s) if i > 0 else None
            out.append(
                ChartPoint(
                    taken_at=s.taken_at,
                    running=s.num_requests_running,
                    waiting=s.num_requests_waiting,
                    kv_cache_usage=s.kv_cache_usage,
                    generation_tokens_per_s=r.generation_tokens_per_s if r else None,
                    prompt_tokens_per_s=r.prompt_tokens_per_s if r else None,
                )
            )
        return out
