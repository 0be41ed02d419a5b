"""Helpers for the delivery checks: paths, the tools venv, rendering and object lookup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("l4", "t4", "a100", "h100")
TOOLS_BIN = ROOT / ".venv-tools" / "bin"

# What each overlay must ask for: accelerator label value and GPUs per vLLM pod.
OVERLAY_GPUS = {
    "l4": ("nvidia-l4", 1),
    "t4": ("nvidia-tesla-t4", 2),
    "a100": ("nvidia-tesla-a100", 1),
    "h100": ("nvidia-h100-80gb", 4),
}


def tool(name: str) -> str:
    """Path of a delivery tool from .venv-tools (checkov, hadolint, kubernetes-validate)."""
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools-venv` (requirements-tools.txt)")
    return str(path)


def system_tool(name: str) -> str:
    """Path of a system tool (kubectl, shellcheck); fail clearly when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (see README: delivery checks)")
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
