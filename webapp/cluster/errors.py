"""Typed errors of the cluster package.

Views catch these and turn them into plain-language messages; nothing here ever
carries a secret (API tokens stay inside the kubernetes client configuration).
"""

from __future__ import annotations


class ClusterError(Exception):
    """Base class of every error raised by ``webapp.cluster``."""


class ClusterNotConfigured(ClusterError):
    """No in-cluster service account and no kubeconfig: the console cannot reach a cluster."""


class ClusterUnavailable(ClusterError):
    """The Kubernetes API server could not be reached or answered with a server error."""


class Forbidden(ClusterError):
    """The API server refused an action (HTTP 401/403) for the console's service account."""

    def __init__(self, action: str, detail: str = "") -> None:
        self.action = action
        self.detail = detail
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
    """Another admin holds the model-switch lock (a Lease) that has not expired yet."""

    def __init__(self, holder: str, since: str) -> None:
        self.holder = holder
        self.since = since
        super().__init__(f"a model switch by {holder} is in progress since {since}")


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
