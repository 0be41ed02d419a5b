"""Failover that loses nothing (issue 12.3), with real parts: two app processes on one
PostgreSQL behind HAProxy (sticky by cookie, WebSocket, health checks), seen in Chromium.

Each scenario is one guest at its own address (the browser sends ``X-Forwarded-For``, HAProxy
appends the peer as a load balancer does), so the per-user limits of one scenario do not
touch another's. A browser is pinned to a replica by HAProxy's own cookie. The scenarios
share the processes: the kill and the stop end replica ``a``, the next scenario restarts it
on its port and waits until HAProxy routes to it again.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.fakes.openai_server import FakeOpenAI, Script
from tests.store.backends import _fresh_pg_schema, postgres_unavailable
from tests.support.haproxy import COOKIE, HAProxy, haproxy_binary
from tests.support.servers import StreamlitServer, free_port
from webapp.chat.limits import UsageLimits
from webapp.store import ConversationStore

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MESSAGES_PER_MINUTE = 4
SLOW = Script(n_tokens=400, tokens_per_s=8)  # 50 s: every kill lands mid-answer


@dataclass
class Cluster:
    """Replicas ``a`` and ``b`` (one PostgreSQL schema), HAProxy, the scripted model server."""

    database_url: str
    fake: FakeOpenAI
    tmp: Path
    replicas: dict[str, StreamlitServer] = field(default_factory=dict)
    proxy: HAProxy | None = None

    def start(self, name: str, port: int | None = None) -> StreamlitServer:
        env = {
            "DATABASE_URL": self.database_url,
            "LLM_URL": self.fake.url,
            "MESSAGES_PER_MINUTE": str(MESSAGES_PER_MINUTE),
        }
        srv = StreamlitServer(env, self.tmp, port or free_port()).start()
        self.replicas[name] = srv
        return srv

    def ensure_up(self, name: str) -> None:
        """Replica ``name`` runs (restarted on its port if a scenario ended it) and HAProxy
        sends the browsers pinned to it there again."""
        srv = self.replicas[name]
        if srv.proc is None or srv.proc.poll() is not None:
            self.start(name, srv.port)
        end = time.monotonic() + 30  # guards a hung test only
        while not self.routes_to(name):
            assert time.monotonic() < end, f"HAProxy never took replica {name} back"
            time.sleep(0.1)

    def routes_to(self, name: str) -> bool:
        """A request pinned to ``name`` is served there (HAProxy rewrites no cookie)."""
        req = urllib.request.Request(
            f"{self.proxy.url}/_stcore/health", headers={"Cookie": f"{COOKIE}={name}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                moved = [c for c in r.headers.get_all("Set-Cookie") or [] if c.startswith(COOKIE)]
                return r.status == 200 and not moved
        except OSError:
            return False

    def running_generations(self) -> int:
        store = ConversationStore(self.database_url)
        try:
            return UsageLimits(
                store, messages_per_minute=1, max_prompt_chars=1, max_conversations=1
            ).running_generations()
        finally:
            store.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed: apt-get install -y haproxy (.ci/run does)")
    tmp = tmp_path_factory.mktemp("failover")
    schema = _fresh_pg_schema()
    database_url = next(schema)
    store = ConversationStore(database_url)
    store.migrate()  # once, before two replicas open it
    store.dispose()
    with FakeOpenAI(model="fake-chat", max_model_len=4096) as fake:
        world = Cluster(database_url, fake, tmp)
        try:
            world.start("a")
            world.start("b")
            ports = {n: s.port for n, s in world.replicas.items()}
            world.proxy = HAProxy(ports, tmp).start()
            yield world
        finally:
            if world.proxy:
                world.proxy.stop()
            for srv in world.replicas.values():
                srv.stop()
            next(schema, None)  # drops the schema


@contextmanager
def guest(browser, cluster: Cluster, replica: str, address: str) -> Iterator[Page]:
    """A browser at ``address`` pinned to ``replica`` through the proxy."""
    ctx: BrowserContext = browser.new_context(
        viewport={"width": 1280, "height": 900}, extra_http_headers={"X-Forwarded-For": address}
    )
    ctx.add_cookies([{"name": COOKIE, "value": replica, "url": cluster.proxy.url}])
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(cluster.proxy.url)
        page.get_by_test_id("stChatInputTextArea").wait_for()
        yield page
    finally:
        ctx.close()


def pinned_to(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == COOKIE), None)


def send(page: Page, text: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")


def messages(page: Page):
    return page.get_by_test_id("stChatMessage")


def answer_words(page: Page, n: int) -> list[str]:
    text = messages(page).nth(n).get_by_test_id("stMarkdownContainer").first.inner_text()
    return text.replace("▌", "").split()


def start_slow_answer(cluster: Cluster, page: Page) -> list[str]:
    """A first short exchange, then a slow answer; the words on screen once it runs."""
    cluster.fake.set_script(Script(tokens=["Paris ", "is ", "the ", "capital."]))
    send(page, "What is the capital of France?")
    expect(messages(page).nth(1)).to_contain_text("Paris is the capital.")
    expect(page).to_have_url(re.compile(r"\?chat=[A-Za-z0-9_-]{20,}"))
    cluster.fake.set_script(SLOW)
    send(page, "Tell me more")
    expect(messages(page).nth(3)).to_contain_text("quick brown fox jumps over")
    page.wait_for_timeout(1000)  # a few checkpoints' worth of words
    return answer_words(page, 3)


def wait_for_free_slot(cluster: Cluster) -> None:
    """Until the killed replica's lease on the answer slot ran out (DEFAULT_LEASE_S)."""
    end = time.monotonic() + 60  # guards a hung test only
    while cluster.running_generations():
        assert time.monotonic() < end, "the killed replica's lease never ran out"
        time.sleep(0.2)


def reload_until_interrupted(page: Page, url: str) -> None:
    """Reload (what the note asks) until the answer whose writer died shows as interrupted:
    at most a few seconds after its slot is free (DEFAULT_STALE_AFTER_S)."""
    end = time.monotonic() + 30  # guards a hung test only
    while True:
        page.goto(url)
        expect(messages(page)).to_have_count(4)
        if "Interrupted" in messages(page).nth(3).inner_text():
            return
        assert time.monotonic() < end, "the dead replica's answer was never marked interrupted"
        page.wait_for_timeout(1000)


def test_one_answer_at_a_time_and_the_rate_limit_hold_across_replicas(cluster, browser):
    cluster.ensure_up("a")
    with (
        guest(browser, cluster, "a", "10.12.3.1") as on_a,
        guest(browser, cluster, "b", "10.12.3.1") as on_b,
    ):
        cluster.fake.set_script(Script(hold=True))
        send(on_a, "a long answer, please")  # message 1
        expect(on_a.get_by_role("button", name="Stop")).to_be_visible()
        send(on_b, "and another one meanwhile")  # message 2: refused, the slot is on A
        expect(on_b.get_by_text("An answer is already being generated for you")).to_be_visible()
        cluster.fake.release()
        expect(on_a.get_by_role("button", name="Stop")).to_have_count(0)

        cluster.fake.set_script(Script(tokens=["Fine."]))
        send(on_b, "now on B")  # message 3
        expect(messages(on_b).last).to_contain_text("Fine.")
        send(on_a, "and on A")  # message 4
        expect(messages(on_a).last).to_contain_text("Fine.")
        send(on_b, "one more on B")  # 5th in the minute: A's and B's count together
        expect(on_b.get_by_text(f"You have sent {MESSAGES_PER_MINUTE} messages")).to_be_visible()
        assert (pinned_to(on_a), pinned_to(on_b)) == ("a", "b")


def test_sigkill_mid_answer_the_browser_moves_to_the_other_replica(cluster, browser):
    cluster.ensure_up("a")
    cluster.ensure_up("b")
    with guest(browser, cluster, "a", "10.12.3.2") as page:
        visible = start_slow_answer(cluster, page)
        url = page.url
        cluster.replicas["a"].kill()

        # Streamlit reconnects its socket by itself; HAProxy sends it to B (new cookie),
        # and B draws the conversation from the database: the partial answer, not finished
        expect(page.get_by_text("Still being written elsewhere")).to_be_visible(timeout=30_000)
        assert pinned_to(page) == "b"
        expect(messages(page)).to_have_count(4)
        saved = answer_words(page, 3)
        kept = len(visible) - 4  # SIGKILL: at most the last round of checkpoints is lost
        assert saved[:kept] == visible[:kept], (visible, saved)

        # Retry at once: the dead replica's lease still holds the user's slot, so it is
        # refused, and the partial answer it would replace stays (on screen and saved)
        page.get_by_role("button", name="Retry").click()
        expect(page.get_by_text("If the app restarted while answering")).to_be_visible()
        expect(messages(page)).to_have_count(4)
        assert answer_words(page, 3) == saved
        page.goto(url)  # what a reload shows: the same, from the database
        expect(messages(page)).to_have_count(4)
        assert answer_words(page, 3) == saved

        # once the lease ran out (30 s) a reload marks it interrupted and Retry works on B
        wait_for_free_slot(cluster)
        reload_until_interrupted(page, url)
        assert answer_words(page, 3) == saved
        cluster.fake.set_script(Script(tokens=["Retried ", "on ", "B."]))
        page.get_by_role("button", name="Retry").click()
        expect(messages(page).nth(3)).to_contain_text("Retried on B.")
        expect(messages(page)).to_have_count(4)
        assert pinned_to(page) == "b"


def test_sigterm_mid_answer_keeps_every_token_received(cluster, browser):
    cluster.ensure_up("a")
    cluster.ensure_up("b")
    with guest(browser, cluster, "a", "10.12.3.3") as page:
        visible = start_slow_answer(cluster, page)
        cluster.replicas["a"].stop()  # SIGTERM, as a rolling update sends it

        expect(messages(page).nth(3)).to_contain_text(
            "Interrupted — the app restarted", timeout=30_000
        )
        assert pinned_to(page) == "b"
        saved = answer_words(page, 3)
        assert saved[: len(visible)] == visible, (visible, saved)
        cluster.fake.set_script(Script(tokens=["Retried ", "on ", "B."]))
        page.get_by_role("button", name=re.compile("^(Retry|Regenerate)$")).click()
        expect(messages(page).nth(3)).to_contain_text("Retried on B.")


def test_proxy_restart_mid_answer_loses_no_saved_token(cluster, browser):
    cluster.ensure_up("a")
    with guest(browser, cluster, "a", "10.12.3.4") as page:
        visible = start_slow_answer(cluster, page)
        url = page.url
        cluster.proxy.restart()  # every connection through it drops, the browser's too

        # the replica sees its browser gone: the answer ends there, all of it saved, and the
        # page (reconnected to the same replica) says it was cut short, with Retry
        expect(messages(page).nth(3)).to_contain_text(
            "Interrupted — the app restarted or the page was closed", timeout=30_000
        )
        saved = answer_words(page, 3)
        assert saved[: len(visible)] == visible, (visible, saved)
        page.goto(url)
        expect(messages(page).nth(3)).to_contain_text("Interrupted — the app restarted")
        assert answer_words(page, 3) == saved
        assert pinned_to(page) == "a"
        cluster.fake.set_script(Script(tokens=["Retried."]))
        page.get_by_role("button", name="Retry").click()
        expect(messages(page).nth(3)).to_contain_text("Retried.")
