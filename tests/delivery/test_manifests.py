"""k8s/: every overlay renders, validates against the Kubernetes schemas, passes checkov, and
has the properties the issue asks for (asserted on the rendered objects)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.delivery.helpers import (
    CHECKOV_SKIPS,
    K8S_VERSIONS,
    OVERLAY_GPUS,
    OVERLAYS,
    arg_map,
    assert_schemas_valid,
    checkov,
    container,
    dump,
    env_of,
    failed_checks,
    find,
    find_prefix,
    kubernetes_validate,
    labels_match,
    printed_commands,
    run_script,
)
from webapp.settings import Settings

pytestmark = pytest.mark.delivery


# --- schema validation -------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(rendered, tmp_path, overlay, version):
    assert_schemas_valid(rendered[overlay], tmp_path / f"{overlay}.yaml", version)


def test_schema_validation_rejects_a_misspelt_field(tmp_path):
    """The validator really checks fields (strict mode): a typo must fail."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x:1", "imagePullPolicyy": "x"}]},
            },
        },
    }
    out = kubernetes_validate(dump([bad], tmp_path / "bad.yaml"), K8S_VERSIONS[0])
    assert out.returncode != 0


# --- checkov ------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_checkov(rendered, tmp_path, overlay):
    path = dump(rendered[overlay], tmp_path / f"{overlay}.yaml")
    report = checkov(path, "kubernetes", CHECKOV_SKIPS)
    failed = failed_checks(report)
    assert report["summary"]["resource_count"] >= len(rendered[overlay]) - 1
    assert report["summary"]["passed"] > 100
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


def test_checkov_exceptions_carry_a_reason(rendered):
    for o in rendered["l4"]:
        for key, value in o["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), value
                assert len(reason) > 15, f"{o['metadata']['name']}: {value} needs a reason"


def test_checkov_finds_a_root_container(tmp_path):
    """checkov really runs: a privileged root pod must fail."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bad", "namespace": "x"},
        "spec": {
            "containers": [{"name": "x", "image": "x:1", "securityContext": {"privileged": True}}]
        },
    }
    report = checkov(dump([pod], tmp_path / "bad.yaml"), "kubernetes", CHECKOV_SKIPS)
    assert report["summary"]["failed"] > 0


# --- vLLM Deployment ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_deployment(rendered, overlay):
    objs = rendered[overlay]
    d = find(objs, "Deployment", "vllm")
    spec, pod = d["spec"], d["spec"]["template"]["spec"]
    accelerator, gpus = OVERLAY_GPUS[overlay]

    assert labels_match(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    assert spec["strategy"] == {"type": "Recreate"}
    assert pod["enableServiceLinks"] is False
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": accelerator}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]

    c = container(d, "vllm")
    # a release tag, and its digest once scripts/pin_images.sh ran (test_images.py)
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?", c["image"]), c[
        "image"
    ]
    assert all(isinstance(x, str) for x in c["command"] + c["args"])
    args = arg_map(c["args"])
    for flag in (
        "--model",
        "--served-model-name",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--tensor-parallel-size",
    ):
        assert args.get(flag), f"{flag} missing"
    assert args["--port"] == "8000"
    assert int(args["--tensor-parallel-size"]) == gpus
    assert 0.5 <= float(args["--gpu-memory-utilization"]) <= 0.95
    # the console names the served model from the args; the annotation says the same (9.1)
    annotations = spec["template"]["metadata"].get("annotations") or {}
    assert annotations.get("llm-console/model") == args["--served-model-name"]

    res = c["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == str(gpus)
    assert res["requests"]["cpu"] and res["requests"]["memory"]
    assert res["limits"]["memory"]

    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_volumes_shm_and_model_cache(rendered, overlay):
    objs = rendered[overlay]
    d = find(objs, "Deployment", "vllm")
    c = container(d, "vllm")
    volumes = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}

    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"]

    hf_home = env_of(c)["HF_HOME"]["value"]
    cache_mount = next(p for p in mounts if hf_home.startswith(p + "/"))
    claim = volumes[mounts[cache_mount]]["persistentVolumeClaim"]["claimName"]
    pvc = find(objs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["resources"]["requests"]["storage"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hf_token_only_from_a_secret(rendered, overlay):
    objs = rendered[overlay]
    c = container(find(objs, "Deployment", "vllm"), "vllm")
    token = env_of(c)["HF_TOKEN"]
    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"]["name"] == "huggingface"
    assert token["valueFrom"]["secretKeyRef"]["key"] == "HF_TOKEN"
    # Never committed: no Secret object, no token-like value anywhere in the manifests.
    assert not [o for o in objs if o["kind"] == "Secret"]
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        assert "HF_TOKEN" not in cm.get("data", {})
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", yaml.safe_dump_all(objs))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_vllm_probes_and_time_budgets(rendered, overlay):
    d = find(rendered[overlay], "Deployment", "vllm")
    c = container(d, "vllm")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
        assert c[probe]["httpGet"]["port"] in ("http", 8000)
    startup = c["startupProbe"]
    budget = startup.get("initialDelaySeconds", 0) + (
        startup["periodSeconds"] * startup["failureThreshold"]
    )
    # Model download + load: at least 20 minutes before the kubelet gives up.
    assert budget >= 20 * 60
    # The rollout deadline covers node scale-up and image pull on top of that budget.
    assert d["spec"]["progressDeadlineSeconds"] >= budget + 10 * 60
    pod = d["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert c["lifecycle"]["preStop"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("slot", ["vllm", "vllm-green"])
def test_vllm_service_and_network_policy(rendered, overlay, slot):
    objs = rendered[overlay]
    vllm_labels = find(objs, "Deployment", slot)["spec"]["template"]["metadata"]["labels"]
    svc = find(objs, "Service", "vllm")
    assert svc["spec"]["type"] == "ClusterIP"
    assert labels_match(svc["spec"]["selector"], vllm_labels) is (slot == "vllm")
    assert [p["port"] for p in svc["spec"]["ports"]] == [8000]

    webapp_labels = [
        find(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        for name in ("webapp-chat", "webapp-admin")
    ]
    policies = [
        p
        for p in objs
        if p["kind"] == "NetworkPolicy"
        and labels_match(p["spec"]["podSelector"]["matchLabels"], vllm_labels)
    ]
    assert len(policies) == 1
    np = policies[0]
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "only pods, no namespace or IP ranges"
    selector = peer["podSelector"]["matchLabels"]
    assert all(labels_match(selector, labels) for labels in webapp_labels)
    assert not labels_match(selector, vllm_labels)
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]


# --- web apps -----------------------------------------------------------------------------

WEBAPPS = [
    ("webapp-chat", "chat", "/_stcore/health"),
    ("webapp-admin", "admin", "/admin/_stcore/health"),
]


@pytest.mark.parametrize(("name", "mode", "health"), WEBAPPS)
def test_webapp_is_locked_down(rendered, name, mode, health):
    objs = rendered["l4"]
    d = find(objs, "Deployment", name)
    pod = d["spec"]["template"]["spec"]
    c = container(d, "webapp")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in volumes[tmp["name"]]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == health
    if mode == "admin":
        # the startup probe runs the script once, which warms the admin page's imports
        assert c["startupProbe"]["httpGet"]["path"] == "/admin/_stcore/script-health-check"
        assert env_of(c)["STREAMLIT_SERVER_SCRIPT_HEALTH_CHECK_ENABLED"]["value"] == "true"
    else:
        assert c["startupProbe"]["httpGet"]["path"] == health
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
    assert env_of(c)["APP_MODE"]["value"] == mode
    # Settings come from the generated ConfigMap; LLM_URL points at the vLLM Service port.
    cm_name = c["envFrom"][0]["configMapRef"]["name"]
    cm = find(objs, "ConfigMap", cm_name)["data"]
    assert cm["LLM_URL"] == "http://vllm:8000"
    assert cm["DATABASE_URL"].startswith("sqlite:////tmp/")


def test_chat_holds_no_cluster_credentials(rendered):
    objs = rendered["l4"]
    pod = find(objs, "Deployment", "webapp-chat")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    sa = pod["serviceAccountName"]
    assert find(objs, "ServiceAccount", sa)["automountServiceAccountToken"] is False
    bound = [
        s["name"]
        for o in objs
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        for s in o["subjects"]
    ]
    assert sa not in bound


# What the admin console calls (webapp/cluster), and nothing more; test_rbac.py runs the
# console under these rules. (group, resource, verbs, resourceNames or None)
ADMIN_ROLE = [
    ("apps", "deployments", ["get", "patch"], ["vllm", "vllm-green"]),
    ("apps", "replicasets", ["list"], None),
    ("", "pods", ["list"], None),
    ("", "events", ["list"], None),
    ("", "pods/log", ["get"], None),
    ("", "services", ["get", "patch"], ["vllm"]),
    ("coordination.k8s.io", "leases", ["create"], None),
    ("coordination.k8s.io", "leases", ["get", "update"], ["vllm-switch-lock"]),
]
ADMIN_CLUSTER_ROLE = [("", "nodes", ["list"], None)]


def _rule_table(rules: list[dict]) -> list[tuple]:
    return sorted(
        (g, res, sorted(r["verbs"]), r.get("resourceNames"))
        for r in rules
        for g in r["apiGroups"]
        for res in r["resources"]
    )


def test_admin_rbac_is_least_privilege(rendered):
    objs = rendered["l4"]
    pod = find(objs, "Deployment", "webapp-admin")["spec"]["template"]["spec"]
    sa = find(objs, "ServiceAccount", pod["serviceAccountName"])
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
        ".iam.gserviceaccount.com"
    )
    binding = find(objs, "RoleBinding", "llm-console-admin")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "vllm"}
    ]
    rules = find(objs, "Role", binding["roleRef"]["name"])["rules"]
    assert _rule_table(rules) == sorted(ADMIN_ROLE)
    # No Deployment may be created: a token that can could mount any Secret of the namespace.
    assert not [r for r in rules if "create" in r["verbs"] and "deployments" in r["resources"]]
    cluster_binding = find(objs, "ClusterRoleBinding", "llm-console-node-reader")
    assert cluster_binding["subjects"][0]["name"] == sa["metadata"]["name"]
    cluster_rules = find(objs, "ClusterRole", cluster_binding["roleRef"]["name"])["rules"]
    # read-only nodes; pods are never listed cluster-wide
    assert _rule_table(cluster_rules) == ADMIN_CLUSTER_ROLE
    bound = {
        (b["kind"], b["roleRef"]["name"])
        for b in objs
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
    }
    assert bound == {
        ("RoleBinding", "llm-console-admin"),
        ("ClusterRoleBinding", "llm-console-node-reader"),
        ("ClusterRoleBinding", "llm-console-dcgm-reader"),
    }
    # GPU telemetry: get on the proxy of the one DCGM exporter Service the settings name
    dcgm_binding = find(objs, "ClusterRoleBinding", "llm-console-dcgm-reader")
    assert dcgm_binding["subjects"][0]["name"] == sa["metadata"]["name"]
    dcgm_rules = find(objs, "ClusterRole", dcgm_binding["roleRef"]["name"])["rules"]
    fields = Settings.model_fields
    exporter = f"{fields['dcgm_exporter_service'].default}:{fields['dcgm_exporter_port'].default}"
    assert _rule_table(dcgm_rules) == [("", "services/proxy", ["get"], [exporter])]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_blue_green_slot_is_shipped_stopped_as_the_console_computes_it(rendered, overlay):
    """The console only patches vllm and vllm-green (no create): the manifests ship the
    green slot at zero replicas, with the name, selector and labels the console computes
    from the blue one, and the same pod (overlays patch both slots)."""
    from webapp.cluster import patches as pt

    objs = rendered[overlay]
    blue = find(objs, "Deployment", "vllm")
    assert pt.other_slot_name("vllm", "vllm") == "vllm-green"
    green = find(objs, "Deployment", "vllm-green")
    expected = pt.idle_slot(blue, "vllm")
    assert green["spec"] == expected["spec"]
    assert green["spec"]["replicas"] == 0
    assert green["metadata"]["labels"] == expected["metadata"]["labels"]
    # the Service selects blue; the switch flips it to exactly green's selector
    svc = find(objs, "Service", "vllm")
    assert svc["spec"]["selector"] == blue["spec"]["selector"]["matchLabels"]
    assert not labels_match(
        svc["spec"]["selector"], green["spec"]["template"]["metadata"]["labels"]
    )


def test_namespace_has_pod_security_labels(rendered):
    ns = find(rendered["l4"], "Namespace", "vllm")
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert {o["metadata"].get("namespace") for o in rendered["l4"] if o["kind"] != "Namespace"} <= {
        "vllm",
        None,
    }


# --- Ingress ------------------------------------------------------------------------------


def test_ingress_backends_have_websocket_timeout_affinity_and_health_checks(rendered):
    objs = rendered["l4"]
    ing = find(objs, "Ingress", "webapp")
    ann = ing["metadata"]["annotations"]
    assert ann["kubernetes.io/ingress.class"] == "gce"
    assert ann["kubernetes.io/ingress.global-static-ip-name"] == "llm-chat-ip"

    services = {ing["spec"]["defaultBackend"]["service"]["name"]}
    paths = {}
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            services.add(p["backend"]["service"]["name"])
            paths[p["path"]] = p["backend"]["service"]["name"]
    assert paths == {"/": "webapp-chat", "/admin": "webapp-admin"}

    for svc_name in services:
        svc = find(objs, "Service", svc_name)
        s_ann = svc["metadata"]["annotations"]
        assert json.loads(s_ann["cloud.google.com/neg"]) == {"ingress": True}
        bc_name = json.loads(s_ann["cloud.google.com/backend-config"])["default"]
        bc = find(objs, "BackendConfig", bc_name)["spec"]
        assert bc["timeoutSec"] >= 3600
        assert bc["sessionAffinity"]["affinityType"] == "GENERATED_COOKIE"
        # The load balancer checks what the kubelet checks, on the container port.
        deploy = next(
            o
            for o in objs
            if o["kind"] == "Deployment"
            and labels_match(svc["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])
        )
        c = container(deploy, "webapp")
        assert bc["healthCheck"]["requestPath"] == c["readinessProbe"]["httpGet"]["path"]
        assert bc["healthCheck"]["port"] == c["ports"][0]["containerPort"]
        assert bc.get("iap", {}).get("enabled", False) is (svc_name == "webapp-admin")


def test_static_ip_name_matches_setup_script(rendered, tripwire):
    """setup_gke.sh creates, by default, the address the Ingress asks for."""
    ip_name = find(rendered["l4"], "Ingress", "webapp")["metadata"]["annotations"][
        "kubernetes.io/ingress.global-static-ip-name"
    ]
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "p"}, tripwire)
    assert out.returncode == 0, out.stderr
    assert f"gcloud compute addresses create {ip_name} --global --project=p" in (
        printed_commands(out.stdout)
    )


def test_only_webapp_config_is_generated(rendered):
    cm = find_prefix(rendered["l4"], "ConfigMap", "webapp-config-")
    assert set(cm["data"]) >= {"LLM_URL", "K8S_NAMESPACE", "VLLM_DEPLOYMENT", "VLLM_SERVICE"}
    assert cm["data"]["VLLM_DEPLOYMENT"] == "vllm"
