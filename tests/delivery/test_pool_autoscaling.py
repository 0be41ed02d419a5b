"""What pool autoscaling needs in the manifests (issue 14.2): a PodMonitoring (Managed Service
for Prometheus) that scrapes vllm:num_requests_waiting from every pool's replicas — those of
the manifests and those the admin page makes — every 15 s, valid against its CRD; the vLLM
network policy lets GKE's collectors in; and the KEDA schema check that tests of ScaledObjects
use (tests.support.crd_schemas.scaled_object_errors) accepts the scale-to-zero shape of GKE's
tutorial and refuses bad ones."""

from __future__ import annotations

import copy

import pytest

from tests.delivery.gateway import POOLS, of_kind
from tests.delivery.helpers import find, labels_match, render
from tests.support.crd_schemas import scaled_object_errors, schema_errors
from webapp.cluster import fleet_objects
from webapp.cluster.pools import PoolSpec

pytestmark = pytest.mark.delivery

VLLM_PORT = 8000


@pytest.fixture(scope="module")
def pooled() -> list[dict]:
    return render(POOLS)


@pytest.fixture(scope="module")
def monitoring(pooled) -> dict:
    (pm,) = of_kind(pooled, "PodMonitoring")
    return pm


def _pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_pod_monitoring_scrapes_vllm_metrics_every_15_s(monitoring):
    assert monitoring["apiVersion"] == "monitoring.googleapis.com/v1"
    assert monitoring["metadata"]["namespace"] == "vllm"
    assert monitoring["spec"]["endpoints"] == [
        {"port": VLLM_PORT, "path": "/metrics", "interval": "15s"}
    ]
    assert schema_errors(monitoring) == []


def test_pod_monitoring_selects_every_pool_replica_and_nothing_else(pooled, monitoring):
    selector = monitoring["spec"]["selector"]["matchLabels"]
    deployments = of_kind(pooled, "Deployment")
    pool_deployments = [
        d
        for pool in of_kind(pooled, "InferencePool")
        for d in deployments
        if labels_match(pool["spec"]["selector"]["matchLabels"], _pod_labels(d))
    ]
    assert {d["metadata"]["name"] for d in pool_deployments} == {"vllm", "vllm-mistral"}
    for d in pool_deployments:
        assert labels_match(selector, _pod_labels(d)), d["metadata"]["name"]
        ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert VLLM_PORT in {p["containerPort"] for p in ports}
    others = [d for d in deployments if d not in pool_deployments]
    assert {"webapp-chat", "webapp-admin", "vllm-epp"} <= {d["metadata"]["name"] for d in others}
    # Besides the pools, only the default pool's green slot (a vLLM server too, used during a
    # blue/green switch) is scraped; an HPA reads only the pods of its own Deployment.
    scraped = {d["metadata"]["name"] for d in others if labels_match(selector, _pod_labels(d))}
    assert scraped == {"vllm-green"}
    green = find(pooled, "Deployment", "vllm-green")["spec"]["template"]["spec"]["containers"][0]
    assert VLLM_PORT in {p["containerPort"] for p in green["ports"]}


def test_pools_the_admin_page_makes_are_scraped_too(pooled, monitoring):
    """A pool deployed from the admin page is a copy of the base Deployment
    (fleet_objects.pool_deployment): its pods keep the label the PodMonitoring selects."""
    base = find(pooled, "Deployment", "vllm")
    spec = PoolSpec("qwen-pool", "qwen2.5-7b-instruct", replicas=1)
    made = fleet_objects.pool_deployment(base, spec, "Qwen/Qwen2.5-7B-Instruct", 8192)
    assert labels_match(monitoring["spec"]["selector"]["matchLabels"], _pod_labels(made))
    assert not labels_match(base["spec"]["selector"]["matchLabels"], _pod_labels(made))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: s["endpoints"][0].update(interval=15), "is not of type 'string'"),
        (lambda s: s["endpoints"][0].update(scheme="tcp"), "is not one of"),
        (lambda s: s["endpoints"][0].update(intervall="15s"), "Additional properties"),
        (lambda s: s["endpoints"][0].pop("port"), "'port' is a required property"),
        (lambda s: s.pop("selector"), "'selector' is a required property"),
    ],
)
def test_the_schema_check_catches_a_bad_pod_monitoring(monitoring, change, words):
    bad = copy.deepcopy(monitoring)
    change(bad["spec"])
    errors = schema_errors(bad)
    assert any(words in e for e in errors), errors


def test_gke_collectors_may_scrape_the_pools(pooled):
    """The vLLM pods accept connections only from listed peers: Managed Service for
    Prometheus's collectors (gmp-system) are one, on vLLM's port only."""
    ingress = find(pooled, "NetworkPolicy", "vllm-allow-webapp-only")["spec"]["ingress"]
    collector = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gmp-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "collector"}},
    }
    (rule,) = [r for r in ingress if collector in r["from"]]
    assert rule == {"from": [collector], "ports": [{"port": VLLM_PORT, "protocol": "TCP"}]}


# --- the KEDA schema check for ScaledObjects (min 0) ------------------------------------------

# The shape of GKE's "Scale to zero using KEDA" tutorial: a Prometheus trigger on Managed
# Service for Prometheus's query API, authenticated as the KEDA operator (Workload Identity).
SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "vllm-mistral", "namespace": "vllm"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-mistral"},
        "minReplicaCount": 0,
        "maxReplicaCount": 3,
        "cooldownPeriod": 600,
        "triggers": [
            {
                "type": "prometheus",
                "metadata": {
                    "serverAddress": "https://monitoring.googleapis.com/v1/projects/demo-proj"
                    "/location/global/prometheus",
                    "query": 'sum(vllm:num_requests_waiting{namespace="vllm",pod=~"vllm-mistral-.*"})',
                    "threshold": "2",
                },
                "authenticationRef": {"name": "keda-gmp"},
            }
        ],
    },
}
TRIGGER_AUTH = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "TriggerAuthentication",
    "metadata": {"name": "keda-gmp"},
    "spec": {"podIdentity": {"provider": "gcp"}},
}


def test_scale_to_zero_objects_validate():
    assert scaled_object_errors(SCALED_OBJECT) == []
    assert schema_errors(TRIGGER_AUTH) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: s.update(minReplicaCount=-1), "less than the minimum"),
        (lambda s: s.update(minReplicaCount="0"), "is not of type 'integer'"),
        (lambda s: s.update(minReplicas=0), "Additional properties"),
        (lambda s: s.update(triggers=[]), "should be non-empty"),
        (lambda s: s["triggers"][0].pop("metadata"), "'metadata' is a required property"),
        (lambda s: s["triggers"][0]["metadata"].update(threshold=2), "is not of type 'string'"),
        (lambda s: s["triggers"][0]["authenticationRef"].update(kind="Secret"), "is not one of"),
        (lambda s: s.pop("scaleTargetRef"), "'scaleTargetRef' is a required property"),
    ],
)
def test_the_keda_check_catches_a_bad_scaled_object(change, words):
    bad = copy.deepcopy(SCALED_OBJECT)
    change(bad["spec"])
    errors = scaled_object_errors(bad)
    assert any(words in e for e in errors), errors


def test_the_keda_check_refuses_what_is_not_a_scaled_object():
    hpa = {**SCALED_OBJECT, "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"}
    assert scaled_object_errors(hpa) == [
        "not a keda.sh/v1alpha1 ScaledObject: autoscaling/v2 HorizontalPodAutoscaler"
    ]
    assert scaled_object_errors(TRIGGER_AUTH) != []
