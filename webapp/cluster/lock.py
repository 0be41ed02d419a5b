"""One action per model pool at a time: a ``coordination.k8s.io/v1`` Lease with an expiry.

Each pool has its own Lease, ``<pool>-switch-lock`` (``lock_name``): two admins may act on two
pools at once, and a model switch of pool ``vllm`` (the default pool, whose Lease keeps its old
name ``vllm-switch-lock``) and a fleet action on ``vllm`` exclude each other."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from webapp.cluster.errors import Conflict, NotFound, SwitchInProgress
from webapp.cluster.k8s import Cluster, call, parse_time

DEFAULT_POOL = "vllm"


def lock_name(pool: str = DEFAULT_POOL) -> str:
    """The Lease that serialises the actions on ``pool``."""
    return f"{pool}-switch-lock"


LOCK_NAME = lock_name(DEFAULT_POOL)

# ---------------------------------------------------------------- the lock (a Lease)


def _micro(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    holder: str, now: datetime, duration_s: int, namespace: str, name: str = LOCK_NAME
) -> dict:
    """The Lease object ``name`` for ``holder`` (pure)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": int(duration_s),
            "acquireTime": _micro(now),
            "renewTime": _micro(now),
        },
    }


def lease_holder(lease: dict, now: datetime) -> tuple[str, str] | None:
    """``(holder, since)`` if the Lease is held and not expired, else None (pure)."""
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = parse_time(spec.get("renewTime") or spec.get("acquireTime"))
    if not holder or renewed is None:
        return None
    if renewed + timedelta(seconds=spec.get("leaseDurationSeconds") or 0) <= now:
        return None
    return holder, spec.get("acquireTime") or ""


@dataclass
class SwitchLock:
    """A held Lease; ``renew()`` extends it, ``release()`` frees it."""

    cluster: Cluster
    namespace: str
    holder: str
    duration_s: int
    lease: dict = field(repr=False, default_factory=dict)
    renewed: float = 0.0
    name: str = LOCK_NAME

    def renew(self, *, force: bool = False) -> None:
        """Extend the Lease (at most every third of its duration unless ``force``)."""
        if not force and time.monotonic() - self.renewed < self.duration_s / 3:
            return
        body = dict(self.lease)
        body["spec"] = {**body["spec"], "renewTime": _micro(datetime.now(UTC))}
        self.lease = self._replace(body, "renew the model-switch lock")
        self.renewed = time.monotonic()

    def release(self) -> None:
        """Free the Lease if we still hold it (best effort: it expires anyway)."""
        try:
            current = call(
                "read the model-switch lock",
                self.cluster.coordination.read_namespaced_lease,
                self.name,
                self.namespace,
            )
            if (current.get("spec") or {}).get("holderIdentity") != self.holder:
                return
            current["spec"] = {"leaseDurationSeconds": self.duration_s}
            self._replace(current, "release the model-switch lock")
        except (Conflict, NotFound):
            pass

    def _replace(self, body: dict, action: str) -> dict:
        return call(
            action,
            self.cluster.coordination.replace_namespaced_lease,
            self.name,
            self.namespace,
            body,
        )


def acquire_lock(
    cluster: Cluster,
    namespace: str,
    holder: str,
    *,
    duration_s: int = 300,
    now: datetime | None = None,
    pool: str = DEFAULT_POOL,
) -> SwitchLock:
    """Take pool ``pool``'s Lease (``lock_name(pool)``; ``vllm-switch-lock`` for the default
    pool) for ``holder`` or raise ``SwitchInProgress`` naming who holds it."""
    now = now or datetime.now(UTC)
    name = lock_name(pool)
    body = lease_body(holder, now, duration_s, namespace, name)
    lock = SwitchLock(cluster, namespace, holder, duration_s, renewed=time.monotonic(), name=name)
    action = f"take the lock of pool {pool}"
    try:
        lock.lease = call(action, cluster.coordination.create_namespaced_lease, namespace, body)
        return lock
    except Conflict:
        pass
    current = call(action, cluster.coordination.read_namespaced_lease, name, namespace)
    held = lease_holder(current, now)
    if held:
        raise SwitchInProgress(*held, pool=pool)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    try:
        lock.lease = call(
            action, cluster.coordination.replace_namespaced_lease, name, namespace, body
        )
    except Conflict:
        again = call(action, cluster.coordination.read_namespaced_lease, name, namespace)
        held = lease_holder(again, now) or ("another admin", "")
        raise SwitchInProgress(*held, pool=pool) from None
    return lock
