"""The admin UI only draws: every read and action goes through the admin core
(``webapp.admin.status``, ``webapp.admin.jobs`` / ``actions``). From the packages below
(``webapp.cluster``, ``webapp.llm``) a section may import types and errors to name what
it draws or catches, never a function to call."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[3] / "webapp" / "admin" / "ui"
BELOW = ("webapp.cluster", "webapp.llm")


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from webapp.cluster/llm... import name`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(BELOW):
            found += [(node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith(BELOW)]
    return found


@pytest.mark.parametrize("path", sorted(UI.glob("*.py")), ids=lambda p: p.name)
def test_admin_ui_imports_only_types_and_errors_from_below(path):
    for module, name in imported_names(path):
        assert name, f"{path.name} imports the module {module}"
        obj = getattr(importlib.import_module(module), name)
        assert inspect.isclass(obj), f"{path.name} imports {module}.{name}, not a type"


def test_the_check_sees_a_function_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from webapp.cluster.inventory import PodInfo, pod_logs\n")
    names = imported_names(bad)
    assert names == [
        ("webapp.cluster.inventory", "PodInfo"),
        ("webapp.cluster.inventory", "pod_logs"),
    ]
    assert not inspect.isclass(getattr(importlib.import_module(names[1][0]), names[1][1]))
