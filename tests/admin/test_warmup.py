"""webapp.admin.warmup: the admin console's heavy imports, once per process, before its first page."""

from __future__ import annotations

import importlib
import logging
import threading

import pytest

from webapp.admin import warmup
from webapp.settings import Settings


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not preloaded yet."""
    monkeypatch.setattr(warmup, "_done", False)


def test_imports_once_per_process(fresh, monkeypatch):
    calls = []
    monkeypatch.setattr(warmup, "_count", lambda: calls.append(1), raising=False)
    warmup.preload([("webapp.admin.warmup", "_count")])
    warmup.preload([("webapp.admin.warmup", "_count")])
    assert calls == [1]


def test_a_concurrent_caller_waits_for_the_first(fresh, monkeypatch):
    entered, release, order = threading.Event(), threading.Event(), []

    def slow():
        entered.set()
        release.wait(10)
        order.append("imported")

    monkeypatch.setattr(warmup, "_slow", slow, raising=False)
    first = threading.Thread(target=warmup.preload, args=([("webapp.admin.warmup", "_slow")],))
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=lambda: (warmup.preload([]), order.append("second")))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first caller, not importing alongside it
    release.set()
    first.join(10)
    second.join(10)
    assert order == ["imported", "second"]


def test_a_failing_import_is_logged_and_the_rest_still_run(fresh, monkeypatch, caplog):
    called = []
    monkeypatch.setattr(warmup, "_called", lambda: called.append(1), raising=False)
    with caplog.at_level(logging.WARNING, logger="webapp.admin.warmup"):
        warmup.preload([("webapp.no_such_module", ""), ("webapp.admin.warmup", "_called")])
    assert called == [1]
    assert "importing webapp.no_such_module failed" in caplog.text


@pytest.mark.parametrize(
    ("gke", "with_gke_client"),
    [
        ({"gke_project": "", "gke_location": "", "gke_cluster": ""}, False),
        ({"gke_project": "p", "gke_location": "l", "gke_cluster": "c"}, True),
    ],
)
def test_admin_imports_leave_out_the_gke_client_without_gke(gke, with_gke_client):
    modules = [m for m, _ in warmup.admin_imports(Settings(**gke))]
    assert ("webapp.cluster.node_pools" in modules) is with_gke_client
    assert {"webapp.cluster.k8s", "pandas", "pyarrow", "webapp.store.engine"} <= set(modules)


@pytest.mark.parametrize(("module", "function"), warmup.ADMIN_IMPORTS)
def test_each_listed_import_exists(module, function):
    loaded = importlib.import_module(module)
    if function:
        getattr(loaded, function)()
