"""Owner keys: stable per logged-in user, random per anonymous browser session."""

from __future__ import annotations

import pytest

from webapp.access.identity import (
    ANON_PREFIX,
    CLIENT_PREFIX,
    OIDC_PREFIX,
    UNKNOWN_CLIENT,
    chat_gate,
    client_limits_key,
    is_anonymous_key,
    new_browser_key,
    resolve_owner,
)

BROWSER = "Zx9" * 8  # a well-formed browser key (24 chars)
GOOGLE = {"is_logged_in": True, "iss": "https://accounts.google.com", "sub": "1234"}


@pytest.mark.parametrize(
    ("user_info", "anonymous"),
    [
        (None, True),
        ({}, True),
        ({"is_logged_in": False}, True),
        ({"is_logged_in": False, "sub": "1234", "email": "a@x.org"}, True),
        ({"email": "a@x.org"}, True),  # unverified e-mail alone is not an identity
        ({"email": "a@x.org", "email_verified": False}, True),
        ({"email": "a@x.org", "email_verified": True}, False),
        ({"email": "a@x.org", "email_verified": "true"}, True),  # only the boolean counts
        (GOOGLE, False),
        ({"sub": "1234"}, False),
    ],
)
def test_who_counts_as_logged_in(user_info, anonymous):
    owner = resolve_owner(user_info, BROWSER)
    assert owner.anonymous is anonymous
    assert is_anonymous_key(owner.key) is anonymous
    assert owner.key.startswith(ANON_PREFIX if anonymous else OIDC_PREFIX)
    assert (owner.browser_key == BROWSER) is anonymous


def test_logged_in_key_is_stable_across_devices_and_ignores_the_browser():
    on_laptop = resolve_owner({**GOOGLE, "name": "Ann"}, BROWSER)
    on_phone = resolve_owner(GOOGLE, None)
    assert on_laptop.key == on_phone.key
    assert on_laptop.label == "Ann"


@pytest.mark.parametrize(
    "other",
    [
        {**GOOGLE, "sub": "1235"},
        {**GOOGLE, "iss": "https://login.microsoftonline.com"},
    ],
)
def test_different_subject_or_issuer_is_a_different_user(other):
    assert resolve_owner(other, None).key != resolve_owner(GOOGLE, None).key


def test_verified_email_key_is_case_insensitive_and_holds_no_personal_data():
    a = resolve_owner({"email": "Ann@X.org", "email_verified": True}, None)
    b = resolve_owner({"email": "ann@x.org ", "email_verified": True}, None)
    assert a.key == b.key
    assert "ann" not in a.key.lower()
    assert a.email == "ann@x.org"


def test_anonymous_key_comes_from_the_browser_key():
    owner = resolve_owner(None, BROWSER)
    assert owner.key == ANON_PREFIX + BROWSER
    assert owner.label == "Guest"


@pytest.mark.parametrize(
    "browser_key", [None, "", "short", "oidc:" + "a" * 64, "a b c d e f g h i j", "x" * 65]
)
def test_missing_or_malformed_browser_key_gets_a_fresh_one(browser_key):
    owner = resolve_owner(None, browser_key)
    assert owner.browser_key not in (None, browser_key)
    assert owner.key == ANON_PREFIX + owner.browser_key
    assert resolve_owner(None, owner.browser_key).key == owner.key


def test_browser_keys_are_random():
    assert len({new_browser_key() for _ in range(50)}) == 50


# ---------------------------------------------------------------- limits keys (issue 10)
def test_a_guest_is_limited_by_address_so_a_reload_keeps_the_limits():
    first = resolve_owner(None, None, "203.0.113.7")
    reload = resolve_owner(None, None, "203.0.113.7")
    assert first.key != reload.key  # a new guest session...
    assert first.limits_key == reload.limits_key  # ...counted against the same limits
    assert first.limits_key.startswith(CLIENT_PREFIX)
    assert "203.0.113.7" not in first.limits_key
    assert resolve_owner(None, None, "203.0.113.8").limits_key != first.limits_key


def test_guests_without_a_known_address_share_one_key():
    assert resolve_owner(None, BROWSER).limits_key == UNKNOWN_CLIENT
    assert client_limits_key(None) == client_limits_key("") == UNKNOWN_CLIENT


def test_a_logged_in_user_is_limited_as_themself_wherever_they_are():
    here = resolve_owner(GOOGLE, None, "203.0.113.7")
    there = resolve_owner(GOOGLE, None, "198.51.100.1")
    assert here.limits_key == there.limits_key == here.key


@pytest.mark.parametrize(
    ("anonymous", "require_login", "login_configured", "gate"),
    [
        (True, False, False, "chat"),
        (True, False, True, "chat"),
        (False, True, True, "chat"),
        (True, True, True, "log_in"),
        (True, True, False, "closed"),
    ],
)
def test_chat_gate(anonymous, require_login, login_configured, gate):
    assert (
        chat_gate(
            anonymous=anonymous, require_login=require_login, login_configured=login_configured
        )
        == gate
    )
