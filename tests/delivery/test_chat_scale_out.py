"""The chat tier at scale (k8s/components/chat-scale-out and base/webapp-chat.yaml): every
overlay with the component renders, validates and passes checkov; the HPA drives the chat
Deployment (which no longer fixes its replicas), the PDB covers exactly the chat pods, the
pods spread over zones and nodes, and the PostgreSQL connections of all pods at maxReplicas
fit the max_connections the component documents."""

from __future__ import annotations

import pytest
import yaml

from tests.delivery.helpers import (
    CHECKOV_SKIPS,
    K8S,
    K8S_VERSIONS,
    OVERLAYS,
    assert_schemas_valid,
    checkov,
    container,
    dump,
    env_of,
    failed_checks,
    find,
    labels_match,
    overlay_with_component,
    render,
)

pytestmark = pytest.mark.delivery

COMPONENT = K8S / "components" / "chat-scale-out"
ADDED_KINDS = {"HorizontalPodAutoscaler", "PodDisruptionBudget"}
MAX_CONNECTIONS_ANNOTATION = "llm-console/postgresql-max-connections"
# PostgreSQL keeps superuser_reserved_connections (3) for itself; managed services (Cloud SQL)
# hold a few more for their own maintenance. Rounded up: what the app's pods may not use.
RESERVED_CONNECTIONS = 10


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> dict[str, list[dict]]:
    """overlay name -> rendered objects with the scale-out component."""
    base = tmp_path_factory.mktemp("scale-out")
    return {name: render(overlay_with_component(base / name, name, COMPONENT)) for name in OVERLAYS}


def _surge(deploy: dict) -> int:
    """Extra pods a rolling update of ``deploy`` may run (an absolute maxSurge)."""
    strategy = deploy["spec"].get("strategy", {})
    if strategy.get("type") == "Recreate":
        return 0
    surge = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    assert isinstance(surge, int), f"{deploy['metadata']['name']}: give maxSurge as a number"
    return surge


def _pool(deploy: dict) -> int:
    """PostgreSQL connections one pod of ``deploy`` may open: pool size + overflow, from its
    env, else the settings' defaults (webapp/settings.py)."""
    from webapp.settings import Settings

    env = env_of(container(deploy, "webapp"))
    total = 0
    for name in ("DATABASE_POOL_SIZE", "DATABASE_MAX_OVERFLOW"):
        field = Settings.model_fields[name.lower()]
        total += int(env[name]["value"]) if name in env else field.default
    return total


def connections_needed(objs: list[dict]) -> int:
    """Connections every web app pod may hold at once: the chat at maxReplicas plus a surge
    pod, every other web app at its replicas plus surge; plus the reserved ones."""
    hpa = find(objs, "HorizontalPodAutoscaler", "webapp-chat")
    total = RESERVED_CONNECTIONS
    for d in objs:
        if d["kind"] != "Deployment" or not d["metadata"]["name"].startswith("webapp-"):
            continue
        pods = hpa["spec"]["maxReplicas"] if d["metadata"]["name"] == "webapp-chat" else None
        pods = pods if pods is not None else d["spec"].get("replicas", 1)
        total += (pods + _surge(d)) * _pool(d)
    return total


# --- the component ------------------------------------------------------------------------


def test_component_is_a_kustomize_component():
    doc = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert doc["kind"] == "Component"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_overlay_validates_against_kubernetes_schemas(scaled, tmp_path, overlay, version):
    validated = assert_schemas_valid(scaled[overlay], tmp_path / f"{overlay}.yaml", version)
    assert {"horizontalpodautoscaler/webapp-chat", "poddisruptionbudget/webapp-chat"} <= validated


def test_scaled_overlay_passes_checkov(scaled, tmp_path):
    path = dump(scaled["l4"], tmp_path / "l4-scaled.yaml")
    report = checkov(path, "kubernetes", CHECKOV_SKIPS)
    failed = failed_checks(report)
    assert report["summary"]["passed"] > 100
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_component_adds_hpa_and_pdb_and_drops_the_fixed_count_only(rendered, scaled, overlay):
    """Without the HPA, the PDB and the chat's replicas, the result is the plain overlay."""
    added = [o for o in scaled[overlay] if o["kind"] in ADDED_KINDS]
    assert sorted(o["kind"] for o in added) == sorted(ADDED_KINDS)
    stripped = [o for o in scaled[overlay] if o["kind"] not in ADDED_KINDS]
    plain = yaml.safe_load(yaml.safe_dump(rendered[overlay]))
    chat = find(plain, "Deployment", "webapp-chat")
    assert chat["spec"].pop("replicas") == 1  # the base's one replica (SQLite)
    assert stripped == plain
    assert not [o for o in rendered[overlay] if o["kind"] in ADDED_KINDS]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_drives_the_chat_deployment_on_cpu(scaled, overlay):
    objs = scaled[overlay]
    hpa = find(objs, "HorizontalPodAutoscaler", "webapp-chat")
    chat = find(objs, "Deployment", "webapp-chat")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["namespace"] == chat["metadata"]["namespace"] == "vllm"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": chat["metadata"]["name"],
    }
    # the HPA owns the count: `kubectl apply` must not reset it
    assert "replicas" not in chat["spec"]
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]
    assert target["type"] == "Utilization" and 0 < target["averageUtilization"] < 100
    # utilization is relative to the request: every container of the pod must ask for CPU
    for c in chat["spec"]["template"]["spec"]["containers"]:
        assert c["resources"]["requests"]["cpu"]


def test_hpa_scales_down_slowly_and_up_fast(scaled):
    behavior = find(scaled["l4"], "HorizontalPodAutoscaler", "webapp-chat")["spec"]["behavior"]
    down = behavior["scaleDown"]
    # a removed pod closes its sessions' websockets: wait, then one pod at a time
    assert down["stabilizationWindowSeconds"] >= 300
    assert down["selectPolicy"] == "Min"
    assert {"type": "Pods", "value": 1, "periodSeconds": 300} in down["policies"]
    up = behavior["scaleUp"]
    assert up["stabilizationWindowSeconds"] == 0
    assert all(p["periodSeconds"] <= 60 for p in up["policies"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_covers_exactly_the_chat_pods(scaled, overlay):
    objs = scaled[overlay]
    pdb = find(objs, "PodDisruptionBudget", "webapp-chat")
    hpa = find(objs, "HorizontalPodAutoscaler", "webapp-chat")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["metadata"]["namespace"] == "vllm"
    selector = pdb["spec"]["selector"]["matchLabels"]
    covered = [
        d["metadata"]["name"]
        for d in objs
        if d["kind"] == "Deployment"
        and labels_match(selector, d["spec"]["template"]["metadata"]["labels"])
    ]
    assert covered == ["webapp-chat"]
    # one pod at a time, and at the HPA's minimum one always serves
    assert pdb["spec"]["maxUnavailable"] == 1 < hpa["spec"]["minReplicas"]
    assert "minAvailable" not in pdb["spec"]


# --- the chat Deployment (base): spread, pool, resources ----------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_chat_pods_spread_over_zones_and_nodes(rendered, overlay):
    chat = find(rendered[overlay], "Deployment", "webapp-chat")
    pod_labels = chat["spec"]["template"]["metadata"]["labels"]
    spread = {
        c["topologyKey"]: c for c in chat["spec"]["template"]["spec"]["topologySpreadConstraints"]
    }
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in spread.values():
        assert c["maxSkew"] == 1
        assert labels_match(c["labelSelector"]["matchLabels"], pod_labels)
        # old and new ReplicaSets of a rolling update are spread each on its own
        assert c["matchLabelKeys"] == ["pod-template-hash"]
    # a zone short of nodes must not block a scale-out; nodes are spread for real, and
    # tainted nodes (the GPU pool) do not count as places the chat could go
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    node = spread["kubernetes.io/hostname"]
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    assert node["nodeTaintsPolicy"] == "Honor"


def test_chat_pool_settings_are_settings_of_the_app(rendered):
    """The env names are fields of webapp/settings.py and their values pass its validation."""
    from webapp.settings import Settings

    env = env_of(container(find(rendered["l4"], "Deployment", "webapp-chat"), "webapp"))
    values = {n.lower(): env[n]["value"] for n in ("DATABASE_POOL_SIZE", "DATABASE_MAX_OVERFLOW")}
    settings = Settings(**values)
    assert settings.database_pool_size + settings.database_max_overflow == 10


def test_chat_cpu_request_and_limit(rendered):
    res = container(find(rendered["l4"], "Deployment", "webapp-chat"), "webapp")["resources"]

    def cores(q: str) -> float:
        return int(q[:-1]) / 1000 if q.endswith("m") else float(q)

    # one Python process uses about one core: that is what a replica asks for (the HPA's
    # utilization is relative to it); the limit is above it, for bursts
    assert cores(res["requests"]["cpu"]) == 1
    assert cores(res["limits"]["cpu"]) > cores(res["requests"]["cpu"])


# --- PostgreSQL connections at maxReplicas ------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_connections_at_max_replicas_fit_the_documented_max_connections(scaled, overlay):
    objs = scaled[overlay]
    hpa = find(objs, "HorizontalPodAutoscaler", "webapp-chat")
    documented = int(hpa["metadata"]["annotations"][MAX_CONNECTIONS_ANNOTATION])
    assert connections_needed(objs) <= documented
    # the component's comment names the same number
    assert f"({documented})" in (COMPONENT / "kustomization.yaml").read_text()


@pytest.mark.parametrize(
    ("max_replicas", "chat_pool", "fits"),
    [
        (10, ("5", "5"), True),  # (10 + 1) x 10 + admin (1 + 1) x 15 + 10 = 150
        (15, ("5", "5"), True),  # 16 x 10 + 30 + 10 = 200, the limit
        (16, ("5", "5"), False),  # 17 x 10 + 30 + 10 = 210
        (10, ("10", "10"), False),  # 11 x 20 + 30 + 10 = 260
        (20, ("5", "5"), False),  # 21 x 10 + 30 + 10 = 250
    ],
)
def test_the_connection_count_really_counts(scaled, max_replicas, chat_pool, fits):
    objs = yaml.safe_load(yaml.safe_dump(scaled["l4"]))
    find(objs, "HorizontalPodAutoscaler", "webapp-chat")["spec"]["maxReplicas"] = max_replicas
    env = env_of(container(find(objs, "Deployment", "webapp-chat"), "webapp"))
    env["DATABASE_POOL_SIZE"]["value"], env["DATABASE_MAX_OVERFLOW"]["value"] = chat_pool
    needed = connections_needed(objs)
    assert needed == (max_replicas + 1) * sum(map(int, chat_pool)) + 2 * 15 + 10
    assert (needed <= 200) is fits
