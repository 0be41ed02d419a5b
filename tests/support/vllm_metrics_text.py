"""vLLM /metrics text for pure tests: request outcomes, TTFTs and HTTP statuses, shaped like
vLLM's (and the fake server's, ``tests/fakes/openai_server.py``) exposition."""

from __future__ import annotations

from collections.abc import Sequence

from tests.fakes.openai_server import TTFT_BUCKETS

LABELS = 'engine="0",model_name="m"'


def metrics_text(
    *,
    stop: float = 0,
    error: float = 0,
    abort: float = 0,
    ttfts: Sequence[float] = (),
    http_2xx: float | None = None,
    http_5xx: float | None = None,
) -> str:
    """Cumulative counters as one scrape shows them; ``ttfts`` are the observed first-token
    times (seconds). ``http_*`` None: no ``http_requests_total`` at all."""
    out = ["# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{LABELS}}} 0.0"]
    out.append("# TYPE vllm:request_success counter")
    for reason, n in (("stop", stop), ("length", 0), ("abort", abort), ("error", error)):
        out.append(f'vllm:request_success_total{{{LABELS},finished_reason="{reason}"}} {n}')
    if http_2xx is not None or http_5xx is not None:
        out.append("# TYPE http_requests counter")
        for group, n in (("2xx", http_2xx or 0), ("5xx", http_5xx or 0)):
            route = 'handler="/v1/chat/completions",method="POST"'
            out.append(f'http_requests_total{{{route},status="{group}"}} {n}')
        out.append('http_requests_total{handler="/health",method="GET",status="5xx"} 99.0')
    name = "vllm:time_to_first_token_seconds"
    out.append(f"# TYPE {name} histogram")
    for le in TTFT_BUCKETS:
        out.append(f'{name}_bucket{{{LABELS},le="{le}"}} {float(sum(t <= le for t in ttfts))}')
    out.append(f'{name}_bucket{{{LABELS},le="+Inf"}} {float(len(ttfts))}')
    out.append(f"{name}_count{{{LABELS}}} {float(len(ttfts))}")
    out.append(f"{name}_sum{{{LABELS}}} {float(sum(ttfts))}")
    return "\n".join(out) + "\n"
