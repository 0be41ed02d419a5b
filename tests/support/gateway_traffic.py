"""A stand-in for the inference gateway's traffic split (test-only): clients sending
completions for one model name, each request sent to a pool chosen by the backend weights of
that model's rule in the fake cluster's HTTPRoute "llm-models", read afresh for every request
(smooth weighted round robin, as exact as a split can be). Each pool is a fake OpenAI server
standing in for its pods. A request fails when its pool has no server or no ready replica
in the fake (a real gateway answers 503 then), or when the server answers an error."""

from __future__ import annotations

import threading

import httpx

from tests.fakes.k8s_server import FakeCluster
from webapp.cluster import fleet_objects as fo

THREADS = 8


class GatewayTraffic:
    """``urls``: pool name -> base URL of the server playing its pods. Use as a context
    manager; ``served``/``failed`` count per pool, ``splits`` every distinct split seen."""

    def __init__(self, fc: FakeCluster, ns: str, model: str, urls: dict[str, str]) -> None:
        self.fc, self.ns, self.model, self.urls = fc, ns, model, dict(urls)
        self.served: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.splits: list[tuple[tuple[str, int], ...]] = []
        self.changed = threading.Condition()
        self._credit: dict[str, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(THREADS)]

    def __enter__(self) -> GatewayTraffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def split(self) -> tuple[tuple[str, int], ...]:
        """The model's backends and weights in the fake's route now."""
        route = self.fc.get("httproutes", fo.ROUTE_NAME, self.ns) or {}
        return tuple((b.pool, b.weight) for b in fo.routed_models(route).get(self.model, ()))

    def _ready(self, pool: str) -> bool:
        dep = self.fc.get("deployments", pool, self.ns)
        return bool(dep and (dep.get("status") or {}).get("readyReplicas"))

    def _pick(self) -> str | None:
        split = self.split()
        with self.changed:
            if not self.splits or self.splits[-1] != split:
                self.splits.append(split)
            live = [(p, w) for p, w in split if w > 0]
            if not live:
                return None
            for p, w in live:
                self._credit[p] = self._credit.get(p, 0) + w
            chosen = max(live, key=lambda pw: self._credit[pw[0]])[0]
            self._credit[chosen] -= sum(w for _, w in live)
            return chosen

    def _send(self, http: httpx.Client, pool: str | None) -> bool:
        if pool is None or pool not in self.urls or not self._ready(pool):
            return False
        body = {"model": self.model, "prompt": "hello", "max_tokens": 4}
        try:
            return http.post(self.urls[pool] + "/v1/completions", json=body).is_success
        except httpx.HTTPError:
            return False

    def _client(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                pool = self._pick()
                ok = self._send(http, pool)
                key = pool or "(none)"
                with self.changed:
                    self.served[key] = self.served.get(key, 0) + 1
                    self.failed[key] = self.failed.get(key, 0) + (not ok)
                    self.changed.notify_all()

    def soak_for(self, pool: str, requests: int, timeout: float = 30.0):
        """A canary's ``sleep``: until ``pool`` has answered ``requests`` more requests."""

        def soak(_seconds: float) -> None:
            with self.changed:
                start = self.served.get(pool, 0)
                self.changed.wait_for(
                    lambda: self.served.get(pool, 0) - start >= requests, timeout=timeout
                )

        return soak

    def failures(self) -> int:
        with self.changed:
            return sum(self.failed.values())
