"""The fleet of model pools behind the inference gateway: the only code that reads and writes
pools (issue 14). The objects are built by ``fleet_objects`` and ``pools`` (pure); here they are
read and written through ``k8s.call``, so every refusal is a typed error.

Every action validates first and raises before anything is written on bad input
(``InvalidPool``, ``InvalidModelSpec``, ``InvalidAutoscaling``, ``ModelAlreadyServed`` ...).
``create_pool`` removes what it created when a later write fails (no half pool is left).
The HTTPRoute is changed with optimistic concurrency (its resourceVersion; a 409 re-reads and
retries), so two admins changing two models' rules never lose each other's change. One action
per pool at a time is the caller's Lease: ``lock.acquire_lock(..., pool=name)``. Replicas,
autoscaling and waking a pool are in ``webapp.cluster.fleet_scaling``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence

from webapp.cluster import fleet_objects as fo
from webapp.cluster import keda_objects as ko
from webapp.cluster import pools
from webapp.cluster.errors import (
    ClusterError,
    Conflict,
    FleetNotInstalled,
    InvalidPool,
    ModelAlreadyServed,
    ModelNotRouted,
    NotFound,
    PoolExists,
    PoolNotFound,
)
from webapp.cluster.fleet_objects import PoolState
from webapp.cluster.k8s import Cluster, call
from webapp.cluster.manifests import template_model
from webapp.cluster.model_spec import validate_spec
from webapp.cluster.pool_overrides import PoolOverrides
from webapp.cluster.pools import Backend, PoolSpec

GATEWAY_V = (fo.GATEWAY_GROUP, "v1")
POOL_V = (pools.INFERENCE_GROUP, "v1")
GKE_V = (fo.GKE_GROUP, "v1")
GKE_POLICIES = ("healthcheckpolicies", "gcpbackendpolicies")
ROUTE_RETRIES = 5

# ---------------------------------------------------------------- reads


def read_route(cluster: Cluster, ns: str) -> dict:
    """The gateway's HTTPRoute ``llm-models``; ``FleetNotInstalled`` if there is none."""
    try:
        return call(
            f"read HTTPRoute {ns}/{fo.ROUTE_NAME}",
            cluster.custom.get_namespaced_custom_object,
            *GATEWAY_V,
            ns,
            "httproutes",
            fo.ROUTE_NAME,
        )
    except NotFound:
        raise FleetNotInstalled(f"the HTTPRoute {fo.ROUTE_NAME!r}") from None


def get_pool(cluster: Cluster, ns: str, name: str) -> dict:
    pools.check_pool_name(name, "pool")
    try:
        return call(
            f"read InferencePool {ns}/{name}",
            cluster.custom.get_namespaced_custom_object,
            *POOL_V,
            ns,
            "inferencepools",
            name,
        )
    except NotFound:
        raise PoolNotFound(name) from None


def get_or_none(action: str, fn: Callable, *args) -> dict | None:
    try:
        return call(action, fn, *args)
    except NotFound:
        return None


def list_pools(cluster: Cluster, ns: str) -> list[PoolState]:
    """Every pool (an InferencePool) joined with its Deployment, its HPA and the route, by name."""
    try:
        items = call(
            f"list InferencePools in {ns}",
            cluster.custom.list_namespaced_custom_object,
            *POOL_V,
            ns,
            "inferencepools",
        )["items"]
    except NotFound:
        raise FleetNotInstalled("the InferencePool resource (its CRD)") from None
    names = sorted(p["metadata"]["name"] for p in items)
    deployments = {
        d["metadata"]["name"]: d
        for d in call(f"list Deployments in {ns}", cluster.apps.list_namespaced_deployment, ns)[
            "items"
        ]
    }
    hpas = {
        h["metadata"]["name"]: h
        for h in call(
            f"list HPAs in {ns}",
            cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler,
            ns,
        )["items"]
    }
    route = read_route(cluster, ns)
    scaled = _scaled_objects(cluster, ns)
    return [fo.pool_state(n, deployments.get(n), hpas.get(n), route, scaled.get(n)) for n in names]


def _scaled_objects(cluster: Cluster, ns: str) -> dict[str, fo.Autoscaling]:
    """Pool name -> its autoscaling read from KEDA ScaledObjects (none without KEDA)."""
    items = get_or_none(f"list scaledobjects in {ns}", cluster.custom.list_namespaced_custom_object,
                        ko.KEDA_GROUP, ko.KEDA_VERSION, ns, "scaledobjects")  # fmt: skip
    return {
        o["metadata"]["name"]: ko.read_scaled_object(o) for o in (items or {}).get("items") or []
    }


def served_models(cluster: Cluster, ns: str) -> list[str]:
    """The model names the gateway routes (one HTTPRoute rule each), in the route's order."""
    return list(fo.routed_models(read_route(cluster, ns)))


# ---------------------------------------------------------------- the route


def _update_route(cluster: Cluster, ns: str, change: Callable[[dict], dict]) -> dict:
    """Read the route, apply ``change`` (pure; may raise a typed refusal), write it back with
    the read resourceVersion; on 409 (someone else wrote it) read again and retry."""
    for attempt in range(ROUTE_RETRIES):
        route = read_route(cluster, ns)
        new = change(route)
        try:
            return call(
                f"update HTTPRoute {ns}/{fo.ROUTE_NAME}",
                cluster.custom.replace_namespaced_custom_object,
                *GATEWAY_V,
                ns,
                "httproutes",
                fo.ROUTE_NAME,
                new,
            )
        except Conflict:
            if attempt == ROUTE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def set_split(cluster: Cluster, ns: str, model: str, backends: Sequence[Backend]) -> None:
    """Send ``model``'s requests to ``backends`` by weight (a canary step, a promotion, a
    rollback). Validated first (weights sum to 100, names); every pool must exist and serve
    ``model`` (vLLM answers 404 to a model name it does not serve)."""
    split = pools.validate_split(model, backends)

    def change(route: dict) -> dict:
        if model not in fo.routed_models(route):
            raise ModelNotRouted(model)
        return fo.with_split(route, model, split)

    change(read_route(cluster, ns))  # an unknown model is refused first
    for b in split:
        get_pool(cluster, ns, b.pool)
        dep = get_or_none(f"read Deployment {ns}/{b.pool}",
                          cluster.apps.read_namespaced_deployment, b.pool, ns)  # fmt: skip
        served = template_model(dep["spec"].get("template") or {}) if dep else None
        if served != model:
            raise InvalidPool(
                "backends",
                f"Pool {b.pool!r} serves {served or 'no model'}, not {model!r}: only pools "
                f"serving {model!r} can share its traffic.",
            )
    _update_route(cluster, ns, change)


def rename_model(cluster: Cluster, ns: str, pool: str, old: str, new: str) -> None:
    """Route model name ``new`` to ``pool`` instead of ``old`` (after the pool's model switch;
    ``fleet_objects.renamed_model`` says when it is refused)."""
    _update_route(cluster, ns, lambda route: fo.renamed_model(route, pool, old, new))


def check_rename(cluster: Cluster, ns: str, pool: str, old: str, new: str) -> None:
    """Raise what ``rename_model`` would refuse, without writing (before a switch starts)."""
    fo.renamed_model(read_route(cluster, ns), pool, old, new)


# ---------------------------------------------------------------- create / remove


def create_pool(
    cluster: Cluster,
    ns: str,
    spec: PoolSpec,
    *,
    hf_repo: str,
    max_model_len: int,
    catalog_ids: Collection[str],
    base: str = "vllm",
    canary: bool = False,
    overrides: PoolOverrides | None = None,
) -> PoolState:
    """Deploy ``spec.model`` as a new pool beside the others; return it.

    Writes, in this order: the vLLM Deployment (a copy of ``base``), the endpoint picker
    (copy of ``base``'s), the InferencePool, the GKE policies (when ``base`` has them), then
    the route rule, so the gateway sends traffic only to a complete pool. Any failure removes
    what this call created and re-raises. A model name already routed is refused
    (``ModelAlreadyServed``) unless ``canary``: then the model must be routed already
    (``ModelNotRouted``) and the new pool gets no traffic until ``set_split`` gives it some.
    ``overrides``: another vLLM image or flag values than ``base``'s (``pool_overrides``; a
    bad one is ``InvalidModelSpec`` before anything is written)."""
    pools.validate_pool(spec, catalog_ids)
    overrides = overrides or PoolOverrides()
    validate_spec(overrides.spec(spec.model, hf_repo, max_model_len))  # the image's repository:
    # checked against the base's when its copy is built (fo.pool_deployment), before any write

    def add_rule(route: dict) -> dict:
        routed = fo.routed_models(route)
        if canary and spec.model not in routed:
            raise ModelNotRouted(spec.model)
        if canary:
            return route
        if spec.model in routed:
            raise ModelAlreadyServed(spec.model, tuple(b.pool for b in routed[spec.model]))
        return fo.with_split(route, spec.model, [Backend(spec.name, pools.TOTAL_WEIGHT)])

    add_rule(read_route(cluster, ns))  # refuse before anything is written
    objects = _pool_objects(cluster, ns, spec, hf_repo, max_model_len, base, overrides)
    created: list[Callable[[], object]] = []
    try:
        for create, delete in objects:
            create()
            created.append(delete)
        route = read_route(cluster, ns) if canary else _update_route(cluster, ns, add_rule)
    except BaseException:
        for delete in reversed(created):
            with contextlib.suppress(ClusterError):  # best effort: report the first error
                delete()
        raise
    dep = call(
        f"read Deployment {ns}/{spec.name}", cluster.apps.read_namespaced_deployment, spec.name, ns
    )
    return fo.pool_state(spec.name, dep, None, route)


def _read_base(cluster: Cluster, ns: str, name: str, base: str) -> list[dict]:
    """The base pool's Deployment and picker (ConfigMap, Deployment, Service). Refuses
    (``PoolExists``) a new pool ``name`` already taken, before anything is written."""
    read_dep = cluster.apps.read_namespaced_deployment
    if get_or_none(f"read Deployment {ns}/{name}", read_dep, name, ns) is not None:
        raise PoolExists(name)
    with contextlib.suppress(PoolNotFound):
        get_pool(cluster, ns, name)
        raise PoolExists(name)
    epp = pools.epp_name(base)
    reads = [
        (f"Deployment {ns}/{base}", read_dep, base),
        (f"ConfigMap {ns}/{epp}", cluster.core.read_namespaced_config_map, epp),
        (f"Deployment {ns}/{epp}", read_dep, epp),
        (f"Service {ns}/{epp}", cluster.core.read_namespaced_service, epp),
    ]
    out = []
    for what, fn, obj in reads:
        try:
            out.append(call(f"read {what}", fn, obj, ns))
        except NotFound:
            raise FleetNotInstalled(f"the default pool's {what}") from None
    return out


def _pool_objects(
    cluster: Cluster,
    ns: str,
    spec: PoolSpec,
    hf_repo: str,
    max_model_len: int,
    base: str,
    overrides: PoolOverrides,
) -> list[tuple[Callable[[], object], Callable[[], object]]]:
    """Read the base pool, build the new pool's objects, return (create, delete) pairs."""
    base_dep, base_cm, base_epp, base_svc = _read_base(cluster, ns, spec.name, base)
    dep = fo.pool_deployment(base_dep, spec, hf_repo, max_model_len, overrides)
    cm, epp_dep, epp_svc = fo.picker_objects(base_cm, base_epp, base_svc, spec.name)
    name, epp = spec.name, pools.epp_name(spec.name)
    create_dep = cluster.apps.create_namespaced_deployment
    delete_dep = cluster.apps.delete_namespaced_deployment
    out = [
        _pair(f"Deployment {ns}/{name}", create_dep, delete_dep, ns, dep),
        _pair(f"ConfigMap {ns}/{epp}", cluster.core.create_namespaced_config_map,
              cluster.core.delete_namespaced_config_map, ns, cm),
        _pair(f"Deployment {ns}/{epp}", create_dep, delete_dep, ns, epp_dep),
        _pair(f"Service {ns}/{epp}", cluster.core.create_namespaced_service,
              cluster.core.delete_namespaced_service, ns, epp_svc),
        _custom_pair(cluster, POOL_V, "inferencepools", ns, pools.inference_pool(name)),
    ]  # fmt: skip
    for plural in GKE_POLICIES:
        policy = get_or_none(f"read {plural} {ns}/{base}",
                             cluster.custom.get_namespaced_custom_object,
                             *GKE_V, ns, plural, base)  # fmt: skip
        if policy is not None:
            out.append(_custom_pair(cluster, GKE_V, plural, ns, fo.pool_policy(policy, name)))
    return out


def _pair(what: str, create: Callable, delete: Callable, ns: str, body: dict):
    name = body["metadata"]["name"]
    return (
        lambda: call(f"create {what}", create, ns, body),
        lambda: call(f"delete {what}", delete, name, ns),
    )


def _custom_pair(cluster: Cluster, gv: tuple[str, str], plural: str, ns: str, body: dict):
    name = body["metadata"]["name"]
    return (
        lambda: call(
            f"create {plural} {ns}/{name}",
            cluster.custom.create_namespaced_custom_object,
            *gv,
            ns,
            plural,
            body,
        ),
        lambda: call(
            f"delete {plural} {ns}/{name}",
            cluster.custom.delete_namespaced_custom_object,
            *gv,
            ns,
            plural,
            name,
        ),
    )


def remove_pool(cluster: Cluster, ns: str, name: str) -> None:
    """Remove a pool: its route rule, HPA or ScaledObject, Deployment, picker, policies, InferencePool (last,
    so a removal cut short is listed and can be run again). Refuses (``PoolInUse``) a pool
    that shares its model's traffic with another pool, or that the requests without a model
    (GET /v1/models, /health) go to."""
    get_pool(cluster, ns, name)

    _update_route(cluster, ns, lambda route: fo.without_pool(route, name))
    epp = pools.epp_name(name)
    steps = [
        (
            f"delete HPA {ns}/{name}",
            cluster.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            name,
            ns,
        ),
        (
            f"delete scaledobjects {ns}/{name}",
            cluster.custom.delete_namespaced_custom_object,
            ko.KEDA_GROUP,
            ko.KEDA_VERSION,
            ns,
            "scaledobjects",
            name,
        ),  # fmt: skip
        (f"delete Deployment {ns}/{name}", cluster.apps.delete_namespaced_deployment, name, ns),
        (f"delete Deployment {ns}/{epp}", cluster.apps.delete_namespaced_deployment, epp, ns),
        (f"delete Service {ns}/{epp}", cluster.core.delete_namespaced_service, epp, ns),
        (f"delete ConfigMap {ns}/{epp}", cluster.core.delete_namespaced_config_map, epp, ns),
        *[
            (
                f"delete {p} {ns}/{name}",
                cluster.custom.delete_namespaced_custom_object,
                *GKE_V,
                ns,
                p,
                name,
            )
            for p in GKE_POLICIES
        ],
        (
            f"delete InferencePool {ns}/{name}",
            cluster.custom.delete_namespaced_custom_object,
            *POOL_V,
            ns,
            "inferencepools",
            name,
        ),
    ]
    for action, fn, *args in steps:
        get_or_none(action, fn, *args)  # already gone is fine: removal can be re-run
