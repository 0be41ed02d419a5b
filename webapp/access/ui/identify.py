"""Who is at the browser, for the router and the pages: Streamlit's side of ``webapp.access.auth``.

``webapp.access.auth`` is pure; this module hands it what Streamlit knows for the access mode in
force: ``st.user`` under Streamlit login (OIDC), the request headers and IAP's keys behind
Identity-Aware Proxy, the listen address, the accepted Host names and the kubeconfig's
user for a local admin.
"""

from __future__ import annotations

import streamlit as st

from webapp.access.auth import (
    AccessMode,
    AdminIdentity,
    Listener,
    admin_access_mode,
    identify_admin,
)
from webapp.access.errors import NoLocalIdentity
from webapp.access.iap import certs_fetcher_for
from webapp.cluster.errors import ClusterError
from webapp.cluster.k8s import kubeconfig_user
from webapp.settings import Settings


def oidc_configured() -> bool:
    """Whether Streamlit login is set up (an ``[auth]`` section in secrets.toml)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


def access_mode(settings: Settings) -> AccessMode:
    """How admins sign in here: ``local``, ``iap``, ``oidc`` or ``off``."""
    return admin_access_mode(settings, oidc_configured())


def listener() -> Listener:
    """Where this Streamlit server listens (``--server.address``; unset: all interfaces) and
    the Host names it accepts (``--server.allowedHosts``; empty: any)."""
    hosts = st.get_option("server.allowedHosts") or ()
    return Listener(st.get_option("server.address"), tuple(str(h) for h in hosts))


def identify(settings: Settings, mode: AccessMode) -> AdminIdentity:
    """The admin at the browser under ``mode``; raises the ``webapp.access.errors.AuthError`` subclasses."""
    local = mode == "local"
    return identify_admin(
        settings,
        mode,
        user=st.user.to_dict() if mode == "oidc" else None,
        headers=dict(st.context.headers or {}) if mode == "iap" else None,
        certs_fetcher=certs_fetcher_for(settings) if mode == "iap" else None,
        listener=listener() if local else None,
        kubeconfig_user=(lambda: _kubeconfig_user(settings)) if local else None,
    )


def _kubeconfig_user(settings: Settings) -> str:
    try:
        return kubeconfig_user(settings.kubeconfig or None)
    except ClusterError as exc:
        raise NoLocalIdentity(
            f"LOCAL_ADMIN names you after your kubeconfig's current user, but {exc}"
        ) from None
