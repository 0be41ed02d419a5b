"""Identity-Aware Proxy: verifying the signed JWT IAP adds to every request, and its keys.

IAP puts an ES256-signed JWT in the ``x-goog-iap-jwt-assertion`` header; it is verified
against Google's published IAP keys (fetched over HTTPS and cached, or read from
``IAP_CERTS_FILE``), the audience ``IAP_AUDIENCE`` and IAP's issuer. Failures raise
``InvalidIapToken`` (``IapTokenExpired`` for an old page) with a reason, never the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from webapp.access.errors import IapTokenExpired, InvalidIapToken, NotLoggedIn

IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_HEADER = "x-goog-iap-jwt-assertion"
CERTS_TTL_S = 3600.0
CLOCK_SKEW_S = 30

log = logging.getLogger(__name__)

CertsFetcher = Callable[[], Mapping[str, str]]


def iap_identity(
    headers: Mapping[str, str], audience: str, certs_fetcher: CertsFetcher | None
) -> tuple[str, str | None]:
    """``(e-mail, subject)`` from the request's verified IAP JWT; ``certs_fetcher`` None
    means Google's published keys (cached). ``NotLoggedIn`` without the header."""
    token = _header(headers, IAP_HEADER)
    if not token:
        raise NotLoggedIn(
            "No IAP identity on this request: open the app through its "
            "Identity-Aware Proxy address."
        )
    claims = verify_iap_jwt(token, audience, certs_fetcher=certs_fetcher or default_certs_fetcher())
    email = str(claims.get("email") or "").strip()
    if not email:
        raise InvalidIapToken("The IAP token carries no e-mail address.")
    # the plain header form is "accounts.google.com:user@x"; tolerate it in the claim too
    email = email.split(":", 1)[-1] if email.startswith("accounts.google.com:") else email
    return email, claims.get("sub")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def verify_iap_jwt(token: str, audience: str, *, certs_fetcher: CertsFetcher) -> dict[str, Any]:
    """Verify an IAP JWT (ES256 signature, expiry, audience, issuer); return its claims.

    Raises InvalidIapToken with the reason; never includes the token in the message.
    """
    from google.auth import exceptions as auth_exc
    from google.auth import jwt

    if not audience:
        raise InvalidIapToken("IAP_AUDIENCE is not set; cannot verify the IAP token.")
    try:
        kid = jwt.decode_header(token).get("kid")
    except (ValueError, TypeError, AttributeError):
        raise InvalidIapToken("The IAP token is not valid: malformed token") from None
    try:
        certs = dict(certs_fetcher())
        refresh = getattr(certs_fetcher, "refresh", None)
        if kid not in certs and refresh is not None:  # IAP rotated its keys: fetch again
            certs = dict(refresh())
    except Exception as exc:
        raise InvalidIapToken(f"Could not fetch IAP public keys: {type(exc).__name__}") from None
    try:
        claims = jwt.decode(
            token, certs=certs, audience=audience, clock_skew_in_seconds=CLOCK_SKEW_S
        )
    except (ValueError, TypeError, auth_exc.GoogleAuthError) as exc:
        # TypeError: a claim of the wrong type, e.g. "exp": "tomorrow"
        reason = _reason(exc)
        if reason == "it has expired":
            raise IapTokenExpired() from None
        raise InvalidIapToken(f"The IAP token is not valid: {reason}") from None
    if claims.get("iss") != IAP_ISSUER:
        raise InvalidIapToken("The IAP token is not valid: wrong issuer.")
    return claims


def _reason(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("expired", "it has expired"),
        ("too early", "it is not valid yet"),
        ("audience", "wrong audience"),
        ("signature", "bad signature"),
        ("certificate for key id", "unknown signing key"),
    ):
        if needle in text:
            return reason
    return "malformed token"


class HttpCertsFetcher:
    """Fetches IAP's public keys (JSON {key id: PEM}) over HTTPS and caches them.

    Keys are fetched again after ``ttl_s``, or sooner through ``refresh()`` when a token
    names a key id we do not have (IAP rotated its keys) — at most once per
    ``min_refresh_s``, so tokens with made-up key ids cannot make us hammer Google. When a
    fetch fails, the last good keys stay in use (and the next try waits ``min_refresh_s``);
    only without any good keys does the failure reach the caller.
    """

    def __init__(
        self,
        url: str = IAP_CERTS_URL,
        ttl_s: float = CERTS_TTL_S,
        timeout: float = 5.0,
        min_refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self._ttl = ttl_s
        self._timeout = timeout
        self._min_refresh = min_refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, str] | None = None
        self._good_at = 0.0  # last successful fetch
        self._tried_at = 0.0  # last attempt, good or not

    def __call__(self) -> Mapping[str, str]:
        with self._lock:
            now = self._clock()
            stale = now - self._good_at > self._ttl and now - self._tried_at > self._min_refresh
            if self._certs is None or stale:
                self._fetch()
            assert self._certs is not None
            return self._certs

    def refresh(self) -> Mapping[str, str]:
        """Fetch now unless the last attempt is under ``min_refresh_s`` old."""
        with self._lock:
            if self._certs is None or self._clock() - self._tried_at > self._min_refresh:
                self._fetch()
            assert self._certs is not None
            return self._certs

    def _fetch(self) -> None:
        import httpx

        self._tried_at = self._clock()
        try:
            r = httpx.get(self.url, timeout=self._timeout)
            r.raise_for_status()
            data = json.loads(r.text)
            if not isinstance(data, dict) or not data:
                raise ValueError("IAP key document is not a non-empty JSON object")
            self._certs = {str(k): str(v) for k, v in data.items()}
        except Exception as exc:
            if self._certs is None:
                raise
            # keep serving with the last good keys; the next try waits min_refresh_s
            log.warning(
                "IAP keys not refreshed (%s); keeping the last good keys", type(exc).__name__
            )
            return
        self._good_at = self._tried_at


_default_fetcher: HttpCertsFetcher | None = None


def default_certs_fetcher() -> HttpCertsFetcher:
    """The process-wide cached fetcher for Google's IAP keys (created on first use)."""
    global _default_fetcher
    if _default_fetcher is None:
        _default_fetcher = HttpCertsFetcher()
    return _default_fetcher


class FileCertsFetcher:
    """Reads IAP public keys (JSON {key id: PEM}) from a local file, e.g. in tests."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> Mapping[str, str]:
        with open(self.path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict):
            raise ValueError("IAP key file is not a JSON object")
        return {str(k): str(v) for k, v in data.items()}


def certs_fetcher_for(settings: Any) -> CertsFetcher:
    """``IAP_CERTS_FILE`` when set, else Google's published IAP keys (cached)."""
    path = getattr(settings, "iap_certs_file", "")
    return FileCertsFetcher(path) if path else default_certs_fetcher()
