"""Typed errors of the cluster package: Kubernetes (``ClusterError``) and GKE node pools
(``NodePoolError``).

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

Views catch these and turn them into plain-language messages (``webapp.admin.messages``);
nothing here ever carries a secret (API tokens stay inside the client configuration).
How a Google API error becomes a ``NodePoolError`` is ``gke_mapping.map_error``.
"""

from __future__ import annotations

from dataclasses import dataclass


class ClusterError(Exception):
    """Base class of every error raised by ``webapp.cluster``."""


class ClusterNotConfigured(ClusterError):
    """No in-cluster service account and no kubeconfig: the console cannot reach a cluster."""


class ClusterUnavailable(ClusterError):
    """The Kubernetes API server could not be reached or answered with a server error."""


class Forbidden(ClusterError):
    """The API server refused an action (HTTP 401/403) for the console's service account.

    ``operation`` is the client method that was refused (``patch_namespaced_deployment``):
    it names the RBAC rule the console lacks (``webapp.admin.messages.RBAC_RULES``)."""

    def __init__(self, action: str, detail: str = "", *, operation: str = "") -> None:
        self.action = action
        self.detail = detail
        self.operation = operation
        super().__init__(f"not allowed to {action}" + (f": {detail}" if detail else ""))


class NotFound(ClusterError):
    """An object the console expected (Deployment, Service, pod) does not exist."""

    def __init__(self, action: str, detail: str = "") -> None:
        self.action = action
        self.detail = detail
        super().__init__(f"not found while trying to {action}" + (f": {detail}" if detail else ""))


class Conflict(ClusterError):
    """The object changed under us (resourceVersion precondition failed) or already exists."""

    def __init__(self, action: str, detail: str = "") -> None:
        self.action = action
        self.detail = detail
        super().__init__(f"conflict while trying to {action}" + (f": {detail}" if detail else ""))


class ApiRejected(ClusterError):
    """The API server rejected a request as invalid (HTTP 400/422)."""

    def __init__(self, action: str, detail: str = "") -> None:
        self.action = action
        self.detail = detail
        super().__init__(f"the cluster rejected: {action}" + (f": {detail}" if detail else ""))


class InvalidModelSpec(ClusterError, ValueError):
    """A model specification field failed validation; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class SwitchInProgress(ClusterError):
    """Another admin holds the lock (a Lease) of the pool, ``pool``, that has not expired yet:
    a model switch or another action on that pool is under way."""

    def __init__(self, holder: str, since: str, *, pool: str = "vllm") -> None:
        self.holder = holder
        self.since = since
        self.pool = pool
        super().__init__(f"a change of pool {pool} by {holder} is in progress since {since}")


class SlotMissing(ClusterError):
    """Blue/green needs the idle slot Deployment (``vllm-green``), which the manifests ship
    stopped; the console does not create Deployments (its Role may only change the two
    slots), so a cluster without it needs the manifests applied."""

    def __init__(self, namespace: str, deployment: str) -> None:
        self.namespace = namespace
        self.deployment = deployment
        super().__init__(f"Deployment {namespace}/{deployment} (the blue/green slot) is missing")


class StrategyNotAllowed(ClusterError):
    """The requested switch strategy cannot work on this pool (e.g. blue/green without room)."""


class PoolCannotSchedule(ClusterError):
    """No node of the GPU pool can ever take the model's pod (GPU type, GPUs per node, the
    pool's maximum); ``reason`` says why and what to change, in words for the page."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ---------------------------------------------------------------- GKE node pools


class NodePoolError(Exception):
    """Base of all node-pool errors; the message is plain language for the admin page."""


class GkeNotConfigured(NodePoolError):
    """GKE project, location or cluster is not set."""


class GkeForbidden(NodePoolError):
    """The app's identity may not read or change the cluster (IAM)."""


class GkeUnavailable(NodePoolError):
    """The GKE API could not be reached or answered with a server error."""


class NodePoolNotFound(NodePoolError):
    """The cluster or node pool does not exist."""


class InvalidNodePoolRequest(NodePoolError):
    """The requested pool name, size or autoscaling bounds are not valid."""


class OperationInProgress(NodePoolError):
    """Another operation is running on the cluster; GKE allows one at a time."""

    def __init__(self, operation: str | None) -> None:
        self.operation = operation
        which = f" ({operation})" if operation else ""
        super().__init__(
            f"Another change is already running on the cluster{which}. "
            "GKE allows one at a time: wait for it to finish, then try again."
        )


class OperationFailed(NodePoolError):
    """The long-running operation finished with an error, or took too long."""


class NoGoogleCredentials(ClusterError):
    """No usable Google credentials for a Google REST API (``google_auth.bearer_token``); the
    message is the google-auth error's type name only, never a token or key."""


class QuotaUnreadable(ClusterError):
    """The region's Compute Engine quota could not be read (``webapp.cluster.quota``): refused,
    down, or an answer that is not a region. The message is a plain reason for the page; the
    capacity guard then says the quota was not checked and never blocks on it."""


# --- GPU telemetry (webapp.cluster.telemetry): each failure names the source, says why in
# plain words and gives the command that turns the source on; shown in the GPU panel only.


@dataclass(frozen=True)
class SourceFailure:
    """Why one telemetry source gave no GPU figures, and how to turn it on."""

    source: str  # plain name of the source
    reason: str  # plain reason: down, slow, garbage, not configured, refused
    turn_on: str  # the command (or setting) that makes this source work

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class TelemetryUnavailable(ClusterError):
    """No source gave GPU telemetry; ``failures`` says, per source tried, why and what to do."""

    def __init__(self, failures: tuple[SourceFailure, ...]) -> None:
        self.failures = failures
        super().__init__("; ".join(str(f) for f in failures) or "no GPU telemetry source")


# --- model pools (webapp.cluster.pools): a pool spec or a traffic split failed validation.
# ``message`` is written for users (plain words, the bad value named, what to change).


class InvalidPool(ClusterError, ValueError):
    """A model pool (name, model, replicas) or a model's traffic split (canary weights) is not
    valid; ``field`` names what is wrong, ``message`` says it in plain words. Nothing has been
    written to the cluster when this is raised."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


# --- the fleet of model pools (webapp.cluster.fleet). Each message is written for users: the
# pool or model named, what to do instead.


class FleetError(ClusterError):
    """A fleet action was refused before anything was written; ``message`` is plain words."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class FleetNotInstalled(FleetError):
    """The cluster has no inference gateway (HTTPRoute "llm-models", the InferencePool CRD, the
    default pool's endpoint picker): model pools need k8s/components/inference-gateway."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"Model pools need the inference gateway, and {what} is missing: apply an overlay "
            "with k8s/components/inference-gateway (for example k8s/overlays/pools) first."
        )


class KedaNotInstalled(FleetError):
    """Scale to zero needs KEDA (its ScaledObject and TriggerAuthentication CRDs)."""

    def __init__(self) -> None:
        super().__init__(
            "Scale to zero needs KEDA in the cluster, and it is not installed: run "
            "scripts/setup_gke.sh (it installs KEDA), or choose a minimum of 1."
        )


class PoolNotFound(FleetError):
    """No model pool (InferencePool + vLLM Deployment) of that name in the namespace."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        super().__init__(f"There is no model pool named {pool!r}; reload the list of pools.")


class PoolExists(FleetError):
    """A Deployment or InferencePool of the new pool's name already exists."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        super().__init__(
            f"The name {pool!r} is already taken by a model pool or Deployment: pick another."
        )


class ModelAlreadyServed(FleetError):
    """The gateway already routes this model name (to ``pools``): one rule per model name; a
    second pool for it is a canary (a traffic split), not a new pool."""

    def __init__(self, model: str, pools: tuple[str, ...]) -> None:
        self.model = model
        self.pools = pools
        super().__init__(
            f"The model {model!r} is already served by pool {', '.join(pools)}. Scale that "
            "pool, or run a canary to change it, instead of deploying it twice."
        )


class ModelNotRouted(FleetError):
    """The gateway has no rule for this model name."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(f"No pool serves the model {model!r} behind the gateway.")


class PoolInUse(FleetError):
    """Removing the pool would break traffic: it shares its model's traffic with another pool
    (a canary under way) or it is the default pool (GET /v1/models and /health go to it)."""

    def __init__(self, pool: str, reason: str) -> None:
        self.pool = pool
        self.reason = reason
        super().__init__(f"Pool {pool!r} cannot be removed now: {reason}")


class InvalidAutoscaling(FleetError, ValueError):
    """Autoscaling bounds or target not valid (min above max, a target that is not positive)."""


# --- a pool's live numbers (webapp.cluster.pod_metrics): vLLM's /metrics of its replicas, read
# through the API server's pod proxy. ``reason`` is plain words (which pod, why).


class PodMetricsUnavailable(ClusterError):
    """A pool's /metrics could not be read: no ready replica, a replica that did not answer, a
    refusal (RBAC: get pods/proxy); ``pool`` and ``pod`` (None for the whole pool) name where."""

    def __init__(self, pool: str, reason: str, *, pod: str | None = None) -> None:
        self.pool = pool
        self.pod = pod
        self.reason = reason
        where = f"pod {pod} of pool {pool}" if pod else f"pool {pool}"
        super().__init__(f"the metrics of {where} could not be read: {reason}")
