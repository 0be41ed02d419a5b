"""AppTest of the admin page's "Model pools" section (``webapp/admin/ui/fleet.py``) against the
fake Kubernetes API seeded with the inference-gateway layout and a fake vLLM behind the pod
proxy: hidden without FLEET; the table with live numbers; deploy a second model as a pool and
scale it; a bad pool name and a pool another admin holds are refused in plain words."""

from __future__ import annotations

import pytest

from tests.admin.ui.test_admin_page import page, run_until, texts  # noqa: F401 - the fixture
from tests.support.admin_world import admin_world
from tests.support.cluster import NS
from tests.support.fleet import seed_fleet
from webapp.cluster import fleet
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock
from webapp.cluster.pools import PoolSpec, pool_labels


@pytest.fixture
def world():
    with admin_world(seed=seed_fleet) as w:
        w.llm.configure(metrics_override={"vllm:num_requests_waiting": 2.0})
        for pool in ("vllm", "vllm-mistral-7b"):
            w.fc.proxy_pod_to(NS, w.llm.url, labels=pool_labels(pool))
        yield w


def fleet_table(at) -> list[dict]:
    (table,) = [t for t in at.table]
    return table.value.to_dict("records")


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_the_single_service_install_has_no_pools_section(page, world):  # noqa: F811
    at = page(world, tab="Models")
    assert "Model pools" not in texts(at)
    assert not at.table


def test_deploy_a_second_model_as_a_pool_then_scale_it(page, world):  # noqa: F811
    at = page(world, FLEET="true", tab="Models")
    assert "Model pools" in texts(at)
    (row,) = fleet_table(at)
    assert (row["Pool"], row["Model"], row["GPU"], row["Replicas ready"]) == (
        "vllm", "llama-2-7b", "1 × L4", "1/1")  # fmt: skip
    assert (row["Traffic"], row["Waiting"], row["Autoscaling"]) == ("100%", "2", "off")
    assert row["vLLM"] == "v0.32.0"  # the version its image names
    at.selectbox(key="pool_model").set_value("mistral-7b").run()
    assert "Verdict: FITS" in texts(at)
    button(at, "Deploy mistral-7b as pool").click().run()
    at = run_until(at, lambda a: "vllm-mistral-7b: 1/1 replicas ready." in texts(a))
    rows = {r["Pool"]: r for r in fleet_table(at)}
    assert rows["vllm-mistral-7b"]["Model"] == "mistral-7b"
    assert rows["vllm-mistral-7b"]["Waiting"] == "2"
    at.number_input(key="pool_rep_vllm-mistral-7b").set_value(0).run()
    button(at, "Scale vllm-mistral-7b").click().run()
    at = run_until(at, lambda a: "Pool vllm-mistral-7b is asleep" in texts(a))
    rows = {r["Pool"]: r for r in fleet_table(at.run())}
    assert rows["vllm-mistral-7b"]["Replicas ready"].endswith("(asleep)")


def test_a_bad_name_and_a_held_pool_are_refused_in_plain_words(page, world):  # noqa: F811
    at = page(world, FLEET="true", tab="Models")
    at.text_input(key="pool_name_llama-2-7b").set_value("Bad_Name").run()
    button(at, "Deploy llama-2-7b as pool").click().run()
    assert "The pool name 'Bad_Name' is not allowed" in texts(at)
    acquire_lock(connect(world.fc.kubeconfig_path), NS, "bob@example.com", pool="vllm")
    button(at, "Scale vllm").click().run()
    assert "bob@example.com is already" in texts(at)
    assert len(fleet_table(at)) == 1


def test_min_zero_says_the_pool_sleeps_and_the_chat_wakes_it(page, world):  # noqa: F811
    at = page(world, FLEET="true", tab="Models", GKE_PROJECT="my-project")
    low = at.number_input(key="pool_min_vllm")
    assert "sleeps" in low.help and "the chat wakes it" in low.help
    assert "10 minutes without a request" in low.help
    low.set_value(0).run()
    at.number_input(key="pool_max_vllm").set_value(2).run()
    button(at, "Set autoscaling of vllm").click().run()
    at = run_until(at, lambda a: "Pool vllm autoscales from 0 (scale to zero)" in texts(a))
    so = world.fc.get("scaledobjects", "vllm", NS)
    assert so["spec"]["minReplicaCount"] == 0
    assert "projects/my-project/" in so["spec"]["triggers"][0]["metadata"]["serverAddress"]


def test_switch_a_pools_model_and_its_route_follows(page, world):  # noqa: F811
    at = page(world, FLEET="true", tab="Models")
    at.selectbox(key="switch_model_vllm").set_value("falcon-7b").run()
    button(at, "Switch vllm to falcon-7b").click().run()
    at = run_until(at, lambda a: "The gateway now sends falcon-7b to pool vllm." in texts(a))
    at = run_until(at, lambda a: fleet_table(a)[0]["Model"] == "falcon-7b")
    assert fleet_table(at)[0]["Pool"] == "vllm"


def test_autoscale_to_zero_then_remove_a_pool(page, world):  # noqa: F811
    cluster = connect(world.fc.kubeconfig_path)
    fleet.create_pool(cluster, NS, PoolSpec("vllm-mistral-7b", "mistral-7b"),
                      hf_repo="mistralai/Mistral-7B-v0.1", max_model_len=4096,
                      catalog_ids=("llama-2-7b", "mistral-7b"))  # fmt: skip
    at = page(world, FLEET="true", tab="Models", GKE_PROJECT="my-project")
    pool = "vllm-mistral-7b"
    at.number_input(key=f"pool_min_{pool}").set_value(0)
    at.number_input(key=f"pool_max_{pool}").set_value(3).run()
    button(at, f"Set autoscaling of {pool}").click().run()
    at = run_until(at, lambda a: f"Pool {pool} autoscales from 0 (scale to zero)" in texts(a))
    rows = {r["Pool"]: r for r in fleet_table(at.run())}
    assert rows[pool]["Autoscaling"] == "0–3 (target 4 waiting)"
    button(at, f"Remove {pool}").click().run()
    at = run_until(at, lambda a: f"Pool {pool} removed." in texts(a))
    assert [r["Pool"] for r in fleet_table(at.run())] == ["vllm"]
