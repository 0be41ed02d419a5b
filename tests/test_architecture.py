"""House rules that code review alone would let slip (README.md, "Layout")."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEBAPP = ROOT / "webapp"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
ERROR_POLICY = (
    "Error policy (the same sentence opens every ``errors`` module): the UI decides what a user "
    "sees, mapping each type to its own plain-language words and showing a message as is only "
    "where its ``errors`` module says it is written for users, and no message ever holds a "
    "secret, a stack trace or another user's data."
)

# modules or functions allowed over the limits (none today); an entry that no longer offends
# (or names nothing) fails, so the list only shrinks
OVERSIZED: dict[str, str] = {}
WITHOUT_POLICY: set[str] = set()


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


def test_the_readme_section_this_file_points_at_exists():
    """The opening line names a README section; it must be there to read."""
    section = re.search(r'README\.md, "([^"]+)"', __doc__ or "")
    assert section, "the module docstring names no README section"
    headings = re.findall(r"^#+ (.+?)\s*$", (ROOT / "README.md").read_text(), re.M)
    assert section.group(1) in headings


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_functions(path: Path) -> dict[str, int]:
    """``{"<module>::<name>": lines}`` of every function or method over the limit."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {
        f"{rel(path)}::{node.name}": node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_modules_and_functions_stay_small(path):
    """No module over 400 lines, no function over 60 in webapp/ (bench/ and tests/ may be longer
    where a table or a scenario reads better whole)."""
    too_long = lines(path) > MAX_MODULE_LINES
    if rel(path) in OVERSIZED:
        assert too_long, f"{rel(path)} is {lines(path)} lines now: remove it from OVERSIZED"
    else:
        assert not too_long, f"{rel(path)} has {lines(path)} lines (> {MAX_MODULE_LINES})"
    functions = long_functions(path)
    for name, n in functions.items():
        assert name in OVERSIZED, f"{name} has {n} lines (> {MAX_FUNCTION_LINES})"
    for name in OVERSIZED:
        if name.startswith(rel(path) + "::"):
            assert name in functions, f"{name} is short now: remove it from OVERSIZED"


def test_the_size_allow_list_names_existing_modules():
    for name in OVERSIZED:
        assert (WEBAPP / name.split("::")[0]).is_file(), f"{name}: remove it from OVERSIZED"


@pytest.mark.parametrize("path", sorted(WEBAPP.rglob("errors.py")), ids=rel)
def test_every_errors_module_states_the_same_policy(path):
    """One policy for what users may see, stated at the top of each package's errors."""
    if rel(path) in WITHOUT_POLICY:
        return
    doc = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
    assert ERROR_POLICY in doc, f"{rel(path)} does not state the error policy"
