"""Owner keys: stable per logged-in user, random per anonymous browser session."""

from __future__ import annotations

import pytest

from webapp.identity import (
    ANON_PREFIX,
    OIDC_PREFIX,
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
