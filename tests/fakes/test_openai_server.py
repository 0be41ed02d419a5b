"""Self-tests of the scripted vLLM fake, driven by the real openai client and LangChain."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from langchain_community.llms import VLLMOpenAI
from langchain_openai import ChatOpenAI

from tests.fakes.openai_server import (
    CHAT_TEMPLATE_MISSING,
    FakeOpenAI,
    Script,
    context_overflow_message,
    count_chat_tokens,
    count_prompt_tokens,
    default_tokens,
    spawn_fake_openai,
)

HI = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def srv() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model=["fake-chat", "other-model"], max_model_len=64) as s:
        yield s


def client(url: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="sk-secret", max_retries=0, **kw)


def eventually(cond: Callable[[], bool], what: str, limit_s: float = 10.0) -> None:
    """Poll until cond() holds; the limit only guards against a hung test, it is no speed goal."""
    end = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.01)


# ---- pure logic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], 3),
        ([{"role": "user", "content": "one two three"}], 3 + 4 + 3),
        ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], 3 + 6 + 5),
        ([{"role": "user", "content": [{"type": "text", "text": "a b"}]}], 3 + 4 + 2),
    ],
)
def test_count_chat_tokens(messages, expected):
    assert count_chat_tokens(messages) == expected


@pytest.mark.parametrize(
    ("prompt", "expected"), [("", 1), ("Once upon a time", 5), ([5, 6, 7], 3), ("  a\nb ", 3)]
)
def test_count_prompt_tokens(prompt, expected):
    assert count_prompt_tokens(prompt) == expected


@pytest.mark.parametrize(
    ("style", "prompt", "max_tokens", "expected"),
    [
        (
            "current",
            70,
            None,
            "This model's maximum context length is 64 tokens. However, your prompt contains "
            "at least 65 input tokens, which exceeds this limit even without any output tokens. "
            "Please reduce the length of the input prompt.",
        ),
        (
            "current",
            30,
            40,
            "This model's maximum context length is 64 tokens. However, your prompt contains "
            "at least 25 input tokens, which exceeds this limit even without any output tokens. "
            "Please reduce the length of the input prompt.",
        ),
        (
            "v0.11",
            30,
            40,
            "'max_tokens' or 'max_completion_tokens' is too large: 40. This model's maximum "
            "context length is 64 tokens and your request has 30 input tokens (40 > 64 - 30).",
        ),
        (
            "legacy",
            30,
            40,
            "This model's maximum context length is 64 tokens. However, you requested 70 tokens "
            "(30 in the messages, 40 in the completion). Please reduce the length of the "
            "messages or completion.",
        ),
    ],
)
def test_context_overflow_message_styles(style, prompt, max_tokens, expected):
    assert context_overflow_message(64, prompt, max_tokens, style) == expected


def test_script_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="ttft"):
        Script.from_dict({"ttft": 1})
    assert Script.from_dict({"n_tokens": 3}).n_tokens == 3


# ---- protocol with the real openai client --------------------------------------------------


def test_models_lists_every_served_model_with_max_model_len(srv):
    models = client(srv.url).models.list().data
    assert [m.id for m in models] == ["fake-chat", "other-model"]
    assert {m.model_extra["max_model_len"] for m in models} == {64}
    assert {m.owned_by for m in models} == {"vllm"}


def test_chat_stream_yields_scripted_tokens_then_usage(srv):
    srv.set_script(Script(tokens=["Hel", "lo", " world"]))
    chunks = list(
        client(srv.url).chat.completions.create(
            model="fake-chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (count_chat_tokens(HI), 3)
    assert usage.total_tokens == usage.prompt_tokens + 3
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1


def test_stream_without_include_usage_has_no_usage_chunk(srv):
    chunks = list(
        client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.parametrize(
    ("script", "max_tokens", "text", "finish", "n_out"),
    [
        (Script(n_tokens=4), None, "".join(default_tokens(4)), "stop", 4),
        (Script(n_tokens=10), 3, "".join(default_tokens(3)), "length", 3),
        (Script(tokens=["a", "b"], finish_reason="length"), None, "ab", "length", 2),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_chat_max_tokens_and_finish_reason(srv, script, max_tokens, text, finish, n_out, stream):
    srv.set_script(script)
    c = client(srv.url)
    kwargs = {"model": "fake-chat", "messages": HI, "max_tokens": max_tokens}
    if stream:
        chunks = [ch for ch in c.chat.completions.create(stream=True, **kwargs) if ch.choices]
        got = "".join(ch.choices[0].delta.content or "" for ch in chunks)
        got_finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices[0].finish_reason]
        assert got_finish == [finish]
    else:
        resp = c.chat.completions.create(**kwargs)
        got, got_finish = resp.choices[0].message.content, resp.choices[0].finish_reason
        assert got_finish == finish
        assert resp.usage.completion_tokens == n_out
    assert got == text


@pytest.mark.parametrize(
    ("tokens", "stop", "text"),
    [
        (["Hello", " world", "\nUser:", " more"], ["\nUser:"], "Hello world"),
        (["Hello", " wor", "ld", " again"], "orl", "Hello w"),
        (["a", "b", "c"], ["x", "b"], "a"),
        (["a", "b", "c"], ["zzz"], "abc"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_completions_honour_stop_sequences(srv, tokens, stop, text, stream):
    srv.set_script(Script(tokens=tokens))
    c = client(srv.url)
    kwargs = {"model": "fake-chat", "prompt": "Q: hi\nA:", "stop": stop, "max_tokens": 20}
    if stream:
        chunks = list(c.completions.create(stream=True, **kwargs))
        assert "".join(ch.choices[0].text for ch in chunks) == text
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert {ch.object for ch in chunks} == {"text_completion"}
    else:
        resp = c.completions.create(**kwargs)
        assert resp.choices[0].text == text
        assert resp.choices[0].finish_reason == "stop"


def test_completions_default_max_tokens_is_16_like_vllm(srv):
    srv.set_script(Script(n_tokens=40))
    resp = client(srv.url).completions.create(model="fake-chat", prompt="go")
    assert resp.usage.completion_tokens == 16
    assert resp.choices[0].finish_reason == "length"


def test_reasoning_is_streamed_in_delta_reasoning(srv):
    srv.set_script(Script(reasoning=["think", "ing"], tokens=["ok"]))
    chunks = list(
        client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    )
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(d.model_extra.get("reasoning") or "" for d in deltas) == "thinking"
    assert "".join(d.content or "" for d in deltas) == "ok"


def test_queued_scripts_are_consumed_before_the_default(srv):
    srv.set_script(Script(tokens=["default"]))
    srv.enqueue(Script(tokens=["first"]), Script(tokens=["second"]))
    c = client(srv.url)
    got = [
        c.chat.completions.create(model="fake-chat", messages=HI).choices[0].message.content
        for _ in range(3)
    ]
    assert got == ["first", "second", "default"]


def test_requests_are_recorded_without_the_api_key(srv):
    client(srv.url).chat.completions.create(model="fake-chat", messages=HI, temperature=0.2)
    rec = srv.requests[-1]
    assert rec["path"] == "/v1/chat/completions"
    assert rec["body"]["temperature"] == 0.2
    assert rec["headers"]["authorization"] == "<redacted>"
    assert "sk-secret" not in repr(srv.requests)


def test_reset_forgets_requests_queue_and_counters(srv):
    srv.enqueue(Script(tokens=["queued"]))
    client(srv.url).models.list()
    srv.reset()
    assert srv.requests == []
    assert srv.stats()["queued_scripts"] == 0
    assert srv.disconnects == 0


def test_reset_during_a_stream_keeps_live_counters_consistent(srv):
    srv.set_script(Script(n_tokens=1000, tokens_per_s=100))
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    next(iter(stream))
    srv.reset()
    assert srv.stats()["in_flight"] == 1
    stream.close()
    eventually(lambda: srv.stats()["in_flight"] == 0, "stream ended")
    assert srv.stats()["running"] == 0


# ---- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("drop_after", [0, 2])
def test_drop_mid_stream_raises_api_connection_error(srv, drop_after):
    srv.set_script(Script(n_tokens=10, drop_after=drop_after))
    received = []
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    with pytest.raises(openai.APIConnectionError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    # openai 3.x talks through httpx2 (a fork of httpx), hence the name check
    assert type(info.value.__cause__).__name__ == "RemoteProtocolError"
    assert received[1:] == default_tokens(10)[:drop_after]  # [0] is the role chunk
    assert srv.stats()["drops"] == 1


def test_drop_in_non_stream_answer_raises_api_connection_error(srv):
    srv.set_script(Script(drop_after=0))
    with pytest.raises(openai.APIConnectionError):
        client(srv.url).chat.completions.create(model="fake-chat", messages=HI)


def test_error_event_mid_stream_raises_api_error(srv):
    srv.set_script(Script(n_tokens=5, error_after=2))
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    with pytest.raises(openai.APIError, match="EngineCore") as info:
        list(stream)
    assert info.value.body["code"] == 500


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_scripted_status_maps_to_openai_exception(srv, status, exc, stream):
    srv.set_script(Script(status=status, error_message=f"boom {status}"))
    with pytest.raises(exc) as info:
        client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=stream)
    assert info.value.status_code == status
    assert info.value.body["message"] == f"boom {status}"


def test_error_body_has_vllm_shape(srv):
    srv.set_script(Script(status=400, error_message="bad"))
    r = httpx.post(srv.url + "/v1/completions", json={"model": "fake-chat", "prompt": "x"})
    assert r.status_code == 400
    assert r.json() == {
        "error": {"message": "bad", "type": "BadRequestError", "param": None, "code": 400}
    }


def test_missing_chat_template_is_400_but_completions_work():
    with FakeOpenAI(model="base", chat_template=False) as s:
        c = client(s.url)
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model="base", messages=HI)
        assert info.value.body["message"] == CHAT_TEMPLATE_MISSING
        assert c.completions.create(model="base", prompt="Hi", max_tokens=2).choices[0].text
        r = httpx.post(s.url + "/tokenize", json={"model": "base", "messages": HI})
        assert r.status_code == 400


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "w " * 60}]}, "at least 65 input tokens"),
        ({"messages": HI, "max_tokens": 60}, "maximum context length is 64 tokens"),
        ({"messages": HI, "max_tokens": 65}, "cannot be greater than max_model_len=64"),
    ],
)
def test_context_overflow_is_400(srv, kwargs, fragment):
    with pytest.raises(openai.BadRequestError) as info:
        client(srv.url).chat.completions.create(model="fake-chat", **kwargs)
    assert fragment in info.value.body["message"]


def test_context_fits_exactly(srv):
    budget = 64 - count_chat_tokens(HI)
    srv.set_script(Script(n_tokens=100))
    resp = client(srv.url).chat.completions.create(
        model="fake-chat", messages=HI, max_tokens=budget
    )
    assert resp.usage.total_tokens == 64


def test_unknown_model_is_404_not_found(srv):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client(srv.url).chat.completions.create(model="nope", messages=HI)


def test_api_key_is_enforced_when_configured():
    with FakeOpenAI(api_key="right") as s:
        with pytest.raises(openai.AuthenticationError):
            client(s.url).models.list()
        ok = openai.OpenAI(base_url=s.url + "/v1", api_key="right", max_retries=0)
        assert ok.models.list().data[0].id == "fake-chat"


def test_connection_refused_raises_api_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(openai.APIConnectionError) as info:
        client(f"http://127.0.0.1:{port}").models.list()
    assert type(info.value.__cause__).__name__ == "ConnectError"


@pytest.mark.parametrize(
    "script", [Script(hang=True), Script(delay_headers_s=30), Script(ttft_s=30)]
)
def test_read_timeout_raises_api_timeout_and_counts_disconnect(srv, script):
    srv.set_script(script)
    c = client(srv.url, timeout=httpx.Timeout(5.0, read=0.3))
    with pytest.raises(openai.APITimeoutError):
        for _ in c.chat.completions.create(model="fake-chat", messages=HI, stream=True):
            pass
    eventually(lambda: srv.disconnects == 1, "server noticed the client left")


def test_closing_the_stream_early_counts_a_disconnect(srv):
    srv.set_script(Script(n_tokens=1000, tokens_per_s=200))
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    eventually(lambda: srv.disconnects == 1, "server noticed the closed stream")
    eventually(lambda: srv.stats()["in_flight"] == 0, "request finished")


def test_pacing_spreads_tokens_in_order(srv):
    srv.set_script(Script(n_tokens=8, ttft_s=0.05, tokens_per_s=100))
    arrivals, texts = [], []
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    for chunk in stream:
        arrivals.append(time.monotonic())
        texts.append(chunk.choices[0].delta.content)
    assert texts[1:-1] == default_tokens(8)
    assert arrivals == sorted(arrivals)
    sent = srv.requests[-1]["chunk_times"]
    assert len(sent) == 8
    assert sent == sorted(sent)


def test_concurrent_streams_all_complete(srv):
    srv.set_script(Script(n_tokens=20, tokens_per_s=400))
    c = client(srv.url)
    results: list[str] = []

    def one() -> None:
        stream = c.chat.completions.create(model="fake-chat", messages=HI, stream=True)
        results.append("".join(ch.choices[0].delta.content or "" for ch in stream))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["".join(default_tokens(20))] * 12


def test_held_requests_wait_for_release_and_the_peak_is_counted(srv):
    srv.set_script(Script(tokens=["done"], hold=True))
    c = client(srv.url)
    results: list[str] = []

    def one() -> None:
        r = c.chat.completions.create(model="fake-chat", messages=HI)
        results.append(r.choices[0].message.content)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    eventually(lambda: srv.stats()["in_flight"] == 3, "three requests held")
    assert results == []
    srv.release()
    for t in threads:
        t.join()
    assert results == ["done"] * 3
    assert srv.stats()["peak_in_flight"] == 3
    # the server counts a request out after its last byte is written, so the client may
    # have read the answer a moment before: wait for the count, do not race it
    eventually(lambda: srv.stats()["in_flight"] == 0, "the three requests counted out")
    srv.reset()  # the peak starts again from what is in flight; held requests wait again
    assert srv.stats()["peak_in_flight"] == 0


def test_held_server_checks_wait_for_release(srv):
    srv.configure(hold_facts=True)  # a slow server's /health and /v1/models
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{srv.url}/health", timeout=0.3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{srv.url}/v1/models", timeout=0.3)
    answer = client(srv.url).chat.completions.create(model="fake-chat", messages=HI)
    assert answer.choices[0].message.content  # generation is not held
    srv.release()
    assert httpx.get(f"{srv.url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{srv.url}/v1/models", timeout=5).json()["data"][0]["id"] == "fake-chat"


def test_a_held_request_whose_client_leaves_is_not_kept(srv):
    srv.set_script(Script(hold=True))
    with pytest.raises(openai.APITimeoutError):
        client(srv.url, timeout=0.3).chat.completions.create(model="fake-chat", messages=HI)
    eventually(lambda: srv.stats()["in_flight"] == 0, "held request dropped")
    assert srv.disconnects == 1


# ---- side endpoints ----------------------------------------------------------------------


def test_health_can_be_scripted(srv):
    assert httpx.get(srv.url + "/health").status_code == 200
    srv.configure(health_status=503)
    assert httpx.get(srv.url + "/health").status_code == 503


def test_tokenize_uses_the_same_counting(srv):
    r = httpx.post(srv.url + "/tokenize", json={"model": "fake-chat", "prompt": "a b c"}).json()
    assert (r["count"], r["max_model_len"], len(r["tokens"])) == (4, 64, 4)
    r = httpx.post(srv.url + "/tokenize", json={"model": "fake-chat", "messages": HI}).json()
    assert r["count"] == count_chat_tokens(HI)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_reflect_in_flight_streams(srv):
    srv.set_script(Script(n_tokens=1000, tokens_per_s=100))
    stream = client(srv.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
    next(iter(stream))

    def running() -> float:
        return metric(httpx.get(srv.url + "/metrics").text, "vllm:num_requests_running")

    eventually(lambda: running() == 1.0, "one running request")
    text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "vllm:num_requests_waiting") == 0.0
    assert 0.0 < metric(text, "vllm:kv_cache_usage_perc") <= 1.0
    assert metric(text, "vllm:prompt_tokens_total") == count_chat_tokens(HI)
    assert 'model_name="fake-chat"' in text
    stream.close()
    eventually(lambda: running() == 0.0, "stream ended")
    text = httpx.get(srv.url + "/metrics").text
    assert metric(text, "vllm:time_to_first_token_seconds_count") == 1.0
    assert metric(text, "vllm:generation_tokens_total") >= 1.0


def test_metrics_count_http_statuses_per_route_and_finish_reasons(srv):
    srv.enqueue(Script(status=500), Script(error_after=0))
    for _ in range(3):
        httpx.post(srv.url + "/v1/completions", json={"model": "fake-chat", "prompt": "hi"})
    text = httpx.get(srv.url + "/metrics").text
    by_status = {
        group: f'http_requests_total{{handler="/v1/completions",method="POST",status="{group}"}}'
        for group in ("2xx", "5xx")
    }
    assert f"{by_status['5xx']} 2.0" in text  # the scripted 500 and the engine error
    assert f"{by_status['2xx']} 1.0" in text
    assert (
        'vllm:request_success_total{engine="0",model_name="fake-chat",finished_reason="error"} 1.0'
        in text
    )
    assert "/metrics" not in text.split("http_requests_total", 1)[1]  # only /v1/ routes


def test_max_num_seqs_queues_requests_as_waiting():
    with FakeOpenAI(max_num_seqs=1) as s:
        s.enqueue(Script(n_tokens=1000, tokens_per_s=100), Script(tokens=["queued", " ok"]))
        first = client(s.url).chat.completions.create(model="fake-chat", messages=HI, stream=True)
        next(iter(first))
        results: list[str] = []

        def second() -> None:
            stream = client(s.url).chat.completions.create(
                model="fake-chat", messages=HI, stream=True
            )
            results.append("".join(ch.choices[0].delta.content or "" for ch in stream))

        t = threading.Thread(target=second)
        t.start()
        eventually(lambda: s.stats()["waiting"] == 1, "second request waits for a slot")
        assert metric(httpx.get(s.url + "/metrics").text, "vllm:num_requests_waiting") == 1.0
        assert results == []
        first.close()
        t.join(timeout=10)
        assert results == ["queued ok"]


# ---- LangChain ---------------------------------------------------------------------------


def test_langchain_chat_openai_invoke_and_stream(srv):
    srv.set_script(Script(tokens=["Bon", "jour"]))
    llm = ChatOpenAI(
        base_url=srv.url + "/v1", api_key="x", model="fake-chat", max_retries=0, stream_usage=True
    )
    assert llm.invoke("hi").content == "Bonjour"
    chunks = list(llm.stream("hi"))
    assert "".join(c.content for c in chunks) == "Bonjour"
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == 2


def test_langchain_chat_openai_drop_raises_api_connection_error(srv):
    srv.set_script(Script(n_tokens=5, drop_after=1))
    llm = ChatOpenAI(base_url=srv.url + "/v1", api_key="x", model="fake-chat", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        list(llm.stream("hi"))


def test_langchain_vllm_openai_against_base_model():
    with FakeOpenAI(model="base", chat_template=False) as s:
        s.set_script(Script(tokens=[" Paris", ".", "\nQ:", " next"]))
        llm = VLLMOpenAI(
            openai_api_base=s.url + "/v1",
            openai_api_key="x",
            model_name="base",
            max_tokens=32,
            max_retries=0,
        )
        assert llm.invoke("Q: capital of France?\nA:", stop=["\nQ:"]) == " Paris."
        assert "".join(llm.stream("Q: capital?\nA:", stop=["\nQ:"])) == " Paris."
        assert s.requests[-1]["path"] == "/v1/completions"


# ---- out of process ----------------------------------------------------------------------


def test_cli_mode_with_http_control():
    args = ("--model", "cli-model", "--tokens", "3", "--max-model-len", "128")
    with spawn_fake_openai(*args) as remote:
        c = client(remote.url)
        assert c.models.list().data[0].id == "cli-model"
        resp = c.chat.completions.create(model="cli-model", messages=HI)
        assert resp.choices[0].message.content == "".join(default_tokens(3))
        remote.set_script(Script(tokens=["x"]))
        remote.enqueue(Script(status=500, error_message="queued failure"))
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="cli-model", messages=HI)
        assert (
            c.chat.completions.create(model="cli-model", messages=HI).choices[0].message.content
            == "x"
        )
        assert [r["path"] for r in remote.requests].count("/v1/chat/completions") == 3
        remote.set_script(Script(n_tokens=1000, tokens_per_s=100))
        stream = c.chat.completions.create(model="cli-model", messages=HI, stream=True)
        next(iter(stream))
        stream.close()
        eventually(lambda: remote.disconnects == 1, "remote counted the disconnect")
        remote.configure(models=["switched"])
        assert c.models.list().data[0].id == "switched"
        remote.reset()
        assert remote.requests == []
        assert remote.stats()["disconnects"] == 0
        remote.set_script(Script(tokens=["held"], hold=True))
        remote.release()
        assert (
            c.chat.completions.create(model="switched", messages=HI).choices[0].message.content
            == "held"
        )
        assert remote.stats()["peak_in_flight"] == 1
