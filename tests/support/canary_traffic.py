"""Simulated traffic for canary tests: two pools behind one model name. Every soak sends
``per_window`` requests split by the share ``set_weights`` last gave the canary; each pool
serves them as told (TTFT, every Nth failing) and its /metrics text counts them as vLLM does."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tests.support.vllm_metrics_text import metrics_text
from webapp.admin.canary import CanaryPlan
from webapp.admin.canary_runner import CanaryResult, CanaryStep, run_canary
from webapp.llm.metrics import MetricsUnavailable


@dataclass
class Pool:
    ttft_s: float = 0.2
    error_every: int = 0  # every Nth request fails (0: none)
    stop: int = 0
    error: int = 0
    ttfts: list[float] = field(default_factory=list)

    def serve(self, n: int) -> None:
        for _ in range(n):
            if self.error_every and (self.stop + self.error + 1) % self.error_every == 0:
                self.error += 1
            else:
                self.stop += 1
                self.ttfts.append(self.ttft_s)

    def text(self) -> str:
        return metrics_text(stop=self.stop, error=self.error, ttfts=self.ttfts)


@dataclass
class World:
    """Two pools behind one model name; ``weights`` is what set_weights was called with."""

    canary: Pool = field(default_factory=Pool)
    stable: Pool = field(default_factory=Pool)
    per_window: int = 200
    shares: list[int] = field(default_factory=list)
    garbage: set[int] = field(default_factory=set)  # scrape numbers answering garbage
    unreachable: set[int] = field(default_factory=set)  # scrape numbers that fail
    scrapes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_after_soaks: int | None = None
    soaks: int = 0
    now: float = 0.0

    def set_weights(self, share: int) -> None:
        self.shares.append(share)

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.soaks += 1
        share = self.shares[-1]
        to_canary = self.per_window * share // 100
        self.canary.serve(to_canary)
        self.stable.serve(self.per_window - to_canary)
        if self.cancel_after_soaks == self.soaks:
            self.cancel.set()

    def scrape(self) -> tuple[str, str]:
        self.scrapes += 1
        if self.scrapes in self.unreachable:
            raise MetricsUnavailable("cannot reach the model server's metrics: ConnectError")
        if self.scrapes in self.garbage:
            return self.stable.text(), "<html>upstream connect error</html>"
        return self.stable.text(), self.canary.text()

    def run(self, plan: CanaryPlan) -> tuple[list[CanaryStep], CanaryResult]:
        items = list(
            run_canary(plan, set_weights=self.set_weights, scrape=self.scrape,
                       cancel=self.cancel, sleep=self.sleep, clock=lambda: self.now)
        )  # fmt: skip
        *steps, result = items
        assert isinstance(result, CanaryResult)
        assert all(isinstance(s, CanaryStep) for s in steps)
        return steps, result
