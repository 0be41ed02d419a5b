"""The 100-session flood of issue 10, end to end: a real ``streamlit run`` of the app, the
scripted fake as the model server (it holds every answer until the test releases it and
counts the requests in flight), and 100 Streamlit sessions over the websocket protocol
(``tests.support.streamlit_ws``, no browser) that all ask at once.

The sessions come "through the load balancer": each carries the ``X-Forwarded-For`` GKE's
load balancer would, with a spoofed left part the client wrote itself.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.fakes.openai_server import FakeOpenAI, Script
from tests.support.servers import StreamlitServer
from tests.support.streamlit_ws import WsSession, nth_client, via_load_balancer

SESSIONS = 100
CAP = 4
ANSWER = "held answer"


def run_apart(coro):
    """``asyncio.run`` in a thread of its own: in the full suite the browser tests' sync
    Playwright leaves an event loop running in the main thread, where asyncio.run refuses."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(model="fake-chat", max_model_len=2048) as srv:
        yield srv


@pytest.fixture(scope="module")
def app(fake, tmp_path_factory):
    env = {
        "LLM_URL": fake.url,
        "APP_MODE": "chat",
        "MAX_CONCURRENT_GENERATIONS": str(CAP),
        "TRUSTED_PROXY_HOPS": "1",
        "MESSAGES_PER_MINUTE": "100000",  # this test is about answers at once, not the rate
        "DEFAULT_MAX_TOKENS": "16",
    }
    srv = StreamlitServer(env, tmp_path_factory.mktemp("flood")).start()
    yield srv
    srv.stop()


async def until(cond, what: str, never=lambda: None, limit_s: float = 240) -> None:
    """Wait for a condition; fail at once when ``never()`` names what went wrong. The limit
    only guards against a hung test, it is no speed goal."""
    end = time.monotonic() + limit_s
    while not cond():
        if problem := never():
            pytest.fail(problem)
        if time.monotonic() > end:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)


def over(fake, admitted: int) -> str | None:
    """Say so when the model server has more requests in flight than were let through."""
    peak = fake.stats()["peak_in_flight"]
    return (
        f"{peak} requests at the model server at once (> {admitted})" if peak > admitted else None
    )


async def open_sessions(url: str, clients: list[str]) -> list[WsSession]:
    """One session per client entry, opened ten at a time."""
    sessions: list[WsSession] = []
    for start in range(0, len(clients), 10):
        batch = [
            WsSession(url, via_load_balancer(c, sent=f"10.0.0.{i}, 6.6.6.6"))
            for i, c in enumerate(clients[start : start + 10], start)
        ]
        sessions += await asyncio.gather(*(s.open() for s in batch))
    return sessions


async def flood(app, fake, clients: list[str], admitted: int) -> tuple[list, list, int]:
    """Every session asks at once. Returns (refused answers with their page's alerts,
    admitted answers, the most requests the model server had in flight at once)."""
    fake.reset()
    fake.set_script(Script(tokens=["held ", "answer"], hold=True))
    sessions = await open_sessions(app.url, clients)
    try:
        tasks = [
            asyncio.create_task(s.ask(f"question {i}", ANSWER, timeout=300))
            for i, s in enumerate(sessions)
        ]
        await until(
            lambda: (
                sum(t.done() for t in tasks) == len(tasks) - admitted
                and fake.stats()["in_flight"] == admitted
            ),
            f"{len(tasks) - admitted} sessions refused and {admitted} held at the backend",
            never=lambda: over(fake, admitted),
        )
        peak = fake.stats()["peak_in_flight"]
        done = [t.done() for t in tasks]
        refused = [(t.result(), s.alerts) for t, s, d in zip(tasks, sessions, done) if d]
        fake.release()
        answered = [await t for t, d in zip(tasks, done) if not d]
        return refused, answered, peak
    finally:
        await asyncio.gather(*(s.close() for s in sessions))


def test_a_flood_of_clients_gets_at_most_the_cap_of_answers_at_once(app, fake):
    """100 clients at once (a botnet, or one client spoofing X-Forwarded-For: it only adds
    entries the app ignores): the model server never sees more than the cap."""
    clients = [nth_client(i) for i in range(SESSIONS)]
    refused, answered, peak = run_apart(flood(app, fake, clients, admitted=CAP))
    assert peak == CAP
    assert len(refused) == SESSIONS - CAP
    for _answer, alerts in refused:
        assert any(
            f"The model is busy with {CAP} answers right now; try again in a few seconds" in a
            for a in alerts
        ), alerts
    assert [a.text for a in answered] == [ANSWER] * CAP
    assert len([r for r in fake.requests if r["path"].endswith("completions")]) == CAP


def test_one_client_with_a_hundred_sessions_gets_one_answer_at_a_time(app, fake):
    """One client reloading (or opening tabs) 100 times, each session with a different
    spoofed X-Forwarded-For: one answer at the backend, the others told so."""
    refused, answered, peak = run_apart(flood(app, fake, ["192.0.2.55"] * SESSIONS, admitted=1))
    assert peak == 1
    assert len(refused) == SESSIONS - 1
    for _answer, alerts in refused:
        assert any("already being generated for you" in a for a in alerts), alerts
    assert [a.text for a in answered] == [ANSWER]
