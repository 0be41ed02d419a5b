"""webapp.llm.sse: a streamed answer as dicts, with the openai SDK's rules (table-driven,
against an in-process HTTP transport; the fake and real vLLM tests cover it end to end)."""

from __future__ import annotations

import contextvars
import json
import threading

import httpx2
import openai
import pytest

from webapp.llm.sse import NO_MESSAGE, DictStreamResource, noting_response

CHUNK = {"id": "c1", "object": "chat.completion.chunk", "choices": [{"delta": {"content": "a"}}]}
USAGE = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
SSE = "text/event-stream; charset=utf-8"


def event(data) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


class Body(httpx2.SyncByteStream):
    """Byte pieces, then optionally an exception (a connection that breaks, a timeout)."""

    def __init__(self, pieces, fail=None):
        self.pieces, self.fail, self.closed = pieces, fail, False

    def __iter__(self):
        yield from self.pieces
        if self.fail is not None:
            raise self.fail

    def close(self):
        self.closed = True


def resource(body: Body, content_type: str = SSE, status: int = 200):
    def handler(request):
        if status != 200:
            return httpx2.Response(status, json={"error": {"message": "no such model"}})
        return httpx2.Response(200, headers={"content-type": content_type}, stream=body)

    client = openai.OpenAI(
        base_url="http://vllm.test/v1",
        api_key="k",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    return DictStreamResource(client.chat.completions)


def stream(res):
    return res.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([event(CHUNK), event(USAGE), event("[DONE]")], [CHUNK, USAGE]),
        # an event split across reads, and two events in one read
        ([event(CHUNK)[:7], event(CHUNK)[7:] + event(USAGE)], [CHUNK, USAGE]),
        ([event(CHUNK), event("[DONE]"), event(USAGE)], [CHUNK]),  # nothing after [DONE]
        ([b": keep-alive\n\n", event(CHUNK)], [CHUNK]),  # comments are not events
        ([], []),
    ],
)
def test_events_arrive_as_dicts(pieces, expected):
    body = Body(pieces)
    assert list(stream(resource(body))) == expected
    assert body.closed  # read to the end: the response is closed


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ({"message": "out of KV cache", "code": 500}, "out of KV cache"),
        ({"code": 500}, NO_MESSAGE),
        ("boom", NO_MESSAGE),
    ],
)
def test_an_error_event_raises_api_error_after_the_chunks_before_it(error, message):
    got = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream(resource(Body([event(CHUNK), event({"error": error})]))):
            got.append(chunk)
    assert got == [CHUNK]
    assert caught.value.message == message and caught.value.body == error


@pytest.mark.parametrize(
    ("fail", "raised"),
    [
        (httpx2.RemoteProtocolError("peer closed"), openai.APIConnectionError),
        (httpx2.ReadError("reset"), openai.APIConnectionError),
        (httpx2.ReadTimeout("slow"), openai.APITimeoutError),
    ],
)
def test_a_broken_stream_raises_what_the_sdk_raises(fail, raised):
    got = []
    with pytest.raises(raised):
        for chunk in stream(resource(Body([event(CHUNK)], fail=fail))):
            got.append(chunk)
    assert got == [CHUNK]


def test_a_body_that_is_no_event_stream_is_said():
    with pytest.raises(openai.APIError, match="did not answer with an event stream"):
        list(stream(resource(Body([b"<html>proxy error</html>"]), content_type="text/html")))


def test_a_refused_request_raises_the_sdks_status_error():
    with pytest.raises(openai.NotFoundError, match="no such model"):
        stream(resource(Body([]), status=404))


def test_leaving_early_closes_the_response():
    body = Body([event(CHUNK), event(CHUNK), event(USAGE)])
    with stream(resource(body)) as chunks:
        assert next(iter(chunks)) == CHUNK
    assert body.closed


def test_everything_but_a_streamed_create_is_the_sdks():
    res = resource(Body([]))
    assert res.with_raw_response is not None
    with pytest.raises(openai.APIConnectionError):  # not streamed: the SDK's own create
        DictStreamResource(
            openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0).completions
        ).create(model="m", prompt="hi")


@pytest.mark.parametrize(
    ("status", "raises"), [(200, None), (404, openai.NotFoundError)], ids=["headers", "refused"]
)
def test_a_caller_noting_the_response_learns_when_the_server_has_answered(status, raises):
    """``noting_response``: the event is set once the server answered (headers, or an error
    status), also in a thread started with a copy of the context; not outside it."""
    res = resource(Body([event(CHUNK)]), status=status)
    responded, outside = threading.Event(), threading.Event()

    def call():
        try:
            stream(res)
        except openai.APIStatusError as exc:
            assert raises is not None and isinstance(exc, raises)

    with noting_response(responded):
        reader = threading.Thread(target=contextvars.copy_context().run, args=(call,))
    with noting_response(outside):
        pass
    assert not responded.is_set()
    reader.start()
    reader.join()
    call()  # outside the context: nobody is told
    assert responded.is_set() and not outside.is_set()


def test_a_request_that_cannot_connect_still_sets_the_event():
    def handler(request):
        raise httpx2.ConnectError("refused", request=request)

    client = openai.OpenAI(base_url="http://vllm.test/v1", api_key="k", max_retries=0,
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))  # fmt: skip
    responded = threading.Event()
    with noting_response(responded), pytest.raises(openai.APIConnectionError):
        stream(DictStreamResource(client.chat.completions))
    assert responded.is_set()
