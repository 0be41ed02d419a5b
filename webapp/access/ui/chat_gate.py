"""Who is chatting, from what Streamlit knows: the chat page's side of ``webapp.access.identity``.

The decisions are pure (``webapp.access.client_address``, ``webapp.access.identity``); this module only
hands them the session's request headers, peer address and login state, and draws the
"Log in to chat" page when ``CHAT_REQUIRE_LOGIN`` turns guests away.
"""

from __future__ import annotations

import streamlit as st

from webapp.access.client_address import client_address
from webapp.access.identity import Owner, chat_gate, resolve_owner
from webapp.access.ui.identify import oidc_configured
from webapp.settings import Settings

FORWARDED_FOR = "X-Forwarded-For"


def _user_info() -> dict | None:
    try:
        return st.user.to_dict() if st.user.is_logged_in else None
    except Exception:  # noqa: BLE001 - auth not configured: everyone is a guest
        return None


def session_client_address(settings: Settings) -> str | None:
    """The address this session's requests come from, as the trusted proxies tell it."""
    headers = st.context.headers
    forwarded = headers.get_all(FORWARDED_FOR) if headers is not None else []
    return client_address(forwarded, st.context.ip_address, settings.trusted_proxy_hops)


def current_owner(settings: Settings, browser_key: str | None) -> Owner:
    """The visitor: the logged-in user, else a guest keyed for limits by their address."""
    return resolve_owner(_user_info(), browser_key, session_client_address(settings))


def require_chat_access(settings: Settings, owner: Owner) -> None:
    """Stop the page with "Log in to chat" when guests may not chat (``CHAT_REQUIRE_LOGIN``)."""
    gate = chat_gate(
        anonymous=owner.anonymous,
        require_login=settings.chat_require_login,
        login_configured=oidc_configured(),
    )
    if gate == "chat":
        return
    st.title(settings.app_title)
    if gate == "log_in":
        st.info("Log in to chat. Your conversations are kept for you on every device.")
        st.button("Log in", icon=":material/login:", key="login", type="primary",
                  on_click=st.login)  # fmt: skip
    else:
        st.error(
            "This chat is for signed-in users only, but signing in is not set up on this "
            "server yet. Please tell the administrator (CHAT_REQUIRE_LOGIN needs Streamlit "
            "login: [auth] in .streamlit/secrets.toml)."
        )
    st.stop()
