"""AppTest: a conversation keeps the generation settings it was answered with, and the
sidebar shows them again when it is reopened (from the list or by its link). These failed
before issue 11.4: only the system prompt was saved, and nothing was read back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.chat.ui.test_chat_page import PAGE, conv_id, send
from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.chat.options import knobs
from webapp.chat.ui.resources import forget_server_facts
from webapp.settings import get_settings

#: one row per generation setting: a value other than its default
OTHER = {
    "system_prompt": "Answer like a pirate.",
    "temperature": 0.35,
    "top_p": 0.8,
    "max_tokens": 128,
}


@pytest.fixture
def page(monkeypatch, tmp_path):
    def make(url, **env):
        monkeypatch.setenv("LLM_URL", url)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        get_settings.cache_clear()
        return AppTest.from_file(PAGE, default_timeout=30)

    yield make
    get_settings.cache_clear()


def widget(at, knob):
    find = {"text": at.sidebar.text_area, "slider": at.sidebar.slider,
            "tokens": at.sidebar.number_input}[knob.kind]  # fmt: skip
    return find(key=knob.key)


def shown(at):
    return {k.key: widget(at, k).value for k in knobs(get_settings())}


def set_all(at, values):
    for knob in knobs(get_settings()):
        widget(at, knob).set_value(values[knob.key])
    at.run()


def defaults():
    return {k.key: k.default for k in knobs(get_settings())}


def test_the_table_has_a_row_per_setting(fake, page):
    page(fake.url)
    assert list(OTHER) == [k.key for k in knobs(get_settings())]
    assert all(OTHER[k] != v for k, v in defaults().items())


def test_reopening_a_conversation_shows_its_settings(fake, page):
    fake.set_script(Script(tokens=["ok"]))
    at = page(fake.url)
    at.run()
    set_all(at, OTHER)
    first = conv_id(send(at, "first topic"))
    at.button(key="new_chat").click().run()
    set_all(at, defaults())
    send(at, "second topic")
    assert shown(at) == defaults()
    at.button(key=f"conv_{first}").click().run()
    assert shown(at) == OTHER
    # the same in a new session opened by the link (reload, another device)
    again = page(fake.url)
    again.query_params["chat"] = first
    again.run()
    assert not again.exception and shown(again) == OTHER
    # and what was sent with the first question was what the sidebar shows
    body = [r for r in fake.requests if r["path"].endswith("completions")][0]["body"]
    sent = {"system_prompt": body["messages"][0]["content"],
            "max_tokens": body["max_completion_tokens"]}  # fmt: skip
    assert {k: sent.get(k, body.get(k)) for k in OTHER} == OTHER


def test_settings_changed_mid_conversation_are_the_ones_kept(fake, page):
    fake.set_script(Script(tokens=["ok"]))
    at = page(fake.url)
    at.run()
    first = conv_id(send(at, "first topic"))
    set_all(at, OTHER)
    send(at, "more")  # answered with the new settings: they are saved with it
    at.button(key="new_chat").click().run()
    set_all(at, defaults())
    at.button(key=f"conv_{first}").click().run()
    assert shown(at) == OTHER


def test_the_model_of_a_reopened_conversation_is_chosen_again_while_served(page):
    with FakeOpenAI(model=["m-one", "m-two"]) as srv:
        srv.set_script(Script(tokens=["hi"]))
        at = page(srv.url)
        at.run()
        at.selectbox(key="model").set_value("m-two").run()
        first = conv_id(send(at, "on two"))
        at.button(key="new_chat").click().run()
        at.selectbox(key="model").set_value("m-one").run()
        send(at, "on one")
        at.button(key=f"conv_{first}").click().run()
        assert at.selectbox(key="model").value == "m-two"
        srv.configure(models=["m-one", "m-three"])  # m-two is no longer served
        forget_server_facts()  # as when the page's short cache of the model list expires
        again = page(srv.url)
        again.query_params["chat"] = first
        again.run()
        assert not again.exception
        assert again.selectbox(key="model").value == "m-one"


@pytest.mark.parametrize(
    ("stored", "restored"),
    [
        ('{"temperature": 99, "top_p": "all", "max_tokens": -1, "system_prompt": 5}', {}),
        ('{"temperature": 1, "max_tokens": 256.0}', {"temperature": 1.0, "max_tokens": 256}),
    ],
    ids=["out of bounds", "numbers as JSON gives them"],
)
def test_saved_settings_are_restored_only_when_the_sidebar_can_show_them(
    fake, page, tmp_path, stored, restored
):
    """Stored settings are data: a value the sidebar cannot show is left out, no error."""
    fake.set_script(Script(tokens=["ok"]))
    at = page(fake.url)
    at.run()
    first = conv_id(send(at, "hello"))
    with sqlite3.connect(Path(tmp_path) / "chat.db") as db:
        db.execute("UPDATE conversations SET chat_settings = ?", (stored,))
    again = page(fake.url)
    again.query_params["chat"] = first
    again.run()
    assert not again.exception and shown(again) == defaults() | restored


def test_a_shared_conversation_shows_its_settings_but_keeps_them(fake, page):
    """Someone with the link sees the owner's settings; changing them saves nothing."""
    fake.set_script(Script(tokens=["ok"]))
    at = page(fake.url)
    at.run()
    set_all(at, OTHER)
    first = conv_id(send(at, "mine"))
    guest = page(fake.url)
    guest.query_params["chat"] = first
    guest.run()
    assert shown(guest) == OTHER
    set_all(guest, defaults())
    send(guest, "theirs")
    owner = page(fake.url)
    owner.session_state["browser_key"] = at.session_state["browser_key"]
    owner.query_params["chat"] = first
    owner.run()
    assert shown(owner) == OTHER


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv
