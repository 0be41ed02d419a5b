"""Building the Kubernetes client and calling it with typed errors.

The official ``kubernetes`` client is used: in-cluster service account first,
else a kubeconfig (``KUBECONFIG`` or ``~/.kube/config``). Responses are read as
plain JSON dicts (``_preload_content=False``) so the pure builders in
``manifests`` and the readers in ``inventory`` work on the same shapes the API
server sends. Every call goes through :func:`call`, which turns HTTP failures
into the exceptions of ``webapp.cluster.errors``; nothing here logs a token.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from webapp.cluster.errors import (
    ApiRejected,
    ClusterNotConfigured,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    NotFound,
)

SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read (seconds)


@dataclass(frozen=True)
class Cluster:
    """The API groups the console uses, sharing one ``ApiClient`` (connection pool)."""

    api: Any
    core: Any
    apps: Any
    coordination: Any
    custom: Any  # CustomObjectsApi: Gateway API and Inference Extension objects (model pools)
    autoscaling: Any  # AutoscalingV2Api: a pool's HorizontalPodAutoscaler
    source: str  # "in-cluster" or "kubeconfig <path>" — never credentials


def connect(
    kubeconfig: str | None = None,
    *,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Cluster:
    """Build the clients: explicit ``kubeconfig``, else in-cluster, else ``KUBECONFIG``/~/.kube.

    Raises ``ClusterNotConfigured`` (with a plain explanation) when none is usable.
    """
    from kubernetes import client, config  # local import: keep module import cheap

    env = os.environ if environ is None else environ
    if (
        kubeconfig is None
        and env.get("KUBERNETES_SERVICE_HOST")
        and os.path.exists(SERVICE_ACCOUNT_TOKEN)
    ):
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as exc:
            raise ClusterNotConfigured(f"in-cluster service account unusable: {exc}") from None
        return _clients(client, client.ApiClient(cfg), "in-cluster")
    path = kubeconfig or _kubeconfig_path(env)
    if not path:
        raise ClusterNotConfigured(
            "No Kubernetes cluster is configured: the console is not running inside a cluster "
            "and no kubeconfig was found. Set KUBECONFIG to a kubeconfig file (for GKE: "
            "`gcloud container clusters get-credentials CLUSTER --location LOCATION`) "
            "or deploy the console into the cluster with its service account."
        )
    try:
        api = config.new_client_from_config(config_file=path, context=context, persist_config=False)
    except (config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ClusterNotConfigured(f"the kubeconfig {path} cannot be used: {exc}") from None
    return _clients(client, api, f"kubeconfig {path}")


def kubeconfig_user(
    kubeconfig: str | None = None, *, environ: Mapping[str, str] | None = None
) -> str:
    """The user of the kubeconfig's current context: who kubectl acts as on this machine.

    Reads the kubeconfig that ``connect`` would use outside a cluster (``kubeconfig``, else
    ``KUBECONFIG``, else ~/.kube/config); no API call, no credential used. It names a
    local admin (``LOCAL_ADMIN``). Raises ``ClusterNotConfigured`` with a plain reason.
    """
    import yaml
    from kubernetes import config

    path = kubeconfig or _kubeconfig_path(os.environ if environ is None else environ)
    if not path:
        raise ClusterNotConfigured(
            "no kubeconfig was found (KUBECONFIG or ~/.kube/config). For GKE: "
            "`gcloud container clusters get-credentials CLUSTER --location LOCATION`."
        )
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
    except yaml.YAMLError as exc:  # its text may quote the file, tokens included
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClusterNotConfigured(f"the kubeconfig {path} is not valid YAML{where}.") from None
    except (config.ConfigException, OSError, TypeError, AttributeError) as exc:
        raise ClusterNotConfigured(f"the kubeconfig {path} cannot be used: {exc}") from None
    name = str(active.get("name") or "")
    user = str((active.get("context") or {}).get("user") or "").strip()
    if not user:
        raise ClusterNotConfigured(
            f"the current context {name!r} of the kubeconfig {path} names no user."
        )
    return user


def preload() -> None:
    """Import what ``connect`` uses (the API classes pull in their models: ~0.8 s), so the
    admin console can do it before its first session (``webapp.admin.warmup``)."""
    from kubernetes import client, config  # noqa: F401

    for name in (
        "ApiClient",
        "Configuration",
        "CoreV1Api",
        "AppsV1Api",
        "CoordinationV1Api",
        "CustomObjectsApi",
        "AutoscalingV2Api",
    ):
        getattr(client, name)  # the client package imports these lazily


def _kubeconfig_path(env: Mapping[str, str]) -> str | None:
    candidates = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    home = env.get("HOME")
    if not candidates and home:
        candidates = [os.path.join(home, ".kube", "config")]
    return next((p for p in candidates if os.path.isfile(p)), None)


def _clients(client: Any, api: Any, source: str) -> Cluster:
    return Cluster(
        api=api,
        core=client.CoreV1Api(api),
        apps=client.AppsV1Api(api),
        coordination=client.CoordinationV1Api(api),
        custom=client.CustomObjectsApi(api),
        autoscaling=client.AutoscalingV2Api(api),
        source=source,
    )


@lru_cache(maxsize=4)
def no_retry_core(cluster: Cluster) -> Any:
    """CoreV1Api on a copy of the cluster's configuration without urllib3's retries, for reads
    through the API server's proxy (an exporter, a vLLM pod): a slow target must cost one
    timeout, not four (three retries of a GET by default)."""
    from kubernetes import client

    cfg = copy.copy(cluster.api.configuration)
    cfg.retries = False
    return client.CoreV1Api(client.ApiClient(cfg))


def parse_time(value: str | None) -> datetime | None:
    """A time as the API server writes it (RFC 3339, ``Z`` or offset); None if absent or bad."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _status_message(exc: Any) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    return str(body.get("message") or exc.reason or "") if isinstance(body, dict) else ""


def call(action: str, fn: Callable[..., Any], *args: Any, text: bool = False, **kwargs: Any) -> Any:
    """Call a client method; return the parsed JSON (or text) and map failures to typed errors.

    ``action`` is a short description ("patch Deployment vllm/vllm") used in error messages;
    a refusal also names the client method (``Forbidden.operation``, e.g.
    ``patch_namespaced_deployment``): the RBAC rule it needs.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    try:
        resp = fn(*args, _preload_content=False, **kwargs)
        data = resp.data
    except ApiException as exc:
        msg = _status_message(exc)
        if exc.status in (401, 403):
            raise Forbidden(action, msg, operation=getattr(fn, "__name__", "")) from None
        if exc.status == 404:
            raise NotFound(action, msg) from None
        if exc.status == 409:
            raise Conflict(action, msg) from None
        if exc.status in (400, 415, 422):
            raise ApiRejected(action, msg) from None
        raise ClusterUnavailable(f"{action}: HTTP {exc.status} {msg}".strip()) from None
    except (HTTPError, OSError) as exc:
        raise ClusterUnavailable(
            f"cannot reach the Kubernetes API to {action}: {type(exc).__name__}"
        ) from None
    if text:
        return data.decode("utf-8", errors="replace")
    return json.loads(data) if data else {}
