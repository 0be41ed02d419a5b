"""ChatClient against the scripted OpenAI-compatible fake (real openai/LangChain over HTTP)."""

import socket
import time

import pytest

from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.llm import errors as E
from webapp.llm.chat import ChatClient, ChatRequest, GenerationParams
from webapp.llm.prompts import COMPLETION_STOP, Turn


@pytest.fixture
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


def req(model="fake-chat", turns=None, max_tokens=64, max_model_len=2048, system="sys"):
    turns = turns or (Turn("user", "hello there"),)
    return ChatRequest(
        model, system, tuple(turns), GenerationParams(0.5, 0.9, max_tokens), max_model_len
    )


def run(gen):
    return "".join(gen)


def gen_requests(srv):
    return [r for r in srv.requests if r["path"].endswith("completions")]


def test_chat_stream_with_usage(fake):
    fake.enqueue(Script(tokens=["Hel", "lo", " world"]))
    client = ChatClient(fake.url)
    g = client.stream(req())
    assert run(g) == "Hello world"
    s = g.stats
    assert (s.mode, s.finish_reason, s.completion_tokens, s.usage_source) == (
        "chat",
        "stop",
        3,
        "server",
    )
    assert s.prompt_tokens and s.ttft_s is not None and s.duration_s >= s.ttft_s
    body = gen_requests(fake)[-1]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.5 and body["top_p"] == 0.9
    assert body["messages"][0] == {"role": "system", "content": "sys"}


def test_base_model_switches_to_completion_mode():
    with FakeOpenAI(model="fake-base", chat_template=False) as srv:
        srv.set_script(Script(tokens=["a", "b"]))
        client = ChatClient(srv.url)
        g = client.stream(req("fake-base"))
        assert run(g) == "ab" and g.stats.mode == "completion"
        paths = [r["path"] for r in gen_requests(srv)]
        assert paths == ["/v1/chat/completions", "/v1/completions"]
        body = gen_requests(srv)[-1]["body"]
        assert body["prompt"].endswith("User: hello there\n\nAssistant:")
        assert body["stop"] == COMPLETION_STOP
        # remembered per model: the next answer goes straight to /v1/completions
        run(client.stream(req("fake-base")))
        assert gen_requests(srv)[-1]["path"] == "/v1/completions"
        assert client.mode_for("fake-base") == "completion"


def test_forced_chat_mode_reports_missing_template():
    with FakeOpenAI(model="fake-base", chat_template=False) as srv:
        client = ChatClient(srv.url, mode="chat")
        with pytest.raises(E.ChatTemplateMissing):
            run(client.stream(req("fake-base")))


def test_forced_completion_mode(fake):
    fake.set_script(Script(tokens=["x"]))
    g = ChatClient(fake.url, mode="completion").stream(req())
    assert run(g) == "x" and g.stats.mode == "completion"
    assert [r["path"] for r in gen_requests(fake)] == ["/v1/completions"]


def test_finish_reason_length(fake):
    fake.set_script(Script(n_tokens=50))
    g = ChatClient(fake.url).stream(req(max_tokens=5))
    run(g)
    assert g.stats.finish_reason == "length" and g.stats.completion_tokens == 5


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_drop_mid_stream_keeps_partial(fake, mode):
    fake.set_script(Script(tokens=["one ", "two ", "three ", "four"], drop_after=2))
    g = ChatClient(fake.url, mode=mode).stream(req())
    got = []
    with pytest.raises(E.StreamInterrupted) as e:
        for d in g:
            got.append(d)
    assert e.value.partial_text == "one two " == "".join(got)


def test_in_stream_error_event(fake):
    fake.set_script(Script(tokens=["a", "b", "c"], error_after=1))
    with pytest.raises(E.LLMError) as e:
        run(ChatClient(fake.url).stream(req()))
    assert e.value.partial_text == "a"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_backend():
    client = ChatClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(E.BackendUnreachable):
        run(client.stream(req()))
    assert client.status().state == "unreachable"


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (500, "boom", E.BackendHTTPError),
        (503, "overloaded", E.BackendHTTPError),
        (404, "The model `fake-chat` does not exist.", E.ModelNotFound),
        (400, "top_p must be in (0, 1]", E.BackendHTTPError),
    ],
)
def test_http_errors(fake, status, message, expected):
    fake.set_script(Script(status=status, error_message=message))
    with pytest.raises(expected) as e:
        run(ChatClient(fake.url).stream(req()))
    assert e.value.status == status and message in e.value.detail


def test_read_timeout(fake):
    fake.set_script(Script(hang=True))
    with pytest.raises(E.BackendTimeout):
        run(ChatClient(fake.url, timeout_s=0.5).stream(req()))


def test_context_overflow_from_server(fake):
    # no max_model_len known to the client: the server's 400 is mapped
    long = Turn("user", "word " * 3000)
    with pytest.raises(E.ContextOverflow):
        run(ChatClient(fake.url).stream(req(turns=[long], max_model_len=None)))


def test_prompt_alone_too_long_is_refused_before_sending(fake):
    long = Turn("user", "word " * 3000)
    with pytest.raises(E.ContextOverflow) as e:
        run(ChatClient(fake.url).stream(req(turns=[long])))
    assert e.value.prompt_tokens > e.value.limit
    assert gen_requests(fake) == []


def test_history_trimmed_to_fit(fake):
    # fake counts words; 2048 - 1000 max_tokens = 1048 tokens for the prompt
    turns = []
    for i in range(6):
        turns += [Turn("user", f"q{i} " + "w " * 200), Turn("assistant", f"a{i} " + "w " * 200)]
    turns.append(Turn("user", "final question"))
    fake.set_script(Script(tokens=["ok"]))
    g = ChatClient(fake.url).stream(req(turns=turns, max_tokens=1000))
    run(g)
    sent = gen_requests(fake)[-1]["body"]["messages"]
    assert sent[-1]["content"] == "final question"
    assert sent[1]["role"] == "user"  # never starts with an orphan answer
    assert g.stats.dropped_turns > 0 and len(sent) - 1 == len(turns) - g.stats.dropped_turns
    assert g.stats.prompt_tokens + 1000 <= 2048


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_close_aborts_stream(fake, mode):
    fake.set_script(Script(n_tokens=500, tokens_per_s=50))
    g = ChatClient(fake.url, mode=mode).stream(req(max_tokens=600))
    it = iter(g)
    next(it)
    next(it)
    g.close()
    deadline = time.monotonic() + 5
    while fake.disconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.disconnects == 1
    assert g.text.count(" ") <= 2


def test_models_and_status(fake):
    client = ChatClient(fake.url)
    assert [(m.id, m.max_model_len) for m in client.models()] == [("fake-chat", 2048)]
    assert client.status().state == "healthy"
    fake.configure(health_status=503)
    assert client.status().state == "loading"


@pytest.mark.parametrize(
    ("listed", "configured", "expected"),
    [
        (None, (), [("a", 2048), ("b", 2048)]),  # one server serving two names
        (["a"], (), [("a", 2048)]),  # a gateway: /v1/models reaches the default pool only
        (["a"], ("b",), [("a", 2048), ("b", 2048)]),  # b's length from its own /tokenize
        (["a"], ("b", "a"), [("a", 2048), ("b", 2048)]),  # listed once
        (["a"], ("gone", "b"), [("a", 2048), ("gone", None), ("b", 2048)]),  # offered anyway
    ],
)
def test_models_listed_and_configured(listed, configured, expected):
    with FakeOpenAI(model=["a", "b"]) as srv:
        srv.configure(listed_models=listed)
        client = ChatClient(srv.url, configured_models=configured)
        assert [(m.id, m.max_model_len) for m in client.models()] == expected
        probes = [r["body"]["model"] for r in srv.requests if r["path"] == "/tokenize"]
        assert probes == [n for n in configured if n not in (listed or ["a", "b"])]


def test_api_key_sent_and_not_in_repr():
    with FakeOpenAI(api_key="sekret") as srv:
        srv.set_script(Script(tokens=["k"]))
        assert run(ChatClient(srv.url, api_key="sekret").stream(req())) == "k"
        with pytest.raises(E.BackendAuthError):
            ChatClient(srv.url, api_key="wrong").models()
        assert "sekret" not in repr(ChatClient(srv.url, api_key="sekret"))


def test_reasoning_kept_apart_from_answer(fake):
    fake.set_script(Script(reasoning=["Let me ", "think."], tokens=["Answer."]))
    g = ChatClient(fake.url).stream(req())
    assert run(g) == "Answer."
    assert g.reasoning == "Let me think." and g.text == "Answer."
    assert g.stats.completion_tokens >= 1


def test_short_prompt_skips_tokenize_long_one_counts(fake):
    fake.set_script(Script(tokens=["ok"]))
    client = ChatClient(fake.url)
    run(client.stream(req()))
    assert not [r for r in fake.requests if r["path"] == "/tokenize"]
    long = Turn("user", "word " * 300)  # 1500 bytes > 2048 - 1000 - overhead
    run(client.stream(req(turns=[long], max_tokens=1000)))
    assert [r for r in fake.requests if r["path"] == "/tokenize"]


def test_a_pool_without_tokenize_does_not_stop_counting_for_the_others(fake):
    # "gone" is named in LLM_MODELS but not served: its /tokenize fails (404), then its answer
    fake.set_script(Script(tokens=["ok"]))
    client = ChatClient(fake.url, configured_models=("gone",))
    long = Turn("user", "word " * 300)  # needs counting (see above)
    with pytest.raises(E.ModelNotFound):
        run(client.stream(req(model="gone", turns=[long], max_tokens=1000)))
    run(client.stream(req(turns=[long], max_tokens=1000)))
    counted = [r["body"]["model"] for r in fake.requests if r["path"] == "/tokenize"]
    assert counted[0] == "gone" and counted[-1] == "fake-chat"


def test_completion_mode_cut_reports_exact_token_count(fake):
    fake.set_script(Script(n_tokens=50))
    g = ChatClient(fake.url, mode="completion").stream(req(max_tokens=7))
    run(g)
    assert (g.stats.finish_reason, g.stats.completion_tokens, g.stats.usage_source) == (
        "length",
        7,
        "server",
    )


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_an_answer_past_its_total_deadline_is_stopped_and_kept(fake, mode):
    """Issue 10.4: the read timeout is per chunk, so a server that keeps sending would run
    forever; the answer's total deadline stops it, keeps the text and closes the stream."""
    fake.set_script(Script(n_tokens=5000, tokens_per_s=50))  # 100 s if left alone
    g = ChatClient(fake.url, mode=mode, answer_deadline_s=0.5).stream(req(max_tokens=6000))
    with pytest.raises(E.AnswerDeadline) as err:
        run(g)
    assert err.value.partial_text == g.text and g.text
    assert isinstance(err.value, E.StreamInterrupted)  # kept and marked like a dropped stream
    deadline = time.monotonic() + 5
    while fake.disconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.disconnects == 1  # vLLM is told to stop generating


def test_answers_says_whether_a_model_is_routed_now():
    # behind a gateway: a model answers once its pool has a ready replica routed to
    with FakeOpenAI(model=["pool-a"]) as srv:
        client = ChatClient(srv.url)
        assert client.answers("pool-a") is True
        assert client.answers("pool-b") is False  # 404: not served (yet)
        srv.configure(models=["pool-a", "pool-b"])
        assert client.answers("pool-b") is True
    assert ChatClient(f"http://127.0.0.1:{free_port()}").answers("pool-a") is False
