"""GKE node pools: list them, resize the GPU pool, change its autoscaling.

Talks to the GKE API through ``google-cloud-container``'s ``ClusterManagerClient``
with the REST transport (one code path for production and for the fake API in
tests). Every mutation is a long-running Operation; ``resize`` and
``set_autoscaling`` follow it to DONE and report progress through a callback.

GKE runs one operation per cluster at a time and refuses a second one with
HTTP 400 FAILED_PRECONDITION "Cluster is running incompatible operation ...":
that becomes ``OperationInProgress`` (we refuse clearly rather than queue).
Pool names are checked against GKE's rules before any call (``validate_pool_name``), and
errors never carry the request URL (``gke_mapping``).

Note: the GKE NodePool resource has no "current size" field (only
``initialNodeCount``); the live node count comes from Kubernetes nodes labelled
``cloud.google.com/gke-nodepool`` — fill it in with ``with_node_counts``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from google.api_core import exceptions as gexc

from webapp.cluster.errors import (
    GkeForbidden,
    GkeNotConfigured,
    GkeUnavailable,
    InvalidNodePoolRequest,
    NodePoolError,
    NodePoolNotFound,
    OperationFailed,
)
from webapp.cluster.gke_mapping import is_transport_error, map_error, plain_message

OPERATION_POLL_INTERVAL_S = 2.0
OPERATION_TIMEOUT_S = 30 * 60  # GPU node creation can take many minutes

_POOL_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class ClusterRef:
    """Which GKE cluster we operate; builds the resource names the API uses."""

    project: str
    location: str
    cluster: str

    @classmethod
    def from_settings(cls, settings: Any) -> ClusterRef:
        """From ``Settings`` (gke_project, gke_location, gke_cluster); GkeNotConfigured if unset."""
        missing = [
            env
            for env, value in (
                ("GKE_PROJECT", settings.gke_project),
                ("GKE_LOCATION", settings.gke_location),
                ("GKE_CLUSTER", settings.gke_cluster),
            )
            if not value
        ]
        if missing:
            raise GkeNotConfigured(
                "Node pools are not available: set " + ", ".join(missing) + " to manage them."
            )
        return cls(settings.gke_project, settings.gke_location, settings.gke_cluster)

    @property
    def name(self) -> str:
        """``projects/P/locations/L/clusters/C``."""
        return f"projects/{self.project}/locations/{self.location}/clusters/{self.cluster}"

    def pool_name(self, pool: str) -> str:
        """``projects/P/locations/L/clusters/C/nodePools/NP``."""
        return f"{self.name}/nodePools/{pool}"

    def operation_name(self, operation: str) -> str:
        """``projects/P/locations/L/operations/OP`` (accepts a short or full name)."""
        short = operation.rsplit("/", 1)[-1]
        return f"projects/{self.project}/locations/{self.location}/operations/{short}"


@dataclass(frozen=True)
class NodePoolInfo:
    """What the admin page shows about a node pool."""

    name: str
    machine_type: str
    accelerator_type: str | None
    accelerator_count: int  # GPUs per node
    initial_node_count: int
    autoscaling_enabled: bool
    min_nodes: int
    max_nodes: int
    spot: bool
    status: str  # RUNNING, PROVISIONING, RECONCILING, ERROR, ...
    node_count: int | None = None  # live count, from Kubernetes (see with_node_counts)
    zones: int = 1  # the pool's node locations; per-zone limits apply in each
    total_limits: bool = False  # min/max are totals (``--total-max-nodes``), not per zone

    @property
    def has_gpus(self) -> bool:
        return bool(self.accelerator_type) and self.accelerator_count > 0

    @property
    def max_nodes_total(self) -> int:
        """The most nodes the autoscaler may run in the whole pool."""
        return self.max_nodes if self.total_limits else self.max_nodes * self.zones


@dataclass(frozen=True)
class OperationInfo:
    """A GKE long-running operation, as far as we care."""

    name: str
    operation_type: str
    status: str  # PENDING, RUNNING, DONE, ABORTING
    target: str
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.status == "DONE"


def preload() -> None:
    """Import the GKE client ``make_client`` builds (~0.3 s), so the admin console can do it
    before its first session (``webapp.admin.warmup``)."""
    from google.cloud import container_v1

    container_v1.ClusterManagerClient  # noqa: B018 - the package imports it lazily


def make_client(
    settings: Any | None = None,
    *,
    api_endpoint: str | None = None,
    credentials: Any | None = None,
):
    """Build a ``ClusterManagerClient`` (REST transport).

    ``api_endpoint`` (or ``settings.gke_api_endpoint``) overrides the endpoint; a
    plain ``http://`` endpoint is a local fake and gets anonymous credentials.
    Otherwise Application Default Credentials are used (Workload Identity on GKE).
    """
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import container_v1  # heavy import, kept out of module import

    endpoint = api_endpoint or (getattr(settings, "gke_api_endpoint", "") if settings else "")
    options = {"api_endpoint": endpoint} if endpoint else None
    if credentials is None and endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    try:
        return container_v1.ClusterManagerClient(
            credentials=credentials, transport="rest", client_options=options
        )
    except DefaultCredentialsError as exc:
        raise GkeForbidden(
            "No Google Cloud credentials found for the GKE API. On GKE, bind the app's "
            "Kubernetes service account to a Google service account (Workload Identity)."
        ) from exc


def node_pool_info(pool: Any) -> NodePoolInfo:
    """Pure conversion of a ``container_v1.NodePool`` message to ``NodePoolInfo``."""
    cfg = pool.config
    accel = list(cfg.accelerators)
    auto = pool.autoscaling
    total = bool(auto.total_max_node_count)  # --total-max-nodes: the per-zone fields are 0
    return NodePoolInfo(
        name=pool.name,
        machine_type=cfg.machine_type,
        accelerator_type=accel[0].accelerator_type if accel else None,
        accelerator_count=sum(int(a.accelerator_count) for a in accel),
        initial_node_count=int(pool.initial_node_count),
        autoscaling_enabled=bool(auto.enabled),
        min_nodes=int(auto.total_min_node_count if total else auto.min_node_count),
        max_nodes=int(auto.total_max_node_count if total else auto.max_node_count),
        spot=bool(cfg.spot or cfg.preemptible),
        status=_enum_name(pool.status),
        zones=max(1, len(pool.locations)),
        total_limits=total,
    )


def operation_info(op: Any) -> OperationInfo:
    """Pure conversion of a ``container_v1.Operation`` message to ``OperationInfo``."""
    err = None
    if op.error and (op.error.code or op.error.message):
        err = op.error.message or f"error code {op.error.code}"
    return OperationInfo(
        name=op.name,
        operation_type=_enum_name(op.operation_type),
        status=_enum_name(op.status),
        target=op.target_link,
        error=err,
    )


def with_node_counts(
    pools: Iterable[NodePoolInfo], counts: Mapping[str, int]
) -> list[NodePoolInfo]:
    """Fill ``node_count`` from a pool-name -> count mapping (e.g. counted Kubernetes nodes)."""
    return [replace(p, node_count=counts.get(p.name, 0)) for p in pools]


def validate_pool_name(pool: str) -> str:
    """Return ``pool`` or raise InvalidNodePoolRequest unless it is a valid GKE node pool name.

    GKE's rule (Cloud console and API, the same as for cluster names): 1-40 characters,
    lowercase letters, digits and hyphens, starting with a letter and ending with a letter
    or digit. Checked before any call: a name with ``/`` would otherwise fail inside the
    client's URL template (a ValueError) or address another resource.
    """
    if isinstance(pool, str) and _POOL_NAME.match(pool):
        return pool
    if not isinstance(pool, str) or not pool:
        what = "The node pool name is empty."
    else:
        what = f"{pool[:50] + ('...' if len(pool) > 50 else '')!r} is not a valid node pool name."
    raise InvalidNodePoolRequest(
        f"{what} GKE node pool names are 1-40 lowercase letters, digits and hyphens, "
        "starting with a letter and ending with a letter or digit (e.g. gpu-pool)."
    )


def validate_size(node_count: int) -> None:
    """Raise InvalidNodePoolRequest unless ``node_count`` is a valid pool size (0 allowed)."""
    if not isinstance(node_count, int) or isinstance(node_count, bool) or node_count < 0:
        raise InvalidNodePoolRequest("The node count must be a whole number, 0 or more.")
    if node_count > 1000:
        raise InvalidNodePoolRequest("At most 1000 nodes per pool.")


def validate_autoscaling(min_nodes: int, max_nodes: int) -> None:
    """Raise InvalidNodePoolRequest unless 0 <= min <= max and max >= 1 (scale to zero is fine)."""
    for v in (min_nodes, max_nodes):
        validate_size(v)
    if max_nodes < 1:
        raise InvalidNodePoolRequest("The maximum must be at least 1 node.")
    if min_nodes > max_nodes:
        raise InvalidNodePoolRequest("The minimum cannot be larger than the maximum.")


class NodePools:
    """Node-pool operations on one cluster."""

    def __init__(
        self,
        client: Any,
        cluster: ClusterRef,
        *,
        poll_interval_s: float = OPERATION_POLL_INTERVAL_S,
        timeout_s: float = OPERATION_TIMEOUT_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.cluster = cluster
        self._poll = poll_interval_s
        self._timeout = timeout_s
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> NodePools:
        """Client and cluster from ``Settings``; GkeNotConfigured if the cluster is not set."""
        ref = ClusterRef.from_settings(settings)
        return cls(make_client(settings), ref, **kwargs)

    # --- reads ---

    def list_node_pools(self) -> list[NodePoolInfo]:
        """All node pools of the cluster."""
        resp = self._call(lambda: self._client.list_node_pools(parent=self.cluster.name))
        return [node_pool_info(p) for p in resp.node_pools]

    def get_node_pool(self, pool: str) -> NodePoolInfo:
        """One node pool by short name."""
        return node_pool_info(self._pool_call(pool, self._client.get_node_pool))

    def get_operation(self, operation: str) -> OperationInfo:
        """Current state of an operation (short or full name)."""
        name = self.cluster.operation_name(operation)
        return operation_info(self._call(lambda: self._client.get_operation(name=name)))

    # --- mutations that return at once with a RUNNING operation ---

    def set_node_pool_size(self, pool: str, node_count: int) -> OperationInfo:
        """Start resizing ``pool`` to ``node_count`` nodes (0 = scale to zero)."""
        validate_size(node_count)
        call = self._client.set_node_pool_size
        return operation_info(self._pool_call(pool, call, node_count=node_count))

    def set_node_pool_autoscaling(
        self, pool: str, min_nodes: int, max_nodes: int, *, enabled: bool = True
    ) -> OperationInfo:
        """Start changing the autoscaling bounds of ``pool`` (or disable it)."""
        if enabled:
            validate_autoscaling(min_nodes, max_nodes)
        autoscaling = {"enabled": enabled}
        if enabled:
            autoscaling |= {"min_node_count": min_nodes, "max_node_count": max_nodes}
        call = self._client.set_node_pool_autoscaling
        return operation_info(self._pool_call(pool, call, autoscaling=autoscaling))

    # --- mutations followed to DONE ---

    def resize(
        self, pool: str, node_count: int, on_progress: Callable[[OperationInfo], None] | None = None
    ) -> OperationInfo:
        """Resize ``pool`` and wait for the operation; returns it DONE or raises."""
        return self.wait(self.set_node_pool_size(pool, node_count), on_progress)

    def set_autoscaling(
        self,
        pool: str,
        min_nodes: int,
        max_nodes: int,
        on_progress: Callable[[OperationInfo], None] | None = None,
    ) -> OperationInfo:
        """Set autoscaling bounds (min 0 allowed) and wait for the operation."""
        return self.wait(self.set_node_pool_autoscaling(pool, min_nodes, max_nodes), on_progress)

    def wait(
        self, op: OperationInfo, on_progress: Callable[[OperationInfo], None] | None = None
    ) -> OperationInfo:
        """Poll ``op`` until DONE, calling ``on_progress`` with each state seen.

        Raises OperationFailed when the operation ends with an error or exceeds the timeout.
        """
        deadline = self._clock() + self._timeout
        while True:
            if on_progress is not None:
                on_progress(op)
            if op.done:
                if op.error:
                    raise OperationFailed(f"GKE operation {op.name} failed: {op.error}")
                return op
            if self._clock() >= deadline:
                raise OperationFailed(
                    f"GKE operation {op.name} is still {op.status} after {self._timeout:.0f} s; "
                    "it may still finish: check the cluster's operations."
                )
            self._sleep(self._poll)
            op = self.get_operation(op.name)

    # --- error mapping ---

    def _pool_call(self, pool: str, method: Callable[..., Any], **fields: Any) -> Any:
        """``method(request=...)`` on ``pool`` once its name is valid; a missing pool is named."""
        request = {"name": self.cluster.pool_name(validate_pool_name(pool)), **fields}
        try:
            return self._call(lambda: method(request=request))
        except NodePoolNotFound as exc:
            raise self._missing_pool(pool) from exc

    def _missing_pool(self, pool: str) -> NodePoolNotFound:
        """Say which pools the cluster has (one more call), or that the cluster is missing."""
        ref = self.cluster
        try:
            names: list[str] | None = [p.name for p in self.list_node_pools()]
        except NodePoolNotFound:
            return NodePoolNotFound(
                f"Cluster {ref.cluster} does not exist in location {ref.location} (project "
                f"{ref.project}): check GKE_PROJECT, GKE_LOCATION and GKE_CLUSTER."
            )
        except NodePoolError:
            names = None
        there = "" if names is None else f" Pools there: {', '.join(names) or 'none'}."
        return NodePoolNotFound(
            f"Node pool {pool!r} does not exist in cluster {ref.cluster} "
            f"(location {ref.location}).{there}"
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except gexc.GoogleAPICallError as exc:
            raise map_error(exc, self.cluster.cluster, self.cluster.location) from exc
        except gexc.RetryError as exc:
            said = plain_message(str(exc.message))
            raise GkeUnavailable(f"The GKE API did not answer: {said}") from exc
        except Exception as exc:
            # requests' ConnectionError/Timeout and auth refresh errors land here
            if is_transport_error(exc):
                raise GkeUnavailable(
                    "The GKE API could not be reached; check the network and try again."
                ) from exc
            raise


def _enum_name(value: Any) -> str:
    return getattr(value, "name", None) or str(value)
