"""Egress NetworkPolicies of the web apps (k8s/base/webapp-egress.yaml): the chat reaches only
DNS, vLLM and the database; the admin console also the GKE metadata server and HTTPS on public
addresses (API server, Google's APIs). Checked by evaluating the rendered policies the way
Kubernetes does (a connection is allowed when any rule of any policy selecting the pod
allows it), and deploy.sh's DATABASE_CIDR / KUBE_API_CIDR add exactly their rule."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.delivery.helpers import (
    OVERLAYS,
    deploy_dry_run,
    find,
    labels_match,
    render,
    run_script,
)

pytestmark = pytest.mark.delivery

NS = "vllm"
DNS = {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}}


@dataclass(frozen=True)
class Dest:
    """Where a connection goes: a pod (namespace + labels) or an IP address, and a port."""

    port: int
    protocol: str = "TCP"
    ip: str | None = None
    namespace: str = NS
    labels: dict = field(default_factory=dict)


def pod_labels(objs: list[dict], deployment: str) -> dict:
    return find(objs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def peer_matches(peer: dict, dest: Dest) -> bool:
    if "ipBlock" in peer:
        if dest.ip is None:
            return False
        ip = ipaddress.ip_address(dest.ip)
        block = peer["ipBlock"]
        inside = ip in ipaddress.ip_network(block["cidr"])
        return inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", []))
    if dest.ip is not None:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": dest.namespace}
        if not labels_match(peer["namespaceSelector"].get("matchLabels", {}), ns_labels):
            return False
    elif dest.namespace != NS:
        return False
    return labels_match(peer.get("podSelector", {}).get("matchLabels", {}), dest.labels)


def port_matches(rule: dict, dest: Dest) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p["port"] == dest.port and p.get("protocol", "TCP") == dest.protocol for p in ports
    )


def egress_allowed(objs: list[dict], source_labels: dict, dest: Dest) -> bool:
    """Kubernetes semantics: pods selected by no Egress policy may go anywhere; otherwise a
    connection needs one rule (peer and port) of one selecting policy."""
    policies = [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and "Egress" in p["spec"].get("policyTypes", [])
        and labels_match(p["spec"]["podSelector"].get("matchLabels", {}), source_labels)
    ]
    if not policies:
        return True
    return any(
        port_matches(rule, dest) and any(peer_matches(peer, dest) for peer in rule.get("to", []))
        for p in policies
        for rule in p["spec"].get("egress", [])
    )


def cases(objs: list[dict]) -> dict[str, Dest]:
    vllm = pod_labels(objs, "vllm")
    green = pod_labels(objs, "vllm-green")
    return {
        "dns udp": Dest(53, "UDP", **DNS),
        "dns tcp": Dest(53, "TCP", **DNS),
        "vllm": Dest(8000, labels=vllm),
        "vllm-green": Dest(8000, labels=green),
        "vllm other port": Dest(22, labels=vllm),
        "database pod": Dest(5432, labels={"app.kubernetes.io/component": "database"}),
        "database pod elsewhere": Dest(
            5432, namespace="other", labels={"app.kubernetes.io/component": "database"}
        ),
        "admin pod": Dest(8080, labels=pod_labels(objs, "webapp-admin")),
        "pod in another namespace": Dest(8000, namespace="other", labels=vllm),
        "dns server elsewhere": Dest(53, "UDP", ip="8.8.8.8"),
        "metadata server": Dest(80, ip="169.254.169.254"),
        "gke metadata server": Dest(988, ip="169.254.169.252"),
        "google api": Dest(443, ip="142.250.4.95"),
        "public http": Dest(80, ip="142.250.4.95"),
        "private 443": Dest(443, ip="10.0.0.5"),
        "private 443 (172.16/12)": Dest(443, ip="172.16.0.2"),
        "cloud sql private ip": Dest(5432, ip="10.20.0.3"),
    }


CHAT_ALLOWED = {"dns udp", "dns tcp", "vllm", "vllm-green", "database pod"}
ADMIN_ALLOWED = CHAT_ALLOWED | {"metadata server", "gke metadata server", "google api"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    ("deployment", "allowed"),
    [("webapp-chat", CHAT_ALLOWED), ("webapp-admin", ADMIN_ALLOWED)],
)
def test_webapp_egress(rendered, overlay, deployment, allowed):
    objs = rendered[overlay]
    source = pod_labels(objs, deployment)
    result = {name for name, dest in cases(objs).items() if egress_allowed(objs, source, dest)}
    assert result == allowed


def test_one_egress_policy_per_web_app_and_none_on_vllm(rendered):
    objs = rendered["l4"]
    egress = [
        p for p in objs if p["kind"] == "NetworkPolicy" and "Egress" in p["spec"]["policyTypes"]
    ]
    selected = {
        d: [p["metadata"]["name"] for p in egress
            if labels_match(p["spec"]["podSelector"]["matchLabels"], pod_labels(objs, d))]
        for d in ("webapp-chat", "webapp-admin", "vllm", "vllm-green")
    }  # fmt: skip
    assert selected == {
        "webapp-chat": ["webapp-chat-egress"],
        "webapp-admin": ["webapp-admin-egress"],
        "vllm": [],  # vLLM downloads weights from the hub: its egress is not limited here
        "vllm-green": [],
    }
    for p in egress:
        assert p["spec"]["policyTypes"] == ["Egress"]


def test_the_evaluator_really_checks(rendered):
    """Without the egress policies every destination is open (Kubernetes' default)."""
    objs = [o for o in rendered["l4"] if not o["metadata"]["name"].endswith("-egress")]
    source = pod_labels(objs, "webapp-chat")
    assert all(egress_allowed(objs, source, d) for d in cases(rendered["l4"]).values())


@pytest.mark.parametrize(
    ("env", "deployment", "now_allowed"),
    [
        ({"DATABASE_CIDR": "10.20.0.3/32"}, "webapp-chat", {"cloud sql private ip"}),
        ({"DATABASE_CIDR": "10.20.0.0/24"}, "webapp-admin", {"cloud sql private ip"}),
        ({"DATABASE_CIDR": "10.20.0.3/32", "DATABASE_PORT": "6432"}, "webapp-chat", set()),
        ({"KUBE_API_CIDR": "172.16.0.2/32"}, "webapp-admin", {"private 443 (172.16/12)"}),
        ({"KUBE_API_CIDR": "172.16.0.2/32"}, "webapp-chat", set()),
    ],
)
def test_deploy_adds_the_database_and_api_server_ranges(
    tripwire, tmp_path, env, deployment, now_allowed
):
    overlay_dir = tmp_path / "generated"
    deploy_dry_run(tripwire, overlay_dir, {"OVERLAY": "l4", "NAMESPACE": NS, **env})
    objs = render(overlay_dir)
    source = pod_labels(objs, deployment)
    allowed = {name for name, dest in cases(objs).items() if egress_allowed(objs, source, dest)}
    base = CHAT_ALLOWED if deployment == "webapp-chat" else ADMIN_ALLOWED
    assert allowed == base | now_allowed


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_CIDR": "10.20.0.300/32"}, "DATABASE_CIDR is not an IPv4 range"),
        ({"DATABASE_CIDR": "db.internal"}, "DATABASE_CIDR is not an IPv4 range"),
        ({"KUBE_API_CIDR": "172.16.0.2/33"}, "KUBE_API_CIDR is not an IPv4 range"),
        ({"KUBE_API_CIDR": '1.2.3.4/32"}]'}, "KUBE_API_CIDR is not an IPv4 range"),
        ({"DATABASE_PORT": "70000"}, "DATABASE_PORT is not a port number"),
        ({"DATABASE_PORT": "5432; x"}, "DATABASE_PORT is not a port number"),
    ],
)
def test_deploy_refuses_a_bad_range_or_port(tripwire, env, message):
    out = run_script("deploy.sh", ["--dry-run"], {"PROJECT_ID": "p", **env}, tripwire)
    assert out.returncode != 0
    assert message in out.stderr
