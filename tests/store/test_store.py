"""The conversation store, run identically on SQLite and PostgreSQL (see backends.py)."""

from __future__ import annotations

import pytest

from webapp.store import (
    DEFAULT_TITLE,
    ConversationNotFound,
    ConversationStore,
    TooManyConversations,
)

ALICE = "oidc:" + "a" * 64
BOB = "oidc:" + "b" * 64


def test_new_conversation_is_untitled_until_the_first_prompt_names_it(store):
    conv = store.create_conversation(ALICE, chat_settings={"temperature": 0.2})
    assert conv.title == DEFAULT_TITLE
    store.add_message(ALICE, conv.id, "system", "Be brief.")
    store.add_message(ALICE, conv.id, "user", "How do I bake bread?\nWith details please")
    store.add_message(ALICE, conv.id, "user", "And cake?")
    loaded = store.get_conversation(ALICE, conv.id)
    assert loaded.title == "How do I bake bread?"
    assert loaded.chat_settings == {"temperature": 0.2}
    assert loaded.is_owner


def test_explicit_title_is_kept(store):
    conv = store.create_conversation(ALICE, title="  Recipes ")
    store.add_message(ALICE, conv.id, "user", "How do I bake bread?")
    assert store.get_conversation(ALICE, conv.id).title == "Recipes"


def test_messages_come_back_in_order_with_status_and_meta(store):
    conv = store.create_conversation(ALICE)
    meta = {"model": "tiny", "tokens": 12, "ttft_ms": 35.5, "tokens_per_s": 9.1}
    ids = [
        store.add_message(ALICE, conv.id, "user", "Q1"),
        store.add_message(ALICE, conv.id, "assistant", "A1", "cut", meta),
        store.add_message(ALICE, conv.id, "user", "Q2 — ünïcødé ✓"),
        store.add_message(ALICE, conv.id, "assistant", "part", "failed", {"error": "boom"}),
    ]
    msgs = store.get_conversation(ALICE, conv.id).messages
    assert [m.id for m in msgs] == ids
    assert [(m.role, m.content, m.status) for m in msgs] == [
        ("user", "Q1", "complete"),
        ("assistant", "A1", "cut"),
        ("user", "Q2 — ünïcødé ✓", "complete"),
        ("assistant", "part", "failed"),
    ]
    assert msgs[1].meta == meta
    assert msgs[3].meta == {"error": "boom"}


def test_list_is_newest_activity_first_and_limited(store, clock):
    first = store.create_conversation(ALICE, title="first")
    clock.advance(1)
    second = store.create_conversation(ALICE, title="second")
    clock.advance(1)
    third = store.create_conversation(ALICE, title="third")
    clock.advance(1)
    store.add_message(ALICE, first.id, "user", "bump")  # activity moves it to the top
    assert [c.id for c in store.list_conversations(ALICE)] == [first.id, third.id, second.id]
    assert [c.title for c in store.list_conversations(ALICE, limit=2)] == ["first", "third"]


def test_conversations_survive_a_new_store_on_the_same_database(store, database_url):
    conv = store.create_conversation(ALICE)
    store.add_message(ALICE, conv.id, "user", "remember me")
    store.dispose()
    again = ConversationStore(database_url)  # as after a server restart: migrate runs again
    try:
        assert again.get_conversation(ALICE, conv.id).messages[0].content == "remember me"
    finally:
        again.dispose()


def test_ids_are_unguessable_and_distinct(store):
    ids = {store.create_conversation(ALICE).id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) >= 22 for i in ids)


def test_rename_and_blank_rename_goes_back_to_the_first_prompt(store):
    conv = store.create_conversation(ALICE)
    store.add_message(ALICE, conv.id, "user", "Tell me about tides")
    assert store.rename(ALICE, conv.id, "  Ocean   stuff ") == "Ocean stuff"
    assert store.get_conversation(ALICE, conv.id).title == "Ocean stuff"
    assert store.rename(ALICE, conv.id, "   ") == "Tell me about tides"
    assert store.list_conversations(ALICE)[0].title == "Tell me about tides"


def test_delete_removes_the_conversation_and_its_messages(store):
    keep = store.create_conversation(ALICE)
    gone = store.create_conversation(ALICE)
    store.add_message(ALICE, gone.id, "user", "x")
    store.delete(ALICE, gone.id)
    assert [c.id for c in store.list_conversations(ALICE)] == [keep.id]
    with pytest.raises(ConversationNotFound):
        store.get_conversation(ALICE, gone.id)
    with pytest.raises(ConversationNotFound):
        store.delete(ALICE, gone.id)


def test_streaming_answer_is_checkpointed_then_finished(store):
    conv = store.create_conversation(ALICE)
    store.add_message(ALICE, conv.id, "user", "Q")
    mid = store.add_message(ALICE, conv.id, "assistant", "", "streaming", {"model": "m"})
    store.update_message(ALICE, mid, content="Hel", status="streaming")
    assert store.get_conversation(ALICE, conv.id).messages[-1].content == "Hel"
    store.update_message(ALICE, mid, content="Hello", status="stopped", meta={"tokens": 2})
    last = store.get_conversation(ALICE, conv.id).messages[-1]
    assert (last.content, last.status, last.meta) == (
        "Hello",
        "stopped",
        {"model": "m", "tokens": 2},
    )


def test_checkpoint_many_saves_only_streaming_answers_their_owners_may_change(store, clock):
    a = store.create_conversation(ALICE)
    b = store.create_conversation(BOB)
    a1 = store.add_message(ALICE, a.id, "assistant", "", "streaming")
    a2 = store.add_message(ALICE, a.id, "assistant", "done", "complete")
    b1 = store.add_message(BOB, b.id, "assistant", "", "streaming")
    clock.advance(20)
    missed = store.checkpoint_many(
        [
            (ALICE, a1, "alice so far"),
            (ALICE, a2, "late checkpoint"),  # finished: never overwritten
            (ALICE, b1, "not alice's"),  # another user's answer: not touched
            (BOB, b1, "bob so far"),
        ]
    )
    assert sorted(missed) == sorted([a2, b1])
    assert [m.content for m in store.get_conversation(ALICE, a.id).messages] == [
        "alice so far",
        "done",
    ]
    assert store.get_conversation(BOB, b.id).messages[0].content == "bob so far"
    # a checkpoint counts as a sign of life for the stale-answer sweep
    clock.advance(15)
    assert store.mark_interrupted(older_than_s=30) == 0
    assert store.checkpoint_many([]) == []


def test_stale_streaming_messages_are_marked_interrupted(store, clock):
    conv = store.create_conversation(ALICE)
    dead = store.add_message(ALICE, conv.id, "assistant", "partial", "streaming")
    clock.advance(25)
    alive = store.add_message(ALICE, conv.id, "assistant", "fresh", "streaming")
    done = store.add_message(ALICE, conv.id, "assistant", "done", "complete")
    clock.advance(10)  # dead: 35 s without checkpoint, alive: 10 s
    assert store.mark_interrupted(older_than_s=30) == 1
    status = {m.id: m.status for m in store.get_conversation(ALICE, conv.id).messages}
    assert status == {dead: "interrupted", alive: "streaming", done: "complete"}
    assert store.get_conversation(ALICE, conv.id).messages[0].content == "partial"
    assert store.mark_interrupted(older_than_s=30) == 0


def test_truncate_after_deletes_the_answer_to_regenerate(store):
    conv = store.create_conversation(ALICE)
    q1 = store.add_message(ALICE, conv.id, "user", "Q1")
    store.add_message(ALICE, conv.id, "assistant", "A1")
    q2 = store.add_message(ALICE, conv.id, "user", "Q2")
    store.add_message(ALICE, conv.id, "assistant", "A2")
    assert store.truncate_after(ALICE, conv.id, q2) == 1
    assert [m.content for m in store.get_conversation(ALICE, conv.id).messages] == [
        "Q1",
        "A1",
        "Q2",
    ]
    assert store.truncate_after(ALICE, conv.id, q1) == 2


def test_oldest_conversations_are_pruned_beyond_the_limit(store, clock):
    made = []
    for n in range(3):
        made.append(store.create_conversation(ALICE, title=f"c{n}", max_conversations=3))
        clock.advance(1)
    store.add_message(ALICE, made[0].id, "user", "keeps c0 alive")  # c1 is now the oldest
    clock.advance(1)
    new = store.create_conversation(ALICE, max_conversations=3)
    assert [p.title for p in new.pruned] == ["c1"]
    assert {c.id for c in store.list_conversations(ALICE)} == {made[0].id, made[2].id, new.id}
    assert store.create_conversation(BOB, max_conversations=3).pruned == ()


def test_guests_sharing_a_limits_key_share_the_cap_whatever_their_session(store, clock):
    """A reload is a new guest session (owner key) from the same address (limits key): the
    cap on conversations kept counts the address, so reloading does not reset it."""
    address = "client:" + "c" * 64
    sessions = ["anon:" + "s" * 24, "anon:" + "t" * 24, "anon:" + "u" * 24]
    made = []
    for session in sessions:
        made.append(store.create_conversation(session, max_conversations=2, limits_key=address))
        clock.advance(1)
    assert [p.id for p in made[2].pruned] == [made[0].id]
    assert store.list_conversations(sessions[0]) == []
    # another address, and a user counted by their own key, are not affected
    other = store.create_conversation(sessions[0], max_conversations=2, limits_key="client:x")
    assert other.pruned == ()
    assert store.create_conversation(ALICE, max_conversations=1).pruned == ()


def test_refusing_instead_of_pruning_changes_nothing(store):
    store.create_conversation(ALICE, max_conversations=1)
    with pytest.raises(TooManyConversations) as err:
        store.create_conversation(ALICE, max_conversations=1, prune_oldest=False)
    assert err.value.limit == 1
    assert len(store.list_conversations(ALICE)) == 1


@pytest.mark.parametrize(
    ("role", "status"), [("robot", "complete"), ("user", "done"), ("", "complete")]
)
def test_bad_role_or_status_is_refused_before_any_write(store, role, status):
    conv = store.create_conversation(ALICE)
    with pytest.raises(ValueError):
        store.add_message(ALICE, conv.id, role, "x", status)
    assert store.get_conversation(ALICE, conv.id).messages == ()


def test_concurrent_writers_from_many_threads_all_land(store):
    """Streamlit serves sessions from threads sharing one store: no "database is locked"."""
    from concurrent.futures import ThreadPoolExecutor

    convs = [store.create_conversation(ALICE) for _ in range(4)]

    def write(conv_id):
        for n in range(20):
            mid = store.add_message(ALICE, conv_id, "assistant", "", "streaming")
            store.update_message(ALICE, mid, content=str(n), status="complete")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, [c.id for c in convs]))
    for conv in convs:
        msgs = store.get_conversation(ALICE, conv.id).messages
        assert [m.content for m in msgs] == [str(n) for n in range(20)]
