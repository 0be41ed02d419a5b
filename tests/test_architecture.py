"""House rules that code review alone would let slip (README.md, "Layout")."""

import ast
from pathlib import Path

import pytest

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def modules():
    return sorted(p for p in WEBAPP.rglob("*.py") if "migrations" not in p.parts)


def rel(p):
    return p.relative_to(WEBAPP).as_posix()


def uses(path, package):
    return any(i == package or i.startswith(package + ".") for i in imports(path))


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_only_app_and_ui_parts_import_streamlit(path):
    """A feature's core (``chat/``, ``admin/``, ``access/``) is testable without Streamlit;
    only the router and the ``ui/`` parts (``*/ui/`` and the shared ``ui/``) draw."""
    allowed = rel(path) == "app.py" or "ui" in path.relative_to(WEBAPP).parts[:-1]
    if not allowed:
        assert not uses(path, "streamlit"), f"{rel(path)} imports streamlit"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_only_cluster_talks_to_kubernetes_and_gke(path):
    if not rel(path).startswith("cluster/"):
        assert not uses(path, "kubernetes"), f"{rel(path)} imports kubernetes"
        assert not uses(path, "google.cloud.container"), f"{rel(path)} imports the GKE client"
        assert not uses(path, "google.cloud.container_v1"), f"{rel(path)} imports the GKE client"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_only_llm_talks_to_vllm(path):
    if not rel(path).startswith("llm/"):
        for pkg in ("openai", "langchain_openai", "langchain_community", "langchain_core"):
            assert not uses(path, pkg), f"{rel(path)} imports {pkg}"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_nothing_reads_the_environment_but_settings(path):
    if rel(path) != "settings.py" and not rel(path).startswith("cluster/k8s"):
        src = path.read_text()
        assert "os.environ" not in src and "os.getenv" not in src, f"{rel(path)} reads env"
