"""Model pools behind GKE Inference Gateway (issue 14.1): k8s/components/inference-gateway and
the two-pool example k8s/overlays/pools render; every custom object validates against the
upstream CRD schema kept in tests/delivery/crds (strictly: an unknown field fails), core objects
against the Kubernetes schemas, and the whole passes checkov; the objects refer to each other
correctly (route -> pool -> pods, pool -> picker Service -> picker pods, policies -> targets,
model name -> the pool serving it); they are what webapp.cluster.pools builds; and the plain
overlays are unchanged (the single Service stays the default)."""

from __future__ import annotations

import copy
import ipaddress
from urllib.parse import urlparse

import jsonpatch
import pytest
import yaml

from tests.delivery.gateway import (
    COMPONENT,
    EXAMPLE_POOLS,
    GATEWAY_CLASS,
    GKE_KINDS,
    POOLS,
    of_kind,
)
from tests.delivery.helpers import (
    CHECKOV_SKIPS,
    K8S,
    K8S_VERSIONS,
    NO_SCHEMA_KINDS,
    arg_map,
    assert_schemas_valid,
    checkov,
    container,
    dump,
    failed_checks,
    find,
    find_prefix,
    labels_match,
    overlay_with_component,
    render,
)
from tests.support.crd_schemas import CRD_KINDS, CRDS, SCHEMAS, schema_errors
from webapp.admin.catalog import load_catalog
from webapp.cluster import pools
from webapp.cluster.pools import Backend, PoolSpec
from webapp.settings import Settings

pytestmark = pytest.mark.delivery


@pytest.fixture(scope="module")
def pooled() -> list[dict]:
    return render(POOLS)


def test_the_crd_files_are_the_released_ones():
    assert set(SCHEMAS) == {
        ("gateway.networking.k8s.io/v1", "Gateway"),
        ("gateway.networking.k8s.io/v1beta1", "Gateway"),
        ("gateway.networking.k8s.io/v1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1beta1", "GatewayClass"),
        ("gateway.networking.k8s.io/v1", "HTTPRoute"),
        ("gateway.networking.k8s.io/v1beta1", "HTTPRoute"),
        ("inference.networking.k8s.io/v1", "InferencePool"),
        ("monitoring.googleapis.com/v1", "PodMonitoring"),
        ("monitoring.googleapis.com/v1alpha1", "PodMonitoring"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
    }
    readme = (CRDS / "README.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if "|" in line}
    for path in CRDS.glob("*/*.yaml"):
        folder = path.parent.name
        folder_version = folder.rsplit("-", 1)[1]
        annotations = yaml.safe_load(path.read_text())["metadata"]["annotations"]
        bundle = [v for k, v in annotations.items() if k.endswith("/bundle-version")]
        # Where the CRD carries no bundle version, the README row names the release tag.
        assert bundle in ([folder_version], []), path
        assert f"| {folder_version} (" in rows[f"`{folder}/`"], folder


def test_every_custom_object_validates_against_its_crd(pooled):
    custom = [o for o in pooled if o["kind"] in CRD_KINDS]
    assert {o["kind"] for o in custom} == {"Gateway", "HTTPRoute", "InferencePool", "PodMonitoring"}
    for obj in custom:
        assert schema_errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize(
    ("kind", "path", "value", "words"),
    [
        ("InferencePool", ["spec", "targetPort"], [{"number": 8000}], "Additional properties"),
        ("InferencePool", ["spec", "endpointPickerRef", "failureMode"], "Open", "is not one of"),
        ("InferencePool", ["spec", "targetPorts"], [{"number": 70000}], "is greater than"),
        ("HTTPRoute", ["spec", "rules", 0, "backendRefs", 0, "weight"], -5, "less than"),
        ("HTTPRoute", ["spec", "rules", 0, "matches", 0, "headers", 0, "type"], "Equals", "one of"),
        ("Gateway", ["spec", "listeners", 0, "protocol"], "http/1.1", "does not match"),
        ("Gateway", ["spec", "gatewayClass"], "x", "Additional properties"),
    ],
)
def test_the_schema_check_catches_a_bad_field(pooled, kind, path, value, words):
    obj = copy.deepcopy(of_kind(pooled, kind)[0])
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = schema_errors(obj)
    assert any(words in e for e in errors), errors


def test_a_pool_without_its_required_fields_fails_the_schema(pooled):
    obj = copy.deepcopy(of_kind(pooled, "InferencePool")[0])
    del obj["spec"]["targetPorts"]
    assert any("'targetPorts' is a required property" in e for e in schema_errors(obj))


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_objects_validate_against_kubernetes_schemas(pooled, tmp_path, version):
    no_schema = NO_SCHEMA_KINDS | CRD_KINDS | GKE_KINDS
    validated = assert_schemas_valid(pooled, tmp_path / "pools.yaml", version, no_schema)
    assert {"deployment/vllm-epp", "deployment/vllm-mistral", "service/vllm-mistral-epp"} <= (
        validated
    )


def test_pooled_layout_passes_checkov(pooled, tmp_path):
    report = checkov(dump(pooled, tmp_path / "pools.yaml"), "kubernetes", CHECKOV_SKIPS)
    assert report["summary"]["resource_count"] >= len(pooled) - 1
    failed = failed_checks(report)
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


def test_gke_policy_objects_have_their_fields(pooled):
    """GKE publishes no CRD files for its policy kinds: their fields are asserted here."""
    for policy in of_kind(pooled, "HealthCheckPolicy"):
        assert policy["apiVersion"] == "networking.gke.io/v1"
        assert set(policy["spec"]) == {"default", "targetRef"}
        assert policy["spec"]["default"]["config"]["type"] in {"HTTP", "GRPC"}
    for policy in of_kind(pooled, "GCPBackendPolicy"):
        assert policy["spec"]["default"]["timeoutSec"] >= 300  # long streamed answers
    (ext,) = of_kind(pooled, "GCPRoutingExtension")
    (chain,) = ext["spec"]["extensionChains"]
    (extension,) = chain["extensions"]
    assert {"RequestHeaders", "RequestBody"} <= set(extension["supportedEvents"])
    assert extension["requestBodySendMode"] == "FullDuplexStreamed"


# --- cross-references ----------------------------------------------------------------------


def test_gateway_is_internal_and_every_route_attaches_to_it(pooled):
    (gateway,) = of_kind(pooled, "Gateway")
    assert gateway["spec"]["gatewayClassName"] == GATEWAY_CLASS
    assert gateway["spec"]["addresses"] == [{"type": "NamedAddress", "value": "llm-gateway-ip"}]
    for route in of_kind(pooled, "HTTPRoute"):
        assert [p["name"] for p in route["spec"]["parentRefs"]] == [gateway["metadata"]["name"]]
        assert route["metadata"]["namespace"] == gateway["metadata"]["namespace"]
    (ext,) = of_kind(pooled, "GCPRoutingExtension")
    assert [t["name"] for t in ext["spec"]["targetRefs"]] == [gateway["metadata"]["name"]]


def test_every_backend_ref_names_an_existing_pool_and_weights_sum_to_100(pooled):
    pool_names = {p["metadata"]["name"] for p in of_kind(pooled, "InferencePool")}
    (route,) = of_kind(pooled, "HTTPRoute")
    referenced = set()
    for rule in route["spec"]["rules"]:
        refs = rule["backendRefs"]
        for ref in refs:
            assert (ref["group"], ref["kind"]) == ("inference.networking.k8s.io", "InferencePool")
            assert ref["name"] in pool_names, ref
            referenced.add(ref["name"])
        pools.validate_split("rule", [Backend(r["name"], r["weight"]) for r in refs])
    assert referenced == pool_names  # no pool that nothing routes to


def _served_model(deploy: dict) -> str:
    return arg_map(container(deploy, "vllm")["args"])["--served-model-name"]


def test_each_pool_selects_exactly_one_vllm_deployment_on_port_8000(pooled):
    deployments = of_kind(pooled, "Deployment")
    for pool in of_kind(pooled, "InferencePool"):
        selector = pool["spec"]["selector"]["matchLabels"]
        hits = [
            d
            for d in deployments
            if labels_match(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert [d["metadata"]["name"] for d in hits] == [pool["metadata"]["name"]]
        (deploy,) = hits
        ports = {p["containerPort"] for p in container(deploy, "vllm")["ports"]}
        assert [p["number"] for p in pool["spec"]["targetPorts"]] == [8000]
        assert ports == {8000}
        # The pool's own labels: the Deployment's selector is exactly the pool's selector.
        assert deploy["spec"]["selector"]["matchLabels"] == selector


def test_each_model_name_routes_to_a_pool_that_serves_it(pooled):
    (route,) = of_kind(pooled, "HTTPRoute")
    served = {}
    for rule in route["spec"]["rules"]:
        headers = [h for m in rule["matches"] for h in m.get("headers", [])]
        if not headers:
            continue
        assert [h["name"] for h in headers] == [pools.MODEL_HEADER]
        for ref in rule["backendRefs"]:
            served[ref["name"]] = headers[0]["value"]
    for name, (model, replicas) in EXAMPLE_POOLS.items():
        deploy = find(pooled, "Deployment", name)
        assert served[name] == model == _served_model(deploy)
        assert deploy["spec"]["replicas"] == replicas


def test_each_pool_has_its_own_endpoint_picker(pooled):
    for pool in of_kind(pooled, "InferencePool"):
        name, namespace = pool["metadata"]["name"], pool["metadata"]["namespace"]
        ref = pool["spec"]["endpointPickerRef"]
        service = find(pooled, "Service", ref["name"])
        assert ref["port"]["number"] in {p["port"] for p in service["spec"]["ports"]}
        picker = find(pooled, "Deployment", ref["name"])
        assert labels_match(
            service["spec"]["selector"], picker["spec"]["template"]["metadata"]["labels"]
        )
        epp = container(picker, "epp")
        args = dict(zip(epp["args"][::2], epp["args"][1::2], strict=False))
        assert args["--pool-name"] == name
        assert args["--pool-group"] == "inference.networking.k8s.io"
        assert "--pool-namespace" not in epp["args"]  # its own namespace, from env NAMESPACE
        assert service["metadata"]["namespace"] == picker["metadata"]["namespace"] == namespace
        # It runs as the ServiceAccount its Roles are bound to: pods and the pool, read only.
        account = picker["spec"]["template"]["spec"]["serviceAccountName"]
        bound = [
            b["roleRef"]["name"]
            for b in of_kind(pooled, "RoleBinding")
            if any(s["name"] == account for s in b["subjects"])
        ]
        rules = [r for role in bound for r in find(pooled, "Role", role)["rules"]]
        assert {v for r in rules for v in r["verbs"]} == {"get", "watch", "list"}
        assert ["inferencepools"] in [r["resources"] for r in rules]
        config = find(
            pooled,
            "ConfigMap",
            picker["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        )
        assert "default-plugins.yaml" in config["data"]


def test_every_policy_targets_an_existing_object(pooled):
    for kind in ("HealthCheckPolicy", "GCPBackendPolicy"):
        for policy in of_kind(pooled, kind):
            target = policy["spec"]["targetRef"]
            target_kind = target["kind"]
            find(pooled, target_kind, target["name"])
    for pool in of_kind(pooled, "InferencePool"):
        name = pool["metadata"]["name"]
        health = find(pooled, "HealthCheckPolicy", name)["spec"]["default"]["config"]
        assert health["httpHealthCheck"] == {"requestPath": "/health", "port": 8000}
        find(pooled, "GCPBackendPolicy", name)


def test_body_based_router_sets_the_header_the_route_matches(pooled):
    (ext,) = of_kind(pooled, "GCPRoutingExtension")
    backend = ext["spec"]["extensionChains"][0]["extensions"][0]["backendRef"]
    service = find(pooled, "Service", backend["name"])
    assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}
    router = find(pooled, "Deployment", "body-based-router")
    assert labels_match(
        service["spec"]["selector"], router["spec"]["template"]["metadata"]["labels"]
    )
    args = container(router, "bbr")["args"]
    plugin = args[args.index("--plugin") + 1]
    kind, name, params = plugin.split(":", 2)
    assert kind == "body-field-to-header"
    assert yaml.safe_load(params) == {"fieldName": "model", "headerName": pools.MODEL_HEADER}


def test_gateway_traffic_may_reach_the_pools_and_the_chat_the_gateway(pooled):
    config = find_prefix(pooled, "ConfigMap", "webapp-config")
    url = urlparse(config["data"]["LLM_URL"])
    gateway_ip = ipaddress.ip_address(url.hostname)
    assert url.scheme == "http" and url.port is None  # the listener's port 80
    for name in ("webapp-chat-egress", "webapp-admin-egress"):
        egress = find(pooled, "NetworkPolicy", name)["spec"]["egress"]
        assert any(
            any(ipaddress.ip_address(gateway_ip) in ipaddress.ip_network(t["ipBlock"]["cidr"])
                for t in rule["to"] if "ipBlock" in t)
            and {"port": 80, "protocol": "TCP"} in rule["ports"]
            for rule in egress
        ), name  # fmt: skip
    ingress = find(pooled, "NetworkPolicy", "vllm-allow-webapp-only")["spec"]["ingress"]
    sources = [s for rule in ingress for s in rule["from"]]
    cidrs = {s["ipBlock"]["cidr"] for s in sources if "ipBlock" in s}
    assert {"10.129.0.0/23", "35.191.0.0/16", "130.211.0.0/22"} <= cidrs
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/component": "endpoint-picker"}}} in (
        sources
    )


def test_the_chat_is_told_every_model_the_gateway_routes(pooled, monkeypatch):
    (route,) = of_kind(pooled, "HTTPRoute")
    routed = [
        h["value"]
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
        for h in m.get("headers", [])
    ]
    # a set: the switch's second slot (vllm-green) serves the same name as vllm
    served = sorted({_served_model(d) for d in _vllm(pooled)})
    config = find_prefix(pooled, "ConfigMap", "webapp-config")["data"]
    monkeypatch.setenv("LLM_MODELS", config["LLM_MODELS"])
    assert sorted(Settings().served_model_names) == sorted(routed) == served


def _vllm(objs: list[dict]) -> list[dict]:
    return [
        d
        for d in of_kind(objs, "Deployment")
        if any(c["name"] == "vllm" for c in d["spec"]["template"]["spec"]["containers"])
    ]


def test_requests_without_a_body_reach_the_default_pool(pooled):
    """GET /v1/models and GET /health have no model to route on: without a rule for them the
    gateway answers 404 and the chat says the model server is unreachable."""
    (route,) = of_kind(pooled, "HTTPRoute")
    bodiless = [r for r in route["spec"]["rules"] if not any("headers" in m for m in r["matches"])]
    assert [m["path"] for r in bodiless for m in r["matches"]] == [
        {"type": "Exact", "value": "/v1/models"},
        {"type": "Exact", "value": "/health"},
    ]
    assert [ref["name"] for r in bodiless for ref in r["backendRefs"]] == ["vllm"]


# --- builders agree with the manifests ------------------------------------------------------


def _strip(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    obj["metadata"] = {"name": obj["metadata"]["name"]}
    return obj


def test_pools_are_what_the_builder_makes(pooled):
    for name in EXAMPLE_POOLS:
        assert _strip(find(pooled, "InferencePool", name)) == pools.inference_pool(name)
    (route,) = of_kind(pooled, "HTTPRoute")
    for name, (model, _) in EXAMPLE_POOLS.items():
        assert pools.route_rule(model, [Backend(name, 100)]) in route["spec"]["rules"]


def test_second_pool_is_the_base_deployment_patched_by_the_builder(pooled):
    catalog = load_catalog()
    model = catalog.get("mistral-7b")
    spec = PoolSpec("vllm-mistral", "mistral-7b", replicas=2, min_replicas=1, max_replicas=2)
    pools.validate_pool(spec, {m.id for m in catalog.models})
    base = find(pooled, "Deployment", "vllm")
    expected = jsonpatch.apply_patch(
        base, pools.deployment_patch(spec, model.hf_repo, model.recommended.max_model_len)
    )
    mistral = find(pooled, "Deployment", "vllm-mistral")
    # Only the name, the labels, replicas, model and the per-pod model cache differ.
    mistral_volumes = mistral["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "60Gi"}} in mistral_volumes
    expected["spec"]["template"]["spec"]["volumes"] = mistral_volumes
    expected["metadata"]["name"] = "vllm-mistral"
    assert mistral == expected


# --- the default stays the single Service ----------------------------------------------------


def test_plain_overlays_have_no_gateway(rendered):
    for objs in rendered.values():
        assert not {o["kind"] for o in objs} & (CRD_KINDS | GKE_KINDS)
        assert find_prefix(objs, "ConfigMap", "webapp-config")["data"]["LLM_URL"] == (
            "http://vllm:8000"
        )


def _without_hashes(obj: dict) -> dict:
    """The object with the ConfigMap content-hash suffix taken off every reference."""
    text = yaml.safe_dump(obj)
    for line in set(text.split()):
        if line.startswith("webapp-config-"):
            text = text.replace(line, "webapp-config")
    return yaml.safe_load(text)


@pytest.mark.parametrize("overlay", ["l4", "t4"])
def test_component_changes_only_llm_url_fleet_and_network_policies(tmp_path, overlay):
    plain = render(K8S / "overlays" / overlay)
    with_gateway = render(
        overlay_with_component(tmp_path / overlay, overlay, COMPONENT, {"namespace": "vllm"})
    )
    changed = {
        ("ConfigMap", "webapp-config"),
        ("NetworkPolicy", "vllm-allow-webapp-only"),
        ("NetworkPolicy", "webapp-chat-egress"),
        ("NetworkPolicy", "webapp-admin-egress"),
    }
    after = {(o["kind"], _without_hashes(o)["metadata"]["name"]): o for o in with_gateway}
    for obj in plain:
        key = (obj["kind"], _without_hashes(obj)["metadata"]["name"])
        assert key in after, key
        if key not in changed:
            assert _without_hashes(after[key]) == _without_hashes(obj), key
    before = find_prefix(plain, "ConfigMap", "webapp-config")["data"]
    now = find_prefix(with_gateway, "ConfigMap", "webapp-config")["data"]
    assert now["FLEET"] == "true" and "FLEET" not in before  # the admin page's pools section
    assert {k: v for k, v in now.items() if k not in ("LLM_URL", "FLEET")} == {
        k: v for k, v in before.items() if k != "LLM_URL"
    }
    added = {k for k in after} - {
        (o["kind"], _without_hashes(o)["metadata"]["name"]) for o in plain
    }
    assert {k for k, _ in added} == {
        "Gateway", "HTTPRoute", "InferencePool", "HealthCheckPolicy", "GCPBackendPolicy",
        "GCPRoutingExtension", "Deployment", "Service", "ServiceAccount", "Role",
        "RoleBinding", "ConfigMap", "NetworkPolicy", "PodMonitoring",
    }  # fmt: skip


def test_component_is_a_kustomize_component():
    doc = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
