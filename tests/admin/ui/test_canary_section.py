"""AppTest of the Canary section against the fake cluster seeded with the pooled layout (the
default pool "vllm" and a pool "vllm-mistral"), the fake GKE API, and a gateway stand-in
sending traffic by the HTTPRoute weights to two fake vLLM servers playing the pools' pods
(their /metrics read through the fake API's pod proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from tests.admin.ui import test_admin_page as admin_page
from tests.admin.ui.test_admin_page import run_until, table, texts
from tests.fakes.k8s_server import FakeCluster
from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.admin_world import AdminWorld, admin_world
from tests.support.cluster import NS
from tests.support.fleet import seed_fleet
from tests.support.gateway_traffic import GatewayTraffic
from webapp.admin.catalog import load_catalog
from webapp.cluster import fleet
from webapp.cluster.k8s import connect
from webapp.cluster.pools import PoolSpec, pool_labels

page = admin_page.page  # the admin page's fixture
MODEL, STABLE, CANARY, NEW = "mistral-7b", "vllm-mistral", "vllm-mistral-canary", "falcon-7b"
CATALOG = load_catalog()


def seed_pools(fc: FakeCluster) -> None:
    """The pooled layout: the default pool and "vllm-mistral", a free GPU for a canary."""
    fc.add_node("gpu-c")
    seed_fleet(fc, NS)
    entry = CATALOG.get(MODEL)
    fleet.create_pool(
        connect(fc.kubeconfig_path), NS, PoolSpec(STABLE, MODEL), hf_repo=entry.hf_repo,
        max_model_len=entry.recommended.max_model_len,
        catalog_ids=[m.id for m in CATALOG.models],
    )  # fmt: skip


@dataclass
class CanaryWorld:
    """The admin page's fakes and the servers playing each pool's pods."""

    admin: AdminWorld
    servers: dict[str, FakeOpenAI]

    @property
    def fc(self) -> FakeCluster:
        return self.admin.fc

    def env(self) -> dict[str, str]:
        return self.admin.env()


@pytest.fixture
def world() -> Iterator[CanaryWorld]:
    with ExitStack() as stack:
        w = stack.enter_context(admin_world(seed=seed_pools))
        servers = {}
        for pool in (STABLE, CANARY):
            server = stack.enter_context(FakeOpenAI(model=MODEL))
            server.set_script(Script(ttft_s=0.2, n_tokens=4))
            w.fc.proxy_pod_to(NS, server.url, labels=pool_labels(pool))
            servers[pool] = server
        assert w.fc.wait_for(lambda f: ready(f, STABLE), 10)
        yield CanaryWorld(w, servers)


def ready(fc: FakeCluster, pool: str) -> bool:
    dep = fc.get("deployments", pool, NS)
    return bool(dep and (dep.get("status") or {}).get("readyReplicas"))


def open_form(at, soak=1, need=5, ttft=2.0):
    at.toggle(key="canary_open").set_value(True).run()
    assert not at.exception, at.exception
    at.number_input(key="canary_soak").set_value(soak)
    at.number_input(key="canary_need").set_value(need)
    at.number_input(key="canary_ttft").set_value(ttft)
    at.selectbox(key="canary_model").set_value(NEW)
    return at


def start(at):
    at.button(key="canary_start").click().run()
    assert not at.exception, at.exception


def test_the_section_offers_only_pools_a_canary_can_switch(world, page):
    at = page(world, FLEET="true", tab="Models")
    assert not at.exception, at.exception
    assert "Canary" in [h.value for h in at.subheader]
    open_form(at)
    assert at.selectbox(key="canary_pool").options == [
        f"{STABLE} — {MODEL}, 1 replica(s)"
    ]  # not the default pool


def test_a_canary_that_promotes_shows_its_steps_signals_and_decision(world, page):
    at = open_form(page(world, FLEET="true", tab="Models"))
    with GatewayTraffic(world.fc, NS, MODEL, {p: s.url for p, s in world.servers.items()}):
        start(at)
        run_until(at, lambda a: "Promoted" in texts(a), timeout=90)
    shown = texts(at)
    assert "**Steps:** 5% ✓ → 25% ✓ → 50% ✓ → 100% ✓" in shown
    assert f"**Traffic now:** {STABLE} 0% · {CANARY} 100%" in shown
    assert "**Decision (promote):** The canary's error rate 0.0%" in shown
    assert f"{CANARY} serves the model; pool {STABLE} was removed." in shown
    windows = table(at, "TTFT p95 canary")
    assert list(windows["step"])[-1] == "4 (100%)"
    judged = windows[windows["decision"] == "promote"]
    assert len(judged) == 4 and all(n >= 5 for n in judged["canary requests"])
    assert all(t.endswith("ms") for t in judged["TTFT p95 canary"])
    assert [p.name for p in fleet.list_pools(connect(world.fc.kubeconfig_path), NS)] == [
        "vllm", CANARY]  # fmt: skip


def test_a_canary_with_3x_the_ttft_rolls_back_with_its_reason_shown(world, page):
    world.servers[CANARY].set_script(Script(ttft_s=0.6, n_tokens=4))
    at = open_form(page(world, FLEET="true", tab="Models"))
    with GatewayTraffic(world.fc, NS, MODEL, {p: s.url for p, s in world.servers.items()}):
        start(at)
        run_until(at, lambda a: "Rolled back" in texts(a), timeout=90)
    shown = texts(at)
    assert "**Steps:** 5% ✗ → 25% → 50% → 100%" in shown
    assert "**Decision (rollback):** TTFT p95 of the canary" in shown
    assert f"**Traffic now:** {STABLE} 100% · {CANARY} 0%" in shown
    assert world.fc.get("deployments", CANARY, NS) is None


def test_a_refused_canary_says_why_and_writes_nothing(world, page):
    cluster = connect(world.fc.kubeconfig_path)
    fleet.create_pool(
        cluster, NS, PoolSpec("vllm-qwen", "falcon-7b"), hf_repo="tiiuae/falcon-7b",
        max_model_len=2048, catalog_ids=[m.id for m in CATALOG.models],
    )  # fmt: skip
    assert world.fc.wait_for(lambda f: ready(f, "vllm-qwen"), 10)
    at = open_form(page(world, FLEET="true", tab="Models"))
    start(at)
    assert "Canary not started" in texts(at) and "the canary of pool vllm-mistral" in texts(at), (
        texts(at)
    )
    assert world.fc.get("deployments", CANARY, NS) is None


def test_a_canary_of_a_new_vllm_version_shows_what_changes(world, page):
    at = open_form(page(world, FLEET="true", tab="Models"))
    assert f"{STABLE} runs vLLM v0.32.0 (vllm/vllm-openai:v0.32.0)" in texts(at)
    at.selectbox(key="canary_model").set_value(None)  # keep the weights
    at.text_input(key="canary_image").set_value("vllm/vllm-openai:v0.33.1")
    at.number_input(key="canary_stream_interval").set_value(8)
    start(at)
    shown = texts(at)
    assert f"Canary of pool {STABLE}: {MODEL}" in shown
    assert "**Changes:** vLLM v0.32.0 → v0.33.1 · --stream-interval 4 → 8" in shown, shown
    at.button(key="cancel_canary").click().run()
    run_until(at, lambda a: "Cancelled" in texts(a), timeout=60)
    assert world.fc.get("deployments", CANARY, NS) is None


def test_an_image_of_another_repository_is_refused_and_nothing_written(world, page):
    at = open_form(page(world, FLEET="true", tab="Models"))
    at.text_input(key="canary_image").set_value("evil.example/miner:v1")
    start(at)
    assert "Canary not started: The model settings are not valid: image" in texts(at)
    assert "is not a vLLM image this pool may run" in texts(at)
    assert world.fc.get("deployments", CANARY, NS) is None
