"""AppTest of the chat page while the model is switched (issue 13.3): with a load in
progress in the store (as the admin's switch publishes it) and the model server down, the
page says what is happening, keeps a message sent meanwhile and sends it once the server
is healthy, or lets the user cancel it."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime

import pytest

from tests.chat.ui import test_chat_page as chat_page
from tests.chat.ui.test_chat_page import chat, send
from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.store import ConversationStore
from webapp.store.loads import LoadInProgress, ModelLoad, finish_load, publish_load

page = chat_page.page  # the chat page's fixture
MODEL = "Qwen2.5-7B-Instruct"


@pytest.fixture
def down_url():
    """The URL of a model server that is not there (yet)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port, f"http://127.0.0.1:{port}"


@pytest.fixture
def loading(tmp_path):
    """A switch to MODEL under way, published in the chat's database; finish() ends it."""
    store = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    now = datetime.now(UTC)
    load_id = publish_load(
        store, LoadInProgress(MODEL, "nvidia-l4", now, "loading weights", 40.0, now)
    )

    def finish():
        finish_load(store, load_id, ModelLoad(MODEL, "nvidia-l4", now, datetime.now(UTC)))

    return finish


def infos(at) -> list[str]:
    return [re.sub(r"\\(.)", r"\1", i.value) for i in at.info]  # markdown escapes undone


def test_a_message_sent_while_switching_is_kept_and_sent_when_ready(page, down_url, loading):
    port, url = down_url
    at = page(url)
    assert not at.exception
    said = infos(at)
    found = [re.fullmatch(rf"Switching to {MODEL}: loading the weights, about (\d+) s left", s)
             for s in said]  # fmt: skip
    left = [int(m[1]) for m in found if m]
    assert left and 20 <= left[0] <= 40, said  # counted down from 40 s since it was published
    at = send(at, "hello while loading")
    assert chat(at) == [("user", ["hello while loading"])]  # kept, not failed
    assert any("Your message will be sent when the model is ready" in s for s in infos(at))
    assert at.button(key="cancel_held") and not [b for b in at.button if b.key == "redo"]
    at.run()  # still loading: still waiting, nothing sent
    assert chat(at) == [("user", ["hello while loading"])]
    with FakeOpenAI(port=port, model=MODEL) as srv:
        srv.set_script(Script(tokens=["ready now"]))
        loading()
        at.run()  # the page's poll: the server is healthy, the message goes
        assert not at.exception
        assert chat(at) == [("user", ["hello while loading"]), ("assistant", ["ready now"])]
        sent = [r for r in srv.requests if r["path"].endswith("completions")]
        assert (
            len(sent) == 1 and sent[0]["body"]["messages"][-1]["content"] == "hello while loading"
        )
    assert not any("Switching to" in s for s in infos(at))


def test_a_kept_message_can_be_cancelled_and_retried_later(page, down_url, loading):
    port, url = down_url
    at = send(page(url), "never mind")
    at.button(key="cancel_held").click().run()
    assert chat(at) == [("user", ["never mind"])]  # still there, with Retry
    assert at.button(key="redo").label == "Retry"
    assert not any("will be sent" in s for s in infos(at))
    assert any(s.startswith(f"Switching to {MODEL}") for s in infos(at))


def test_without_a_switch_a_down_server_fails_as_before(page, down_url):
    _, url = down_url
    at = send(page(url), "hello")
    assert "cannot be reached" in at.chat_message[1].error[0].value
    assert at.button(key="redo").label == "Retry"


def switching(at) -> int:
    """How many times the page says the switching sentence."""
    return sum(s.count(f"Switching to {MODEL}") for s in infos(at))


def test_the_switching_sentence_is_said_once_while_a_message_is_kept(page, down_url, loading):
    _, url = down_url
    at = page(url)
    assert switching(at) == 1  # at the top: no message kept
    at = send(at, "hello while loading")  # the run that keeps it draws the top first
    assert any("Your message will be sent" in s for s in infos(at))
    assert switching(at) == 1, infos(at)  # next to the kept message only
    at.run()  # the poll's run: still kept, still once
    assert switching(at) == 1, infos(at)
    at.button(key="cancel_held").click().run()
    assert switching(at) == 1, infos(at)  # cancelled: back at the top
    assert not any("will be sent" in s for s in infos(at))
