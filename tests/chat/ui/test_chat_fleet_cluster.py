"""AppTest of the chat with its fleet on the real cluster layer (issue 14, FLEET_DISCOVERY):
the page's ``ClusterFleet`` talks through the real kubernetes client to the fake API server
seeded as we ship it, with a second pool made by ``fleet.create_pool``; a fake OpenAI server
stands in for the gateway, serving a model while a ready pod of the fake serves it
(``GatewayStandIn``). Nothing of ours is replaced."""

from __future__ import annotations

import pytest

from tests.chat.ui import test_chat_page as chat_page
from tests.chat.ui.test_chat_fleet import completions, infos, run_until
from tests.chat.ui.test_chat_page import chat, send
from tests.fakes.k8s_server import arg_value, pod_args
from tests.support.fleet import two_pool_gateway
from webapp.cluster import fleet_scaling

page = chat_page.page  # the chat page's fixture
NS = "vllm"
MISTRAL = "mistral-7b"


@pytest.fixture
def world():
    """(fake cluster, fake gateway, admin clients): pools "vllm" (llama-2-7b) and "mistral"
    (mistral-7b) serving, behind the gateway stand-in."""
    with two_pool_gateway(["answered"], NS) as world:
        yield world


def open_chat(page, fake, srv):
    return page(srv.url, FLEET_DISCOVERY="true", KUBECONFIG=fake.kubeconfig_path,
                K8S_NAMESPACE=NS)  # fmt: skip


def pod_phase(fake, model: str) -> str:
    """The phase of ``model``'s pod ("Running/ready", "Running", "Pending"), "" for none."""
    with fake.lock:
        for (ns, _), pod in fake.objects["pods"].items():
            if ns == NS and arg_value(pod_args(pod["spec"]), "--served-model-name") == model:
                ready = any(c["type"] == "Ready" and c["status"] == "True"
                            for c in pod["status"].get("conditions", []))  # fmt: skip
                return pod["status"].get("phase", "Pending") + ("/ready" if ready else "")
    return ""


def stray_values(at) -> list[str]:
    """Values Streamlit's magic drew from a bare expression of the page (`True`, `False`)."""
    return [m.value for m in at.markdown if m.value in ("`True`", "`False`", "`None`")]


def test_the_picker_lists_both_pools_models_from_the_cluster(page, world):
    fake, srv, _ = world
    at = open_chat(page, fake, srv)
    assert not at.exception
    assert at.selectbox(key="model").options == ["llama-2-7b", MISTRAL]
    at.selectbox(key="model").set_value(MISTRAL).run()
    send(at, "hello mistral")
    assert chat(at)[1] == ("assistant", ["answered"])
    assert [b["model"] for b in completions(srv)] == [MISTRAL]
    assert stray_values(at) == []


def test_a_pool_at_zero_is_said_asleep_woken_and_the_kept_message_answered(page, world):
    fake, srv, admin = world
    fleet_scaling.scale_pool(admin, NS, "mistral", 0)
    assert fake.wait_for(lambda f: MISTRAL not in f.served_models(NS), 10)
    fake.ready_delay = 3.0  # the woken replica loads its weights for a while
    fake.reset_counts()
    at = open_chat(page, fake, srv)
    at.selectbox(key="model").set_value(MISTRAL).run()
    assert any("asleep" in c.value for c in at.sidebar.caption)
    at = send(at, "hello sleepy")
    assert not at.exception
    assert chat(at) == [("user", ["hello sleepy"])]  # kept, not failed
    said = " ".join(infos(at))
    assert f"{MISTRAL} was asleep and is being woken" in said, said
    assert stray_values(at) == []
    assert not any("asleep" in c.value for c in at.sidebar.caption)  # not stale: it wakes
    assert fake.get("deployments", "mistral", NS)["spec"]["replicas"] == 1  # woken: 0 -> 1
    phases, sayings = [], []

    def watch(a) -> bool:
        phases.append(pod_phase(fake, MISTRAL))
        sayings.extend(infos(a))
        return len(chat(a)) == 2

    run_until(at, watch, timeout_s=30)
    assert not at.exception
    assert chat(at) == [("user", ["hello sleepy"]), ("assistant", ["answered"])]
    assert [(b["model"], b["messages"][-1]["content"]) for b in completions(srv)] == [
        (MISTRAL, "hello sleepy")
    ]
    assert "Running" in phases and phases[-1] == "Running/ready", phases  # loaded, then ready
    assert any("starting the model server" in s for s in sayings), sayings
    assert fake.request_counts[("patch", "deployments/scale")] == 1  # woken once, by the chat
    assert not [r for r in fake.requests if r.verb == "list"]  # by name only: its Role
