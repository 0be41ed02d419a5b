"""Least privilege, checked by use: the admin console runs everything it does (status,
pod log, in-place switch and its rollback, blue/green there and back, a held lock) against
the fake API server while the server authorizes every request with the Role and
ClusterRole that k8s/ renders. No request may be refused, and every permission the rules
grant must be used by some request: the rules are exactly what the console needs."""

from __future__ import annotations

import pytest

from tests.fakes.dcgm_server import FakeDcgm, FakeDcgmServer, GpuSpec
from tests.fakes.k8s_server import ApiRequest, FakeCluster
from tests.support.cluster import FAST, LLAMA, MISTRAL, NS, QWEN, seed_vllm
from webapp.cluster import inventory as inv
from webapp.cluster.errors import SwitchInProgress
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock
from webapp.cluster.switch import SwitchResult, switch_model
from webapp.cluster.telemetry import EXPORTER, read_gpu_telemetry
from webapp.settings import Settings

pytestmark = pytest.mark.delivery

ADMIN_SA = "webapp-admin"


def bound_rules(objs: list[dict], kind: str, binding_kind: str) -> list[dict]:
    """The rules of every ``kind`` (Role/ClusterRole) bound to the admin ServiceAccount."""
    names = {
        b["roleRef"]["name"]
        for b in objs
        if b["kind"] == binding_kind and any(s["name"] == ADMIN_SA for s in b["subjects"])
    }
    return [r for o in objs if o["kind"] == kind and o["metadata"]["name"] in names
            for r in o["rules"]]  # fmt: skip


def grants(rule: dict, req: ApiRequest) -> bool:
    """Kubernetes RBAC for one rule: group, resource (with subresource), verb, and the
    object's name when the rule lists resourceNames (never true for create and list)."""
    names = rule.get("resourceNames")
    return (
        req.group in rule["apiGroups"]
        and req.resource in rule["resources"]
        and req.verb in rule["verbs"]
        and (not names or req.name in names)
    )


def authorizer(role: list[dict], cluster_role: list[dict]):
    """authorize(request): the Role in namespace NS, the ClusterRole everywhere."""

    def authorize(req: ApiRequest) -> bool:
        rules = cluster_role + (role if req.namespace == NS else [])
        return any(grants(rule, req) for rule in rules)

    return authorize


def permissions(rules: list[dict]) -> set[tuple[str, str, str, str | None]]:
    """Every (group, resource, verb, name or None) the rules grant."""
    return {
        (g, res, verb, name)
        for r in rules
        for g in r["apiGroups"]
        for res in r["resources"]
        for verb in r["verbs"]
        for name in (r.get("resourceNames") or [None])
    }


def used(req: ApiRequest, perms: set) -> set:
    """The permissions that grant ``req`` (named ones first, as RBAC would)."""
    return {p for p in perms if p[:3] == (req.group, req.resource, req.verb)
            and p[3] in (None, req.name)}  # fmt: skip


def run_switch(cluster, spec, fake, **kw) -> SwitchResult:
    items = list(
        switch_model(
            cluster, spec, admin="alice@example.com", namespace=NS, deployment="vllm",
            service="vllm", options=FAST, **kw,
        )
    )  # fmt: skip
    return items[-1]


def console_session(fake: FakeCluster) -> None:
    """Everything the admin page does, through the real kubernetes client."""
    cluster = connect(fake.kubeconfig_path)
    snap = inv.inventory(cluster, NS)
    assert inv.pod_logs(cluster, NS, snap.pods[0].name, tail_lines=5)
    fake.inject_fault(model=QWEN.name, kind="crash")  # in place, then rolled back
    assert run_switch(cluster, QWEN, fake).outcome == "rolled_back"
    assert run_switch(cluster, MISTRAL, fake).outcome == "switched"
    for spec in (LLAMA, MISTRAL):  # blue/green to vllm-green and back to vllm
        result = run_switch(
            cluster, spec, fake, strategy="blue_green", model_probe=fake.model_probe
        )
        assert result.outcome == "switched", result
    lock = acquire_lock(cluster, NS, "bob@example.com", duration_s=60)
    with pytest.raises(SwitchInProgress):
        acquire_lock(cluster, NS, "alice@example.com")
    lock.release()
    with FakeDcgmServer(FakeDcgm(gpus=[GpuSpec(node="gpu-a")])) as dcgm:  # GPU telemetry
        fake.proxy_to("gpu-operator", "nvidia-dcgm-exporter", dcgm.url)
        telemetry = read_gpu_telemetry(Settings(gke_project="", gpu_prometheus_url=""), cluster)
        assert telemetry.source == EXPORTER and len(telemetry.gpus) == 1


@pytest.fixture(scope="module")
def admin_rules(rendered) -> tuple[list[dict], list[dict]]:
    objs = rendered["l4"]
    return bound_rules(objs, "Role", "RoleBinding"), bound_rules(
        objs, "ClusterRole", "ClusterRoleBinding"
    )


def test_the_console_needs_exactly_the_rendered_rbac(admin_rules):
    role, cluster_role = admin_rules
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fake:
        seed_vllm(fake)
        fake.authorize = authorizer(role, cluster_role)
        console_session(fake)
        requests = list(fake.requests)
    refused = [r for r in requests if not authorizer(role, cluster_role)(r)]
    assert not refused
    perms = permissions(role) | permissions(cluster_role)
    needed = set().union(*(used(r, perms) for r in requests))
    assert perms - needed == set(), "rules no call of the console needs"
    # the namespaced pods: nothing is listed across namespaces
    assert not [r for r in requests if r.resource == "pods" and r.namespace is None]


def test_the_authorizer_refuses_what_the_rules_do_not_grant(admin_rules):
    """The check really checks: what the console must not do is refused."""
    allow = authorizer(*admin_rules)
    refused = [
        ApiRequest("create", "apps", "deployments", NS, None),  # could mount any Secret
        ApiRequest("patch", "apps", "deployments", NS, "webapp-admin"),
        ApiRequest("delete", "apps", "deployments", NS, "vllm"),
        ApiRequest("list", "", "pods", None, None),  # all namespaces
        ApiRequest("list", "", "pods", "kube-system", None),
        ApiRequest("get", "", "secrets", NS, "huggingface"),
        ApiRequest("patch", "", "services", NS, "webapp-chat"),
        ApiRequest("delete", "coordination.k8s.io", "leases", NS, "vllm-switch-lock"),
        ApiRequest("get", "", "nodes", None, "gpu-a"),
        ApiRequest("get", "", "services/proxy", "gpu-operator", "other-service:9400"),
        ApiRequest("get", "", "services/proxy", NS, "vllm:8000"),  # the model server
        ApiRequest("get", "", "pods/proxy", "gpu-operator", "nvidia-dcgm-exporter-abcde"),
        ApiRequest("create", "", "services/proxy", "gpu-operator", "nvidia-dcgm-exporter:9400"),
    ]
    assert [r for r in refused if allow(r)] == []
    assert allow(ApiRequest("patch", "apps", "deployments", NS, "vllm-green"))
    assert allow(ApiRequest("list", "", "nodes", None, None))
    assert allow(
        ApiRequest("get", "", "services/proxy", "gpu-operator", "nvidia-dcgm-exporter:9400")
    )
