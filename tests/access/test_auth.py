"""Admin access: mode selection, Streamlit login, and IAP JWTs signed with a local EC key."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth import jwt

from tests.identities import iap_keypair
from webapp.access.auth import (
    IAP_ISSUER,
    AdminAccessOff,
    AdminIdentity,
    HttpCertsFetcher,
    InvalidIapToken,
    Listener,
    LocalAdminRefused,
    NoLocalIdentity,
    NotAdmin,
    NotLoggedIn,
    admin_access_mode,
    identify_admin,
    is_loopback,
)
from webapp.settings import Settings

AUDIENCE = "/projects/123456789/global/backendServices/987654321"


SIGNER, PUBLIC_PEM = iap_keypair("iap-key-1")
OTHER_SIGNER, _ = iap_keypair("iap-key-1")  # same key id, different key: a forgery
CERTS = {"iap-key-1": PUBLIC_PEM}


def _token(signer=SIGNER, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": IAP_ISSUER,
        "aud": AUDIENCE,
        "iat": now - 10,
        "exp": now + 600,
        "sub": "accounts.google.com:1234567890",
        "email": "Admin@Example.com",
        "hd": "example.com",
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(signer, claims).decode()


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


# --- IAP ---


IAP_HEADER_NAME = "X-Goog-IAP-JWT-Assertion"  # as IAP spells it; lookup is case-insensitive


def _iap(token: str | None, settings=None, certs=CERTS, header=IAP_HEADER_NAME):
    headers = {header: token} if token is not None else {"Host": "app"}
    return identify_admin(
        settings or _settings(), "iap", headers=headers, certs_fetcher=lambda: certs
    )


def test_iap_valid_token():
    ident = _iap(_token())
    assert ident == AdminIdentity("admin@example.com", "iap", "accounts.google.com:1234567890")


def test_iap_header_is_case_insensitive():
    assert _iap(_token(), header="x-goog-iap-jwt-assertion").name == "admin@example.com"


@pytest.mark.parametrize(
    ("token_kwargs", "settings_kwargs", "certs", "error", "reason"),
    [
        (
            {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
            {},
            CERTS,
            InvalidIapToken,
            "expired",
        ),
        (
            {"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
            {},
            CERTS,
            InvalidIapToken,
            "not valid yet",
        ),
        (
            {"aud": "/projects/1/global/backendServices/other"},
            {},
            CERTS,
            InvalidIapToken,
            "wrong audience",
        ),
        ({"signer": OTHER_SIGNER}, {}, CERTS, InvalidIapToken, "bad signature"),
        ({}, {}, {"other-kid": PUBLIC_PEM}, InvalidIapToken, "unknown signing key"),
        ({"iss": "https://accounts.google.com"}, {}, CERTS, InvalidIapToken, "wrong issuer"),
        ({"email": None}, {}, CERTS, InvalidIapToken, "no e-mail"),
        ({"email": "eve@example.com"}, {}, CERTS, NotAdmin, "not on the admin list"),
        # a claim of the wrong type is a clean refusal, not a TypeError (issue 10.5)
        ({"exp": "tomorrow"}, {}, CERTS, InvalidIapToken, "malformed"),
        ({"iat": "yesterday"}, {}, CERTS, InvalidIapToken, "malformed"),
        ({}, {"admin_emails": "someone@else.com"}, CERTS, NotAdmin, "not on the admin list"),
    ],
)
def test_iap_rejections(token_kwargs, settings_kwargs, certs, error, reason):
    signer = token_kwargs.pop("signer", SIGNER)
    token = _token(signer, **token_kwargs)
    with pytest.raises(error, match=reason) as info:
        _iap(token, settings=_settings(**settings_kwargs), certs=certs)
    assert token not in str(info.value)  # never echo the credential


def test_iap_garbage_token():
    with pytest.raises(InvalidIapToken, match="malformed"):
        _iap("not-a-jwt")


def test_iap_missing_header():
    with pytest.raises(NotLoggedIn, match="Identity-Aware Proxy"):
        _iap(None)


def test_iap_email_with_accounts_prefix():
    assert _iap(_token(email="accounts.google.com:ops@example.com")).name == "ops@example.com"


def test_iap_keys_unavailable():
    def broken():
        raise OSError("network down")

    with pytest.raises(InvalidIapToken, match="Could not fetch IAP public keys"):
        identify_admin(
            _settings(), "iap", headers={IAP_HEADER_NAME: _token()}, certs_fetcher=broken
        )


class _KeysHandler(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        body = json.dumps(CERTS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_certs_fetcher_verifies_and_caches():
    handler = type("H", (_KeysHandler,), {"hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        fetcher = HttpCertsFetcher(url=f"http://127.0.0.1:{httpd.server_address[1]}/keys")
        for _ in range(3):
            ident = identify_admin(
                _settings(), "iap", headers={IAP_HEADER_NAME: _token()}, certs_fetcher=fetcher
            )
            assert ident.name == "admin@example.com"
        assert handler.hits == 1  # cached
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)


def test_certs_file_fetcher(tmp_path):
    from webapp.access.auth import FileCertsFetcher, certs_fetcher_for

    path = tmp_path / "keys.json"
    path.write_text(json.dumps(CERTS))
    settings = _settings(iap_certs_file=str(path))
    fetcher = certs_fetcher_for(settings)
    assert isinstance(fetcher, FileCertsFetcher)
    who = identify_admin(
        settings, "iap", headers={IAP_HEADER_NAME: _token()}, certs_fetcher=fetcher
    )
    assert who.name == "admin@example.com"
    assert not isinstance(certs_fetcher_for(_settings()), FileCertsFetcher)


class _RotatingKeys(BaseHTTPRequestHandler):
    """Serves ``keys`` (or HTTP 500 while ``broken``) and counts the requests."""

    keys: dict = {}
    broken = False
    hits = 0

    def do_GET(self):  # noqa: N802
        type(self).hits += 1
        if type(self).broken:
            self.send_error(500)
            return
        body = json.dumps(type(self).keys).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def keys_server():
    handler = type("H", (_RotatingKeys,), {"keys": dict(CERTS), "broken": False, "hits": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/keys"
    httpd.shutdown()
    httpd.server_close()
    t.join(timeout=5)


def _admin(fetcher, token=None):
    headers = {IAP_HEADER_NAME: token or _token()}
    return identify_admin(_settings(), "iap", headers=headers, certs_fetcher=fetcher)


def test_iap_key_rotation_refetches_on_an_unknown_key_id(keys_server):
    handler, url = keys_server
    now = [1000.0]
    fetcher = HttpCertsFetcher(url=url, min_refresh_s=30, clock=lambda: now[0])
    assert _admin(fetcher).name == "admin@example.com" and handler.hits == 1
    now[0] += 31
    rotated, rotated_pem = iap_keypair("iap-key-2")
    handler.keys = {**CERTS, "iap-key-2": rotated_pem}  # IAP publishes a new key
    assert _admin(fetcher, _token(rotated)).name == "admin@example.com"
    assert handler.hits == 2  # fetched again at once, not after the hour's cache
    # made-up key ids do not make us fetch again and again: once per 30 s at most
    stranger, _ = iap_keypair("made-up")
    for _ in range(3):
        now[0] += 5
        with pytest.raises(InvalidIapToken, match="unknown signing key"):
            _admin(fetcher, _token(stranger))
    assert handler.hits == 2
    now[0] += 30
    with pytest.raises(InvalidIapToken, match="unknown signing key"):
        _admin(fetcher, _token(stranger))
    assert handler.hits == 3


def test_iap_keys_kept_when_a_refresh_fails(keys_server):
    handler, url = keys_server
    fetcher = HttpCertsFetcher(url=url, ttl_s=0, min_refresh_s=0)
    assert _admin(fetcher).name == "admin@example.com"
    handler.broken = True  # Google's key endpoint fails: the last good keys stay in use
    assert _admin(fetcher).name == "admin@example.com"
    assert handler.hits == 2  # it did try


def test_iap_keys_never_fetched_is_a_clean_refusal(keys_server):
    handler, url = keys_server
    handler.broken = True
    with pytest.raises(InvalidIapToken, match="Could not fetch IAP public keys"):
        _admin(HttpCertsFetcher(url=url))


def test_an_expired_iap_token_says_to_reload():
    from webapp.access.auth import IapTokenExpired

    now = int(time.time())
    with pytest.raises(IapTokenExpired, match="Reload the page"):
        _iap(_token(exp=now - 3600, iat=now - 7200))
