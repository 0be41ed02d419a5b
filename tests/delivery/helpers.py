"""Helpers for the delivery checks: paths, the tools venv, rendering and object lookup,
schema validation and checkov, and running scripts/ against recording gcloud/kubectl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("l4", "t4", "a100", "h100")
TOOLS_BIN = ROOT / ".venv-tools" / "bin"
SCRIPTS = ROOT / "scripts"

# What each overlay must ask for: accelerator label value and GPUs per vLLM pod.
OVERLAY_GPUS = {
    "l4": ("nvidia-l4", 1),
    "t4": ("nvidia-tesla-t4", 2),
    "a100": ("nvidia-tesla-a100", 1),
    "h100": ("nvidia-h100-80gb", 4),
}

# GKE versions: the oldest still on the regular channel's support window and the newest schema.
K8S_VERSIONS = ("1.33.0", "1.37.0")
# GKE custom resources: kubernetes-validate has no schema for them; their fields are asserted
# by the property tests instead.
NO_SCHEMA_KINDS = {"BackendConfig"}
# checkov checks skipped for every Kubernetes object, each with its reason. Object-specific
# exceptions live next to the object as `checkov.io/skipN: CHECK=reason` annotations.
CHECKOV_SKIPS = {
    # The web app image is set at deploy time (deploy.sh accepts IMAGE=...@sha256:...); the
    # vLLM image gets its digest from scripts/pin_images.sh, checked by test_images.py, which
    # also accepts "pending" (no registry can be reached where this repository is built).
    "CKV_K8S_43": "image digests",
}


def tool(name: str) -> str:
    """Path of a delivery tool from .venv-tools (checkov, hadolint, kubernetes-validate,
    shellcheck): pinned in requirements-tools.txt, so no system copy is needed."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools-venv` (requirements-tools.txt)")
    return str(path)


def system_tool(name: str) -> str:
    """Path of a system tool (kubectl; scripts/check_prereqs.sh says how to install it); fail
    clearly when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (run scripts/check_prereqs.sh)")
    return path


def render(path: Path) -> list[dict]:
    """`kubectl kustomize` a directory and parse the objects."""
    out = subprocess.run(
        [system_tool("kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def overlay_with_component(
    directory: Path, overlay: str, component: Path, extra: dict | None = None
) -> Path:
    """A kustomization in ``directory``: ``k8s/overlays/<overlay>`` plus ``component`` (as the
    README tells a user to write it; kustomize only takes relative paths), with ``extra``
    top-level fields."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        **(extra or {}),
        "resources": [os.path.relpath(K8S / "overlays" / overlay, directory)],
        "components": [os.path.relpath(component, directory)],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def find(objs: list[dict], kind: str, name: str) -> dict:
    """The one object of that kind and name (fails when missing)."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def find_prefix(objs: list[dict], kind: str, prefix: str) -> dict:
    """The one object whose name starts with prefix (kustomize adds hash suffixes)."""
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].startswith(prefix)]
    assert len(hits) == 1, f"expected one {kind}/{prefix}*, found {len(hits)}"
    return hits[0]


def container(deploy: dict, name: str) -> dict:
    """A container of a Deployment's pod template, by name."""
    for c in deploy["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {deploy['metadata']['name']}")


def env_of(c: dict) -> dict[str, dict]:
    """A container's env entries by name."""
    return {e["name"]: e for e in c.get("env", [])}


def arg_map(args: list[str]) -> dict[str, str]:
    """`--flag=value` args as a dict (a flag without value maps to "")."""
    out = {}
    for a in args:
        assert a.startswith("--"), f"not a flag: {a!r}"
        key, _, value = a.partition("=")
        out[key] = value
    return out


def labels_match(selector: dict, labels: dict) -> bool:
    """matchLabels-style selector against a label set."""
    return all(labels.get(k) == v for k, v in selector.items())


# --- manifests: files, schema validation, checkov ------------------------------------------


def dump(objs: list[dict], path: Path) -> Path:
    """Write objects as one multi-document YAML file."""
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def kubernetes_validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict` a YAML file against one Kubernetes version's schemas."""
    return subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", version, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_schemas_valid(
    objs: list[dict], path: Path, version: str, no_schema: Iterable[str] = NO_SCHEMA_KINDS
) -> set[str]:
    """Write objs to path and validate them: the file passes and every object of a kind with a
    schema (not in no_schema) is reported as validated. Returns those objects' kind/name."""
    out = kubernetes_validate(dump(objs, path), version)
    assert out.returncode == 0, out.stdout + out.stderr
    passed = set(re.findall(r"passed for resource (\S+)", out.stdout + out.stderr))
    expected = {
        f"{o['kind'].lower()}/{o['metadata']['name']}" for o in objs if o["kind"] not in no_schema
    }
    assert expected <= passed, f"not validated: {sorted(expected - passed)}"
    return expected


def checkov(path: Path, framework: str, skip_checks: Iterable[str] = ()) -> dict:
    """checkov's JSON report on one file (offline: --skip-download)."""
    skip = ["--skip-check", ",".join(skip_checks)] if skip_checks else []
    out = subprocess.run(
        [
            tool("checkov"),
            "--file",
            str(path),
            "--framework",
            framework,
            *skip,
            "--skip-download",
            "--output",
            "json",
            "--compact",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(out.stdout)
    return report[0] if isinstance(report, list) else report


def failed_checks(report: dict) -> list[dict]:
    """The failed checks of a checkov report."""
    return report.get("results", {}).get("failed_checks", [])


# --- scripts/: run them against recording gcloud/kubectl -----------------------------------


def recorder(bin_dir: Path, name: str, exit_code: int) -> None:
    """A stand-in for gcloud/kubectl that records its arguments and exits with exit_code."""
    script = bin_dir / name
    script.write_text(
        f'#!/bin/bash\nprintf "%s\\n" "{name} $*" >> "{bin_dir}/calls.log"\nexit {exit_code}\n'
    )
    script.chmod(0o755)


def recording_tools(tmp_path: Path, exit_code: int) -> Path:
    """tmp_path/bin with recording gcloud and kubectl that exit with exit_code (0: every
    resource a script describes exists)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("gcloud", "kubectl"):
        recorder(bin_dir, name, exit_code)
    return bin_dir


def run_script(
    script: str, args: list[str], env: dict, bin_dir: Path, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run scripts/<script> with only bin_dir and the system directories on PATH."""
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(bin_dir), **env}
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def calls(bin_dir: Path) -> list[str]:
    """The gcloud/kubectl calls the recorders in bin_dir saw, in order."""
    log = bin_dir / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def printed_commands(stdout: str, prefixes: tuple[str, ...] = ("+ ",)) -> list[str]:
    """The commands a script printed: `+ ` run (or, with --dry-run, would run), `? ` checked."""
    return [line[2:] for line in stdout.splitlines() if line.startswith(prefixes)]


# What the deploy.sh --dry-run checks set: no defaults, so that the output shows they are used.
DEPLOY_ENV = {"PROJECT_ID": "demo-proj", "NAMESPACE": "chat-prod", "OVERLAY": "t4"}


def deploy_dry_run(
    bin_dir: Path, overlay_dir: Path, env: dict, args: Iterable[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`deploy.sh --dry-run` with DEPLOY_ENV and env, its kustomization written to overlay_dir:
    it succeeds, calls neither gcloud nor kubectl, and prints the commands of a deploy (with
    the default cluster and region)."""
    full_env = {**DEPLOY_ENV, **env, "OVERLAY_DIR": str(overlay_dir)}
    out = run_script("deploy.sh", ["--dry-run", *args], full_env, bin_dir)
    assert out.returncode == 0, out.stderr
    assert calls(bin_dir) == []
    project, namespace = full_env["PROJECT_ID"], full_env["NAMESPACE"]
    ip_name = full_env.get("STATIC_IP_NAME", "llm-chat-ip")
    assert printed_commands(out.stdout) == [
        "gcloud container clusters get-credentials vllm-cluster --location=us-central1"
        f" --project={project}",
        f"kubectl apply -k {overlay_dir}",
        f"kubectl rollout status deployment/webapp-chat --namespace={namespace} --timeout=10m",
        f"kubectl rollout status deployment/webapp-admin --namespace={namespace} --timeout=10m",
        f"gcloud compute addresses describe {ip_name} --global --project={project}"
        " '--format=value(address)'",
    ]
    return out


# --- browser security headers (BackendConfig customResponseHeaders) -------------------------


def response_headers(backend_config: dict) -> dict[str, str]:
    """The custom response headers of a BackendConfig ("Name: value" strings) as a dict."""
    items = backend_config["spec"].get("customResponseHeaders", {}).get("headers", [])
    return dict(tuple(part.strip() for part in h.split(":", 1)) for h in items)


def base_response_headers(name: str) -> dict[str, str]:
    """What the load balancer adds to the responses of backend ``name`` (the base manifest,
    read without kustomize: the browser tests use it to serve the app as deployed)."""
    docs = yaml.safe_load_all((K8S / "base" / "backendconfig.yaml").read_text())
    return response_headers(next(d for d in docs if d["metadata"]["name"] == name))


def csp_directives(policy: str) -> dict[str, list[str]]:
    """A Content-Security-Policy value as {directive: [sources]}."""
    parts = (d.split() for d in policy.split(";") if d.strip())
    return {p[0]: p[1:] for p in parts}
