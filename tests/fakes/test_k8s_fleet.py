"""The fake API server's model-pool side (tests/fakes/k8s_fleet.py), through the real
kubernetes client: custom objects and HPAs stored like any resource (CRUD, LIST, WATCH, PATCH),
``deployments/scale``, the gateway's route status and the HPA controller."""

from __future__ import annotations

import json

import pytest

from tests.fakes.k8s_fleet import desired_replicas, quantity
from tests.fakes.k8s_server import FakeCluster
from tests.support.fleet import seed_fleet
from webapp.cluster.errors import Conflict, NotFound
from webapp.cluster.k8s import call, connect

NS = "vllm"
GW = ("gateway.networking.k8s.io", "v1")


@pytest.fixture
def fake():
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        seed_fleet(fc, NS)
        yield fc


@pytest.fixture
def cluster(fake):
    return connect(fake.kubeconfig_path)


def conditions(obj: dict, index: int = 0) -> dict[str, tuple[str, str]]:
    parent = obj["status"]["parents"][index]
    return {c["type"]: (c["status"], c["reason"]) for c in parent["conditions"]}


@pytest.mark.parametrize(
    ("current", "value", "target", "lo", "hi", "desired"),
    [
        (1, 10, 4, 1, 5, 3),  # ceil(1 * 10 / 4)
        (2, 10, 4, 1, 5, 5),
        (2, 10, 4, 1, 3, 3),  # clamped to the maximum
        (3, 0.5, 4, 1, 5, 1),  # ceil(0.375) = 1
        (3, 0, 4, 2, 5, 2),  # clamped to the minimum
        (4, 4.3, 4, 1, 8, 4),  # within the 10 % tolerance: no change
        (4, 4.5, 4, 1, 8, 5),
    ],
)  # fmt: skip
def test_the_hpa_formula(current, value, target, lo, hi, desired):
    assert desired_replicas(current, value, target, lo, hi) == desired


@pytest.mark.parametrize(("text", "value"), [("5", 5.0), ("500m", 0.5), (2, 2.0), ("1k", 1000.0)])
def test_quantities(text, value):
    assert quantity(text) == value


def test_custom_objects_are_stored_listed_and_watched(fake, cluster):
    route = call("get", cluster.custom.get_namespaced_custom_object, *GW, NS, "httproutes",
                 "llm-models")  # fmt: skip
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    items = call("list", cluster.custom.list_namespaced_custom_object,
                 "inference.networking.k8s.io", "v1", NS, "inferencepools")["items"]  # fmt: skip
    assert [p["metadata"]["name"] for p in items] == ["vllm"]
    stale = dict(route, metadata={**route["metadata"], "resourceVersion": "1"})
    with pytest.raises(Conflict):
        call("replace", cluster.custom.replace_namespaced_custom_object, *GW, NS, "httproutes",
             "llm-models", stale)  # fmt: skip
    rv = route["metadata"]["resourceVersion"]
    call("patch", cluster.custom.patch_namespaced_custom_object, *GW, NS, "httproutes",
         "llm-models", {"metadata": {"labels": {"x": "y"}}},
         _content_type="application/merge-patch+json")  # fmt: skip
    stream = cluster.custom.list_namespaced_custom_object(
        *GW, NS, "httproutes", watch=True, resource_version=rv, timeout_seconds=1,
        _preload_content=False,
    )  # fmt: skip
    events = [json.loads(line) for line in stream.data.decode().splitlines() if line]
    assert events and events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["metadata"]["labels"] == {"x": "y"}
    call("delete", cluster.custom.delete_namespaced_custom_object, *GW, NS, "httproutes",
         "llm-models")  # fmt: skip
    with pytest.raises(NotFound):
        call("get", cluster.custom.get_namespaced_custom_object, *GW, NS, "httproutes",
             "llm-models")  # fmt: skip


def test_route_status_accepts_and_names_a_missing_pool(fake, cluster):
    route = fake.get("httproutes", "llm-models", NS)
    assert conditions(route) == {"Accepted": ("True", "Accepted"),
                                 "ResolvedRefs": ("True", "ResolvedRefs")}  # fmt: skip
    assert route["status"]["parents"][0]["controllerName"] == "networking.gke.io/gateway"
    rule = {"backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                             "name": "absent", "weight": 100}]}  # fmt: skip
    route["spec"]["rules"].append(rule)
    call("replace", cluster.custom.replace_namespaced_custom_object, *GW, NS, "httproutes",
         "llm-models", route)  # fmt: skip
    assert fake.wait_for(
        lambda f: conditions(f.get("httproutes", "llm-models", NS))["ResolvedRefs"]
        == ("False", "BackendNotFound"), 5)  # fmt: skip
    fake.create("httproutes", {"metadata": {"name": "orphan"}, "spec": {
        "parentRefs": [{"name": "no-such-gateway"}], "rules": []}}, NS)  # fmt: skip
    assert fake.wait_for(
        lambda f: (f.get("httproutes", "orphan", NS).get("status") or {}).get("parents"), 5
    )
    assert conditions(fake.get("httproutes", "orphan", NS))["Accepted"] == (
        "False", "NoMatchingParent")  # fmt: skip


def test_the_scale_subresource_reads_and_writes_replicas(fake, cluster):
    scale = call("get", cluster.apps.read_namespaced_deployment_scale, "vllm", NS)
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"]["selector"] == (
        "app.kubernetes.io/instance=vllm,app.kubernetes.io/name=vllm")  # fmt: skip
    call("patch", cluster.apps.patch_namespaced_deployment_scale, "vllm", NS,
         {"spec": {"replicas": 0}}, _content_type="application/merge-patch+json")  # fmt: skip
    assert fake.get("deployments", "vllm", NS)["spec"]["replicas"] == 0
    assert fake.wait_for(lambda f: f.served_models(NS) == [], 5)
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}}
    with pytest.raises(Conflict):
        call("patch", cluster.apps.patch_namespaced_deployment_scale, "vllm", NS, stale,
             _content_type="application/merge-patch+json")  # fmt: skip
    with pytest.raises(NotFound):
        call("get", cluster.apps.read_namespaced_deployment_scale, "absent", NS)


def hpa(name: str, lo: int = 1, hi: int = 4, target: str = "4") -> dict:
    metric = {"name": "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"}
    return {
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": lo,
            "maxReplicas": hi,
            "metrics": [{"type": "Pods", "pods": {"metric": metric, "target": {
                "type": "AverageValue", "averageValue": target}}}],
        },
    }  # fmt: skip


def hpa_conditions(fake, name: str) -> dict[str, tuple[str, str]]:
    status = fake.get("horizontalpodautoscalers", name, NS)["status"]
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def unschedulable(fake) -> int:
    return sum(
        1
        for p in fake.list("pods", NS, "app.kubernetes.io/name=vllm")
        if any(c.get("reason") == "Unschedulable" for c in p["status"].get("conditions") or [])
    )


def test_the_hpa_controller_scales_on_the_metric_and_writes_its_status(fake, cluster):
    call("create", cluster.autoscaling.create_namespaced_horizontal_pod_autoscaler, NS,
         hpa("vllm", hi=3))  # fmt: skip
    assert fake.wait_for(lambda f: (f.get("horizontalpodautoscalers", "vllm", NS).get("status")
                                    or {}).get("conditions"), 5)  # fmt: skip
    assert hpa_conditions(fake, "vllm")["ScalingActive"] == ("False", "FailedGetPodsMetric")
    # 1 * 12 / 4 = 3; the value stays what the test set, so the next passes would go on
    # scaling (3 * 12 / 4 = 9) up to the maximum, 3 here, as a real HPA with a queue that
    # does not shrink
    fake.set_metric(NS, "vllm", 12)
    status = fake.get("horizontalpodautoscalers", "vllm", NS)["status"]
    assert (status["currentReplicas"], status["desiredReplicas"]) == (1, 3)
    assert status["currentMetrics"][0]["pods"]["current"] == {"averageValue": "12"}
    assert hpa_conditions(fake, "vllm")["ScalingActive"] == ("True", "ValidMetricFound")
    assert fake.get("deployments", "vllm", NS)["spec"]["replicas"] == 3
    # two GPU nodes, three replicas: the third stays Pending (no free GPU), as on a full pool
    assert fake.wait_for(lambda f: unschedulable(f) == 1, 5)
    listed = call("list", cluster.autoscaling.list_namespaced_horizontal_pod_autoscaler, NS)
    assert [h["metadata"]["name"] for h in listed["items"]] == ["vllm"]


def test_the_hpa_does_not_act_on_a_deployment_at_zero(fake, cluster):
    fake.create("horizontalpodautoscalers", hpa("vllm"), NS)
    call("patch", cluster.apps.patch_namespaced_deployment_scale, "vllm", NS,
         {"spec": {"replicas": 0}}, _content_type="application/merge-patch+json")  # fmt: skip
    fake.set_metric(NS, "vllm", 40)
    assert hpa_conditions(fake, "vllm")["ScalingActive"] == ("False", "ScalingDisabled")
    assert fake.get("deployments", "vllm", NS)["spec"]["replicas"] == 0
    fake.create("horizontalpodautoscalers", hpa("absent"), NS)
    fake.set_metric(NS, "absent", 1)
    assert hpa_conditions(fake, "absent")["AbleToScale"] == ("False", "FailedGetScale")


def test_an_inference_pool_reports_its_gateway_and_a_missing_picker(fake):
    pool = fake.get("inferencepools", "vllm", NS)
    (parent,) = pool["status"]["parents"]
    assert parent["parentRef"]["name"] == "inference-gateway"
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {
        "Accepted": "True",
        "ResolvedRefs": "True",
    }
    with fake.lock:
        fake._delete("services", (NS, "vllm-epp"))
    assert fake.wait_for(
        lambda f: (
            conditions(f.get("inferencepools", "vllm", NS))["ResolvedRefs"]
            == ("False", "InvalidExtensionRef")
        ),
        5,
    )
