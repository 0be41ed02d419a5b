"""Admin access behind Identity-Aware Proxy: JWTs signed with a local EC key, IAP key fetching."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.auth import jwt

from tests.support.identities import iap_keypair
from webapp.access.auth import AdminIdentity, identify_admin
from webapp.access.errors import IapTokenExpired, InvalidIapToken, NotAdmin, NotLoggedIn
from webapp.access.iap import IAP_ISSUER, FileCertsFetcher, HttpCertsFetcher, certs_fetcher_for
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
    now = int(time.time())
    with pytest.raises(IapTokenExpired, match="Reload the page"):
        _iap(_token(exp=now - 3600, iat=now - 7200))
