"""Anonymous conversations expire (issue 10.2), on SQLite and PostgreSQL, with a hand clock;
the stored chat settings are capped."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from webapp.store import ConversationStore, SettingsTooLarge, StoreUnavailable
from webapp.store.expiry import ExpiryJob, expire_anonymous, start_expiry
from webapp.store.repository import SETTINGS_MAX_CHARS

ANON = "anon:" + "a" * 40
ANON2 = "anon:" + "b" * 40
USER = "oidc:" + "c" * 64
DAY = 86_400
TTL = timedelta(days=30)


def _conv(store, owner, text="hi"):
    conv = store.create_conversation(owner)
    store.add_message(owner, conv.id, "user", text)
    return conv.id


def _exists(store, owner, conv_id):
    try:
        store.get_conversation(owner, conv_id)
        return True
    except Exception:  # noqa: BLE001 - ConversationNotFound
        return False


def test_idle_anonymous_conversations_are_deleted_with_their_messages(store, clock):
    old_anon = _conv(store, ANON)
    old_user = _conv(store, USER)
    clock.advance(20 * DAY)
    used_again = _conv(store, ANON2)
    clock.advance(11 * DAY)  # old_* idle 31 days; used_again 11 days
    assert expire_anonymous(store, TTL) == 1
    assert not _exists(store, ANON, old_anon)
    assert _exists(store, USER, old_user)  # logged-in users keep theirs
    assert _exists(store, ANON2, used_again)
    assert expire_anonymous(store, TTL) == 0  # nothing left to do


def test_activity_keeps_an_anonymous_conversation(store, clock):
    conv = _conv(store, ANON)
    clock.advance(29 * DAY)
    store.add_message(ANON, conv, "user", "still here")
    clock.advance(29 * DAY)
    assert expire_anonymous(store, TTL) == 0 and _exists(store, ANON, conv)


def test_expiry_works_in_batches(store, clock):
    ids = [_conv(store, ANON) for _ in range(5)]
    clock.advance(31 * DAY)
    assert expire_anonymous(store, TTL, batch=2) == 5
    assert not any(_exists(store, ANON, i) for i in ids)


def test_replicas_expiring_at_once_delete_each_conversation_once(database_url, clock):
    stores = [ConversationStore(database_url, clock=clock) for _ in range(3)]
    stores[0].migrate()
    ids = [_conv(stores[0], ANON) for _ in range(30)]
    clock.advance(31 * DAY)
    results, errors = [], []

    def replica(s):
        try:
            results.append(expire_anonymous(s, TTL, batch=4))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    leftover = expire_anonymous(stores[0], TTL)  # a replica that skipped left rows for later
    assert not errors and sum(results) + leftover == len(ids)
    assert not any(_exists(stores[0], ANON, i) for i in ids)
    for s in stores:
        s.dispose()


def test_the_job_survives_a_database_that_is_down():
    store = ConversationStore("postgresql://chat@127.0.0.1:1/chat")  # nothing listens there
    job = ExpiryJob(store, TTL)
    with pytest.raises(StoreUnavailable):
        expire_anonymous(store, TTL)
    assert job.run_once() == 0 and job.runs == 1


def test_start_expiry_once_per_store_and_off_at_zero(tmp_path):
    store = ConversationStore(f"sqlite:///{tmp_path}/chat.db")
    assert start_expiry(store, 0) is None
    job = start_expiry(store, 30)
    assert start_expiry(store, 30) is job and job.ttl == TTL
    job.stop()


def test_chat_settings_are_capped(store):
    too_big = {"system_prompt": "x" * SETTINGS_MAX_CHARS}
    with pytest.raises(SettingsTooLarge, match="too large to save"):
        store.create_conversation(USER, chat_settings=too_big)
    assert store.list_conversations(USER, 10) == []  # nothing written
    conv = store.create_conversation(USER, chat_settings={"system_prompt": "short"})
    with pytest.raises(SettingsTooLarge):
        store.update_chat_settings(USER, conv.id, too_big)
    assert store.get_conversation(USER, conv.id).chat_settings == {"system_prompt": "short"}
