"""AppTest: the chat page under the limits of issue 10 (what a reload cannot reset, the
app-wide cap on answers at once, CHAT_REQUIRE_LOGIN), against the scripted fake over HTTP.

AppTest cannot send request headers, so every session here is a guest from an unknown
address: they all share ``UNKNOWN_CLIENT``'s limits, as guests behind one address do.
Addresses from X-Forwarded-For are covered end to end by test_chat_flood.py.
"""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.identities import OIDC_SECRETS
from webapp.access.identity import ANON_PREFIX, UNKNOWN_CLIENT
from webapp.chat.limits import UsageLimits
from webapp.chat.ui import answer
from webapp.chat.ui import sidebar as sidebar_ui
from webapp.settings import get_settings
from webapp.store import ConversationStore

PAGE = str(Path(__file__).resolve().parents[3] / "webapp" / "chat" / "ui" / "page.py")
ALICE = {"is_logged_in": True, "email": "alice@example.com", "email_verified": True,
         "sub": "a1", "iss": "idp", "name": "Alice"}  # fmt: skip


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        srv.set_script(Script(tokens=["fine"]))
        yield srv


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'chat.db'}"


@pytest.fixture
def session(monkeypatch, fake, db_url):
    """Factory: a new browser session (a reload) of the chat page with these settings."""

    def make(secrets=None, user=None, **env) -> AppTest:
        monkeypatch.setenv("LLM_URL", fake.url)
        monkeypatch.setenv("DATABASE_URL", db_url)
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        get_settings.cache_clear()
        at = AppTest.from_file(PAGE, default_timeout=30)
        if secrets:
            at.secrets = secrets
        if user:
            at.user = user
        at.run()
        return at

    yield make
    get_settings.cache_clear()


@pytest.fixture
def limits(db_url):
    """The limits of the same database, as another replica sees them."""
    store = ConversationStore(db_url)
    yield UsageLimits(store, messages_per_minute=100, max_prompt_chars=1000,
                      max_conversations=10, max_concurrent_generations=1)  # fmt: skip
    store.dispose()


def send(at, text):
    at.chat_input[0].set_value(text).run()
    return at


def user_messages(at):
    return [m.markdown[0].value for m in at.chat_message if m.name == "user"]


def completions(fake):
    return [r for r in fake.requests if r["path"].endswith("completions")]


def saved_messages(at, db_url):
    """The messages saved in the conversation on ``at``'s screen."""
    store = ConversationStore(db_url)
    try:
        owner = ANON_PREFIX + at.session_state.browser_key
        return store.get_conversation(owner, at.session_state.conv_id).messages
    finally:
        store.dispose()


def test_a_reload_does_not_reset_the_rate_limit(session):
    first = session(MESSAGES_PER_MINUTE=2)
    send(first, "one")
    send(first, "two")
    reloaded = session(MESSAGES_PER_MINUTE=2)  # a new session from the same client
    send(reloaded, "three")
    assert "2 messages in the last minute" in reloaded.warning[0].value
    assert reloaded.code[0].value == "three"  # offered back, nothing lost


def test_a_reload_cannot_start_a_second_answer_for_the_same_client(session, fake, limits):
    held = limits.acquire_generation(UNKNOWN_CLIENT)  # this client's answer, still streaming
    at = session()
    send(at, "second one")
    assert "already being generated for you" in at.warning[0].value
    assert user_messages(at) == ["second one"]  # kept, with Retry under it
    assert at.button(key="redo").label == "Retry"
    assert not completions(fake)
    limits.release_generation(held)
    at.button(key="redo").click().run()
    assert [m.markdown[0].value for m in at.chat_message][-1] == "fine"
    assert not at.warning


def test_over_the_app_wide_cap_the_user_is_told_when_to_go_on(session, fake, limits):
    other = limits.acquire_generation("oidc:" + "b" * 64)  # someone else's answer
    at = session(MAX_CONCURRENT_GENERATIONS=1)
    send(at, "hello")
    warning = at.warning[0].value
    assert "The model is busy with 1 answer right now; try again in a few seconds" in warning
    assert user_messages(at) == ["hello"] and at.button(key="redo").label == "Retry"
    assert not completions(fake)
    at.button(key="redo").click().run()  # still busy: told again, nothing sent
    assert "busy" in at.warning[0].value and not completions(fake)
    limits.release_generation(other)
    at.button(key="redo").click().run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert len(completions(fake)) == 1 and not at.warning


def test_require_login_shows_only_log_in_to_guests(session, fake):
    at = session(secrets=OIDC_SECRETS, CHAT_REQUIRE_LOGIN="true")
    assert not at.exception
    assert "Log in to chat" in at.info[0].value
    assert at.button(key="login").label == "Log in"
    assert len(at.chat_input) == 0 and not at.sidebar.button
    signed_in = session(secrets=OIDC_SECRETS, user=ALICE, CHAT_REQUIRE_LOGIN="true")
    send(signed_in, "hi")
    assert [m.name for m in signed_in.chat_message] == ["user", "assistant"]


def test_require_login_without_login_set_up_lets_nobody_chat(session):
    at = session(CHAT_REQUIRE_LOGIN="true")
    assert "signing in is not set up" in at.error[0].value
    assert len(at.chat_input) == 0
    assert len(session(CHAT_REQUIRE_LOGIN="false").chat_input) == 1


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        # the user's slot still held (a replica died mid-answer, or another tab answers):
        # Retry is refused and the answer it would replace stays, on screen and saved
        (True, ["first answer"]),
        # slot free: the new answer replaces the old one, on screen and in the database
        (False, ["fine"]),
    ],
)
def test_retry_replaces_the_last_answer_only_once_it_may_answer(
    session, fake, limits, db_url, held, expected
):
    fake.set_script(Script(tokens=["first ", "answer"]))
    at = session()
    send(at, "question")
    fake.set_script(Script(tokens=["fine"]))
    lease = limits.acquire_generation(UNKNOWN_CLIENT) if held else None
    at.button(key="redo").click().run()
    assert ("already being generated for you" in at.warning[0].value) if held else not at.warning
    assert [m.markdown[0].value for m in at.chat_message] == ["question", *expected]
    assert [m.content for m in saved_messages(at, db_url) if m.role == "assistant"] == expected
    if lease:
        limits.release_generation(lease)


def test_the_model_has_the_question_while_the_page_is_drawn(session, fake, monkeypatch):
    """The request leaves before the page draws the conversation (a long one takes a while
    to draw): drawing the first message waits for the request to reach the model, which
    with the request sent after drawing it would never do."""
    at = send(session(), "one")
    seen = []
    real = answer.render_message

    def drawing(m):
        if not seen:
            deadline = time.monotonic() + 5
            while len(completions(fake)) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(len(completions(fake)))
        real(m)

    monkeypatch.setattr(answer, "render_message", drawing)
    send(at, "two")
    assert seen == [2]
    assert [m.markdown[0].value for m in at.chat_message] == ["one", "fine", "two", "fine"]


def test_a_page_broken_off_before_the_answer_is_drawn_ends_the_answer_begun(
    session, fake, limits, db_url, monkeypatch
):
    """A run that ends while the page is drawn (here an error in the sidebar; a click or a
    closed tab the same way), after the request was sent: the question and an empty
    stopped answer are saved, the answer slot is free and the request is closed."""
    fake.set_script(Script(n_tokens=400, tokens_per_s=50, hold=True))
    at = session()

    def broken(*args, **kwargs):
        raise RuntimeError("the sidebar broke")

    monkeypatch.setattr(sidebar_ui, "sidebar", broken)
    send(at, "question")
    assert at.exception
    assert [(m.role, m.content, m.status) for m in saved_messages(at, db_url)] == [
        ("user", "question", "complete"), ("assistant", "", "stopped")
    ]  # fmt: skip
    limits.release_generation(limits.acquire_generation(UNKNOWN_CLIENT))  # the slot is free
    fake.release()
    assert fake.wait_for_disconnects(1) == 1
