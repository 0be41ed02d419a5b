"""Scale to zero with KEDA (webapp.cluster.fleet_scaling, keda_objects) against the fake API
server and its KEDA-like controller (tests/fakes/k8s_fleet.py), through the real kubernetes
client: min 0 writes a ScaledObject instead of an HPA, the two swap, an idle pool goes to 0
after the cooldown, the chat's wake brings it to 1 and it serves, the fleet lists it."""

from __future__ import annotations

import pytest

from tests.fakes import k8s_server
from tests.fakes.k8s_server import FakeCluster
from tests.support.crd_schemas import scaled_object_errors, schema_errors
from tests.support.fleet import CATALOG, seed_fleet
from webapp.cluster import fleet, fleet_scaling
from webapp.cluster import keda_objects as ko
from webapp.cluster.errors import InvalidAutoscaling, KedaNotInstalled
from webapp.cluster.fleet_objects import Autoscaling
from webapp.cluster.k8s import connect
from webapp.cluster.pools import PoolSpec

NS = "vllm"
POOL = "vllm-mistral"
PROJECT = "my-project"
# The cooldown runs on the fake's clock: 600 s * 0.004 = 2.4 s.
TIME_SCALE = 0.004
WRITES = ("create", "update", "patch", "delete")


@pytest.fixture
def seeded():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}, {"name": "gpu-c"}],
                     time_scale=TIME_SCALE) as fc:  # fmt: skip
        seed_fleet(fc, NS)
        yield fc


@pytest.fixture
def cluster(seeded):
    return connect(seeded.kubeconfig_path)


def create_mistral(cluster) -> None:
    fleet.create_pool(cluster, NS, PoolSpec(POOL, "mistral-7b"), catalog_ids=CATALOG,
                      hf_repo="mistralai/Mistral-7B-v0.1", max_model_len=8192)  # fmt: skip


def replicas(fc: FakeCluster) -> int:
    return fc.get("deployments", POOL, NS)["spec"]["replicas"]


def conditions(fc: FakeCluster) -> dict[str, str]:
    so = fc.get("scaledobjects", POOL, NS)
    return {c["type"]: c["status"] for c in (so.get("status") or {}).get("conditions", [])}


def listed(cluster):
    (pool,) = [p for p in fleet.list_pools(cluster, NS) if p.name == POOL]
    return pool


def test_min_zero_writes_a_scaled_object_on_the_pools_queue(seeded, cluster):
    create_mistral(cluster)
    scaling = fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 3, 4, project=PROJECT)
    assert scaling == Autoscaling(0, 3, 4.0, scale_to_zero=True)
    assert seeded.get("horizontalpodautoscalers", POOL, NS) is None  # GKE's HPA cannot go to 0
    so = seeded.get("scaledobjects", POOL, NS)
    assert (so["apiVersion"], so["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = so["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": POOL}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 3)
    assert spec["cooldownPeriod"] == ko.COOLDOWN_SECONDS == 600
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["authenticationRef"] == {"name": ko.TRIGGER_AUTH_NAME}
    meta = trigger["metadata"]
    assert meta["serverAddress"] == (
        "https://monitoring.googleapis.com/v1/projects/my-project/location/global/prometheus")  # fmt: skip
    assert (meta["threshold"], meta["activationThreshold"]) == ("4", "0")
    pods = 'namespace="vllm",pod=~"vllm-mistral-[a-z0-9]+-[a-z0-9]+"'
    assert f"sum(vllm:num_requests_waiting{{{pods}}})" in meta["query"]
    assert f"sum(vllm:num_requests_running{{{pods}}})" in meta["query"]
    assert 'kube_deployment_spec_replicas{namespace="vllm",deployment="vllm-mistral"}' in (
        meta["query"])  # fmt: skip
    auth = seeded.get("triggerauthentications", ko.TRIGGER_AUTH_NAME, NS)
    assert auth["spec"] == {"podIdentity": {"provider": "gcp"}}
    assert seeded.wait_for(lambda f: conditions(f).get("Ready") == "True", 5)
    so = seeded.get("scaledobjects", POOL, NS)  # as written, with the status KEDA's adds
    assert so["status"]["hpaName"] == "keda-hpa-vllm-mistral"
    assert scaled_object_errors(so) == []  # KEDA v2.20.2's CRD, strict: no unknown field
    assert schema_errors(auth) == []
    assert listed(cluster).autoscaling == scaling


def test_min_zero_and_min_one_swap_the_scaled_object_and_the_hpa(seeded, cluster):
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 1, 2, 4)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 3, 2.5, project=PROJECT)
    assert seeded.get("horizontalpodautoscalers", POOL, NS) is None
    assert seeded.get("scaledobjects", POOL, NS)["spec"]["maxReplicaCount"] == 3
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 2, 2.5, project=PROJECT)  # replaces it
    assert seeded.get("scaledobjects", POOL, NS)["spec"]["maxReplicaCount"] == 2
    assert listed(cluster).autoscaling == Autoscaling(0, 2, 2.5, scale_to_zero=True)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 1, 2, 4)
    assert seeded.get("scaledobjects", POOL, NS) is None
    assert seeded.get("horizontalpodautoscalers", POOL, NS)["spec"]["minReplicas"] == 1
    assert listed(cluster).autoscaling == Autoscaling(1, 2, 4.0)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 2, 4, project=PROJECT)
    fleet_scaling.clear_autoscaling(cluster, NS, POOL)
    assert seeded.get("scaledobjects", POOL, NS) is None
    assert seeded.get("horizontalpodautoscalers", POOL, NS) is None
    assert listed(cluster).autoscaling is None


def test_an_idle_pool_sleeps_after_the_cooldown_and_the_chat_wakes_it(seeded, cluster):
    create_mistral(cluster)
    seeded.set_metric(NS, POOL, 2)  # two requests on it: active
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 3, 4, project=PROJECT)
    assert seeded.wait_for(lambda f: conditions(f).get("Active") == "True", 5)
    seeded.set_metric(NS, POOL, 0)  # idle: cooling down, still up
    assert replicas(seeded) == 1 and conditions(seeded)["Active"] == "False"
    assert seeded.wait_for(lambda f: replicas(f) == 0, 15)  # the cooldown passed: asleep
    assert seeded.wait_for(lambda f: "mistral-7b" not in f.served_models(NS), 5)
    pool = listed(cluster)
    assert pool.asleep and pool.autoscaling.scale_to_zero
    assert fleet_scaling.wake_pool(cluster, NS, "mistral-7b") == POOL  # the chat's wake
    assert seeded.wait_for(lambda f: "mistral-7b" in f.served_models(NS), 10)  # kept while loading
    seeded.set_metric(NS, POOL, 1)  # the chat's request runs on it
    assert replicas(seeded) == 1 and conditions(seeded)["Active"] == "True"
    seeded.set_metric(NS, POOL, 10)  # busy: ceil(10 / 4) = 3 replicas
    assert seeded.wait_for(lambda f: replicas(f) == 3, 5)
    seeded.set_metric(NS, POOL, 0)
    assert seeded.wait_for(lambda f: replicas(f) == 0, 15)


def test_a_wake_while_idle_past_the_cooldown_is_not_undone_while_the_model_loads(seeded, cluster):
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 3, 4, project=PROJECT)
    assert seeded.wait_for(lambda f: replicas(f) == 0, 15)  # never active: asleep at once
    seeded.inject_fault(kind="slow", model="mistral-7b")  # the model takes a while to load
    fleet_scaling.wake_pool(cluster, NS, "mistral-7b")
    assert seeded.wait_for(lambda f: conditions(f).get("Active") == "True", 5)
    assert replicas(seeded) == 1  # the replica starting counts as activity (the query)
    assert seeded.wait_for(lambda f: "mistral-7b" in f.served_models(NS), 15)


def test_scale_to_zero_without_a_project_or_without_keda_is_refused_with_nothing_written(
    seeded, cluster, monkeypatch
):
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 1, 2, 4)
    seeded.reset_counts()
    with pytest.raises(InvalidAutoscaling, match="GKE_PROJECT"):
        fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 2, 4)
    for plural in ("scaledobjects", "triggerauthentications"):
        monkeypatch.delitem(k8s_server.RESOURCES, plural)  # KEDA's CRDs are not installed
    with pytest.raises(KedaNotInstalled, match="KEDA"):
        fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 2, 4, project=PROJECT)
    assert [r for r in seeded.requests if r.verb in WRITES] == []
    assert seeded.get("horizontalpodautoscalers", POOL, NS) is not None
    assert listed(cluster).autoscaling == Autoscaling(1, 2, 4.0)  # listed without KEDA too


def test_remove_takes_away_the_scaled_object(seeded, cluster):
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, POOL, 0, 2, 4, project=PROJECT)
    fleet.remove_pool(cluster, NS, POOL)
    assert seeded.get("scaledobjects", POOL, NS) is None
    assert seeded.get("deployments", POOL, NS) is None
    assert seeded.get("triggerauthentications", ko.TRIGGER_AUTH_NAME, NS)  # shared by pools


@pytest.mark.parametrize(("low", "high", "target"), [(0, 1, 0.5), (0, 64, 1000), (0, 3, 2.5)])
def test_every_scaled_object_we_build_passes_kedas_crd_schema(low, high, target):
    so = ko.scaled_object(NS, POOL, Autoscaling(low, high, target, True), PROJECT)
    assert scaled_object_errors(so) == []
    assert ko.read_scaled_object(so) == Autoscaling(low, high, float(target), True)
    assert schema_errors(ko.trigger_authentication()) == []
    assert scaled_object_errors({**so, "spec": {**so["spec"], "cooldown": 600}}) != []  # strict
