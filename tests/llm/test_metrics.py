"""Parsing vLLM's Prometheus /metrics text, rates, history, and fetching over HTTP."""

from __future__ import annotations

import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webapp.llm.metrics import (
    MetricsHistory,
    MetricsSnapshot,
    MetricsUnavailable,
    bucket_quantile,
    fetch_metrics,
    parse_metrics,
    parse_samples,
    rates,
)

# Shaped like vLLM 0.1x output (prometheus_client exposition).
VLLM_TEXT = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama-3-1-8b-instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="llama-3-1-8b-instruct"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="llama-3-1-8b-instruct"} 0.42
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="llama-3-1-8b-instruct"} 12000.0
# TYPE vllm:prompt_tokens_created gauge
vllm:prompt_tokens_created{engine="0",model_name="llama-3-1-8b-instruct"} 1.7e+09
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="llama-3-1-8b-instruct"} 34000.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="llama-3-1-8b-instruct"} 10.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="llama-3-1-8b-instruct"} 50.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0",model_name="llama-3-1-8b-instruct"} 90.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="llama-3-1-8b-instruct"} 100.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="llama-3-1-8b-instruct"} 100.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="llama-3-1-8b-instruct"} 45.0
"""

OLD_NAMES = """\
vllm:num_requests_running{model_name="m"} 0
vllm:num_requests_waiting{model_name="m"} 0
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
vllm:prompt_tokens_total{model_name="m"} 5
vllm:generation_tokens_total{model_name="m"} 7
"""

NAN_AND_ODD_LABELS = """\
# comment line
vllm:num_requests_running{model_name="a \\"quoted\\" {name}, with comma"} 2 1700000000000
vllm:num_requests_waiting NaN
vllm:kv_cache_usage_perc{model_name="m"} NaN
garbage line without value
vllm:generation_tokens_total{model_name="m",} 9
"""

TWO_ENGINES = """\
vllm:num_requests_running{engine="0"} 2
vllm:num_requests_running{engine="1"} 3
vllm:num_requests_waiting{engine="0"} 1
vllm:num_requests_waiting{engine="1"} 0
vllm:kv_cache_usage_perc{engine="0"} 0.1
vllm:kv_cache_usage_perc{engine="1"} 0.7
vllm:time_to_first_token_seconds_bucket{engine="0",le="1.0"} 2
vllm:time_to_first_token_seconds_bucket{engine="1",le="1.0"} 2
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf"} 2
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf"} 4
vllm:time_to_first_token_seconds_count{engine="0"} 2
vllm:time_to_first_token_seconds_count{engine="1"} 4
vllm:time_to_first_token_seconds_sum{engine="0"} 1
vllm:time_to_first_token_seconds_sum{engine="1"} 5
"""


@pytest.mark.parametrize(
    ("text", "running", "waiting", "kv", "prompt", "gen"),
    [
        (VLLM_TEXT, 3, 1, 0.42, 12000, 34000),
        (OLD_NAMES, 0, 0, 0.25, 5, 7),
        (NAN_AND_ODD_LABELS, 2, 0, None, 0, 9),
        (TWO_ENGINES, 5, 1, 0.7, 0, 0),
    ],
)
def test_parse_snapshot(text, running, waiting, kv, prompt, gen):
    s = parse_metrics(text, taken_at=100.0)
    assert (s.num_requests_running, s.num_requests_waiting) == (running, waiting)
    assert s.kv_cache_usage == (pytest.approx(kv) if kv is not None else None)
    assert (s.prompt_tokens_total, s.generation_tokens_total) == (prompt, gen)
    assert s.taken_at == 100.0


def test_ttft_from_histogram():
    s = parse_metrics(VLLM_TEXT)
    assert s.ttft_mean_s == pytest.approx(0.45)
    # rank 50 of 100 is exactly the top of the 0.5 bucket
    assert s.ttft_p50_s == pytest.approx(0.5)
    # rank 95 falls in +Inf: the largest finite bound
    assert s.ttft.quantile(0.95) == pytest.approx(1.0)


def test_ttft_summed_over_engines():
    s = parse_metrics(TWO_ENGINES)
    assert s.ttft.count == 6 and s.ttft.total == 6
    assert s.ttft.buckets == ((1.0, 4.0), (math.inf, 6.0))


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(0.1, 10), (0.5, 50), (1.0, 90), (math.inf, 100)], 0.5, 0.5),
        ([(0.1, 10), (0.5, 50), (1.0, 90), (math.inf, 100)], 0.3, 0.3),  # 0.1 + 0.4*20/40
        ([(0.1, 10), (0.5, 50), (1.0, 90), (math.inf, 100)], 0.05, 0.05),  # first bucket from 0
        ([(0.1, 10), (0.5, 50), (1.0, 90), (math.inf, 100)], 0.95, 1.0),
        ([(0.1, 0), (math.inf, 0)], 0.5, None),  # nothing observed
        ([], 0.5, None),
        ([(1.0, 5), (2.0, 5), (math.inf, 5)], 1.0, 1.0),  # empty buckets after the rank
    ],
)
def test_bucket_quantile(buckets, q, expected):
    got = bucket_quantile(buckets, q)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_labels_with_escapes():
    (s,) = [x for x in parse_samples(NAN_AND_ODD_LABELS) if x.name == "vllm:num_requests_running"]
    assert dict(s.labels)["model_name"] == 'a "quoted" {name}, with comma'


@pytest.mark.parametrize(
    "text",
    ["", "# only comments\n", "process_cpu_seconds_total 12.5\npython_info 1\n"],
)
def test_no_vllm_metrics_is_unavailable(text):
    with pytest.raises(MetricsUnavailable):
        parse_metrics(text)


def _snap(t, prompt=0.0, gen=0.0, ttft=None, running=0.0):
    from webapp.llm.metrics import Histogram

    hist = Histogram(buckets=(), total=ttft[0], count=ttft[1]) if ttft else None
    return MetricsSnapshot(t, running, 0.0, 0.5, prompt, gen, hist)


@pytest.mark.parametrize(
    ("a", "b", "prompt_tps", "gen_tps", "ttft"),
    [
        (_snap(0, 100, 1000, (1.0, 2)), _snap(10, 600, 3000, (4.0, 4)), 50, 200, 1.5),
        # counters reset (server restarted): the new values are the increase
        (_snap(0, 1000, 5000, (9.0, 9)), _snap(5, 50, 100, (1.0, 2)), 10, 20, 0.5),
        # no new requests: no TTFT mean
        (_snap(0, 10, 10, (1.0, 2)), _snap(2, 10, 10, (1.0, 2)), 0, 0, None),
    ],
)
def test_rates(a, b, prompt_tps, gen_tps, ttft):
    r = rates(a, b)
    assert r.prompt_tokens_per_s == pytest.approx(prompt_tps)
    assert r.generation_tokens_per_s == pytest.approx(gen_tps)
    assert r.ttft_mean_s == (pytest.approx(ttft) if ttft is not None else None)


def test_rates_need_positive_interval():
    assert rates(_snap(5), _snap(5)) is None
    assert rates(_snap(6), _snap(5)) is None


def test_history_is_bounded_by_count_and_window():
    h = MetricsHistory(max_samples=3, window_s=100)
    for t in range(5):
        h.add(_snap(float(t), gen=10.0 * t))
    assert len(h) == 3
    pts = h.points()
    assert [p.taken_at for p in pts] == [2.0, 3.0, 4.0]
    assert pts[0].generation_tokens_per_s is None
    assert [p.generation_tokens_per_s for p in pts[1:]] == [10.0, 10.0]
    h.add(_snap(500.0))  # the others are now older than the window
    assert [p.taken_at for p in h.points()] == [500.0]
    h.add(_snap(400.0))  # out of order: ignored
    assert h.latest().taken_at == 500.0


def test_history_rejects_tiny_buffer():
    with pytest.raises(ValueError):
        MetricsHistory(max_samples=1)


class _MetricsHandler(BaseHTTPRequestHandler):
    status = 200
    body = VLLM_TEXT
    seen_auth: list[str | None] = []

    def do_GET(self):  # noqa: N802
        type(self).seen_auth.append(self.headers.get("Authorization"))
        data = self.body.encode() if self.path == "/metrics" else b"not found"
        self.send_response(self.status if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def metrics_server():
    handler = type("H", (_MetricsHandler,), {"seen_auth": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


def test_fetch_over_http(metrics_server):
    handler, url = metrics_server
    s = fetch_metrics(url, api_key="sk-test")
    assert s.num_requests_running == 3
    assert s.kv_cache_usage == pytest.approx(0.42)
    assert handler.seen_auth == ["Bearer sk-test"]


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "does not expose"), (401, "refused"), (500, "HTTP 500")],
)
def test_fetch_http_errors(metrics_server, status, message):
    handler, url = metrics_server
    handler.status = status
    with pytest.raises(MetricsUnavailable, match=message):
        fetch_metrics(url)


def test_fetch_unreachable():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(MetricsUnavailable, match="cannot reach"):
        fetch_metrics(f"http://127.0.0.1:{port}")


@pytest.mark.vllm
def test_real_vllm_metrics(vllm_chat):
    """The real vLLM (CPU build) exposes the names we parse, and they move with traffic."""
    import httpx

    before = fetch_metrics(vllm_chat.url)
    r = httpx.post(
        f"{vllm_chat.api_url}/completions",
        json={"model": vllm_chat.model, "prompt": "hello", "max_tokens": 4, "ignore_eos": True},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    after = fetch_metrics(vllm_chat.url)
    assert after.kv_cache_usage is not None
    assert 0.0 <= after.kv_cache_usage <= 1.0
    assert after.generation_tokens_total - before.generation_tokens_total >= 4
    assert after.prompt_tokens_total > before.prompt_tokens_total
    assert after.ttft is not None and after.ttft.count >= before.ttft.count + 1
    assert after.ttft_mean_s is not None and after.ttft_mean_s > 0
