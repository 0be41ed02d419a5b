"""AppTest for the chat page, against the scripted fake server over HTTP."""

import socket
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.identities import OIDC_SECRETS
from webapp.chat.ui import sidebar as sidebar_ui
from webapp.settings import get_settings
from webapp.ui.text import literal

PAGE = str(Path(__file__).resolve().parents[3] / "webapp" / "chat" / "ui" / "page.py")


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


@pytest.fixture
def page(monkeypatch, tmp_path):
    def make(url, **env):
        monkeypatch.setenv("LLM_URL", url)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        get_settings.cache_clear()
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        return at

    yield make
    get_settings.cache_clear()


def send(at, text):
    at.chat_input[0].set_value(text).run()
    return at


def chat(at):
    """(role, markdown texts) per chat message."""
    return [(m.name, [md.value for md in m.markdown]) for m in at.chat_message]


def test_streamed_answer_with_stats(fake, page):
    fake.set_script(Script(tokens=["**Hi**", " there\n\n```python\nprint(1)\n```"]))
    at = send(page(fake.url), "hello")
    assert not at.exception
    msgs = chat(at)
    assert msgs[0] == ("user", ["hello"])
    assert msgs[1][0] == "assistant"
    assert msgs[1][1][0] == "**Hi** there\n\n```python\nprint(1)\n```"
    captions = [c.value for c in at.chat_message[1].caption]
    assert any("2 tokens" in c and "first token" in c for c in captions)
    assert at.button(key="redo").label == "Regenerate"
    assert literal("fake-chat") in " ".join(c.value for c in at.sidebar.caption)


def test_regenerate_replaces_last_answer(fake, page):
    fake.enqueue(Script(tokens=["first"]), Script(tokens=["second"]))
    at = send(page(fake.url), "hello")
    at.button(key="redo").click().run()
    assert [m for m in chat(at)] == [("user", ["hello"]), ("assistant", ["second"])]
    sent = [r for r in fake.requests if r["path"].endswith("completions")]
    assert len(sent) == 2 and sent[1]["body"]["messages"][-1]["content"] == "hello"


def test_new_chat_clears(fake, page):
    at = send(page(fake.url), "hello")
    at.button(key="new_chat").click().run()
    assert at.chat_message.len == 0


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_prompt_refused(fake, page, text):
    at = send(page(fake.url), text)
    assert at.chat_message.len == 0
    assert "empty" in at.warning[0].value
    assert not [r for r in fake.requests if r["path"].endswith("completions")]


def test_too_long_prompt_kept_for_copy(fake, page):
    at = send(page(fake.url, MAX_PROMPT_CHARS=100), "x" * 150)
    assert "150 characters long" in at.warning[0].value and at.chat_message.len == 0
    assert at.code[0].value == "x" * 150  # nothing lost: the text is offered back


def test_20k_prompt_overflowing_context(page):
    with FakeOpenAI(max_model_len=1024) as srv:
        at = send(page(srv.url), "word " * 4000)  # 20k characters
        assert not at.exception
        err = at.chat_message[1].error[0].value
        assert "too long for the model's context window" in err
        assert at.button(key="redo").label == "Retry"
        assert chat(at)[0][1][0].startswith("word word")  # the prompt is kept


def test_unreachable_backend_then_retry_works(page):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    at = send(page(f"http://127.0.0.1:{port}"), "hello")
    assert "unreachable" in " ".join(md.value for md in at.sidebar.markdown)
    assert "cannot be reached" in at.chat_message[1].error[0].value
    assert at.button(key="redo").label == "Retry"
    # the server comes up on the same port: Retry answers and the history is intact
    with FakeOpenAI(port=port) as srv:
        srv.set_script(Script(tokens=["back"]))
        at.button(key="redo").click().run()
        assert chat(at) == [("user", ["hello"]), ("assistant", ["back"])]


def test_mid_stream_drop_keeps_partial(fake, page):
    fake.set_script(Script(tokens=["partial ", "answer ", "lost"], drop_after=2))
    at = send(page(fake.url), "hello")
    m = at.chat_message[1]
    assert m.markdown[0].value.strip() == "partial answer"
    assert "Interrupted" in " ".join(c.value for c in m.caption)
    assert "dropped" in m.error[0].value
    assert at.button(key="redo").label == "Retry"


def test_http_500_message(fake, page):
    fake.set_script(Script(status=500, error_message="engine dead"))
    at = send(page(fake.url), "hello")
    assert "internal error (HTTP 500)" in at.chat_message[1].error[0].value


def test_cut_by_max_tokens_is_said(fake, page):
    fake.set_script(Script(n_tokens=100))
    at = page(fake.url)
    at.number_input(key="max_tokens").set_value(5).run()
    send(at, "hello")
    assert "Cut off" in " ".join(c.value for c in at.chat_message[1].caption)


def test_history_trim_is_told(page):
    with FakeOpenAI(max_model_len=600) as srv:
        srv.set_script(Script(tokens=["ok"]))
        at = page(srv.url, DEFAULT_MAX_TOKENS=256)
        for i in range(4):
            send(at, f"q{i} " + "w " * 100)
        notes = " ".join(c.value for c in at.chat_message[-1].caption)
        assert "older message(s) were not sent" in notes


def test_notice_banner(fake, page):
    at = page(fake.url, LLM_NOTICE="Tiny test model: answers are gibberish")
    assert "gibberish" in at.warning[0].value


def test_several_models_selectable(page):
    with FakeOpenAI(model=["m-one", "m-two"]) as srv:
        srv.set_script(Script(tokens=["hi"]))
        at = page(srv.url)
        at.selectbox(key="model").set_value("m-two").run()
        send(at, "hello")
        body = [r for r in srv.requests if r["path"].endswith("completions")][-1]["body"]
        assert body["model"] == "m-two"


def test_models_behind_a_gateway_listed_from_llm_models(page):
    # a gateway routing on the body's model: /v1/models reaches the default pool only
    with FakeOpenAI(model=["pool-a", "pool-b"], max_model_len=4096) as srv:
        srv.configure(listed_models=["pool-a"])
        srv.set_script(Script(tokens=["from b"]))
        at = page(srv.url, LLM_MODELS="pool-b")
        assert at.selectbox(key="model").options == ["pool-a", "pool-b"]
        at.selectbox(key="model").set_value("pool-b").run()
        # its context length came from its own pool (POST /tokenize names the model)
        assert "context 4,096 tokens" in " ".join(c.value for c in at.sidebar.caption)
        send(at, "hello")
        assert chat(at)[1] == ("assistant", ["from b"])
        bodies = [r["body"] for r in srv.requests if r["path"].endswith("completions")]
        assert [b["model"] for b in bodies] == ["pool-b"]


def test_a_listed_model_that_does_not_answer_is_a_plain_error(page):
    with FakeOpenAI(model=["pool-a"]) as srv:
        at = page(srv.url, LLM_MODELS="pool-a,pool-gone")
        assert at.selectbox(key="model").options == ["pool-a", "pool-gone"]
        at.selectbox(key="model").set_value("pool-gone").run()
        send(at, "hello")
        assert not at.exception
        assert "no longer served" in at.chat_message[1].error[0].value
        # not answered by another model behind the user's back
        bodies = [r["body"] for r in srv.requests if r["path"].endswith("completions")]
        assert [b["model"] for b in bodies] == ["pool-gone"]


def test_base_model_page_uses_completions(page):
    with FakeOpenAI(model="base", chat_template=False) as srv:
        srv.set_script(Script(tokens=["cont"]))
        at = send(page(srv.url), "hello")
        assert chat(at)[1] == ("assistant", ["cont"])


# ---------------------------------------------------------------- persistence (issue 4)
def conv_id(at):
    return (
        at.query_params["chat"][0]
        if isinstance(at.query_params["chat"], list)
        else at.query_params["chat"]
    )


def test_conversation_has_url_and_survives_new_session(fake, page):
    fake.set_script(Script(tokens=["stored ", "answer"]))
    at = send(page(fake.url), "remember me")
    cid = conv_id(at)
    assert len(cid) >= 20
    # a brand-new session (reload, other device with the link, restarted server)
    at2 = AppTest.from_file(PAGE, default_timeout=30)
    at2.query_params["chat"] = cid
    at2.run()
    assert chat(at2) == [("user", ["remember me"]), ("assistant", ["stored answer"])]
    assert [h.value for h in at2.subheader] == ["remember me"]
    # the guest who only has the link cannot rename or delete it
    assert "only its owner" in " ".join(c.value for c in at2.sidebar.caption)


def conversation_labels(at):
    return [b.label for b in at.sidebar.button if b.key.startswith("conv_")]


def test_the_conversation_title_is_a_short_plain_heading(fake, page):
    """A first prompt with markdown names the conversation in its plain words, in a heading
    (not the page-wide H1) and in the sidebar; a title typed with markup shows as typed."""
    fake.set_script(Script(tokens=["ok"]))
    at = send(page(fake.url), "Why is **this** `query` slow?\n\n```sql\nSELECT 1\n```")
    assert not at.exception
    cid = conv_id(at)
    assert not at.title  # the page-wide H1 names the app on an empty chat only
    assert [h.value for h in at.subheader] == [r"Why is this query slow\?"]
    assert conversation_labels(at) == [r"Why is this query slow\?"]
    at.text_input(key=f"title_{cid}").set_value("**mine**, `as typed`").run()
    assert [h.value for h in at.subheader] == [r"\*\*mine\*\*\, \`as typed\`"]
    assert conversation_labels(at) == [r"\*\*mine\*\*\, \`as typed\`"]


def test_a_new_conversation_is_drawn_whole_in_one_run(fake, page, monkeypatch):
    """Its first message is taken before the page is drawn, so the run that answers it draws
    its title, its tools and its place in the list: no second run of the whole page."""
    fake.set_script(Script(tokens=["ok"]))
    at = page(fake.url)
    runs = []
    real = sidebar_ui.sidebar
    monkeypatch.setattr(sidebar_ui, "sidebar", lambda *a, **k: runs.append(1) or real(*a, **k))
    send(at, "a new topic")
    assert len(runs) == 1
    assert [h.value for h in at.subheader] == ["a new topic"]
    assert conversation_labels(at) == ["a new topic"]
    assert at.button(key="delete").label == "Delete…"  # the conversation's tools


def test_unknown_conversation_link(fake, page):
    page(fake.url)
    at2 = AppTest.from_file(PAGE, default_timeout=30)
    at2.query_params["chat"] = "does-not-exist-0123456789"
    at2.run()
    assert "does not exist or is not available" in at2.error[0].value
    assert at2.chat_message.len == 0


def test_sidebar_lists_switches_renames_and_deletes(fake, page):
    fake.set_script(Script(tokens=["ok"]))
    at = send(page(fake.url), "first topic")
    first = conv_id(at)
    at.button(key="new_chat").click().run()
    send(at, "second topic")
    labels = [b.label for b in at.sidebar.button if b.key.startswith("conv_")]
    assert labels == ["second topic", "first topic"]  # newest first
    at.button(key=f"conv_{first}").click().run()
    assert chat(at)[0] == ("user", ["first topic"])
    at.text_input(key=f"title_{first}").set_value("Renamed").run()
    assert [h.value for h in at.subheader] == ["Renamed"]
    assert [b.label for b in at.sidebar.button if b.key.startswith("conv_")][1] == "Renamed"
    at.button(key="delete").click().run()
    assert "for good" in at.sidebar.warning[0].value
    at.button(key="delete_yes").click().run()
    labels = [b.label for b in at.sidebar.button if b.key.startswith("conv_")]
    assert labels == ["second topic"] and at.chat_message.len == 0


def test_export_buttons(fake, page):
    at = send(page(fake.url), "export me")
    keys = {b.key for b in at.get("download_button")}
    assert {"export_md", "export_json"} <= keys


def test_rate_limit_message_keeps_prompt(fake, page):
    at = page(fake.url, MESSAGES_PER_MINUTE=2)
    send(at, "one")
    send(at, "two")
    send(at, "three")
    assert "in the last minute" in at.warning[0].value
    assert at.code[0].value == "three"
    assert [m[1][0] for m in chat(at) if m[0] == "user"] == ["one", "two"]


def test_answer_saved_when_backend_fails(page):
    with FakeOpenAI() as srv:
        srv.set_script(Script(tokens=["half ", "answer ", "x"], drop_after=2))
        at = send(page(srv.url), "hello")
        at2 = AppTest.from_file(PAGE, default_timeout=30)
        at2.query_params["chat"] = conv_id(at)
        at2.run()
        m = at2.chat_message[1]
        assert m.markdown[0].value.strip() == "half answer"
        assert "dropped" in m.error[0].value


def test_reasoning_shown_in_expander_and_saved(fake, page):
    fake.set_script(Script(reasoning=["Pondering ", "deeply."], tokens=["Done."]))
    at = send(page(fake.url), "think")
    m = at.chat_message[1]
    assert m.expander[0].label == "Thinking"
    assert m.expander[0].markdown[0].value == "Pondering deeply."
    assert m.markdown[-1].value == "Done."
    at2 = AppTest.from_file(PAGE, default_timeout=30)
    at2.query_params["chat"] = conv_id(at)
    at2.run()
    assert at2.chat_message[1].expander[0].markdown[0].value == "Pondering deeply."


def test_database_down_chat_still_works(fake, page):
    fake.set_script(Script(tokens=["still ", "here"]))
    at = page(
        fake.url, DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:1/nope?connect_timeout=1"
    )
    send(at, "hello")
    assert not at.exception
    assert chat(at) == [("user", ["hello"]), ("assistant", ["still here"])]
    assert "Not saved" in at.warning[-1].value and "database" in at.warning[-1].value


def test_follows_a_model_switch(page):
    with FakeOpenAI(model="m-old") as srv:
        srv.set_script(Script(tokens=["new ", "model"]))
        at = page(srv.url)  # the model list is cached by the page
        srv.configure(models=["m-new"])  # an admin switched the served model
        send(at, "hello")
        assert chat(at)[1] == ("assistant", ["new model"])
        bodies = [r["body"] for r in srv.requests if r["path"].endswith("completions")]
        assert [b["model"] for b in bodies] == ["m-old", "m-new"]


def test_model_gone_without_replacement(page):
    with FakeOpenAI(model="m-old") as srv:
        at = page(srv.url)
        srv.configure(models=["m-old"])
        srv.set_script(Script(status=404, error_message="The model `m-old` does not exist."))
        send(at, "hello")
        assert "no longer served" in at.chat_message[1].error[0].value


def test_login_offered_only_when_configured(fake, page):
    at = page(fake.url)
    assert not [b for b in at.sidebar.button if b.key in ("login", "logout")]
    at2 = AppTest.from_file(PAGE, default_timeout=30)
    at2.secrets = OIDC_SECRETS
    at2.run()
    assert at2.button(key="login").label == "Log in"


def test_logged_in_history_is_per_user_across_sessions(fake, page):
    fake.set_script(Script(tokens=["ok"]))
    page(fake.url)

    def session(user):
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.secrets = OIDC_SECRETS
        at.user = user
        at.run()
        return at

    alice = {
        "is_logged_in": True,
        "email": "alice@example.com",
        "email_verified": True,
        "sub": "a1",
        "iss": "idp",
        "name": "Alice",
    }
    bob = {
        "is_logged_in": True,
        "email": "bob@example.com",
        "email_verified": True,
        "sub": "b1",
        "iss": "idp",
        "name": "Bob",
    }
    a1 = session(alice)
    assert "Alice" in " ".join(c.value for c in a1.sidebar.caption)
    send(a1, "alice secret plan")
    cid = conv_id(a1)
    # Alice on another device: her conversation is listed
    a2 = session(alice)
    assert [b.label for b in a2.sidebar.button if b.key.startswith("conv_")] == [
        "alice secret plan"
    ]
    # Bob sees nothing of Alice's, not even with her link
    b1 = session(bob)
    assert not [b for b in b1.sidebar.button if b.key.startswith("conv_")]
    b2 = AppTest.from_file(PAGE, default_timeout=30)
    b2.secrets = OIDC_SECRETS
    b2.user = bob
    b2.query_params["chat"] = cid
    b2.run()
    assert "not available to you" in b2.error[0].value
    assert b2.chat_message.len == 0


def test_an_unresponsive_database_does_not_hold_the_answer(fake, page):
    """A PostgreSQL that accepts connections but never answers (issue 10.8): the page waits
    its connect timeout once, then answers without it and says at once it is not saved."""
    from tests.store.test_unresponsive import BlackHole

    hole = BlackHole()
    try:
        url = f"postgresql://chat@127.0.0.1:{hole.port}/chat"
        at = page(fake.url, DATABASE_URL=url, DATABASE_CONNECT_TIMEOUT_S=2)
        tried = len(hole.accepted)  # the page's first read found it unresponsive
        assert tried >= 1
        fake.set_script(Script(tokens=["still", " here"]))
        at = send(at, "hello")
        assert not at.exception
        assert chat(at)[1] == ("assistant", ["still here"])
        assert "not answering right now" in " ".join(w.value for w in at.warning)
        assert len(hole.accepted) == tried  # the turn did not wait for it again
    finally:
        hole.close()


def test_the_system_prompt_is_held_to_the_message_limit(fake, page):
    """Issue 10.2: the system prompt box has MAX_PROMPT_CHARS as its limit, and Streamlit
    holds a longer value sent by a raw websocket client to it on the server too, so no
    300-character system prompt reaches vLLM or the database."""
    at = page(fake.url, MAX_PROMPT_CHARS=100)
    assert at.sidebar.text_area(key="system_prompt").max_chars == 100
    at.session_state["system_prompt"] = "s" * 300
    at = send(at, "hello")
    (sent,) = [r for r in fake.requests if r["path"].endswith("completions")]
    system = [m["content"] for m in sent["body"]["messages"] if m["role"] == "system"]
    assert system == ["s" * 100]


def test_a_conversation_deleted_mid_chat_is_said_plainly_and_frees_the_answer_slot(
    fake, page, tmp_path
):
    """Issue 10.4: the conversation is deleted elsewhere (its owner's other tab) while it is
    open here: the next turn is answered, the page says it is no longer saved, no crash, and
    the user's one-answer slot is free for the turn after."""
    import sqlite3

    at = send(page(fake.url), "hello")
    with sqlite3.connect(tmp_path / "chat.db") as db:
        db.execute("DELETE FROM messages")
        db.execute("DELETE FROM conversations")
    fake.set_script(Script(tokens=["still", " answering"]))
    at = send(at, "are you there?")
    assert not at.exception
    assert chat(at)[-1] == ("assistant", ["still answering"])
    assert "this conversation was deleted" in " ".join(w.value for w in at.warning)
    fake.set_script(Script(tokens=["and again"]))
    at = send(at, "once more")
    assert chat(at)[-1] == ("assistant", ["and again"])  # not "already being generated"


def test_an_endless_answer_stops_at_its_deadline_and_keeps_its_text(fake, page):
    """Issue 10.4: LLM_ANSWER_DEADLINE_S bounds one answer (the read timeout is per chunk)."""
    fake.set_script(Script(n_tokens=5000, tokens_per_s=50))
    at = send(page(fake.url, LLM_ANSWER_DEADLINE_S=1), "go on forever")
    assert not at.exception
    bot = at.chat_message[1]
    assert bot.markdown[0].value.strip()  # what arrived is kept
    assert "still running after 1 seconds" in bot.error[0].value
    assert at.button(key="redo").label == "Retry"
    fake.set_script(Script(tokens=["short"]))
    at = send(at, "then briefly")  # the answer slot was released
    assert chat(at)[-1] == ("assistant", ["short"])


def test_a_signed_in_name_is_shown_as_typed(fake, page):
    """The display name comes from the identity provider, where anyone may set it: it is
    shown literally, never as markdown (no image fetched, no link)."""
    from webapp.ui.text import literal

    at = AppTest.from_file(PAGE, default_timeout=30)
    at.secrets = OIDC_SECRETS
    name = "![x](http://127.0.0.2:9/?d=1) **Ann**"
    at.user = {"is_logged_in": True, "sub": "42", "name": name, "email_verified": True,
               "email": "ann@example.com", "iss": "https://accounts.google.com"}  # fmt: skip
    page(fake.url)  # environment and settings for the page
    at.run()
    assert f"Signed in as **{literal(name)}**" in [c.value for c in at.sidebar.caption]
