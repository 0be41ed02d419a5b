"""The cluster's node-pool list, read once per process and then again aside.

Listing a cluster's node pools is a GKE API call of a few hundred milliseconds, made by every
admin page open and by every status refresh (``ADMIN_STATUS_REFRESH_S``) of every admin: the
page waited for it (bench/RESULTS.md 3b). ``CachedNodePools`` answers ``list_node_pools``
from the process's last list while it is younger than ``ttl_s``; older, but younger than
``max_stale_s``, at once while the list is read again in the background
(``webapp.revalidate``). Only the first list, one older than ``max_stale_s``, and the first
after a change made through this client (a resize or autoscaling change: when it starts and
when it is followed to its end) are waited for, so the page shows such a change as GKE has it.
Every other call is the ``NodePools``' own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from webapp.cluster.node_pools import NodePoolInfo, NodePools, OperationInfo
from webapp.revalidate import StaleWhileRevalidate

#: a list older than this is read again before it is shown (GKE unreachable meanwhile: the
#: page then says so instead of showing an old list)
MAX_STALE_S = 60.0


class CachedNodePools(NodePools):
    """``NodePools`` whose ``list_node_pools`` is shared by every session of the process."""

    def __init__(
        self,
        client: Any,
        cluster: Any,
        *,
        ttl_s: float,
        max_stale_s: float = MAX_STALE_S,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(client, cluster, clock=clock, **kwargs)
        self.ttl_s = ttl_s
        self._lists: StaleWhileRevalidate = StaleWhileRevalidate(
            max_stale_s=max_stale_s, clock=clock, workers=1, name="node-pools"
        )

    def list_node_pools(self) -> list[NodePoolInfo]:
        """All node pools of the cluster, as read at most ``ttl_s`` ago (see the module)."""
        return list(self._lists.get("pools", super().list_node_pools, ttl_s=self.ttl_s))

    def forget(self) -> None:
        """The next list is read from GKE, and waited for."""
        self._lists.forget()

    def set_node_pool_size(self, pool: str, node_count: int) -> OperationInfo:
        try:
            return super().set_node_pool_size(pool, node_count)
        finally:
            self.forget()

    def set_node_pool_autoscaling(
        self, pool: str, min_nodes: int, max_nodes: int, *, enabled: bool = True
    ) -> OperationInfo:
        try:
            return super().set_node_pool_autoscaling(pool, min_nodes, max_nodes, enabled=enabled)
        finally:
            self.forget()

    def wait(
        self, op: OperationInfo, on_progress: Callable[[OperationInfo], None] | None = None
    ) -> OperationInfo:
        try:
            return super().wait(op, on_progress)
        finally:
            self.forget()
