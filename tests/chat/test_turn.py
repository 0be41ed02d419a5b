"""The chat turn core without Streamlit: a real History (SQLite) and ChatClient against the
scripted OpenAI-compatible fake. Every ending, and what is saved and freed for each."""

from __future__ import annotations

import time

import pytest

from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.access.identity import resolve_owner
from webapp.chat import turn as turn_module
from webapp.chat.history import CHECKPOINT_EVERY_S, DELETED, History
from webapp.chat.limits import UsageLimits
from webapp.chat.options import GenerationOptions
from webapp.chat.turn import (
    BusyWatch,
    Checkpointed,
    Delta,
    Failed,
    Finished,
    Interrupted,
    ModelSwitched,
    Reasoning,
    Refused,
    Started,
    Stopped,
    Waiting,
    cancel,
    run_turn,
)
from webapp.llm.chat import ChatClient, GenerationParams
from webapp.llm.errors import AnswerDeadline, BackendUnreachable, ModelNotFound, StreamInterrupted
from webapp.store import ConversationStore, StoreUnavailable


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


@pytest.fixture
def store(tmp_path):
    s = ConversationStore(f"sqlite:///{tmp_path / 'chat.db'}")
    yield s
    s.dispose()


@pytest.fixture
def history(store):
    limits = UsageLimits(store, messages_per_minute=100, max_prompt_chars=1000,
                         max_conversations=10)  # fmt: skip
    return History(store, limits, resolve_owner(None, None))


def options(model="fake-chat", system="Be brief.", max_tokens=64):
    return GenerationOptions(system, GenerationParams(0.5, 0.9, max_tokens), model, 2048)


def conversation(history, prompt="hello"):
    """A saved conversation with one question; the session's messages."""
    conv = history.start()
    mid = history.add(conv, "user", prompt)
    return conv, [{"role": "user", "content": prompt, "status": "complete", "id": mid}]


def turn(history, fake_or_url, messages, conv, opts=None, client=None, **kw):
    url = getattr(fake_or_url, "url", fake_or_url)
    return run_turn(history, client or ChatClient(url), opts or options(), messages, conv, **kw)


def saved_answer(history, conv):
    last = history.open(conv).messages[-1]
    assert last.role == "assistant"
    return last


def slot_free(history):
    """The user's one answer slot can be taken again (else GenerationInProgress)."""
    lease = history.limits.acquire_generation(history.owner.limits_key)
    history.limits.release_generation(lease)
    return True


def kinds(events):
    return [type(e).__name__ for e in events]


def test_a_finished_answer_streams_saves_and_frees_the_slot(fake, history):
    fake.set_script(Script(tokens=["Hel", "lo", " there"]))
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv))
    # the first piece is saved at once; the next two arrive within CHECKPOINT_EVERY_S
    assert kinds(events) == ["Started", "Delta", "Checkpointed"] + ["Delta"] * 3 + ["Finished"]
    assert [e.text for e in events if isinstance(e, Delta)] == [
        "Hel", "Hello", "Hello there", "Hello there"
    ]  # fmt: skip
    assert events[-2].final and events[-1].answer is messages[-1]
    answer = messages[-1]
    assert (answer["content"], answer["status"]) == ("Hello there", "complete")
    assert answer["meta"]["model"] == "fake-chat" and answer["meta"]["completion_tokens"] == 3
    saved = saved_answer(history, conv)
    assert (saved.content, saved.status, saved.id) == ("Hello there", "complete", answer["id"])
    assert slot_free(history) and history.problem is None
    body = [r for r in fake.requests if r["path"].endswith("completions")][-1]["body"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (body["temperature"], body["top_p"], body["max_completion_tokens"]) == (0.5, 0.9, 64)


@pytest.mark.parametrize(
    ("n_tokens", "tokens_per_s", "least"),
    [(40, 1000, 1), (30, 50, 2), (5, 2, 5)],
    ids=["fast: the first only", "50/s: a few a second", "slower than the cadence: each"],
)
def test_the_answer_is_handed_to_the_store_at_the_writers_cadence_and_all_kept(
    fake, history, monkeypatch, n_tokens, tokens_per_s, least
):
    """Not on every piece (that cost CPU per streamed chunk for nothing: the writer saves
    every CHECKPOINT_EVERY_S): the first piece at once, then at most one per interval; the
    final save keeps the whole answer."""
    fake.set_script(Script(n_tokens=n_tokens, tokens_per_s=tokens_per_s))
    offered = []
    monkeypatch.setattr(history, "checkpoint", lambda mid, text: offered.append(text))
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv, options(max_tokens=n_tokens + 1)))
    handed = [e for e in events if isinstance(e, Checkpointed)]
    streamed = messages[-1]["meta"]["duration_s"] - messages[-1]["meta"]["ttft_s"]
    most = min(n_tokens, 1 + int(streamed / CHECKPOINT_EVERY_S) + 1)
    assert least <= len(handed) <= most, (len(handed), streamed)
    assert len(handed) == 1 + len(offered) and handed[0].message_id is not None
    assert all(b.startswith(a) for a, b in zip(offered, offered[1:], strict=False))
    saved = saved_answer(history, conv)
    assert (saved.content, saved.status) == (messages[-1]["content"], "complete")
    assert len(saved.content.split()) == n_tokens


# One row per way an answer ends on the model's side: script, client deadline, the ending,
# the answer's status, the error type, whether the part received is kept.
ENDINGS = [
    ("complete", Script(tokens=["a", "b"]), None, Finished, "complete", None, "ab"),
    ("cut", Script(n_tokens=100), None, Finished, "cut", None, None),
    ("dropped", Script(tokens=["half ", "x", "y"], drop_after=1), None, Failed, "interrupted",
     StreamInterrupted, "half "),
    ("deadline", Script(n_tokens=5000, tokens_per_s=50), 0.5, Failed, "interrupted",
     AnswerDeadline, None),
    ("no answer", Script(status=500, error_message="engine dead"), None, Failed, "failed",
     None, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("script", "deadline", "ending", "status", "error", "content"),
    [row[1:] for row in ENDINGS],
    ids=[row[0] for row in ENDINGS],
)
def test_every_model_side_ending_is_saved_and_frees_the_slot(
    fake, history, script, deadline, ending, status, error, content
):
    fake.set_script(script)
    conv, messages = conversation(history)
    client = ChatClient(fake.url, answer_deadline_s=deadline)
    opts = options(max_tokens=5) if status == "cut" else options()
    events = list(turn(history, fake, messages, conv, opts, client))
    assert isinstance(events[-1], ending) and kinds(events).count(ending.__name__) == 1
    answer = messages[-1]
    assert answer["status"] == status
    if content is not None:
        assert answer["content"] == content
    else:
        assert answer["content"].strip()  # the part received is kept
    if error is not None:
        assert isinstance(events[-1].error, error)
    if ending is Failed:
        assert answer["error"] and saved_answer(history, conv).meta["error"] == answer["error"]
    saved = saved_answer(history, conv)
    assert (saved.content, saved.status) == (answer["content"], status)
    assert slot_free(history)


@pytest.mark.parametrize(
    ("browser_gone", "ending", "status", "ended"),
    [(False, Stopped, "stopped", None), (True, Interrupted, "interrupted", "app")],
    ids=["stop pressed", "browser gone"],
)
def test_a_cancelled_turn_keeps_its_part_marked_for_why(
    fake, history, browser_gone, ending, status, ended
):
    fake.set_script(Script(n_tokens=2000, tokens_per_s=100))
    conv, messages = conversation(history)
    events = turn(history, fake, messages, conv)
    for event in events:  # draw until some text was received and saved
        if isinstance(event, Checkpointed) and len(messages[-1]["content"]) > 10:
            break
    end = cancel(events, browser_gone=browser_gone)
    assert isinstance(end, ending) and end.answer is messages[-1]
    answer = messages[-1]
    assert answer["status"] == status and answer["content"].strip()
    assert answer["meta"].get("ended") == ended and answer.get("error") is None
    saved = saved_answer(history, conv)
    assert (saved.content, saved.status, saved.meta.get("ended")) == (
        answer["content"], status, ended
    )  # fmt: skip
    assert slot_free(history)
    assert cancel(events, browser_gone=browser_gone) is None  # already over: nothing to do


def test_a_cancel_before_the_first_token_saves_an_empty_stopped_answer(fake, history):
    fake.set_script(Script(tokens=["never"]))
    conv, messages = conversation(history)
    events = turn(history, fake, messages, conv)
    assert isinstance(next(events), Started)
    assert isinstance(cancel(events, browser_gone=False), Stopped)
    assert (messages[-1]["content"], messages[-1]["status"]) == ("", "stopped")
    assert saved_answer(history, conv).status == "stopped" and slot_free(history)


def test_a_cancel_after_the_end_changes_nothing(fake, history):
    fake.set_script(Script(tokens=["done"]))
    conv, messages = conversation(history)
    events = turn(history, fake, messages, conv)
    for event in events:
        if isinstance(event, Finished):
            break
    assert cancel(events, browser_gone=True) is None
    assert messages[-1]["status"] == "complete"
    assert saved_answer(history, conv).status == "complete"


@pytest.mark.parametrize("busy", [None, BusyWatch(0.2, 0.1)], ids=["silent", "busy watch"])
def test_the_model_switched_mid_conversation_is_followed(history, busy):
    with FakeOpenAI(model="m-old") as srv:
        srv.set_script(Script(tokens=["new ", "model"]))
        srv.configure(models=["m-new"])  # an admin switched it after the page listed m-old
        conv, messages = conversation(history)
        events = list(turn(history, srv, messages, conv, options("m-old"), busy=busy))
        assert ModelSwitched("m-old", "m-new") in events
        assert isinstance(events[-1], Finished) and messages[-1]["content"] == "new model"
        assert messages[-1]["meta"]["model"] == "m-new"
        bodies = [r["body"] for r in srv.requests if r["path"].endswith("completions")]
        assert [b["model"] for b in bodies] == ["m-old", "m-new"]
        assert slot_free(history)


@pytest.mark.parametrize("follow", [True, False], ids=["no replacement", "pinned model"])
def test_a_model_gone_without_a_replacement_fails_plainly(history, follow):
    with FakeOpenAI(model="m-old") as srv:
        srv.set_script(Script(status=404, error_message="The model `m-old` does not exist."))
        conv, messages = conversation(history)
        events = list(turn(history, srv, messages, conv, options("m-old"), follow_switch=follow))
        assert not [e for e in events if isinstance(e, ModelSwitched)]
        assert isinstance(events[-1], Failed) and isinstance(events[-1].error, ModelNotFound)
        assert "no longer served" in messages[-1]["error"] and slot_free(history)


def test_no_model_served_fails_without_a_request(fake, history):
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv, options(model=None)))
    assert kinds(events) == ["Started", "Failed"]
    assert isinstance(events[-1].error, BackendUnreachable)
    assert messages[-1]["status"] == "failed" and "cannot be reached" in messages[-1]["error"]
    assert not [r for r in fake.requests if r["path"].endswith("completions")]
    assert slot_free(history)


def test_store_busy_while_checkpointing_the_answer_still_finishes(fake, history, store):
    """The database fails after the answer's first save: the checkpoints and the final save
    fail, the answer is complete on the page, the problem is told, the slot is freed."""
    fake.set_script(Script(tokens=["a ", "b ", "c ", "d"], tokens_per_s=20))
    conv, messages = conversation(history)

    def busy(*args, **kwargs):
        raise StoreUnavailable()

    events = []
    for event in turn(history, fake, messages, conv):
        events.append(event)
        if isinstance(event, Checkpointed):  # the first save went through; then it is busy
            store.checkpoint_many = store.update_message = busy
    assert isinstance(events[-1], Finished) and messages[-1]["content"] == "a b c d"
    assert "unavailable" in history.problem
    del store.checkpoint_many, store.update_message
    assert saved_answer(history, conv).status == "streaming"  # what got through is kept
    assert slot_free(history)


def test_the_database_down_from_the_start_still_answers(fake, history, store, monkeypatch):
    fake.set_script(Script(tokens=["still ", "here"]))
    conv, messages = conversation(history)

    def down(*args, **kwargs):
        raise StoreUnavailable()

    monkeypatch.setattr(history.limits, "acquire_generation", down)
    monkeypatch.setattr(store, "add_message", down)
    events = list(turn(history, fake, messages, conv))
    assert isinstance(events[-1], Finished) and messages[-1]["content"] == "still here"
    assert {e.message_id for e in events if isinstance(e, Checkpointed)} == {None}
    assert "unavailable" in history.problem


def test_a_conversation_deleted_mid_chat_is_answered_and_said(fake, history):
    fake.set_script(Script(tokens=["still ", "answering"]))
    conv, messages = conversation(history)
    history.delete(conv)  # its owner's other tab
    events = list(turn(history, fake, messages, conv))
    assert isinstance(events[-1], Finished) and messages[-1]["content"] == "still answering"
    assert history.problem == DELETED and slot_free(history)


def test_one_answer_at_a_time_is_refused_without_touching_the_conversation(fake, history):
    conv, messages = conversation(history)
    held = history.acquire()
    events = list(turn(history, fake, messages, conv))
    assert len(events) == 1 and isinstance(events[0], Refused)
    assert "already" in events[0].reason
    assert len(messages) == 1 and not fake.requests
    history.release(held)
    assert slot_free(history)


def test_a_system_prompt_over_the_limit_is_refused(fake, history):
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv, options(system="s" * 1001)))
    assert kinds(events) == ["Refused"] and "system prompt" in events[0].reason
    assert len(messages) == 1 and slot_free(history)


def test_thinking_streams_as_reasoning_and_is_saved(fake, history):
    fake.set_script(Script(reasoning=["Pondering ", "deeply."], tokens=["Done."]))
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv))
    assert [e.text for e in events if isinstance(e, Reasoning)] == [
        "Pondering ", "Pondering deeply."
    ]  # fmt: skip
    assert messages[-1]["reasoning"] == "Pondering deeply."
    assert saved_answer(history, conv).meta["reasoning"] == "Pondering deeply."


def test_the_model_sees_the_conversation_without_empty_turns(fake, history):
    fake.set_script(Script(tokens=["ok"]))
    conv, messages = conversation(history, "second")
    messages[:0] = [
        {"role": "user", "content": "first", "status": "complete", "id": None},
        {"role": "assistant", "content": "  ", "status": "failed", "id": None},
    ]
    list(turn(history, fake, messages, conv))
    body = [r for r in fake.requests if r["path"].endswith("completions")][-1]["body"]
    assert [m["content"] for m in body["messages"]] == ["Be brief.", "first", "second"]


# --- a busy model: the first token is late (issue 13.3) ---------------------------------
QUICK = BusyWatch(after_s=0.2, every_s=0.1)


def metrics_reads(fake):
    return [r for r in fake.requests if r["path"] == "/metrics"]


def test_a_late_first_token_says_how_many_requests_are_ahead(fake, history):
    """vLLM counts this request among the 3 waiting: 2 are ahead of it. Said after each
    reading of the queue until the first token, never after it; the answer then streams."""
    fake.set_script(Script(tokens=["at ", "last"], hold=True))
    fake.configure(metrics_override={"vllm:num_requests_waiting": 3})
    conv, messages = conversation(history)
    events = []
    for event in turn(history, fake, messages, conv, busy=QUICK):
        events.append(event)
        if kinds(events).count("Waiting") == 2:
            fake.release()  # the request leaves the queue: its first token comes
    first_delta = kinds(events).index("Delta")
    assert kinds(events)[:3] == ["Started", "Waiting", "Waiting"]
    assert set(kinds(events)[1:first_delta]) == {"Waiting"}
    assert {e for e in events if isinstance(e, Waiting)} == {Waiting(ahead=2)}
    assert isinstance(events[-1], Finished) and messages[-1]["content"] == "at last"
    assert saved_answer(history, conv).content == "at last" and slot_free(history)
    assert len(metrics_reads(fake)) >= 2


def test_a_fast_answer_reads_no_queue_and_says_nothing(fake, history):
    fake.set_script(Script(tokens=["quick"]))
    fake.configure(metrics_override={"vllm:num_requests_waiting": 3})
    conv, messages = conversation(history)
    events = list(turn(history, fake, messages, conv, busy=BusyWatch()))
    assert "Waiting" not in kinds(events) and isinstance(events[-1], Finished)
    assert metrics_reads(fake) == []


# A queue that cannot be read or makes no sense is no number: "Waiting for the model…".
QUEUES = [
    ("down", {"metrics_status": 503}, None),
    ("no /metrics", {"metrics_status": 404}, None),
    ("refused", {"metrics_status": 401}, None),
    ("garbage", {"metrics_text": "<html>502 Bad Gateway</html>\n"}, None),
    ("negative", {"metrics_override": {"vllm:num_requests_waiting": -4}}, None),
    ("infinite", {"metrics_override": {"vllm:num_requests_waiting": float("inf")}}, None),
    ("not a number", {"metrics_override": {"vllm:num_requests_waiting": float("nan")}}, 0),
    ("only this one", {"metrics_override": {"vllm:num_requests_waiting": 1}}, 0),
    ("empty", {"metrics_override": {"vllm:num_requests_waiting": 0}}, 0),
]  # fmt: skip


@pytest.mark.parametrize(("config", "ahead"), [r[1:] for r in QUEUES], ids=[r[0] for r in QUEUES])
def test_an_unreadable_queue_says_no_number_and_the_answer_comes(fake, history, config, ahead):
    fake.set_script(Script(tokens=["fine"], hold=True))
    fake.configure(**config)
    conv, messages = conversation(history)
    events = []
    for event in turn(history, fake, messages, conv, busy=QUICK):
        events.append(event)
        if isinstance(event, Waiting):
            fake.release()
    assert {e for e in events if isinstance(e, Waiting)} == {Waiting(ahead)}
    assert isinstance(events[-1], Finished) and messages[-1]["content"] == "fine"
    assert slot_free(history)


def test_stop_while_waiting_frees_the_slot_and_the_request_is_aborted(fake, history):
    """Stop before the first token: the answer is saved empty and stopped at once; the
    request, still in the server's queue, is closed as soon as it leaves it."""
    fake.set_script(Script(n_tokens=400, tokens_per_s=50, hold=True))
    fake.configure(metrics_override={"vllm:num_requests_waiting": 2})
    conv, messages = conversation(history)
    events = turn(history, fake, messages, conv, busy=QUICK)
    assert next(event for event in events if isinstance(event, Waiting)) == Waiting(1)
    assert isinstance(cancel(events, browser_gone=False), Stopped)
    assert (messages[-1]["content"], messages[-1]["status"]) == ("", "stopped")
    assert saved_answer(history, conv).status == "stopped" and slot_free(history)
    fake.release()
    assert fake.wait_for_disconnects(1) == 1
    (answer_request,) = [r for r in fake.requests if r["path"].endswith("completions")]
    assert len(answer_request.get("chunk_times") or []) < 400  # not streamed to its end


def test_the_request_is_sent_before_the_page_draws_the_answer(fake, history):
    """With ``busy`` (the page's case) the request leaves when the turn hands ``Started`` to
    the page, so that drawing the page does not delay the first token; a cancel right there
    (Stop, browser gone) still saves the empty answer, frees the slot and ends the request."""
    fake.set_script(Script(n_tokens=400, tokens_per_s=50, hold=True))
    conv, messages = conversation(history)
    events = turn(history, fake, messages, conv, busy=QUICK)
    assert isinstance(next(events), Started)  # nothing read past it
    deadline = time.monotonic() + 10
    while not [r for r in fake.requests if r["path"].endswith("completions")]:
        assert time.monotonic() < deadline, "the request was not sent"
        time.sleep(0.01)
    assert isinstance(cancel(events, browser_gone=False), Stopped)
    assert saved_answer(history, conv).status == "stopped" and slot_free(history)
    fake.release()
    assert fake.wait_for_disconnects(1) == 1


def _answer_requests(fake):
    return [r for r in fake.requests if r["path"].endswith("completions")]


def test_a_new_question_is_saved_once_its_request_has_reached_the_server(
    fake, history, monkeypatch
):
    """``save_question`` (the page saving a new message, a new conversation for the first)
    runs after the request reached the server, so the server works on it meanwhile, and
    before ``Started``; the answer is saved in the conversation it returns."""
    monkeypatch.setattr(turn_module, "SEND_WAIT_S", 30.0)  # the wait, not the machine, decides
    fake.set_script(Script(tokens=["Hi", "!"], ttft_s=0.3))
    seen = []

    def save_question():
        seen.append(len(_answer_requests(fake)))
        conv = history.start()
        messages[0]["id"] = history.add(conv, "user", "hello")
        return conv

    messages = [{"role": "user", "content": "hello", "status": "complete", "id": None}]
    events = list(turn(history, fake, messages, None, busy=QUICK, save_question=save_question))
    assert seen == [1] and kinds(events)[0] == "Started" and isinstance(events[-1], Finished)
    (conv,) = [c.id for c in history.conversations()]
    saved = history.open(conv).messages
    assert [(m.role, m.content) for m in saved] == [("user", "hello"), ("assistant", "Hi!")]


@pytest.mark.parametrize(
    "why", ["slot taken", "system prompt too long", "no model served", "server unreachable"]
)
def test_a_new_question_is_saved_however_its_turn_ends(fake, history, why):
    """Refused, failed before or without a request: the question is saved all the same (it
    stays on screen with Retry under it, and in the conversation)."""
    saved = []
    held = history.acquire() if why == "slot taken" else None
    opts = {
        "system prompt too long": options(system="s" * 1001),
        "no model served": options(model=None),
    }.get(why)
    url = "http://127.0.0.1:9" if why == "server unreachable" else fake
    messages = [{"role": "user", "content": "hello", "status": "complete", "id": None}]
    events = list(turn(history, url, messages, "c1", opts, busy=QUICK,
                       save_question=lambda: saved.append("q") or "c1"))  # fmt: skip
    assert saved == ["q"]
    assert isinstance(events[-1], Refused if why in ("slot taken", "system prompt too long")
                      else Failed)  # fmt: skip
    history.release(held)
