"""Admin access: mode selection, local admin, Streamlit login (IAP JWTs: test_iap.py)."""

from __future__ import annotations

import pytest

from webapp.access.auth import (
    AdminIdentity,
    Listener,
    admin_access_mode,
    identify_admin,
    is_loopback,
)
from webapp.access.errors import (
    AdminAccessOff,
    LocalAdminRefused,
    NoLocalIdentity,
    NotAdmin,
    NotLoggedIn,
)
from webapp.settings import Settings

AUDIENCE = "/projects/123456789/global/backendServices/987654321"


def _settings(**kw) -> Settings:
    base = {"admin_emails": "admin@example.com, Ops@Example.com", "iap_audience": AUDIENCE}
    base.update(kw)
    return Settings(**base)


@pytest.mark.parametrize(
    ("admin_emails", "iap_audience", "oidc", "local", "mode"),
    [
        ("a@x.com", "", False, False, "off"),
        ("a@x.com", "", True, False, "oidc"),
        ("a@x.com", AUDIENCE, False, False, "iap"),
        ("a@x.com", AUDIENCE, True, False, "iap"),  # behind IAP, the proxy's signature wins
        ("", AUDIENCE, True, False, "off"),  # nobody could be admin
        (" , ", "", True, False, "off"),
        # LOCAL_ADMIN wins over login and needs no allowlist; with IAP it is refused later
        ("", "", False, True, "local"),
        ("a@x.com", "", True, True, "local"),
        ("a@x.com", AUDIENCE, True, True, "local"),
    ],
)
def test_admin_access_mode(admin_emails, iap_audience, oidc, local, mode):
    s = Settings(admin_emails=admin_emails, iap_audience=iap_audience, local_admin=local)
    assert admin_access_mode(s, oidc_configured=oidc) == mode


def test_off_refuses():
    with pytest.raises(AdminAccessOff, match="ADMIN_EMAILS"):
        identify_admin(_settings(), "off")


# --- local admin (LOCAL_ADMIN=true) ---


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost ", True),
        (None, False),  # Streamlit's default: every interface
        ("", False),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),  # a name we cannot vouch for
        ("my-laptop", False),
    ],
)
def test_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def _alice() -> str:
    return "alice"


def _never() -> str:
    raise AssertionError("the kubeconfig must not be read when local admin is refused")


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # what make run accepts


def _local(address, settings=None, user=_alice, hosts=LOOPBACK_NAMES):
    settings = settings or Settings(local_admin=True)
    listener = Listener(address, hosts)
    return identify_admin(settings, "local", listener=listener, kubeconfig_user=user)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
def test_local_admin_on_loopback_is_the_kubeconfig_user(address):
    who = _local(address)
    assert who == AdminIdentity("kubeconfig:alice", "local")
    assert who.actor == "kubeconfig:alice (local)"


def test_other_admins_are_named_by_their_email():
    assert AdminIdentity("admin@example.com", "iap").actor == "admin@example.com"


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (None, "it listens on 0.0.0.0 (all network interfaces)"),
        ("0.0.0.0", "it listens on 0.0.0.0 (all network interfaces)"),
        ("::", "it listens on :: (all network interfaces)"),
        ("192.168.1.20", "it listens on 192.168.1.20,"),
    ],
)
def test_local_admin_refused_off_loopback_with_the_reason(address, shown):
    with pytest.raises(LocalAdminRefused) as info:
        _local(address, user=_never)
    msg = str(info.value)
    assert "LOCAL_ADMIN works only when the app listens on 127.0.0.1" in msg
    assert shown in msg
    assert "make run" in msg and "IAP or Streamlit login" in msg  # what to do instead


@pytest.mark.parametrize(
    ("hosts", "refusal"),
    [
        ((), "it accepts any name"),  # Streamlit's default
        (("*",), "it accepts *,"),
        (("localhost", "*.example.com"), "it accepts localhost, *.example.com,"),
        (("localhost", "admin.example.com"), "it accepts localhost, admin.example.com,"),
        (("localhost",), None),
        (("LOCALHOST", "127.0.0.1", "::1"), None),
    ],
)
def test_local_admin_needs_an_app_that_accepts_loopback_names_only(hosts, refusal):
    """Else a web page whose name resolves to 127.0.0.1 reaches the app (DNS rebinding)."""
    if refusal is None:
        assert _local("127.0.0.1", hosts=hosts).name == "kubeconfig:alice"
        return
    with pytest.raises(LocalAdminRefused) as info:
        _local("127.0.0.1", hosts=hosts, user=_never)
    assert refusal in str(info.value)
    assert "DNS rebinding" in str(info.value) and "--server.allowedHosts" in str(info.value)


def test_local_admin_refused_behind_iap():
    settings = Settings(local_admin=True, iap_audience=AUDIENCE, admin_emails="a@x.com")
    with pytest.raises(LocalAdminRefused, match="LOCAL_ADMIN=true and IAP_AUDIENCE are both set"):
        _local("127.0.0.1", settings=settings, user=_never)


def test_local_admin_without_a_kubeconfig_user():
    def missing() -> str:
        raise NoLocalIdentity("no kubeconfig")

    with pytest.raises(NotLoggedIn, match="no kubeconfig"):
        _local("127.0.0.1", user=missing)


# --- Streamlit login (st.user) ---


@pytest.mark.parametrize(
    ("user", "outcome"),
    [
        ({"is_logged_in": True, "email": "admin@example.com", "email_verified": True}, "admin"),
        ({"is_logged_in": True, "email": "ADMIN@example.COM", "email_verified": True}, "admin"),
        (
            {"is_logged_in": True, "email": "ops@example.com", "sub": "42", "email_verified": True},
            "admin",
        ),
        ({"is_logged_in": True, "email": "eve@example.com", "email_verified": True}, NotAdmin),
        ({"is_logged_in": True, "email": "admin@example.com", "email_verified": False}, NotAdmin),
        # verified only when the claim is the boolean true (issue 10.5)
        ({"is_logged_in": True, "email": "admin@example.com"}, NotAdmin),
        ({"is_logged_in": True, "email": "admin@example.com", "email_verified": "true"}, NotAdmin),
        ({"is_logged_in": True, "email": "admin@example.com", "email_verified": 1}, NotAdmin),
        ({"is_logged_in": True, "email": "admin@example.com", "email_verified": None}, NotAdmin),
        ({"is_logged_in": False}, NotLoggedIn),
        ({"is_logged_in": True}, NotLoggedIn),  # no e-mail claim
        (None, NotLoggedIn),
        ({}, NotLoggedIn),
    ],
)
def test_oidc(user, outcome):
    if outcome == "admin":
        ident = identify_admin(_settings(), "oidc", user=user)
        assert ident.via == "oidc"
        assert ident.name == user["email"].lower()
    else:
        with pytest.raises(outcome):
            identify_admin(_settings(), "oidc", user=user)


def test_not_admin_message_names_the_user():
    with pytest.raises(NotAdmin, match="eve@example.com is not on the admin list") as info:
        identify_admin(
            _settings(),
            "oidc",
            user={"is_logged_in": True, "email": "eve@example.com", "email_verified": True},
        )
    assert info.value.email == "eve@example.com"
