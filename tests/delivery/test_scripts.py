"""scripts/: shellcheck-clean, strict mode, and `--dry-run` prints every gcloud/kubectl
command without running one (gcloud and kubectl on PATH are recorders that fail loudly).
Idempotence: with every resource already present, nothing is created."""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.delivery.helpers import (
    SCRIPTS,
    calls,
    deploy_dry_run,
    find,
    printed_commands,
    recorder,
    recording_tools,
    render,
    run_script,
    system_tool,
    tool,
)

pytestmark = pytest.mark.delivery

# Every shell script in scripts/ is shellchecked; the set-up scripts (this issue's) also
# share the strict mode and the --dry-run/--help flags.
SHELL_SCRIPTS = sorted([*SCRIPTS.glob("*.sh"), *SCRIPTS.glob("lib/*.sh")])
SETUP_SCRIPTS = [SCRIPTS / n for n in ("setup_gke.sh", "create_hf_secret.sh", "deploy.sh")]
TOKEN = "hf_TestTokenThatMustNeverBePrinted1234"


@pytest.mark.parametrize("path", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(path):
    out = subprocess.run(
        [tool("shellcheck"), "-x", "--severity=style", str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("path", SETUP_SCRIPTS, ids=lambda p: p.name)
def test_strict_mode_and_dry_run_flag(path):
    text = path.read_text()
    assert "set -euo pipefail" in text
    assert "parse_common_flags" in text  # --dry-run and --help


def test_shellcheck_really_checks(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/bash\nrm -rf $1/*\n")
    out = subprocess.run([tool("shellcheck"), str(bad)], capture_output=True, check=False)
    assert out.returncode != 0


# --- setup_gke.sh -------------------------------------------------------------------------


def test_setup_dry_run_prints_everything_and_runs_nothing(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "demo-proj"}, tripwire)
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    cmds = printed_commands(out.stdout, ("+ ", "? "))
    text = "\n".join(cmds)
    assert all(c.startswith(("gcloud ", "kubectl ")) for c in cmds)
    assert "gcloud services enable container.googleapis.com" in text
    cluster = next(c for c in cmds if c.startswith("gcloud container clusters create"))
    for flag in ("--workload-pool=demo-proj.svc.id.goog", "--enable-dataplane-v2"):
        assert flag in cluster
    pool = next(c for c in cmds if c.startswith("gcloud container node-pools create gpu-pool"))
    for flag in (
        "--spot",
        "--enable-autoscaling",
        "--total-min-nodes=0",
        "--total-max-nodes=2",
        "--num-nodes=0",
        "--machine-type=g2-standard-8",
        "--accelerator=type=nvidia-l4,count=1,gpu-driver-version=latest",
    ):
        assert flag in pool, flag
    assert "gcloud compute addresses create llm-chat-ip --global" in text
    role = next(c for c in cmds if c.startswith("gcloud iam roles create"))
    perms = role.split("--permissions=")[1].split()[0].split(",")
    assert sorted(perms) == [
        "container.clusters.get",
        "container.clusters.update",
        "container.operations.get",
        "container.operations.list",
    ]
    assert "'--member=serviceAccount:demo-proj.svc.id.goog[vllm/webapp-admin]'" in text
    # the custom role is bound on the project only under a condition naming this cluster
    (grant,) = [
        c
        for c in cmds
        if c.startswith("gcloud projects add-iam-policy-binding")
        and "roles/llmConsoleGpuPoolOperator" in c
    ]
    assert "roles/llmConsoleGpuPoolOperator" in grant and "--condition=None" not in grant
    assert 'resource.name == "projects/demo-proj/locations/us-central1/clusters/vllm-cluster"' in (
        grant
    )
    (revoke,) = [c for c in cmds if c.startswith("gcloud projects remove-iam-policy-binding")]
    assert "--condition=None" in revoke
    assert "roles/iam.workloadIdentityUser" in text
    assert "gcloud container clusters get-credentials vllm-cluster" in text
    # Every printed command is shell-quoted: it parses back into words.
    for c in cmds:
        subprocess.run(["bash", "-n", "-c", c], check=True)


@pytest.mark.parametrize(
    ("gpu", "count", "machine"),
    [
        ("nvidia-l4", "1", "g2-standard-8"),
        ("nvidia-l4", "2", "g2-standard-24"),
        ("nvidia-tesla-t4", "2", "n1-standard-16"),
        ("nvidia-tesla-a100", "1", "a2-highgpu-1g"),
        ("nvidia-a100-80gb", "2", "a2-ultragpu-2g"),
        ("nvidia-h100-80gb", "4", "a3-highgpu-4g"),
    ],
)
def test_setup_machine_type_follows_gpu(tripwire, gpu, count, machine):
    env = {"PROJECT_ID": "p", "GPU_TYPE": gpu, "GPU_COUNT": count, "ZONES": "europe-west4-a"}
    out = run_script("setup_gke.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    assert f"--machine-type={machine}" in out.stdout
    assert f"--accelerator=type={gpu},count={count}," in out.stdout
    assert "--node-locations=europe-west4-a" in out.stdout


def _iam_condition(cmd: str) -> dict[str, str]:
    """The fields of gcloud's --condition=expression=...,title=...,description=... flag."""
    (flag,) = [w for w in shlex.split(cmd) if w.startswith("--condition=")]
    return dict(part.split("=", 1) for part in flag.removeprefix("--condition=").split(","))


@pytest.mark.parametrize(
    ("env", "allowed", "refused"),
    [
        (
            {},
            ["projects/p1234/locations/us-central1/clusters/vllm-cluster",
             "projects/p1234/locations/us-central1/clusters/vllm-cluster/nodePools/gpu-pool",
             "projects/p1234/locations/us-central1/operations/operation-123",
             "projects/p1234/locations/us-central1"],
            ["projects/p1234/locations/us-central1/clusters/prod",
             "projects/p1234/locations/us-central1/clusters/vllm-cluster-2",
             "projects/p1234/locations/europe-west4/clusters/vllm-cluster",
             "projects/p1234/locations/europe-west4/operations/operation-123",
             "projects/other1/locations/us-central1/clusters/vllm-cluster"],
        ),
        (
            {"CLUSTER_NAME": "chat", "REGION": "europe-west4"},
            ["projects/p1234/locations/europe-west4/clusters/chat/nodePools/gpu-pool"],
            ["projects/p1234/locations/us-central1/clusters/chat",
             "projects/p1234/locations/europe-west4/clusters/vllm-cluster"],
        ),
    ],
)  # fmt: skip
def test_admin_role_binding_holds_only_for_the_cluster(tripwire, env, allowed, refused):
    """The IAM condition, evaluated on GKE resource names: this cluster, its node pools and
    the operations of its location; no other cluster or location of the project."""
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "p1234", **env}, tripwire)
    assert out.returncode == 0, out.stderr
    grant = next(c for c in printed_commands(out.stdout) if "add-iam-policy-binding p1234" in c)
    cond = _iam_condition(grant)
    assert set(cond) == {"expression", "title", "description"}
    assert cel_or_of_names(cond["expression"], allowed) == [True] * len(allowed)
    assert cel_or_of_names(cond["expression"], refused) == [False] * len(refused)


def cel_or_of_names(expression: str, names: list[str]) -> list[bool]:
    """Evaluate a CEL expression made of `resource.name == "x"` and
    `resource.name.startsWith("x")` terms joined by `||` (what setup_gke.sh writes; any
    other term fails the test) for each resource name."""
    terms = []
    for term in expression.split(" || "):
        m = re.fullmatch(
            r'resource\.name (==) "([^"]+)"|resource\.name\.startsWith\("([^"]+)"\)', term
        )
        assert m, f"unexpected term {term!r}"
        terms.append((m.group(2), None) if m.group(1) else (None, m.group(3)))
    return [
        any(name == eq if eq else name.startswith(prefix) for eq, prefix in terms) for name in names
    ]


def test_admin_role_can_still_be_bound_project_wide(tripwire):
    env = {"PROJECT_ID": "demo-proj", "ADMIN_IAM_SCOPE": "project"}
    out = run_script("setup_gke.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    bindings = [
        c
        for c in printed_commands(out.stdout)
        if "projects add-iam" in c and "llmConsoleGpuPoolOperator" in c
    ]
    assert len(bindings) == 1 and "--condition=None" in bindings[0]
    assert "every cluster of demo-proj" in out.stderr


def test_the_capacity_guard_may_read_the_region_quota_and_nothing_more(tripwire):
    """A custom role holding only compute.regions.get (the region's quotas), bound on the
    project for the admin page's Google service account: no IAM condition can name a region."""
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "demo-proj"}, tripwire)
    assert out.returncode == 0, out.stderr
    cmds = printed_commands(out.stdout)
    (role,) = [c for c in cmds if c.startswith("gcloud iam roles create llmConsoleQuotaReader")]
    assert shlex.split(role.split("--permissions=")[1])[0] == "compute.regions.get"
    (grant,) = [c for c in cmds if "add-iam-policy-binding" in c and "QuotaReader" in c]
    words = shlex.split(grant)
    assert words[:4] == ["gcloud", "projects", "add-iam-policy-binding", "demo-proj"]
    assert "--role=projects/demo-proj/roles/llmConsoleQuotaReader" in words
    assert "--member=serviceAccount:llm-console-admin@demo-proj.iam.gserviceaccount.com" in words
    assert "--condition=None" in words


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, ["--dry-run"], "PROJECT_ID is required"),
        ({"PROJECT_ID": 'p"1234'}, ["--dry-run"], "not a GCP project id"),
        (
            {"PROJECT_ID": "p1234", "CLUSTER_NAME": 'c") || true || ("'},
            ["--dry-run"],
            "CLUSTER_NAME",
        ),
        ({"PROJECT_ID": "p1234", "REGION": "us central1"}, ["--dry-run"], "REGION"),
        ({"PROJECT_ID": "p1234", "ADMIN_IAM_SCOPE": "org"}, ["--dry-run"], "ADMIN_IAM_SCOPE"),
        ({"PROJECT_ID": "p"}, ["--bogus"], "unknown argument"),
        ({"PROJECT_ID": "p", "GPU_TYPE": "nvidia-l4", "GPU_COUNT": "3"}, ["--dry-run"], "MACHINE"),
    ],
)
def test_setup_refuses_bad_input(tripwire, env, args, message):
    out = run_script("setup_gke.sh", args, env, tripwire)
    assert out.returncode != 0
    assert message in out.stderr
    assert calls(tripwire) == []


def test_setup_is_idempotent_when_everything_exists(tmp_path):
    """Every describe succeeds: nothing is created, the role is only brought up to date."""
    bin_dir = recording_tools(tmp_path, 0)
    out = run_script("setup_gke.sh", [], {"PROJECT_ID": "p"}, bin_dir)
    assert out.returncode == 0, out.stderr
    seen = calls(bin_dir)
    assert seen
    assert not [c for c in seen if " create " in f"{c} "], seen
    assert any(c.startswith("gcloud iam roles update") for c in seen)


def test_setup_creates_what_is_missing(tmp_path):
    """describe fails for everything: each resource is created once."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "gcloud $*" >> "{bin_dir}/calls.log"\n'
        'for a in "$@"; do [ "$a" = describe ] && exit 1; done\nexit 0\n'
    )
    (bin_dir / "gcloud").chmod(0o755)
    recorder(bin_dir, "kubectl", 0)
    out = run_script("setup_gke.sh", [], {"PROJECT_ID": "p"}, bin_dir)
    assert out.returncode == 0, out.stderr
    creates = [c.split(" --")[0] for c in calls(bin_dir) if " create " in c]
    assert creates == [
        "gcloud container clusters create vllm-cluster",
        "gcloud container node-pools create gpu-pool",
        "gcloud compute addresses create llm-chat-ip",
        "gcloud compute security-policies create llm-chat-rate-limit",
        "gcloud compute security-policies rules create 1000",
        "gcloud artifacts repositories create llm-console",
        "gcloud iam roles create llmConsoleGpuPoolOperator",
        "gcloud iam roles create llmConsoleQuotaReader",
        "gcloud iam service-accounts create llm-console-admin",
    ]


# --- create_hf_secret.sh ------------------------------------------------------------------


def test_hf_secret_dry_run_never_shows_the_token(tripwire):
    out = run_script("create_hf_secret.sh", ["--dry-run"], {"HF_TOKEN": TOKEN}, tripwire)
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    assert TOKEN not in out.stdout + out.stderr
    assert "kubectl create secret generic huggingface --namespace=vllm" in out.stdout
    assert "--from-file=HF_TOKEN=/dev/stdin --dry-run=client -o yaml" in out.stdout
    assert "kubectl apply -f -" in out.stdout


def test_hf_secret_without_token_fails(tripwire):
    out = run_script("create_hf_secret.sh", ["--dry-run"], {}, tripwire, stdin="")
    assert out.returncode != 0
    assert "no token" in out.stderr


@pytest.fixture
def kubectl_client_side(tmp_path) -> Path:
    """kubectl that runs the real client-side `create --dry-run=client` (no cluster needed),
    records every argument list and captures what `apply -f -` receives."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = system_tool("kubectl")
    (bin_dir / "kubectl").write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "kubectl $*" >> "{bin_dir}/calls.log"\n'
        'if [ "$1" = apply ]; then n=$(ls "' + str(bin_dir) + '" | grep -c applied);'
        f' cat > "{bin_dir}/applied-$n.yaml"; exit 0; fi\n'
        f'KUBECONFIG=/dev/null exec "{real}" "$@"\n'
    )
    (bin_dir / "kubectl").chmod(0o755)
    recorder(bin_dir, "gcloud", 97)
    return bin_dir


@pytest.mark.parametrize("via", ["env", "stdin"])
def test_hf_secret_is_applied_without_the_token_on_any_command_line(kubectl_client_side, via):
    bin_dir = kubectl_client_side
    env = {"HF_TOKEN": TOKEN, "NAMESPACE": "models"} if via == "env" else {"NAMESPACE": "models"}
    stdin = "" if via == "env" else TOKEN + "\n"
    out = run_script("create_hf_secret.sh", [], env, bin_dir, stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr
    seen = calls(bin_dir)
    assert not [c for c in seen if c.startswith("gcloud")]
    assert all(TOKEN not in c for c in seen)
    applied = [yaml.safe_load(p.read_text()) for p in sorted(bin_dir.glob("applied-*.yaml"))]
    namespace, secret = applied
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "models"
    assert secret["kind"] == "Secret"
    assert secret["metadata"] == {"name": "huggingface", "namespace": "models"} | {
        k: v for k, v in secret["metadata"].items() if k == "creationTimestamp"
    }
    assert base64.b64decode(secret["data"]["HF_TOKEN"]).decode() == TOKEN


# --- deploy.sh ----------------------------------------------------------------------------


def test_deploy_dry_run_prints_commands_and_a_renderable_overlay(tripwire, tmp_path):
    overlay_dir = tmp_path / "generated"
    # With DEPLOY_ENV: PROJECT_ID demo-proj, NAMESPACE chat-prod, OVERLAY t4.
    env = {
        "IMAGE": "europe-docker.pkg.dev/demo-proj/llm/webapp:abc1234",
        "ADMIN_EMAILS": "ops@example.com,lead@example.com",
    }
    deploy_dry_run(tripwire, overlay_dir, env)

    objs = render(overlay_dir)
    for name in ("webapp-chat", "webapp-admin"):
        d = find(objs, "Deployment", name)
        assert d["metadata"]["namespace"] == "chat-prod"
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == env["IMAGE"]
    vllm = find(objs, "Deployment", "vllm")
    assert vllm["spec"]["template"]["spec"]["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"
    }
    sa = find(objs, "ServiceAccount", "webapp-admin")
    assert (
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        == "llm-console-admin@demo-proj.iam.gserviceaccount.com"
    )
    for kind, name in (
        ("RoleBinding", "llm-console-admin"),
        ("ClusterRoleBinding", "llm-console-node-reader"),
    ):
        assert find(objs, kind, name)["subjects"][0]["namespace"] == "chat-prod"
    assert find(objs, "Namespace", "chat-prod")
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert cm["data"]["K8S_NAMESPACE"] == "chat-prod"
    assert cm["data"]["GKE_PROJECT"] == "demo-proj"
    assert cm["data"]["GKE_CLUSTER"] == "vllm-cluster"
    assert cm["data"]["ADMIN_EMAILS"] == env["ADMIN_EMAILS"]
    assert cm["data"]["LLM_URL"] == "http://vllm:8000"


def test_deploy_accepts_a_digest(tripwire, tmp_path):
    image = "europe-docker.pkg.dev/p/llm/webapp@sha256:" + "a" * 64
    env = {"PROJECT_ID": "p", "IMAGE": image, "OVERLAY_DIR": str(tmp_path / "g")}
    out = run_script("deploy.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    d = find(render(tmp_path / "g"), "Deployment", "webapp-chat")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == image


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROJECT_ID": "p", "OVERLAY": "v100"}, "no overlay"),
        ({"PROJECT_ID": "p", "IMAGE": "registry.local/webapp"}, "needs a tag"),
        ({}, "PROJECT_ID is required"),
    ],
)
def test_deploy_refuses_bad_input(tripwire, env, message):
    out = run_script("deploy.sh", ["--dry-run"], env, tripwire)
    assert out.returncode != 0
    assert message in out.stderr


@pytest.mark.parametrize("path", SETUP_SCRIPTS, ids=lambda p: p.name)
def test_scripts_are_executable(path):
    assert os.access(path, os.X_OK), path
