"""Who is chatting: a stable, opaque owner key for the conversation store.

No Streamlit here: the chat page passes what it has — the OIDC claims of
``st.user`` (when ``st.login`` is configured and the user logged in) and the
random browser key it keeps in ``st.session_state``.

- Logged-in users get ``"oidc:" + sha256(issuer, subject)`` (or of the verified
  e-mail when the provider sends no subject): the same key on every device, and
  no personal data in the database key.
- Everyone else gets ``"anon:" + <random token>``, valid for one browser session.
  Their conversations can also be opened by URL: the unguessable conversation
  id is a capability, but only for anonymous conversations (see
  ``ConversationStore.get_conversation``).

Limits (messages per minute, one answer at a time, conversations kept) are keyed by
``Owner.limits_key``: the owner key of a logged-in user, and for a guest the client's
network address (``webapp.access.client_address``) as ``"client:" + sha256(address)``, because a
guest's owner key changes with every reload and would let a reload reset the limits.
Guests behind one address (an office NAT) share their limits.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ANON_PREFIX = "anon:"
OIDC_PREFIX = "oidc:"
CLIENT_PREFIX = "client:"
#: the limits key of guests whose address cannot be told (e.g. on localhost): one shared key
UNKNOWN_CLIENT = CLIENT_PREFIX + "unknown"
_BROWSER_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Owner:
    """The current user as the store sees them.

    ``key`` goes to every store call. ``browser_key`` is what the page must keep in
    session state for anonymous users (``None`` when logged in). ``label`` is for display.
    ``limits_key`` is what the usage limits count against (see the module docstring).
    """

    key: str
    anonymous: bool
    label: str
    email: str | None = None
    browser_key: str | None = None
    limits_key: str = ""

    def __post_init__(self) -> None:
        if not self.limits_key:
            object.__setattr__(self, "limits_key", self.key)


def new_browser_key() -> str:
    """A fresh random key for an anonymous browser session."""
    return secrets.token_urlsafe(18)


def is_anonymous_key(owner_key: str) -> bool:
    """Whether an owner key belongs to an anonymous (not logged-in) user."""
    return owner_key.startswith(ANON_PREFIX)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def client_limits_key(address: str | None) -> str:
    """The limits key of a guest at ``address`` (from ``webapp.access.client_address``).

    A hash, so the address is not stored in clear (an IPv4 hash can be reversed by trying
    every address: treat it as personal data all the same). No address: ``UNKNOWN_CLIENT``.
    """
    return CLIENT_PREFIX + _digest("ip", address) if address else UNKNOWN_CLIENT


def resolve_owner(
    user_info: Mapping[str, Any] | None,
    browser_key: str | None,
    client_address: str | None = None,
) -> Owner:
    """Derive the owner from OIDC claims, else from the anonymous browser key.

    ``user_info`` is e.g. ``st.user.to_dict()``; it counts as logged in when
    ``is_logged_in`` is not false and it carries a subject (``sub``) or an e-mail
    the provider marked verified. An unverified e-mail alone is not an identity.
    ``browser_key`` not shaped like ``new_browser_key()`` output is replaced by a new one.
    ``client_address`` keys a guest's limits (``client_limits_key``).
    """
    info = dict(user_info or {})
    if info.get("is_logged_in", True) is not False:
        issuer = str(info.get("iss") or "")
        subject = str(info.get("sub") or "")
        raw_email = info.get("email")
        email = str(raw_email).strip().lower() if raw_email else None
        # verified only by the JSON boolean true, as for admins (webapp.access.auth)
        verified = email is not None and info.get("email_verified") is True
        label = str(info.get("name") or email or "Signed-in user")
        if subject:
            return Owner(
                key=OIDC_PREFIX + _digest("sub", issuer, subject),
                anonymous=False,
                label=label,
                email=email if verified else None,
            )
        if verified:
            return Owner(
                key=OIDC_PREFIX + _digest("email", email or ""),
                anonymous=False,
                label=label,
                email=email,
            )
    if not browser_key or not _BROWSER_KEY_RE.fullmatch(browser_key):
        browser_key = new_browser_key()
    return Owner(
        key=ANON_PREFIX + browser_key,
        anonymous=True,
        label="Guest",
        browser_key=browser_key,
        limits_key=client_limits_key(client_address),
    )


ChatGate = Literal["chat", "log_in", "closed"]


def chat_gate(*, anonymous: bool, require_login: bool, login_configured: bool) -> ChatGate:
    """Whether this visitor may chat (``CHAT_REQUIRE_LOGIN``).

    ``log_in``: a guest where login is required (the page offers it); ``closed``: login is
    required but not set up, so nobody can chat (fail closed, say why).
    """
    if not require_login or not anonymous:
        return "chat"
    return "log_in" if login_configured else "closed"
