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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webapp.access.errors import (
    AdminAccessOff,
    LocalAdminRefused,
    NoLocalIdentity,
    NotAdmin,
    NotLoggedIn,
)
from webapp.access.iap import CertsFetcher, iap_identity

LOCAL_PREFIX = "kubeconfig:"

AccessMode = Literal["oidc", "iap", "local", "off"]


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
        email, subject = iap_identity(headers or {}, settings.iap_audience, certs_fetcher)
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
