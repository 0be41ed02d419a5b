"""A canary with real traffic: two fake vLLM servers (tests/fakes/openai_server.py) stand in
for the stable and the canary pool, a load generator splits completions between them by the
weights the canary sets (as the gateway's HTTPRoute would), and the CANARY job reads each
pool's real /metrics over HTTP. The signals come from that traffic, nothing else.

Kept fast: the soak is a wait for enough canary requests (not a sleep), TTFTs are 0.2 s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.admin.canary import CanaryPlan, read_scrape
from webapp.admin.canary_job import CANARY, CanaryRequest
from webapp.admin.canary_runner import pool_metrics_text
from webapp.admin.jobs import JobRegistry
from webapp.llm.metrics import MetricsUnavailable

MODEL = "fake-chat"
THREADS = 12
# ratio limit 2×: the fake's 3× TTFT measures ~3× (buckets 0.1-0.25 vs 0.5-0.75), and a good
# canary stays below 2× even when a loaded machine pushes a few of its requests a bucket up.
PLAN = CanaryPlan(soak_s=1.0, min_requests=5, max_ttft_ratio=2.0, max_waits=3)


class Traffic:
    """Clients sending completions, split by the canary's share: request n goes to the
    canary when floor(n·share/100) grows (a smooth, exact split), else to the stable pool."""

    def __init__(self, stable: FakeOpenAI, canary: FakeOpenAI) -> None:
        self.urls = {"stable": stable.url, "canary": canary.url}
        self.share = 0
        self.sent = 0
        self.served = {"stable": 0, "canary": 0}
        self.failed = {"stable": 0, "canary": 0}
        self.weights: list[int] = []
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(THREADS)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)

    def set_weights(self, share: int) -> None:
        with self.changed:
            self.share = share
            self.weights.append(share)

    def _pick(self) -> str:
        with self.changed:
            self.sent += 1
            n, s = self.sent, self.share
            return "canary" if n * s // 100 > (n - 1) * s // 100 else "stable"

    def _client(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stopping.is_set():
                pool = self._pick()
                body = {"model": MODEL, "prompt": "hello", "max_tokens": 4}
                try:
                    ok = http.post(self.urls[pool] + "/v1/completions", json=body).is_success
                except httpx.HTTPError:
                    ok = False
                with self.changed:
                    self.served[pool] += 1
                    self.failed[pool] += not ok
                    self.changed.notify_all()

    def soak(self, _seconds: float) -> None:
        """The runner's soak: until the canary has finished enough requests for a verdict
        (two more than needed: the last responses may reach us before the server counts them)."""
        with self.changed:
            start = self.served["canary"]
            self.changed.wait_for(
                lambda: self.served["canary"] - start >= PLAN.min_requests + 2, timeout=30
            )

    def scrape(self) -> tuple[str, str]:
        return pool_metrics_text([self.urls["stable"]]), pool_metrics_text([self.urls["canary"]])


@pytest.fixture
def pools() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI(model=MODEL) as stable, FakeOpenAI(model=MODEL) as canary:
        stable.set_script(Script(ttft_s=0.2, n_tokens=4))
        canary.set_script(Script(ttft_s=0.2, n_tokens=4))
        yield stable, canary


def _run(traffic: Traffic, plan: CanaryPlan = PLAN):
    req = CanaryRequest(
        model=MODEL, stable="pool-a", canary="pool-b", plan=plan,
        set_weights=traffic.set_weights, scrape=traffic.scrape, sleep=traffic.soak,
    )  # fmt: skip
    job = JobRegistry().start(CANARY, req, actor="ann@example.com")
    assert job.wait(120)
    assert job.view().error is None, job.view().error
    return job.view()


def test_a_canary_as_good_as_the_stable_pool_is_promoted_without_a_failed_request(pools):
    with Traffic(*pools) as traffic:
        view = _run(traffic)
    assert view.result.outcome == "promoted", view.messages
    assert traffic.weights == [5, 25, 50, 100]
    judged = [s for s in view.detail.steps if s.decision.verdict == "promote"]
    assert [s.share for s in judged] == [5, 25, 50, 100]
    first = judged[0].signals
    assert first.canary.requests >= PLAN.min_requests
    assert first.stable.requests > first.canary.requests * 10  # 95 % went to the stable pool
    assert traffic.failed == {"stable": 0, "canary": 0}


def test_a_canary_with_3x_the_ttft_rolls_itself_back(pools):
    stable, canary = pools
    canary.set_script(Script(ttft_s=0.6, n_tokens=4))
    with Traffic(stable, canary) as traffic:
        view = _run(traffic, CanaryPlan(**{**PLAN.__dict__, "steps": (10, 50, 100)}))
        served_after = dict(traffic.served)
    assert view.result.outcome == "rolled_back", view.messages
    assert traffic.weights == [10, 0]
    assert view.result.reason.startswith("TTFT p95 of the canary")
    assert "the stable pool's" in view.result.reason and "(limit 2×)" in view.result.reason
    assert view.detail.steps[-1].signals.canary.ttft_p95_s > 0.5
    assert traffic.failed["stable"] == 0 and served_after["stable"] > 0


def test_a_canary_whose_requests_fail_rolls_itself_back(pools):
    stable, canary = pools
    canary.set_script(Script(status=500))
    with Traffic(stable, canary) as traffic:
        view = _run(traffic, CanaryPlan(**{**PLAN.__dict__, "steps": (10, 50, 100)}))
    assert view.result.outcome == "rolled_back", view.messages
    assert traffic.weights == [10, 0]
    assert view.result.reason.startswith("The canary's error rate 100.0% is 100.0 points above")
    assert traffic.failed["stable"] == 0 and traffic.failed["canary"] > 0


def test_a_pool_is_read_as_the_sum_of_its_replicas_and_one_unreadable_replica_is_refused():
    with FakeOpenAI(model=MODEL) as one, FakeOpenAI(model=MODEL) as two:
        one.enqueue(Script(status=500))
        for replica, n in ((one, 3), (two, 2)):
            for _ in range(n):
                httpx.post(replica.url + "/v1/completions", json={"model": MODEL, "prompt": "hi"})
        pool = read_scrape(pool_metrics_text([one.url, two.url]))
        assert (pool.finished, pool.http_total, pool.http_5xx) == (4, 5, 1)
        assert dict(pool.ttft)[float("inf")] == 4
        gone = two.url
    with pytest.raises(MetricsUnavailable, match="cannot reach the model server's metrics"):
        pool_metrics_text([gone])
    with pytest.raises(MetricsUnavailable, match="no replica"):
        pool_metrics_text([])
