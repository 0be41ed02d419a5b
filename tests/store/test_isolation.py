"""Nobody can list, open, change or delete another user's conversation.

Logged-in users' conversations are theirs alone. An anonymous conversation's id
is a capability: another anonymous visitor with the URL may read and continue
it, but not rename or delete it, and never sees the creator's other conversations.
"""

from __future__ import annotations

import pytest

from webapp.access.identity import resolve_owner
from webapp.store import ConversationNotFound

ALICE = resolve_owner({"iss": "https://idp", "sub": "alice", "email": "a@x.org"}, None).key
BOB = resolve_owner({"iss": "https://idp", "sub": "bob", "email": "b@x.org"}, None).key
GUEST_A = resolve_owner(None, "A" * 24).key
GUEST_B = resolve_owner(None, "B" * 24).key


def _rename(s, who, conv, mid):
    s.rename(who, conv, "mine now")


def _delete(s, who, conv, mid):
    s.delete(who, conv)


def _open(s, who, conv, mid):
    s.get_conversation(who, conv)


def _add(s, who, conv, mid):
    s.add_message(who, conv, "user", "injected")


def _update(s, who, conv, mid):
    s.update_message(who, mid, content="overwritten", status="complete")


def _truncate(s, who, conv, mid):
    s.truncate_after(who, conv, 0)


def _settings(s, who, conv, mid):
    s.update_chat_settings(who, conv, {"temperature": 2})


EVERY_ACTION = [_open, _add, _update, _truncate, _settings, _rename, _delete]
MANAGE_ONLY = [_rename, _delete]


def _seed(store, owner):
    conv = store.create_conversation(owner, title="secret plans")
    mid = store.add_message(owner, conv.id, "user", "the secret")
    return conv.id, mid


def _unchanged(store, owner, conv_id):
    conv = store.get_conversation(owner, conv_id)
    assert conv.title == "secret plans"
    assert [(m.content, m.status) for m in conv.messages] == [("the secret", "complete")]
    assert conv.chat_settings is None


@pytest.mark.parametrize("action", EVERY_ACTION, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize(
    ("owner", "intruder"),
    [(ALICE, BOB), (ALICE, GUEST_B), (GUEST_A, ALICE)],
    ids=["user-vs-user", "user-vs-guest", "guest-vs-user"],
)
def test_nothing_can_be_done_to_another_users_conversation(store, owner, intruder, action):
    conv_id, mid = _seed(store, owner)
    with pytest.raises(ConversationNotFound):
        action(store, intruder, conv_id, mid)
    _unchanged(store, owner, conv_id)
    assert store.list_conversations(intruder, include_ids=[conv_id]) == []


@pytest.mark.parametrize("action", MANAGE_ONLY, ids=lambda f: f.__name__.strip("_"))
def test_a_guest_with_the_url_cannot_rename_or_delete(store, action):
    conv_id, mid = _seed(store, GUEST_A)
    with pytest.raises(ConversationNotFound):
        action(store, GUEST_B, conv_id, mid)
    _unchanged(store, GUEST_A, conv_id)


def test_a_guest_with_the_url_can_read_and_continue_but_not_list_the_others(store):
    conv_id, _ = _seed(store, GUEST_A)
    other = store.create_conversation(GUEST_A, title="not shared")

    opened = store.get_conversation(GUEST_B, conv_id)
    assert [m.content for m in opened.messages] == ["the secret"]
    assert opened.is_owner is False
    reply = store.add_message(GUEST_B, conv_id, "assistant", "", "streaming")
    store.update_message(GUEST_B, reply, content="answer", status="complete")

    assert store.list_conversations(GUEST_B) == []
    listed = store.list_conversations(GUEST_B, include_ids=[conv_id, other.id[::-1]])
    assert [c.id for c in listed] == [conv_id]
    assert store.get_conversation(GUEST_A, conv_id).is_owner is True
    assert [m.content for m in store.get_conversation(GUEST_A, conv_id).messages] == [
        "the secret",
        "answer",
    ]


def test_each_user_lists_only_their_own(store):
    a = store.create_conversation(ALICE)
    b = store.create_conversation(BOB)
    g = store.create_conversation(GUEST_A)
    assert [c.id for c in store.list_conversations(ALICE)] == [a.id]
    assert [c.id for c in store.list_conversations(BOB)] == [b.id]
    assert [c.id for c in store.list_conversations(GUEST_A)] == [g.id]
    assert store.list_conversations(GUEST_B) == []


@pytest.mark.parametrize(
    "bad_id", ["", "short", "x" * 65, "abc'; DROP TABLE conversations; --", "%" * 20, "_" * 22]
)
def test_malformed_or_wildcard_ids_find_nothing(store, bad_id):
    _seed(store, GUEST_A)
    with pytest.raises(ConversationNotFound):
        store.get_conversation(GUEST_B, bad_id)
    assert store.list_conversations(GUEST_B, include_ids=[bad_id]) == []
