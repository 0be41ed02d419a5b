"""The usage query (webapp.store.usage) on SQLite and PostgreSQL: which answers of a period
it returns, under which user key, and their stats exactly as stored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text, update

from webapp.access.identity import client_limits_key, resolve_owner
from webapp.store import ConversationStore, StoreUnavailable
from webapp.store.models import conversations
from webapp.store.usage import AnswerUsage, answers_between

ALICE = "oidc:" + "a" * 64
GUEST = resolve_owner(None, "Zx9" * 8, client_address="203.0.113.7")


def _answer(store, owner, conv, meta, status="complete"):
    store.add_message(owner, conv, "user", "question")
    return store.add_message(owner, conv, "assistant", "answer", status, meta)


def test_the_answers_of_the_period_with_their_stats_as_stored(store, clock):
    start = clock.now
    alice = store.create_conversation(ALICE).id
    guest = store.create_conversation(GUEST.key, limits_key=GUEST.limits_key).id
    _answer(store, ALICE, alice, {"model": "m-old", "prompt_tokens": 1})  # before the period
    clock.advance(3600)
    since = clock.now
    _answer(store, ALICE, alice, {"model": "m1", "prompt_tokens": 12, "completion_tokens": 30,
                                  "ttft_s": 0.25, "user": "alice@example.com", "error": None})  # fmt: skip
    clock.advance(60)
    _answer(store, GUEST.key, guest, {"model": "m2", "completion_tokens": 7}, status="stopped")
    clock.advance(60)
    _answer(store, ALICE, alice, {"model": "m1"}, status="streaming")  # not finished: left out
    _answer(store, ALICE, alice, None, status="interrupted")  # its process died: no stats
    clock.advance(60)
    until = clock.now
    _answer(store, ALICE, alice, {"model": "m-new"})  # at the end of the period: left out

    got = answers_between(store, since, until)

    assert got == [
        AnswerUsage(ALICE, since, "m1", 12, 30, 0.25, "alice@example.com"),
        AnswerUsage(client_limits_key("203.0.113.7"), since + timedelta(seconds=60), "m2",
                    None, 7, None, None),
        AnswerUsage(ALICE, since + timedelta(seconds=120)),
    ]  # fmt: skip
    assert answers_between(store, start, start) == []
    assert len(answers_between(store, start, until + timedelta(seconds=1))) == 5


@pytest.mark.parametrize(
    "stored",
    [
        {"prompt_tokens": 10**30, "completion_tokens": -3, "ttft_s": 1e300},
        {"prompt_tokens": "12", "completion_tokens": [1], "ttft_s": {"s": 1}, "model": 5},
        {"prompt_tokens": 2**63 + 5, "user": '=HYPERLINK("http://x")'},
    ],
    ids=["huge", "wrong-types", "past-bigint"],
)
def test_garbage_in_the_stats_comes_back_unchanged_for_the_caller_to_judge(store, clock, stored):
    conv = store.create_conversation(ALICE).id
    _answer(store, ALICE, conv, stored)

    (got,) = answers_between(store, clock.now, clock.now + timedelta(seconds=1))

    for key, value in stored.items():
        if isinstance(value, int):  # SQLite turns integers past 64 bits into floats: as absurd
            assert getattr(got, key) == pytest.approx(value)
        else:
            assert getattr(got, key) == value


def test_a_conversation_from_before_limits_keys_counts_under_its_owner(store, clock):
    conv = store.create_conversation(ALICE).id
    _answer(store, ALICE, conv, {"model": "m1"})
    with store.engine.begin() as conn:
        conn.execute(update(conversations).values(limits_key=None))

    (got,) = answers_between(store, clock.now, clock.now + timedelta(seconds=1))

    assert got.user_key == ALICE


def test_an_unusable_database_is_a_typed_error(tmp_path):
    (tmp_path / "file").write_text("")
    store = ConversationStore(f"sqlite:///{tmp_path / 'file' / 'chat.db'}")

    with pytest.raises(StoreUnavailable):
        answers_between(store, store.now() - timedelta(days=1), store.now())


@pytest.mark.parametrize("raw", ['{"model": "m1", "ttft_s": NaN}', "not json", "[1, 2]", '"m1"'])
def test_a_meta_that_is_not_a_json_object_counts_with_no_stats(store, clock, raw):
    if store.engine.dialect.name != "sqlite" and raw in (
        "not json",
        '{"model": "m1", "ttft_s": NaN}',
    ):
        pytest.skip("PostgreSQL refuses to store invalid JSON")
    conv = store.create_conversation(ALICE).id
    message_id = _answer(store, ALICE, conv, {"model": "m1"})
    _answer(store, ALICE, conv, {"model": "m2", "completion_tokens": 3})
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE messages SET meta = :raw WHERE id = :id"),
                     {"raw": raw, "id": message_id})  # fmt: skip

    got = answers_between(store, clock.now, clock.now + timedelta(seconds=1))

    assert got == [AnswerUsage(ALICE, clock.now), AnswerUsage(ALICE, clock.now, "m2", None, 3)]
