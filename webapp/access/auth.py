"""Who may use the admin page (pure logic; the view passes in what Streamlit knows).

Three ways to know who the user is:

* ``iap`` - the app runs behind Identity-Aware Proxy, which adds a signed JWT in the
  ``x-goog-iap-jwt-assertion`` header; we verify it (ES256, Google's IAP keys,
  audience = ``IAP_AUDIENCE``). Used when ``IAP_AUDIENCE`` is set: the proxy is then
  the one door to the app and its signature is checked on every request.
* ``oidc`` - Streamlit's own login (``st.login``, configured in secrets.toml
  ``[auth]``); the view passes ``st.user`` as a mapping.
* ``local`` - ``LOCAL_ADMIN=true``: the console runs on the admin's own machine, the way
  kubectl, k9s or Lens do. Only the person at this machine can reach an app that listens
  on a loopback address, so they are the admin, named after their kubeconfig's current
  user (``kubeconfig:<user>``); the cluster's RBAC for that user is the real gate, as for
  kubectl. Refused when the app listens on any other address (anyone on the network
  would be admin), when it accepts Host names other than loopback ones (a web page could
  reach it under its own name resolved to 127.0.0.1: DNS rebinding), and when
  ``IAP_AUDIENCE`` is set too (that means a deployed app).
  It takes precedence over Streamlit login and needs no ``ADMIN_EMAILS``.

For IAP and OIDC the e-mail must be on ``ADMIN_EMAILS`` (case-insensitive). Without
LOCAL_ADMIN, with neither configured or with an empty allowlist, the admin page is off.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_HEADER = "x-goog-iap-jwt-assertion"
CERTS_TTL_S = 3600.0
CLOCK_SKEW_S = 30

log = logging.getLogger(__name__)

LOCAL_PREFIX = "kubeconfig:"

AccessMode = Literal["oidc", "iap", "local", "off"]
CertsFetcher = Callable[[], Mapping[str, str]]


class AuthError(Exception):
    """Base of the admin-access errors; messages are safe to show."""


class AdminAccessOff(AuthError):
    """No login method or no allowlist is configured: the admin page is disabled."""


class NotLoggedIn(AuthError):
    """We do not know who the user is."""


class InvalidIapToken(NotLoggedIn):
    """The IAP header is present but its JWT does not verify."""


class IapTokenExpired(InvalidIapToken):
    """The IAP JWT has expired: a Streamlit page keeps the one its connection opened with
    (IAP issues them for about ten minutes), so a page left open outlives it."""

    def __init__(self) -> None:
        super().__init__(
            "Your sign-in on this page has expired (Identity-Aware Proxy renews it only when "
            "the page is loaded). Reload the page to go on; nothing was changed."
        )


class NoLocalIdentity(NotLoggedIn):
    """LOCAL_ADMIN is on, but the kubeconfig names no user (missing, broken, no context)."""


class LocalAdminRefused(AuthError):
    """LOCAL_ADMIN is set where it must not work: a listen address or accepted Host names
    beyond loopback, or together with IAP."""


class NotAdmin(AuthError):
    """The user is known but not on the admin allowlist."""

    def __init__(self, email: str, reason: str = "") -> None:
        self.email = email
        super().__init__(reason or f"{email} is not on the admin list (ADMIN_EMAILS).")


@dataclass(frozen=True)
class Listener:
    """Where the app listens (Streamlit's ``server.address``; unset: every interface) and
    the Host names its WebSocket accepts (``server.allowedHosts``; empty: any)."""

    address: str | None
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AdminIdentity:
    """A verified admin: ``name`` is their e-mail (IAP, OIDC; lower-case) or, for a local
    admin, ``kubeconfig:<user>``."""

    name: str
    via: Literal["oidc", "iap", "local"]
    subject: str | None = None

    @property
    def actor(self) -> str:
        """How the audit log, the switch lock and progress lines name this admin."""
        return f"{self.name} (local)" if self.via == "local" else self.name


def admin_access_mode(settings: Any, oidc_configured: bool) -> AccessMode:
    """How admins are identified: ``local`` if LOCAL_ADMIN is set (whether it may work is
    decided per request, see ``identify_local_admin``), else ``iap`` if IAP_AUDIENCE is set,
    else ``oidc`` if Streamlit login is configured, else ``off``; also ``off`` when
    ADMIN_EMAILS is empty."""
    if settings.local_admin:
        return "local"
    if not settings.admin_allowlist:
        return "off"
    if settings.iap_audience:
        return "iap"
    if oidc_configured:
        return "oidc"
    return "off"


def identify_admin(
    settings: Any,
    mode: AccessMode,
    *,
    user: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    certs_fetcher: CertsFetcher | None = None,
    listener: Listener | None = None,
    kubeconfig_user: Callable[[], str] | None = None,
) -> AdminIdentity:
    """Return the admin identity for this request or raise an ``AuthError`` subclass.

    ``user`` is what ``st.user`` holds (is_logged_in, email, email_verified);
    ``headers`` the request headers (``st.context.headers``); ``certs_fetcher``
    returns IAP's {key id: PEM} map (default: Google's, cached for an hour).
    ``listener`` and ``kubeconfig_user`` are for ``local``: see ``identify_local_admin``.
    """
    if mode == "local":
        return identify_local_admin(settings, listener, kubeconfig_user)
    if mode == "off":
        raise AdminAccessOff(
            "The admin page is off: set ADMIN_EMAILS and either IAP_AUDIENCE "
            "(behind Identity-Aware Proxy) or Streamlit login ([auth] in secrets.toml)."
        )
    if mode == "oidc":
        email, subject = _oidc_email(user)
    elif mode == "iap":
        token = _header(headers or {}, IAP_HEADER)
        if not token:
            raise NotLoggedIn(
                "No IAP identity on this request: open the app through its "
                "Identity-Aware Proxy address."
            )
        claims = verify_iap_jwt(
            token, settings.iap_audience, certs_fetcher=certs_fetcher or default_certs_fetcher()
        )
        email = str(claims.get("email") or "").strip()
        if not email:
            raise InvalidIapToken("The IAP token carries no e-mail address.")
        # the plain header form is "accounts.google.com:user@x"; tolerate it in the claim too
        email = email.split(":", 1)[-1] if email.startswith("accounts.google.com:") else email
        subject = claims.get("sub")
    else:
        raise ValueError(f"unknown access mode {mode!r}")
    email = email.lower()
    if email not in settings.admin_allowlist:
        raise NotAdmin(email)
    return AdminIdentity(name=email, via=mode, subject=subject)


def identify_local_admin(
    settings: Any, listener: Listener | None, kubeconfig_user: Callable[[], str] | None
) -> AdminIdentity:
    """The local admin (LOCAL_ADMIN=true), or ``LocalAdminRefused`` saying why not.

    ``listener`` says where the app listens and which Host names it accepts;
    ``kubeconfig_user`` returns the kubeconfig's current user or raises ``NoLocalIdentity``.
    It is called only once the listener is known to be safe.
    """
    if settings.iap_audience:
        raise LocalAdminRefused(
            "LOCAL_ADMIN=true and IAP_AUDIENCE are both set: IAP_AUDIENCE means the app is "
            "deployed behind Identity-Aware Proxy, LOCAL_ADMIN that it runs on your own "
            "machine. Unset one of them."
        )
    listener = listener or Listener(None)
    if not is_loopback(listener.address):
        raise LocalAdminRefused(
            "LOCAL_ADMIN works only when the app listens on 127.0.0.1 (this machine only); "
            f"it listens on {_where(listener.address)}, where anyone who can reach it would "
            "be an admin. Start it with `make run` (it listens on 127.0.0.1 unless APP_ADDRESS "
            "says otherwise) or `--server.address 127.0.0.1`; to serve admins over the "
            "network, unset LOCAL_ADMIN and use IAP or Streamlit login with ADMIN_EMAILS."
        )
    hosts = listener.allowed_hosts
    if not hosts or not all(is_loopback(h) for h in hosts):
        accepted = ", ".join(hosts) if hosts else "any name"
        raise LocalAdminRefused(
            "LOCAL_ADMIN works only when the app accepts loopback names alone (localhost, "
            f"127.0.0.1, ::1); it accepts {accepted}, so a web page could reach it under its "
            "own name pointed at 127.0.0.1 (DNS rebinding) and act as you. `make run` sets "
            "this; by hand add `--server.allowedHosts localhost --server.allowedHosts "
            "127.0.0.1 --server.allowedHosts ::1`."
        )
    if kubeconfig_user is None:
        raise NoLocalIdentity("LOCAL_ADMIN is on but no kubeconfig user was given.")
    return AdminIdentity(name=LOCAL_PREFIX + kubeconfig_user(), via="local")


def _where(listen_address: str | None) -> str:
    """The listen address as a refusal names it (Streamlit's unset address is 0.0.0.0)."""
    address = (listen_address or "").strip() or "0.0.0.0"  # noqa: S104 - named, not bound
    everywhere = address in ("0.0.0.0", "::")  # noqa: S104
    return address + (" (all network interfaces)" if everywhere else "")


def is_loopback(address: str | None) -> bool:
    """Whether a listen address is reachable from this machine only: 127.0.0.0/8, ::1
    (also IPv4-mapped or in brackets) or ``localhost``. Empty (Streamlit's default: all
    interfaces), 0.0.0.0, :: and every other address or host name are not."""
    host = (address or "").strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def _oidc_email(user: Mapping[str, Any] | None) -> tuple[str, str | None]:
    if not user or not user.get("is_logged_in"):
        raise NotLoggedIn("Please log in to use the admin page.")
    email = str(user.get("email") or "").strip()
    if not email:
        raise NotLoggedIn("Your login did not provide an e-mail address.")
    # only the JSON boolean true counts: a missing claim, "true" or 1 may come from an
    # identity provider that lets anyone sign up with any address
    if user.get("email_verified") is not True:
        raise NotAdmin(
            email.lower(),
            f"{email} is not a verified e-mail address (the identity provider did not send "
            "email_verified: true).",
        )
    sub = user.get("sub")
    return email, str(sub) if sub else None


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
