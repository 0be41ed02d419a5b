"""Who is at the browser, for the router and the pages: Streamlit's side of ``webapp.auth``.

``webapp.auth`` is pure; this module hands it what Streamlit knows for the access mode in
force: ``st.user`` under Streamlit login (OIDC), the request headers and IAP's keys behind
Identity-Aware Proxy.
"""

from __future__ import annotations

import streamlit as st

from webapp.auth import (
    AccessMode,
    AdminIdentity,
    admin_access_mode,
    certs_fetcher_for,
    identify_admin,
)
from webapp.settings import Settings


def oidc_configured() -> bool:
    """Whether Streamlit login is set up (an ``[auth]`` section in secrets.toml)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


def access_mode(settings: Settings) -> AccessMode:
    """How admins sign in here: ``iap``, ``oidc`` or ``off``."""
    return admin_access_mode(settings, oidc_configured())


def identify(settings: Settings, mode: AccessMode) -> AdminIdentity:
    """The admin at the browser under ``mode``; raises the ``webapp.auth.AuthError`` subclasses."""
    return identify_admin(
        settings,
        mode,
        user=st.user.to_dict() if mode == "oidc" else None,
        headers=dict(st.context.headers or {}) if mode == "iap" else None,
        certs_fetcher=certs_fetcher_for(settings) if mode == "iap" else None,
    )
