"""AppTest of the chat with a fleet of model pools (issue 14, FLEET_DISCOVERY): the picker
lists every served model; a message to a model whose pool sleeps at 0 replicas is kept,
the pool woken once, and the message sent when the model answers; a refused wake keeps the
message with a plain reason; without discovery nothing changes.

The fleet is a small in-test ``Fleet`` (the protocol the chat page depends on) in front of
the fake OpenAI server, standing in for a gateway: a model answers once its pool is up."""

from __future__ import annotations

import re
import time

import pytest
from streamlit.testing.v1 import AppTest

from tests.chat.ui import test_chat_page as chat_page
from tests.chat.ui.test_chat_page import PAGE, chat, send
from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.chat import fleet as chat_fleet
from webapp.chat.errors import FleetUnavailable
from webapp.chat.fleet import pool_condition
from webapp.chat.ui import resources

page = chat_page.page  # the chat page's fixture


class Pools:
    """Model pools behind one fake OpenAI server standing in for the gateway: ``replicas``
    wanted per model, ``up`` the models with a ready replica, ``routed`` those the gateway
    sends requests to (the fake server serves them)."""

    def __init__(self, srv: FakeOpenAI, replicas: dict[str, int], up: list[str]) -> None:
        self.srv, self.replicas = srv, replicas
        self.up, self.routed = list(up), list(up)
        self.wakes: list[str] = []
        self.calls = 0
        self.unreadable: FleetUnavailable | None = None
        self.pools_unreadable: FleetUnavailable | None = None  # the route only: the chat's Role
        self.refuse: FleetUnavailable | None = None
        srv.configure(models=self.routed)

    def models(self) -> list[str]:
        self.calls += 1
        if self.unreadable:
            raise self.unreadable
        return list(self.replicas)

    def state(self, model: str) -> str:
        self.calls += 1
        if self.unreadable or self.pools_unreadable:
            raise self.unreadable or self.pools_unreadable
        if model not in self.replicas:
            return "unknown"
        return pool_condition([(self.replicas[model], 1 if model in self.up else 0)])

    def wake(self, model: str) -> None:
        self.calls += 1
        if self.refuse:
            raise self.refuse
        self.wakes.append(model)
        self.replicas[model] = max(1, self.replicas[model])

    def come_up(self, model: str, routed: bool = True) -> None:
        """The woken pool's replica is ready; ``routed``: the gateway routes to it too."""
        self.up.append(model)
        if routed:
            self.route(model)

    def route(self, model: str) -> None:
        self.routed.append(model)
        self.srv.configure(models=self.routed)


@pytest.fixture
def srv():
    with FakeOpenAI(model=["pool-a"], max_model_len=4096) as s:
        s.set_script(Script(tokens=["answered"]))
        yield s


@pytest.fixture
def pools(srv, monkeypatch):
    """pool-a serving, pool-b asleep (0 replicas), pool-c serving too; given to the page."""
    made = Pools(srv, {"pool-a": 1, "pool-b": 0, "pool-c": 1}, up=["pool-a", "pool-c"])
    monkeypatch.setattr(chat_fleet, "cluster_fleet", lambda kubeconfig, namespace: made)
    resources._fleet.clear()  # one fleet per process: this test's
    yield made
    resources._fleet.clear()


def completions(srv) -> list[dict]:
    return [r["body"] for r in srv.requests if r["path"].endswith("completions")]


def infos(at) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", i.value) for i in at.info]  # markdown escapes undone


def warnings(at) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", w.value) for w in at.warning]


def run_until(at, done, timeout_s=10.0):
    """Rerun the page (as its 2 s poll does) until ``done(at)``: the fleet's condition is
    read anew in the background once its 2 s cache runs out."""
    deadline = time.monotonic() + timeout_s
    while not done(at) and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    return at


def test_the_picker_lists_every_served_model(page, srv, pools):
    srv.configure(listed_models=["pool-a"])  # /v1/models reaches the default pool only
    at = page(srv.url, FLEET_DISCOVERY="true")
    assert not at.exception
    assert at.selectbox(key="model").options == ["pool-a", "pool-b", "pool-c"]
    at.selectbox(key="model").set_value("pool-c").run()
    assert "context 4,096 tokens" in " ".join(c.value for c in at.sidebar.caption)
    send(at, "hello c")
    assert chat(at)[1] == ("assistant", ["answered"])
    assert [b["model"] for b in completions(srv)] == ["pool-c"]
    at.selectbox(key="model").set_value("pool-b").run()
    assert any("asleep" in c.value for c in at.sidebar.caption)
    assert pools.wakes == []  # picking it wakes nothing: a message does


def test_a_sleeping_model_is_woken_and_then_answers(page, srv, pools):
    at = page(srv.url, FLEET_DISCOVERY="true")
    at.selectbox(key="model").set_value("pool-b").run()
    at = send(at, "hello b")
    assert not at.exception
    assert chat(at) == [("user", ["hello b"])]  # kept, not failed
    said = " ".join(infos(at))
    assert "pool-b was asleep and is being woken" in said, said
    assert "Your message will be sent when the model is ready" in said
    assert pools.wakes == ["pool-b"] and completions(srv) == []
    assert at.button(key="cancel_held") and not [b for b in at.button if b.key == "redo"]
    at.run()  # the page's poll while the pool loads: nothing sent, not woken again
    assert chat(at) == [("user", ["hello b"])] and pools.wakes == ["pool-b"]
    assert "starting the model server" in " ".join(infos(at))
    # another user asks the same sleeping model: kept too, and the pool is not woken twice
    other = AppTest.from_file(PAGE, default_timeout=30)
    other.run()
    other.selectbox(key="model").set_value("pool-b").run()
    send(other, "me too")
    assert chat(other) == [("user", ["me too"])] and pools.wakes == ["pool-b"]
    pools.come_up("pool-b")
    run_until(at, lambda a: len(chat(a)) == 2)
    assert not at.exception
    assert chat(at) == [("user", ["hello b"]), ("assistant", ["answered"])]
    assert [(b["model"], b["messages"][-1]["content"]) for b in completions(srv)] == [
        ("pool-b", "hello b")
    ]
    assert not any("being woken" in s for s in infos(at))


def test_a_kept_message_for_a_sleeping_model_can_be_cancelled(page, srv, pools):
    at = page(srv.url, FLEET_DISCOVERY="true")
    at.selectbox(key="model").set_value("pool-b").run()
    at = send(at, "never mind")
    at.button(key="cancel_held").click().run()
    assert chat(at) == [("user", ["never mind"])]  # still there, with Retry
    assert at.button(key="redo").label == "Retry"
    assert not any("will be sent" in s for s in infos(at))
    at.button(key="redo").click().run()  # Retry while the pool still loads: kept again
    assert "pool-b was asleep and is being woken" in " ".join(infos(at))
    assert chat(at) == [("user", ["never mind"])] and completions(srv) == []
    pools.come_up("pool-b")
    run_until(at, lambda a: len(chat(a)) == 2)
    assert chat(at) == [("user", ["never mind"]), ("assistant", ["answered"])]
    assert pools.wakes == ["pool-b"]  # woken once


def test_a_refused_wake_is_said_plainly_and_loses_nothing(page, srv, pools):
    pools.refuse = FleetUnavailable("the chat is not allowed to wake models")
    at = page(srv.url, FLEET_DISCOVERY="true")
    at.selectbox(key="model").set_value("pool-b").run()
    at = send(at, "wake up")
    assert not at.exception
    assert chat(at) == [("user", ["wake up"])]  # kept
    said = " ".join(warnings(at))
    assert "pool-b is asleep and could not be woken: the chat is not allowed to wake models" in (
        said
    )
    assert "Your message is kept" in said
    assert at.button(key="redo").label == "Retry" and completions(srv) == []
    assert not [b for b in at.button if b.key == "cancel_held"]
    # the administrator fixed the role: Retry wakes it and keeps the message until it answers
    pools.refuse = None
    at.button(key="redo").click().run()
    assert pools.wakes == ["pool-b"] and not warnings(at)
    assert "pool-b was asleep and is being woken" in " ".join(infos(at))
    pools.come_up("pool-b")
    run_until(at, lambda a: len(chat(a)) == 2)
    assert chat(at) == [("user", ["wake up"]), ("assistant", ["answered"])]


def test_an_unreadable_fleet_falls_back_to_the_server_and_llm_models(page, srv, pools):
    pools.unreadable = FleetUnavailable("the cluster cannot be reached right now")
    srv.configure(models=["pool-a", "pool-b"], listed_models=["pool-a"])
    at = page(srv.url, FLEET_DISCOVERY="true", LLM_MODELS="pool-b")
    assert not at.exception and not at.warning and not at.error
    assert at.selectbox(key="model").options == ["pool-a", "pool-b"]
    at.selectbox(key="model").set_value("pool-b").run()
    send(at, "hello")
    assert chat(at)[1] == ("assistant", ["answered"])
    assert pools.wakes == []


def test_without_discovery_the_fleet_is_never_asked(page, srv, pools):
    srv.configure(models=["pool-a", "pool-b"], listed_models=["pool-a"])
    at = page(srv.url, LLM_MODELS="pool-b")
    assert at.selectbox(key="model").options == ["pool-a", "pool-b"]
    at.selectbox(key="model").set_value("pool-b").run()
    send(at, "hello")
    assert chat(at)[1] == ("assistant", ["answered"])
    assert pools.calls == 0


def test_a_new_chat_drops_the_refused_wake_notice(page, srv, pools):
    pools.refuse = FleetUnavailable("the cluster cannot be reached right now")
    at = page(srv.url, FLEET_DISCOVERY="true")
    at.selectbox(key="model").set_value("pool-b").run()
    at = send(at, "wake up")
    assert any("could not be woken" in w for w in warnings(at))
    at.button(key="new_chat").click().run()
    assert not any("could not be woken" in w for w in warnings(at))


def test_a_woken_model_is_asked_only_once_the_gateway_routes_to_it(page, srv, pools):
    at = page(srv.url, FLEET_DISCOVERY="true")
    at.selectbox(key="model").set_value("pool-b").run()
    at = send(at, "hello b")
    pools.come_up("pool-b", routed=False)  # ready in the cluster, not yet behind the gateway
    time.sleep(2.5)  # the fleet's 2 s cache runs out: it reads "serving"
    at.run()
    at.run()
    assert chat(at) == [("user", ["hello b"])] and completions(srv) == []  # still kept
    assert at.button(key="cancel_held")
    pools.route("pool-b")
    run_until(at, lambda a: len(chat(a)) == 2)
    assert chat(at) == [("user", ["hello b"]), ("assistant", ["answered"])]
    assert [b["model"] for b in completions(srv)] == ["pool-b"]


def test_with_the_route_readable_only_a_model_not_answering_is_woken(page, srv, pools):
    """The chat's Role reads the route and wakes, but cannot list the pools' replicas: a
    routed model that does not answer is woken and the message kept; one that answers is
    asked at once."""
    pools.pools_unreadable = FleetUnavailable("the chat is not allowed to wake models")
    at = page(srv.url, FLEET_DISCOVERY="true")
    # /v1/models first (both serving pools, here), then the route's other models
    assert at.selectbox(key="model").options == ["pool-a", "pool-c", "pool-b"]
    at.selectbox(key="model").set_value("pool-c").run()
    send(at, "hello c")
    assert chat(at)[1] == ("assistant", ["answered"]) and pools.wakes == []
    at.selectbox(key="model").set_value("pool-b").run()
    send(at, "hello b")
    assert chat(at)[2:] == [("user", ["hello b"])] and pools.wakes == ["pool-b"]
    assert "pool-b was not answering and is being woken" in " ".join(infos(at))
    pools.come_up("pool-b")
    run_until(at, lambda a: len(chat(a)) == 4)
    assert chat(at)[3] == ("assistant", ["answered"])
    assert [b["model"] for b in completions(srv)] == ["pool-c", "pool-b"]
