"""Least privilege for the fleet of model pools, checked by use (as tests/delivery/test_rbac.py
does for the base): the admin console runs every fleet action (list, deploy a pool, autoscale,
scale, wake, canary split, per-pool lock, live /metrics, a pool's model switch, remove) against the fake API server while it
authorizes each request with the Roles k8s/overlays/pools renders for the admin; the chat wakes
a sleeping pool with its own Role only (the chat page's ClusterFleet: models, state, wake). Nothing is refused, and every permission the fleet's
Role (and the chat's) grants is used by some request."""

from __future__ import annotations

import pytest

from tests.delivery.gateway import POOLS
from tests.delivery.helpers import render
from tests.delivery.test_rbac import authorizer, bound_rules, permissions, used
from tests.fakes.k8s_server import ApiRequest, FakeCluster
from tests.support.cluster import FAST
from tests.support.fleet import CATALOG, seed_fleet
from webapp.chat.fleet import ClusterFleet
from webapp.cluster import fleet, fleet_scaling
from webapp.cluster.errors import SwitchInProgress
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock
from webapp.cluster.model_spec import ModelSpec
from webapp.cluster.pod_metrics import pod_metrics_texts
from webapp.cluster.pools import Backend, PoolSpec
from webapp.cluster.switch import switch_model

pytestmark = pytest.mark.delivery

NS = "vllm"
FLEET_ROLE = "llm-console-fleet"
CHAT_ROLE = "llm-chat-wake"


@pytest.fixture(scope="module")
def pooled() -> list[dict]:
    return render(POOLS)


def role_rules(objs: list[dict], name: str) -> list[dict]:
    (role,) = [o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == name]
    return role["rules"]


def chat_rules(objs: list[dict]) -> list[dict]:
    """Every Role bound to the chat's ServiceAccount."""
    names = {b["roleRef"]["name"] for b in objs if b["kind"] == "RoleBinding"
             and any(s["name"] == "webapp-chat" for s in b["subjects"])}  # fmt: skip
    return [r for o in objs if o["kind"] == "Role" and o["metadata"]["name"] in names
            for r in o["rules"]]  # fmt: skip


def fleet_session(fake: FakeCluster) -> None:
    """Every fleet action the admin page runs, through the real kubernetes client."""
    cluster = connect(fake.kubeconfig_path)
    repo = {"max_model_len": 8192, "catalog_ids": CATALOG}
    assert [p.name for p in fleet.list_pools(cluster, NS)] == ["vllm"]
    lock = acquire_lock(cluster, NS, "alice@example.com", pool="vllm-mistral")
    with pytest.raises(SwitchInProgress):
        acquire_lock(cluster, NS, "bob@example.com", pool="vllm-mistral")
    fleet.create_pool(cluster, NS, PoolSpec("vllm-mistral", "mistral-7b"),
                      hf_repo="mistralai/Mistral-7B-v0.1", **repo)  # fmt: skip
    fleet.create_pool(cluster, NS, PoolSpec("qwen", "qwen2-7b"),
                      hf_repo="Qwen/Qwen2-7B-Instruct", **repo)  # fmt: skip
    lock.release()
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 1, 2, 4)
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 1, 3, 4)
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 0, 2, 4, project="my-project")
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 0, 3, 4, project="my-project")
    assert fleet.served_models(cluster, NS) == ["llama-2-7b", "mistral-7b", "qwen2-7b"]
    assert len(fleet.list_pools(cluster, NS)) == 3
    fleet_scaling.scale_pool(cluster, NS, "qwen", 0)
    assert [p.pod for p in pod_metrics_texts(cluster, NS, "vllm")]  # the fleet table's numbers
    falcon = ModelSpec(name="falcon-7b", hf_repo="tiiuae/falcon-7b", max_model_len=2048)
    switched = list(switch_model(cluster, falcon, admin="alice@example.com", namespace=NS,
                                 deployment="vllm-mistral", service="vllm-mistral",
                                 options=FAST))  # a pool's model switch  # fmt: skip
    assert switched[-1].outcome == "switched", [i.message for i in switched]
    fleet.rename_model(cluster, NS, "vllm-mistral", "mistral-7b", "falcon-7b")
    assert fleet_scaling.wake_pool(cluster, NS, "qwen2-7b") == "qwen"
    fleet.create_pool(cluster, NS, PoolSpec("canary", "falcon-7b"), canary=True,
                      hf_repo="tiiuae/falcon-7b-instruct", max_model_len=2048,
                      catalog_ids=(*CATALOG, "falcon-7b"))  # fmt: skip
    split = [Backend("vllm-mistral", 95), Backend("canary", 5)]
    fleet.set_split(cluster, NS, "falcon-7b", split)
    fleet.set_split(cluster, NS, "falcon-7b", [Backend("vllm-mistral", 100)])  # rolled back
    fleet.remove_pool(cluster, NS, "canary")
    fleet_scaling.clear_autoscaling(cluster, NS, "vllm-mistral")
    fleet_scaling.set_autoscaling(cluster, NS, "qwen", 1, 2, 4)
    fleet.remove_pool(cluster, NS, "qwen")
    fleet.remove_pool(cluster, NS, "vllm-mistral")


def test_the_fleet_needs_exactly_its_rendered_role(pooled):
    role = bound_rules(pooled, "Role", "RoleBinding")
    cluster_role = bound_rules(pooled, "ClusterRole", "ClusterRoleBinding")
    allow = authorizer(role, cluster_role)
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fake:
        seed_fleet(fake, NS)
        fake.authorize = allow
        fleet_session(fake)
        requests = list(fake.requests)
    assert [r for r in requests if not allow(r)] == []
    perms = permissions(role_rules(pooled, FLEET_ROLE))
    needed = set().union(*(used(r, perms) for r in requests))
    assert perms - needed == set(), "rules no fleet call needs"


def test_the_chat_wakes_a_pool_with_its_own_small_role(pooled):
    rules = chat_rules(pooled)
    allow = authorizer(rules, [])
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fake:
        seed_fleet(fake, NS)
        admin = connect(fake.kubeconfig_path)
        fleet_scaling.scale_pool(admin, NS, "vllm", 0)
        fake.reset_counts()
        fake.authorize = allow
        chat = ClusterFleet(fake.kubeconfig_path, NS)  # what the chat page calls, and only that
        assert chat.models() == ["llama-2-7b"]
        assert chat.state("llama-2-7b") == "asleep"
        chat.wake("llama-2-7b")
        assert fake.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b"], 10)
        assert chat.state("llama-2-7b") == "serving"
        requests = list(fake.requests)
    assert [r for r in requests if not allow(r)] == []
    perms = permissions(rules)
    assert perms - set().union(*(used(r, perms) for r in requests)) == set()
    refused = [
        ApiRequest("patch", "apps", "deployments", NS, "vllm"),  # only the scale
        ApiRequest("update", "gateway.networking.k8s.io", "httproutes", NS, "llm-models"),
        ApiRequest("get", "gateway.networking.k8s.io", "httproutes", NS, "other-route"),
        ApiRequest("list", "inference.networking.k8s.io", "inferencepools", NS, None),
        ApiRequest("list", "apps", "deployments", NS, None),  # each pool by name only
        ApiRequest("get", "", "secrets", NS, "huggingface"),
    ]
    assert [r for r in refused if allow(r)] == []


def test_the_default_install_still_cannot_create_deployments(rendered):
    role = bound_rules(rendered["l4"], "Role", "RoleBinding")
    allow = authorizer(role, [])
    assert not allow(ApiRequest("create", "apps", "deployments", NS, None))
    assert not [o for o in rendered["l4"] if o["metadata"]["name"] in (FLEET_ROLE, CHAT_ROLE)]
