"""The fleet of model pools (webapp.cluster.fleet) against the fake API server, through the
real kubernetes client, seeded with the manifests we ship (tests/support/fleet.py)."""

from __future__ import annotations

import threading

import pytest

from tests.support.fleet import CATALOG, seed_fleet
from webapp.cluster import fleet, fleet_scaling
from webapp.cluster.errors import (
    FleetNotInstalled,
    Forbidden,
    InvalidAutoscaling,
    InvalidModelSpec,
    InvalidPool,
    ModelAlreadyServed,
    ModelNotRouted,
    PoolExists,
    PoolInUse,
    PoolNotFound,
    SwitchInProgress,
)
from webapp.cluster.fleet_objects import WAITING_METRIC, Autoscaling
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock, lock_name
from webapp.cluster.pools import Backend, PoolSpec

NS = "vllm"
MISTRAL = dict(hf_repo="mistralai/Mistral-7B-v0.1", max_model_len=8192, catalog_ids=CATALOG)
WRITES = ("create", "update", "patch", "delete")


@pytest.fixture
def seeded(fake, cluster):
    seed_fleet(fake, NS)
    return fake


def create_mistral(cluster, name="vllm-mistral", **kw):
    return fleet.create_pool(cluster, NS, PoolSpec(name, "mistral-7b", **kw), **MISTRAL)


def writes(fake) -> list:
    return [r for r in fake.requests if r.verb in WRITES]


def stored_names(fake) -> set[tuple[str, str]]:
    """(resource, name) of every object but those the controllers make (pods, events ...)."""
    with fake.lock:
        return {(res, k[1]) for res, objs in fake.objects.items()
                if res not in ("events", "pods", "replicasets") for k in objs}  # fmt: skip


def test_the_default_pool_is_listed_with_its_model_gpus_and_route(seeded, cluster):
    (pool,) = fleet.list_pools(cluster, NS)
    assert (pool.name, pool.model, pool.gpu_type, pool.gpus_per_replica) == (
        "vllm", "llama-2-7b", "nvidia-l4", 1)  # fmt: skip
    assert (pool.replicas, pool.ready, pool.autoscaling) == (1, 1, None)
    assert pool.backends == (Backend("vllm", 100),)
    assert pool.hf_repo == "meta-llama/Llama-2-7b-hf"
    assert pool.image.startswith("vllm/vllm-openai:")
    assert fleet.served_models(cluster, NS) == ["llama-2-7b"]


def test_a_new_pool_serves_its_model_beside_the_default(seeded, cluster):
    pool = create_mistral(cluster, replicas=1)
    assert (pool.name, pool.model, pool.replicas) == ("vllm-mistral", "mistral-7b", 1)
    assert seeded.wait_for(lambda f: f.served_models(NS) == ["llama-2-7b", "mistral-7b"], 10)
    assert fleet.served_models(cluster, NS) == ["llama-2-7b", "mistral-7b"]
    dep = seeded.get("deployments", "vllm-mistral", NS)
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["--model=mistralai/Mistral-7B-v0.1", "--served-model-name=mistral-7b",
                        "--max-model-len=8192"]  # fmt: skip
    assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "vllm-mistral"
    cache = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache"]
    assert cache == [{"name": "model-cache", "emptyDir": {"sizeLimit": "60Gi"}}]
    epp = seeded.get("deployments", "vllm-mistral-epp", NS)
    epp_args = epp["spec"]["template"]["spec"]["containers"][0]["args"]
    assert epp_args[epp_args.index("--pool-name") + 1] == "vllm-mistral"
    assert seeded.get("services", "vllm-mistral-epp", NS)["spec"]["selector"] == {
        "inferencepool": "vllm-mistral-epp"}  # fmt: skip
    hc = seeded.get("healthcheckpolicies", "vllm-mistral", NS)
    assert hc["spec"]["targetRef"]["name"] == "vllm-mistral"
    route = seeded.get("httproutes", "llm-models", NS)
    conditions = {c["type"]: c["status"] for c in route["status"]["parents"][0]["conditions"]}
    assert conditions == {"Accepted": "True", "ResolvedRefs": "True"}
    names = [p.name for p in fleet.list_pools(cluster, NS)]
    assert names == ["vllm", "vllm-mistral"]


@pytest.mark.parametrize(
    ("spec", "extra", "error", "field"),
    [
        (PoolSpec("Vllm_Mistral", "mistral-7b"), {}, InvalidPool, "name"),
        (PoolSpec("vllm-x", "not-in-catalog"), {}, InvalidPool, "model"),
        (PoolSpec("vllm-x", "mistral-7b", replicas=1, min_replicas=3, max_replicas=2), {},
         InvalidPool, "min_replicas"),
        (PoolSpec("vllm-x", "mistral-7b"), {"max_model_len": 0}, InvalidModelSpec, None),
        (PoolSpec("vllm-x", "mistral-7b"), {"hf_repo": "a b"}, InvalidModelSpec, None),
        (PoolSpec("vllm-x", "llama-2-7b"), {}, ModelAlreadyServed, None),
        (PoolSpec("vllm", "mistral-7b"), {}, PoolExists, None),
        (PoolSpec("vllm-green", "mistral-7b"), {}, None, None),  # a Deployment, not a pool
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_nothing_written(seeded, cluster, spec, extra, error, field):
    if error is None:  # a Deployment of that name exists: the name is taken all the same
        seeded.create(
            "deployments",
            {
                **seeded.get("deployments", "vllm", NS),
                "metadata": {"name": "vllm-green", "labels": {}},
            },
            NS,
        )
        error = PoolExists
    before = stored_names(seeded)
    seeded.reset_counts()
    with pytest.raises(error) as exc:
        fleet.create_pool(cluster, NS, spec, **{**MISTRAL, **extra})
    assert writes(seeded) == []
    assert stored_names(seeded) == before
    if field:
        assert exc.value.field == field
    assert str(exc.value)


def test_a_create_whose_later_write_fails_leaves_nothing(seeded, cluster):
    before = stored_names(seeded)
    seeded.forbid("create", "inferencepools")
    with pytest.raises(Forbidden) as exc:
        create_mistral(cluster)
    assert exc.value.operation == "create_namespaced_custom_object"
    created = [r for r in writes(seeded) if r.verb == "create"]
    assert {r.resource for r in created} >= {"deployments", "configmaps", "services"}
    assert stored_names(seeded) == before
    assert fleet.served_models(cluster, NS) == ["llama-2-7b"]


def test_a_route_write_that_fails_removes_the_pool_it_created(seeded, cluster):
    seeded.forbid("update", "httproutes")
    with pytest.raises(Forbidden):
        create_mistral(cluster)
    assert seeded.get("inferencepools", "vllm-mistral", NS) is None
    assert seeded.get("deployments", "vllm-mistral", NS) is None
    assert seeded.get("deployments", "vllm-mistral-epp", NS) is None


def test_remove_takes_away_every_object_of_the_pool(seeded, cluster):
    before = stored_names(seeded)
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 1, 2, 5)
    fleet.remove_pool(cluster, NS, "vllm-mistral")
    assert stored_names(seeded) == before
    assert fleet.served_models(cluster, NS) == ["llama-2-7b"]
    with pytest.raises(PoolNotFound):
        fleet.remove_pool(cluster, NS, "vllm-mistral")


def create_canary(cluster, name: str = "canary") -> None:
    """A second pool serving mistral-7b (a newer revision), beside "vllm-mistral"."""
    fleet.create_pool(cluster, NS, PoolSpec(name, "mistral-7b"), canary=True,
                      **{**MISTRAL, "hf_repo": "mistralai/Mistral-7B-v0.3"})  # fmt: skip


def create_qwen(cluster) -> None:
    fleet.create_pool(cluster, NS, PoolSpec("qwen", "qwen2-7b"),
                      **{**MISTRAL, "hf_repo": "Qwen/Qwen2-7B-Instruct"})  # fmt: skip


def test_remove_refuses_the_default_pool_and_a_pool_in_a_canary(seeded, cluster):
    with pytest.raises(PoolInUse, match="default pool"):
        fleet.remove_pool(cluster, NS, "vllm")
    create_mistral(cluster)
    create_canary(cluster)
    fleet.set_split(cluster, NS, "mistral-7b", [Backend("vllm-mistral", 90), Backend("canary", 10)])
    seeded.reset_counts()
    for pool in ("canary", "vllm-mistral"):
        with pytest.raises(PoolInUse, match="roll back that canary"):
            fleet.remove_pool(cluster, NS, pool)
    assert writes(seeded) == []


def test_set_split_moves_the_weights_and_refuses_bad_ones(seeded, cluster):
    create_mistral(cluster)
    create_canary(cluster)
    create_qwen(cluster)
    split = [Backend("vllm-mistral", 75), Backend("canary", 25)]
    fleet.set_split(cluster, NS, "mistral-7b", split)
    pools = {p.name: p for p in fleet.list_pools(cluster, NS)}
    assert pools["vllm-mistral"].backends == tuple(split)
    assert pools["canary"].backends == tuple(split)
    seeded.reset_counts()
    for bad, error in (
        ([Backend("vllm-mistral", 70), Backend("canary", 20)], InvalidPool),
        ([Backend("vllm-mistral", 50), Backend("No_Such", 50)], InvalidPool),
        ([Backend("vllm-mistral", 50), Backend("absent", 50)], PoolNotFound),
        ([Backend("vllm-mistral", 50), Backend("qwen", 50)], InvalidPool),  # serves qwen2-7b
    ):
        with pytest.raises(error):
            fleet.set_split(cluster, NS, "mistral-7b", bad)
    with pytest.raises(ModelNotRouted):
        fleet.set_split(cluster, NS, "falcon-7b", [Backend("qwen", 100)])
    assert writes(seeded) == []


def test_set_split_retries_when_the_route_changed_meanwhile(seeded, cluster, monkeypatch):
    create_mistral(cluster)
    create_canary(cluster)
    create_qwen(cluster)
    real = fleet.read_route
    reads = []

    def read_then_someone_writes(c, ns):
        route = real(c, ns)
        reads.append(1)
        if len(reads) == 2:  # the read before our write: another admin's write lands now
            fleet.set_split(c, ns, "qwen2-7b", [Backend("qwen", 100)])
        return route

    monkeypatch.setattr(fleet, "read_route", read_then_someone_writes)
    seeded.reset_counts()
    split = [Backend("vllm-mistral", 95), Backend("canary", 5)]
    fleet.set_split(cluster, NS, "mistral-7b", split)
    conflicts = [r for r in seeded.requests if r.verb == "update" and r.resource == "httproutes"]
    assert len(conflicts) == 3  # the racing write, ours refused (409), ours again
    pools = {p.name: p for p in fleet.list_pools(cluster, NS)}
    assert pools["vllm-mistral"].backends == tuple(split)


def test_scale_and_wake_through_the_scale_subresource(seeded, cluster):
    create_mistral(cluster)
    fleet_scaling.scale_pool(cluster, NS, "vllm-mistral", 0)
    assert seeded.wait_for(lambda f: "mistral-7b" not in f.served_models(NS), 5)
    (asleep,) = [p for p in fleet.list_pools(cluster, NS) if p.name == "vllm-mistral"]
    assert asleep.asleep
    seeded.reset_counts()
    assert fleet_scaling.wake_pool(cluster, NS, "mistral-7b") == "vllm-mistral"
    assert seeded.request_counts[("patch", "deployments/scale")] == 1
    assert seeded.wait_for(lambda f: "mistral-7b" in f.served_models(NS), 5)
    assert fleet_scaling.wake_pool(cluster, NS, "mistral-7b") == "vllm-mistral"  # awake: no write
    assert seeded.request_counts[("patch", "deployments/scale")] == 1
    with pytest.raises(ModelNotRouted):
        fleet_scaling.wake_pool(cluster, NS, "falcon-7b")
    for bad in (-1, 65, True, 1.5):
        with pytest.raises(InvalidAutoscaling):
            fleet_scaling.scale_pool(cluster, NS, "vllm-mistral", bad)
    with pytest.raises(PoolNotFound):
        fleet_scaling.scale_pool(cluster, NS, "webapp-chat", 3)  # only pools are scaled


def test_autoscaling_writes_an_hpa_on_the_queue_depth(seeded, cluster):
    create_mistral(cluster)
    scaling = fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 0, 3, 4)
    assert scaling == Autoscaling(0, 3, 4.0, scale_to_zero=True)
    hpa = seeded.get("horizontalpodautoscalers", "vllm-mistral", NS)
    assert hpa["spec"]["minReplicas"] == 1  # GKE's HPA cannot go to 0: the wish is noted
    assert hpa["metadata"]["annotations"] == {"llm-console/scale-to-zero": "true"}
    metric = hpa["spec"]["metrics"][0]["pods"]
    assert metric["metric"]["name"] == WAITING_METRIC
    assert metric["target"] == {"type": "AverageValue", "averageValue": "4"}
    (pool,) = [p for p in fleet.list_pools(cluster, NS) if p.name == "vllm-mistral"]
    assert pool.autoscaling == scaling
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 1, 2, 2.5)  # replaces it
    hpa = seeded.get("horizontalpodautoscalers", "vllm-mistral", NS)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    assert not hpa["metadata"].get("annotations")
    fleet_scaling.clear_autoscaling(cluster, NS, "vllm-mistral")
    assert seeded.get("horizontalpodautoscalers", "vllm-mistral", NS) is None


@pytest.mark.parametrize(
    ("lo", "hi", "target"),
    [(3, 2, 5), (-1, 2, 5), (0, 0, 5), (1, 65, 5), (1, 2, 0), (1, 2, -3), (1, 2, "5"),
     (1.5, 2, 5), (True, 2, 5)],
)  # fmt: skip
def test_bad_autoscaling_is_refused_with_nothing_written(seeded, cluster, lo, hi, target):
    seeded.reset_counts()
    with pytest.raises(InvalidAutoscaling) as exc:
        fleet_scaling.set_autoscaling(cluster, NS, "vllm", lo, hi, target)
    assert exc.value.message and seeded.requests == []


def test_the_hpa_scales_the_pool_on_the_metric_and_pauses_at_zero(seeded, cluster):
    create_mistral(cluster)
    fleet_scaling.set_autoscaling(cluster, NS, "vllm-mistral", 0, 3, 4)
    seeded.set_metric(NS, "vllm-mistral", 10)  # 1 replica * 10 / 4 -> 3 (ceil)
    dep = lambda f: f.get("deployments", "vllm-mistral", NS)["spec"]["replicas"]  # noqa: E731
    assert seeded.wait_for(lambda f: dep(f) == 3, 5)
    status = seeded.get("horizontalpodautoscalers", "vllm-mistral", NS)["status"]
    assert status["desiredReplicas"] == 3
    seeded.set_metric(NS, "vllm-mistral", 0.5)  # 3 * 0.5 / 4 -> 1 (the minimum)
    assert seeded.wait_for(lambda f: dep(f) == 1, 5)
    fleet_scaling.scale_pool(cluster, NS, "vllm-mistral", 0)  # asleep: the HPA does not act on 0
    seeded.set_metric(NS, "vllm-mistral", 40)
    hpa = seeded.get("horizontalpodautoscalers", "vllm-mistral", NS)
    active = {c["type"]: c for c in hpa["status"]["conditions"]}["ScalingActive"]
    assert (active["status"], active["reason"]) == ("False", "ScalingDisabled")
    assert dep(seeded) == 0
    fleet_scaling.wake_pool(cluster, NS, "mistral-7b")  # awake again: the HPA takes over
    assert seeded.wait_for(lambda f: dep(f) == 3, 5)


def test_a_lease_per_pool(seeded, cluster):
    a = acquire_lock(cluster, NS, "alice@example.com", pool="vllm-mistral")
    b = acquire_lock(cluster, NS, "bob@example.com", pool="qwen")  # another pool: fine
    with pytest.raises(SwitchInProgress) as exc:
        acquire_lock(cluster, NS, "bob@example.com", pool="vllm-mistral")
    assert (exc.value.holder, exc.value.pool) == ("alice@example.com", "vllm-mistral")
    assert seeded.get("leases", lock_name("vllm-mistral"), NS)
    assert lock_name() == "vllm-switch-lock"  # the default pool keeps the switch's Lease
    a.release()
    b.release()
    acquire_lock(cluster, NS, "bob@example.com", pool="vllm-mistral").release()


def test_two_admins_create_two_pools_at_once(seeded, cluster):
    errors: list[Exception] = []

    def create(name, model, repo):
        try:
            fleet.create_pool(cluster, NS, PoolSpec(name, model), **{**MISTRAL, "hf_repo": repo})
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=create, args=("vllm-mistral", "mistral-7b", "mistralai/M-7B")),
        threading.Thread(target=create, args=("qwen", "qwen2-7b", "Qwen/Qwen2-7B-Instruct")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fleet.served_models(cluster, NS) == ["llama-2-7b", "mistral-7b", "qwen2-7b"] or (
        fleet.served_models(cluster, NS) == ["llama-2-7b", "qwen2-7b", "mistral-7b"]
    )


def test_a_cluster_without_the_gateway_says_what_to_install(fake, cluster):
    with pytest.raises(FleetNotInstalled) as exc:
        fleet.served_models(cluster, NS)
    assert "k8s/components/inference-gateway" in exc.value.message
    with pytest.raises(FleetNotInstalled):
        fleet.list_pools(cluster, NS)


def test_a_pool_without_its_default_picker_is_refused_with_nothing_written(seeded, cluster):
    seeded.objects["configmaps"].pop((NS, "vllm-epp"))
    seeded.reset_counts()
    with pytest.raises(FleetNotInstalled, match="vllm-epp"):
        create_mistral(cluster)
    assert writes(seeded) == []


def test_a_pool_the_gpus_cannot_hold_is_listed_not_ready(one_node):
    seed_fleet(one_node, NS)  # the default pool takes the only GPU
    cluster = connect(one_node.kubeconfig_path)
    create_mistral(cluster)
    assert one_node.wait_for(
        lambda f: any(
            c.get("reason") == "Unschedulable"
            for p in f.list("pods", NS, "app.kubernetes.io/name=vllm-mistral")
            for c in p["status"].get("conditions") or []
        ),
        5,
    )
    (pool,) = [p for p in fleet.list_pools(cluster, NS) if p.name == "vllm-mistral"]
    assert (pool.replicas, pool.ready, pool.asleep) == (1, 0, False)


def test_a_canary_pool_takes_traffic_only_by_split_and_can_replace_the_stable_one(seeded, cluster):
    seeded.add_node("gpu-c")  # a GPU for the canary's replica
    create_mistral(cluster)
    spec = PoolSpec("vllm-mistral-v2", "mistral-7b")
    canary = fleet.create_pool(cluster, NS, spec, canary=True,
                               **{**MISTRAL, "hf_repo": "mistralai/Mistral-7B-v0.3"})  # fmt: skip
    assert canary.backends == (Backend("vllm-mistral", 100),)  # no traffic yet
    assert seeded.wait_for(lambda f: f.served_models(NS).count("mistral-7b") == 2, 10)
    for share in (5, 25, 50):
        split = [Backend("vllm-mistral", 100 - share), Backend("vllm-mistral-v2", share)]
        fleet.set_split(cluster, NS, "mistral-7b", split)
    fleet.set_split(cluster, NS, "mistral-7b", [Backend("vllm-mistral-v2", 100)])  # promote
    fleet.remove_pool(cluster, NS, "vllm-mistral")
    assert fleet.served_models(cluster, NS) == ["llama-2-7b", "mistral-7b"]
    pools = {p.name: p for p in fleet.list_pools(cluster, NS)}
    assert set(pools) == {"vllm", "vllm-mistral-v2"}
    assert pools["vllm-mistral-v2"].backends == (Backend("vllm-mistral-v2", 100),)


def test_a_canary_of_a_model_nobody_serves_is_refused(seeded, cluster):
    seeded.reset_counts()
    with pytest.raises(ModelNotRouted):
        fleet.create_pool(cluster, NS, PoolSpec("x", "mistral-7b"), canary=True, **MISTRAL)
    assert writes(seeded) == []
