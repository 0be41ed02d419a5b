"""AppTest: what the chat page asks the model server between Enter and the answer's
request (issue 12, first-token overhead). Its health and models are read once, for the
first page; after that a message asks for neither before its completion request — fresh,
they are not asked at all; stale, they are read in the background while the answer goes
out (held here by the fake until the test releases them: a page that waited for them
would never answer). After a failure, Retry reads them anew first."""

from __future__ import annotations

import time

import pytest

from tests.chat.ui import test_chat_page as chat_page
from tests.chat.ui.test_chat_page import chat, send
from tests.fakes.openai_server import Script
from webapp.chat.ui import resources
from webapp.ui.text import literal

page = chat_page.page  # the chat page's fixture
fake = chat_page.fake
FACTS = ("/health", "/v1/models")
COMPLETION = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def fresh_facts():
    """The process-wide cache starts and ends empty (another test's server may have had
    this one's port)."""
    resources.forget_server_facts()
    yield
    resources.forget_server_facts()


def paths(fake, since: int = 0) -> list[str]:
    """The paths the fake was asked for, from its ``since``-th request on."""
    return [r["path"] for r in fake.requests[since:]]


def age_facts(monkeypatch, seconds: float) -> None:
    """Every cached server fact is ``seconds`` older (the caches' clock runs ahead)."""
    for kind in ("health", "models"):
        facts = resources._facts(kind=kind)
        monkeypatch.setattr(facts, "clock", lambda s=seconds: time.monotonic() + s)


def test_the_first_page_waits_for_the_servers_health_and_models(fake, page):
    at = page(fake.url)
    assert not at.exception
    assert sorted(paths(fake)) == sorted(FACTS)
    assert literal("fake-chat") in " ".join(c.value for c in at.sidebar.caption)


@pytest.mark.parametrize(
    "age_s",
    [0, resources.MODELS_TTL_S + 1, resources.FACTS_MAX_STALE_S - 1],
    ids=["fresh", "stale", "nearly too old"],
)
def test_a_message_does_not_wait_for_server_checks(fake, page, monkeypatch, age_s):
    fake.set_script(Script(tokens=["hi ", "there"]))
    at = page(fake.url)
    before = len(fake.requests)
    age_facts(monkeypatch, age_s)
    fake.configure(hold_facts=True)  # a check made now would hold its page run for good
    try:
        send(at, "hello")
        assert not at.exception
        assert chat(at) == [("user", ["hello"]), ("assistant", ["hi there"])]
        sent = paths(fake, before)
        assert sent.count(COMPLETION) == 1
        if age_s:  # read again, once each, in the background: still held, never waited for
            assert sorted(p for p in sent if p != COMPLETION) == sorted(FACTS)
        else:
            assert sent == [COMPLETION]
    finally:
        fake.release()


def test_an_answer_too_old_is_read_before_the_page_goes_on(fake, page, monkeypatch):
    at = page(fake.url)
    before = len(fake.requests)
    age_facts(monkeypatch, resources.FACTS_MAX_STALE_S + 1)  # e.g. after a quiet spell
    send(at, "hello")
    sent = paths(fake, before)
    assert sent.index("/health") < sent.index("/v1/models") < sent.index(COMPLETION)


def test_retry_after_a_failure_reads_the_server_anew_first(fake, page):
    fake.enqueue(Script(status=500, error_message="boom"), Script(tokens=["better"]))
    at = send(page(fake.url), "hello")
    assert chat(at)[-1][0] == "assistant" and at.button(key="redo").label == "Retry"
    before = len(fake.requests)
    at.button(key="redo").click().run()
    assert chat(at)[-1] == ("assistant", ["better"])
    sent = paths(fake, before)
    assert sent.index("/health") < sent.index("/v1/models") < sent.index(COMPLETION)
