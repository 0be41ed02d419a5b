"""Scale to zero woken from the chat (k8s/components/chat-wake with the pooled layout): the
chat gets FLEET_DISCOVERY, its token and HTTPS to the API server, and that token is bound to
the Role llm-chat-wake only (what it allows is checked by use in test_fleet_rbac.py); the
result renders, validates and passes checkov; without the component the chat has no token."""

from __future__ import annotations

import pytest

from tests.delivery.gateway import POOLS
from tests.delivery.helpers import (
    CHECKOV_SKIPS,
    K8S,
    K8S_VERSIONS,
    assert_schemas_valid,
    checkov,
    container,
    dump,
    env_of,
    failed_checks,
    find,
    overlay_with_component,
    render,
)
from tests.delivery.test_fleet_rbac import chat_rules
from webapp.settings import Settings

pytestmark = pytest.mark.delivery

COMPONENT = K8S / "components" / "chat-wake"
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]


@pytest.fixture(scope="module")
def waking(tmp_path_factory) -> list[dict]:
    return render(overlay_with_component(tmp_path_factory.mktemp("wake"), "pools", COMPONENT))


def chat_pod(objs: list[dict]) -> dict:
    return find(objs, "Deployment", "webapp-chat")["spec"]["template"]["spec"]


def test_the_chat_discovers_pools_with_its_own_token(waking):
    pod = chat_pod(waking)
    assert pod["serviceAccountName"] == "webapp-chat"
    assert pod["automountServiceAccountToken"] is True
    env = env_of(container(find(waking, "Deployment", "webapp-chat"), "webapp"))
    assert env["FLEET_DISCOVERY"]["value"] == "true"
    assert Settings(fleet_discovery=env["FLEET_DISCOVERY"]["value"]).fleet_discovery is True
    assert env["APP_MODE"]["value"] == "chat"  # the base's env is kept


def test_the_chats_token_holds_only_the_wake_role(waking):
    bindings = [b for b in waking if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
                and any(s["name"] == "webapp-chat" for s in b["subjects"])]  # fmt: skip
    assert [(b["kind"], b["roleRef"]["name"]) for b in bindings] == [
        ("RoleBinding", "llm-chat-wake")
    ]
    verbs = {(tuple(r["resources"]), tuple(r["verbs"])) for r in chat_rules(waking)}
    assert verbs == {
        (("httproutes",), ("get",)),
        (("deployments",), ("get",)),
        (("deployments/scale",), ("get", "patch")),
    }


def test_the_chat_may_reach_a_public_api_server_and_no_private_range(waking):
    egress = find(waking, "NetworkPolicy", "webapp-chat-egress")["spec"]["egress"]
    https = [r for r in egress if r["ports"] == [{"port": 443, "protocol": "TCP"}]]
    assert [r["to"] for r in https] == [[{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}]]
    admin = find(waking, "NetworkPolicy", "webapp-admin-egress")["spec"]["egress"]
    assert admin == find(render(POOLS), "NetworkPolicy", "webapp-admin-egress")["spec"]["egress"]


def test_without_the_component_the_chat_has_no_token(rendered):
    for objs in [render(POOLS), *rendered.values()]:
        pod = chat_pod(objs)
        assert pod["automountServiceAccountToken"] is False
        env = env_of(container(find(objs, "Deployment", "webapp-chat"), "webapp"))
        assert "FLEET_DISCOVERY" not in env


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_chat_deployment_validates(waking, tmp_path, version):
    chat = [find(waking, "Deployment", "webapp-chat"), find(waking, "NetworkPolicy",
            "webapp-chat-egress")]  # fmt: skip
    assert assert_schemas_valid(chat, tmp_path / "chat.yaml", version) == {
        "deployment/webapp-chat",
        "networkpolicy/webapp-chat-egress",
    }


def test_the_layout_with_the_component_passes_checkov(waking, tmp_path):
    report = checkov(dump(waking, tmp_path / "wake.yaml"), "kubernetes", CHECKOV_SKIPS)
    failed = failed_checks(report)
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]
