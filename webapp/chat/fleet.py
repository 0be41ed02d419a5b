"""The chat's view of the model pools behind the gateway (``FLEET_DISCOVERY``): which
models are served, whether a model's pool is serving, loading or asleep (scaled to 0),
and waking a sleeping one.

The chat depends on the small ``Fleet`` protocol only; ``ClusterFleet`` implements it over
``webapp.cluster.fleet`` and ``fleet_scaling`` (the Kubernetes client itself is imported on
the first connection only: the chat tier without discovery never loads it). ``CachedFleet``
stands in front of any ``Fleet`` once per process: reads are cached, shared by every session
and never hold a page longer than ``READ_WAIT_S`` (a slow API server gives the last answer,
or none); a model is woken once per process however many sessions and reruns ask. No
Streamlit here (unit-tested).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, Protocol, TypeVar

from webapp.chat.errors import FleetUnavailable
from webapp.cluster import fleet_scaling, k8s
from webapp.cluster.errors import (
    ClusterError,
    ClusterNotConfigured,
    ClusterUnavailable,
    FleetNotInstalled,
    Forbidden,
    ModelNotRouted,
    NotFound,
    PoolNotFound,
)
from webapp.cluster.fleet import served_models
from webapp.revalidate import StaleWhileRevalidate

PoolCondition = Literal["serving", "loading", "asleep", "unknown"]

#: how long the served models are trusted (the picker), and a pool's condition (a wait)
MODELS_TTL_S = 10.0
STATE_TTL_S = 2.0
#: the longest a page waits for a fleet read (the health check's timeout): then it goes on
READ_WAIT_S = 3.0
#: a woken model is not woken again for this long unless it was seen serving meanwhile
WAKE_GUARD_S = 300.0

T = TypeVar("T")
log = logging.getLogger(__name__)


class Fleet(Protocol):
    """The model pools as the chat needs them. Every method may raise ``FleetUnavailable``."""

    def models(self) -> list[str]:
        """Every served model name (the gateway routes each to its pool)."""
        ...

    def state(self, model: str) -> PoolCondition:
        """Whether ``model``'s pool answers now, is starting, or sleeps at 0 replicas
        ("unknown": no pool serves that name)."""
        ...

    def wake(self, model: str) -> None:
        """Scale ``model``'s sleeping pool to one replica (nothing when it is awake)."""
        ...


def pool_condition(replicas: Iterable[tuple[int, int]]) -> PoolCondition:
    """The condition of a model from its pools' ``(desired, ready)`` replicas: serving when
    one replica is ready, loading when one is wanted, asleep when all are at 0."""
    pools = list(replicas)
    if not pools:
        return "unknown"
    if any(ready > 0 for _, ready in pools):
        return "serving"
    if any(desired > 0 for desired, _ in pools):
        return "loading"
    return "asleep"


def _plain(exc: ClusterError) -> FleetUnavailable:
    """A cluster error in a chat user's words (no API detail: it may name internals)."""
    if isinstance(exc, ClusterNotConfigured):
        return FleetUnavailable("the chat has no access to the cluster")
    if isinstance(exc, Forbidden):
        return FleetUnavailable("the chat is not allowed to read or wake model pools")
    if isinstance(exc, ClusterUnavailable):
        return FleetUnavailable("the cluster cannot be reached right now")
    if isinstance(exc, NotFound | PoolNotFound):
        return FleetUnavailable("its model pool was not found")
    if isinstance(exc, ModelNotRouted):
        return FleetUnavailable("no model pool serves this model any more")
    if isinstance(exc, FleetNotInstalled):
        return FleetUnavailable("model pools are not set up on this cluster")
    return FleetUnavailable("the cluster refused")


class ClusterFleet:
    """``Fleet`` over the cluster layer in ``namespace``: ``fleet.served_models`` (the
    route), ``fleet_scaling.model_replicas`` (the route and the model's Deployments, by
    name) and ``fleet_scaling.wake_pool`` — exactly what the chat's Role ``llm-chat-wake``
    allows. Connects on first use, once (the page keeps one instance per process)."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self._cluster: object | None = None
        self._lock = threading.Lock()

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        try:
            with self._lock:
                if self._cluster is None:
                    self._cluster = k8s.connect(self.kubeconfig or None)
            return fn(self._cluster, self.namespace, *args)
        except ClusterError as exc:
            raise _plain(exc) from None

    def models(self) -> list[str]:
        return list(self._call(served_models))

    def state(self, model: str) -> PoolCondition:
        return pool_condition(self._call(fleet_scaling.model_replicas, model))

    def wake(self, model: str) -> None:
        self._call(fleet_scaling.wake_pool, model)


def cluster_fleet(kubeconfig: str, namespace: str) -> Fleet:
    """The fleet the chat page uses (tests give the page their own ``Fleet`` here)."""
    return ClusterFleet(kubeconfig, namespace)


class CachedFleet:
    """One process's front of a ``Fleet``: never raises, never waits past ``wait_s``.

    ``models()`` is None and ``state()`` "unknown" when the fleet cannot tell (the chat
    then behaves as without discovery); ``wake()`` raises ``FleetUnavailable``."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        models_ttl_s: float = MODELS_TTL_S,
        state_ttl_s: float = STATE_TTL_S,
        wait_s: float = READ_WAIT_S,
        wake_guard_s: float = WAKE_GUARD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fleet = fleet
        self.models_ttl_s, self.state_ttl_s = models_ttl_s, state_ttl_s
        self.wait_s, self.wake_guard_s, self.clock = wait_s, wake_guard_s, clock
        self._reads: StaleWhileRevalidate = StaleWhileRevalidate(
            wait_s=wait_s, clock=clock, name="fleet-read"
        )
        self._woken: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake_lock = threading.Lock()

    def models(self) -> list[str] | None:
        """The served models, or None when the fleet cannot be read."""
        found = self._read(("models", ""), self.models_ttl_s, self.fleet.models, None)
        return list(found) if isinstance(found, list) else None

    def state(self, model: str) -> PoolCondition:
        found = self._read(
            ("state", model), self.state_ttl_s, lambda: self.fleet.state(model), "unknown"
        )
        if found == "serving":
            with self._lock:
                self._woken.pop(model, None)  # awake again: a later sleep may be woken
        return found  # type: ignore[return-value]

    def wake(self, model: str) -> bool:
        """Wake ``model`` unless this process did within the guard; True when it called
        the fleet. ``FleetUnavailable`` when it could not (nothing recorded: a retry may)."""
        with self._wake_lock:
            since = self._woken.get(model)
            if since is not None and self.clock() - since < self.wake_guard_s:
                return False
            try:
                self.fleet.wake(model)
            except FleetUnavailable:
                raise
            except Exception as exc:  # a bug below must not reach the page as a traceback
                log.warning("waking %s failed: %s", model, type(exc).__name__)
                raise FleetUnavailable("the model pool could not be woken") from None
            with self._lock:
                self._woken[model] = self.clock()
            self._reads.forget(("state", model))  # read it anew: loading now
            return True

    def forget(self, model: str) -> None:
        """Read ``model``'s condition anew next time (a page waiting for it)."""
        self._reads.forget(("state", model))

    def _read(self, key: tuple[str, str], ttl_s: float, read: Callable[[], T], fallback: T) -> T:
        """The cached value while fresh. Stale: the last value at once, read anew in the
        background (one read in flight per key, shared by every session). Never read: wait
        for the read at most ``wait_s``, else ``fallback``."""
        safe = lambda: _safely(key, read, fallback)  # noqa: E731
        return self._reads.get(key, safe, ttl_s=ttl_s, fallback=fallback)


def _safely(key: tuple[str, str], read: Callable[[], T], fallback: T) -> T:
    """``read()``, or ``fallback`` when the fleet cannot tell (cached as well: an unreadable
    fleet is not asked every run)."""
    try:
        return read()
    except FleetUnavailable:
        return fallback
    except Exception as exc:  # a bug below: the chat goes on as without discovery
        log.warning("reading the fleet (%s) failed: %s", key[0], type(exc).__name__)
        return fallback
