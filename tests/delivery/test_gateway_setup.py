"""scripts/ for model pools (issue 14.1): `setup_gke.sh --gateway` prepares GKE Inference
Gateway (Gateway API on the cluster, the proxy-only subnet, the gateway's internal address, the
Inference Extension's CRDs), prints it all with --dry-run, refuses bad addresses, creates only
what is missing, and agrees with k8s/components/inference-gateway on addresses and versions;
`deploy.sh` with OVERLAY=pools puts the pools into its namespace."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.delivery.gateway import GKE_KINDS, POOLS, of_kind
from tests.delivery.helpers import (
    DEPLOY_ENV,
    ROOT,
    calls,
    deploy_dry_run,
    find,
    find_prefix,
    printed_commands,
    recording_tools,
    render,
    run_script,
)

pytestmark = pytest.mark.delivery

SETUP_ENV = {"PROJECT_ID": "demo-proj"}
# Workload Identity Federation principals; --dry-run shows the project number's placeholder.
PRINCIPAL = (
    "principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/"
    "workloadIdentityPools/demo-proj.svc.id.goog/subject"
)


@pytest.fixture(scope="module")
def pooled() -> list[dict]:
    return render(POOLS)


# --- scripts/setup_gke.sh --gateway ---------------------------------------------------------


def _setup_gateway_commands(tripwire, env=None) -> list[str]:
    out = run_script(
        "setup_gke.sh", ["--dry-run", "--gateway"], {**SETUP_ENV, **(env or {})}, tripwire
    )
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    return printed_commands(out.stdout, ("+ ", "? "))


def test_setup_gateway_dry_run_prints_what_the_gateway_needs(tripwire):
    commands = _setup_gateway_commands(tripwire)
    tail = commands[commands.index(
        "gcloud container clusters get-credentials vllm-cluster --location=us-central1"
        " --project=demo-proj") + 1:]  # fmt: skip
    assert tail == [
        "gcloud services enable networkservices.googleapis.com --project=demo-proj",
        "gcloud container clusters update vllm-cluster --location=us-central1"
        " --project=demo-proj --gateway-api=standard --quiet",
        "gcloud compute networks subnets describe proxy-only-subnet --region=us-central1"
        " --project=demo-proj",
        "gcloud compute networks subnets create proxy-only-subnet"
        " --purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE --region=us-central1 --network=default"
        " --range=10.129.0.0/23 --project=demo-proj",
        "gcloud compute addresses describe llm-gateway-ip --region=us-central1 --project=demo-proj",
        "gcloud compute addresses create llm-gateway-ip --region=us-central1 --subnet=default"
        " --addresses=10.128.0.250 --purpose=SHARED_LOADBALANCER_VIP --project=demo-proj",
        "kubectl apply --server-side -f https://github.com/kubernetes-sigs/"
        "gateway-api-inference-extension/releases/download/v1.5.0/manifests.yaml",
        # pool autoscaling (tests/delivery/test_autoscaling_setup.py)
        "gcloud projects describe demo-proj '--format=value(projectNumber)'",
        f"kubectl apply -k {ROOT}/k8s/addons/custom-metrics-stackdriver-adapter",
        f"gcloud projects add-iam-policy-binding demo-proj --role=roles/monitoring.viewer"
        f" --member={PRINCIPAL}/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter"
        " --condition=None --quiet",
        "kubectl apply --server-side --force-conflicts -f"
        " https://github.com/kedacore/keda/releases/download/v2.20.2/keda-2.20.2.yaml",
        f"gcloud projects add-iam-policy-binding demo-proj --role=roles/monitoring.viewer"
        f" --member={PRINCIPAL}/ns/keda/sa/keda-operator --condition=None --quiet",
    ]


def test_setup_without_gateway_prints_none_of_it(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run"], SETUP_ENV, tripwire)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for word in ("--gateway-api", "REGIONAL_MANAGED_PROXY", "llm-gateway-ip", "manifests.yaml",
                 "keda", "custom-metrics", "principal://", "projectNumber"):  # fmt: skip
        assert word not in text


def test_setup_and_manifests_agree_on_addresses_and_versions(tripwire, pooled):
    """The defaults of setup_gke.sh --gateway are the addresses the manifests name."""
    commands = " ".join(_setup_gateway_commands(tripwire))
    llm_url = urlparse(find_prefix(pooled, "ConfigMap", "webapp-config")["data"]["LLM_URL"])
    assert f"--addresses={llm_url.hostname} " in commands
    (gateway,) = of_kind(pooled, "Gateway")
    assert f"addresses create {gateway['spec']['addresses'][0]['value']} " in commands
    ingress = find(pooled, "NetworkPolicy", "vllm-allow-webapp-only")["spec"]["ingress"]
    proxy_range = commands.split("--range=")[1].split()[0]
    assert any(s.get("ipBlock", {}).get("cidr") == proxy_range for r in ingress for s in r["from"])
    # The CRDs installed are those of the release whose picker and router images run.
    version = commands.split("releases/download/")[1].split("/")[0]
    images = {
        c["image"].split("@")[0]
        for d in of_kind(pooled, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if "gateway-api-inference-extension" in c["image"]
    }
    assert images and all(i.endswith(f":{version}") for i in images), images


def test_setup_gateway_with_other_addresses(tripwire):
    commands = " ".join(
        _setup_gateway_commands(
            tripwire, {"GATEWAY_IP": "10.10.0.5", "PROXY_SUBNET_RANGE": "10.11.0.0/23",
                       "NETWORK": "prod-vpc", "GATEWAY_SUBNET": "gke-subnet"}
        )
    )  # fmt: skip
    assert "--addresses=10.10.0.5 " in commands and "--subnet=gke-subnet " in commands
    assert "--range=10.11.0.0/23 " in commands and "--network=prod-vpc " in commands


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_IP": "10.128.0.256"}, "GATEWAY_IP"),
        ({"GATEWAY_IP": "gateway"}, "GATEWAY_IP"),
        ({"GATEWAY_IP": "10.0.0.1; rm -rf /"}, "GATEWAY_IP"),
        ({"PROXY_SUBNET_RANGE": "10.129.0.0"}, "PROXY_SUBNET_RANGE"),
        ({"PROXY_SUBNET_RANGE": "10.129.0.0/28"}, "PROXY_SUBNET_RANGE"),
        ({"NETWORK": "My VPC"}, "NETWORK"),
        ({"PROXY_SUBNET": "-x"}, "PROXY_SUBNET"),
    ],
)
def test_setup_gateway_refuses_bad_input(tripwire, env, message):
    out = run_script("setup_gke.sh", ["--dry-run", "--gateway"], {**SETUP_ENV, **env}, tripwire)
    assert out.returncode != 0
    assert message in out.stderr
    assert out.stdout == "" or "+ " not in out.stdout
    assert calls(tripwire) == []


def test_setup_gateway_creates_what_is_missing_once(tmp_path):
    """Everything exists: the subnet and the address are not created again; the CRDs and
    the Gateway API flag are applied again (both idempotent)."""
    bin_dir = recording_tools(tmp_path, 0)
    out = run_script("setup_gke.sh", ["--gateway"], {**SETUP_ENV, "PROJECT_NUMBER": "42"}, bin_dir)
    assert out.returncode == 0, out.stderr
    seen = calls(bin_dir)
    assert not [c for c in seen if "subnets create" in c or "addresses create llm-gateway" in c]
    assert any("--gateway-api=standard" in c for c in seen)
    assert any(c.startswith("kubectl apply --server-side -f https://github.com/") for c in seen)


# --- scripts/deploy.sh OVERLAY=pools ----------------------------------------------------------


def test_deploy_puts_the_pools_into_its_namespace(tripwire, tmp_path):
    """deploy.sh renders the pooled overlay into NAMESPACE: every pool object, picker and
    binding moves along (the pickers find their pool in their own namespace)."""
    overlay_dir = tmp_path / "k8s" / "overlays" / "deploy"
    overlay_dir.mkdir(parents=True)
    deploy_dry_run(tripwire, overlay_dir, {"OVERLAY": "pools"})
    objs = render(overlay_dir)
    namespace = DEPLOY_ENV["NAMESPACE"]
    kinds = {"Gateway", "HTTPRoute", "InferencePool", *GKE_KINDS, "Deployment", "Service"}
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] in kinds} == {namespace}
    for binding in of_kind(objs, "RoleBinding"):
        assert {s["namespace"] for s in binding["subjects"]} == {namespace}
    config = find_prefix(objs, "ConfigMap", "webapp-config")["data"]
    assert config["LLM_URL"] == "http://10.128.0.250"
    assert config["K8S_NAMESPACE"] == namespace
