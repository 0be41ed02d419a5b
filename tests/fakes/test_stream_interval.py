"""The fake's ``Script.stream_interval`` behaves like vLLM's ``--stream-interval N``: the first
token alone, then N tokens per SSE chunk, the rest at the end; the text is unchanged; a
request's own ``stream_interval`` raises the server's value, never lowers it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.openai_server import FakeOpenAI, Script, _chunks, spawn_fake_openai

HI = [{"role": "user", "content": "hello there"}]
TOKENS = [f"t{i} " for i in range(10)]


@pytest.fixture
def srv() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(model="fake-chat", max_model_len=256) as s:
        yield s


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def _chat_pieces(srv: FakeOpenAI, **extra) -> list[str]:
    stream = _client(srv.url).chat.completions.create(
        model="fake-chat", messages=HI, stream=True, **extra
    )
    return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


@pytest.mark.parametrize(
    ("interval", "sizes"),
    [(1, [1] * 10), (2, [1, 2, 2, 2, 2, 1]), (4, [1, 4, 4, 1]), (8, [1, 8, 1]), (20, [1, 9])],
)
def test_chat_chunks_carry_n_tokens_after_the_first(srv, interval, sizes):
    srv.set_script(Script(tokens=TOKENS, stream_interval=interval))
    pieces = _chat_pieces(srv)
    assert [p.count(" ") for p in pieces] == sizes
    assert "".join(pieces) == "".join(TOKENS)
    (rec,) = [r for r in srv.requests if r["path"] == "/v1/chat/completions"]
    assert len(rec["chunk_times"]) == len(sizes)


def test_completions_are_grouped_alike(srv):
    srv.set_script(Script(tokens=TOKENS, stream_interval=4))
    stream = _client(srv.url).completions.create(
        model="fake-chat", prompt="Q: hi\nA:", max_tokens=50, stream=True
    )
    texts = [c.choices[0].text for c in stream if c.choices and c.choices[0].text]
    assert [t.count(" ") for t in texts] == [1, 4, 4, 1]


@pytest.mark.parametrize(("server", "asked", "sizes"), [(1, 4, [1, 4, 4, 1]), (4, 2, [1, 4, 4, 1])])
def test_a_request_raises_the_interval_never_lowers_it(srv, server, asked, sizes):
    srv.set_script(Script(tokens=TOKENS, stream_interval=server))
    pieces = _chat_pieces(srv, extra_body={"stream_interval": asked})
    assert [p.count(" ") for p in pieces] == sizes


def test_length_finish_rides_on_the_last_grouped_chunk(srv):
    srv.set_script(Script(tokens=TOKENS, stream_interval=4))
    stream = _client(srv.url).chat.completions.create(
        model="fake-chat", messages=HI, stream=True, max_tokens=7
    )
    chunks = [c for c in stream if c.choices and c.choices[0].delta.content]
    assert [c.choices[0].delta.content.count(" ") for c in chunks] == [1, 4, 2]
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, "length"]


def test_a_chunk_keeps_one_kind():
    events = [("reasoning", "r0"), ("reasoning", "r1"), ("content", "c0"), ("content", "c1")]
    assert list(_chunks(events, 8)) == [
        (0, 1, "reasoning", "r0"),
        (1, 2, "reasoning", "r1"),
        (2, 4, "content", "c0c1"),
    ]


def test_paced_groups_go_out_when_their_last_token_is_due(srv):
    """At 50 tokens/s with N=4 the chunks leave about 80 ms apart, not 20 ms."""
    srv.set_script(Script(tokens=TOKENS[:9], tokens_per_s=50, stream_interval=4))
    assert len(_chat_pieces(srv)) == 3
    (rec,) = [r for r in srv.requests if r["path"] == "/v1/chat/completions"]
    gaps = [b - a for a, b in zip(rec["chunk_times"], rec["chunk_times"][1:], strict=False)]
    assert all(g >= 0.07 for g in gaps), gaps


def test_cli_option_sets_the_default_script():
    with spawn_fake_openai("--tokens", "5", "--stream-interval", "2") as fake:
        stream = _client(fake.url).chat.completions.create(
            model="fake-chat", messages=HI, stream=True
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices]
        assert [p for p in pieces if p] == ["The", " quick brown", " fox jumps"]
