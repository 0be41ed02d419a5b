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
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ANON_PREFIX = "anon:"
OIDC_PREFIX = "oidc:"
_BROWSER_KEY_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Owner:
    """The current user as the store sees them.

    ``key`` goes to every store call. ``browser_key`` is what the page must keep in
    session state for anonymous users (``None`` when logged in). ``label`` is for display.
    """

    key: str
    anonymous: bool
    label: str
    email: str | None = None
    browser_key: str | None = None


def new_browser_key() -> str:
    """A fresh random key for an anonymous browser session."""
    return secrets.token_urlsafe(18)


def is_anonymous_key(owner_key: str) -> bool:
    """Whether an owner key belongs to an anonymous (not logged-in) user."""
    return owner_key.startswith(ANON_PREFIX)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def resolve_owner(user_info: Mapping[str, Any] | None, browser_key: str | None) -> Owner:
    """Derive the owner from OIDC claims, else from the anonymous browser key.

    ``user_info`` is e.g. ``st.user.to_dict()``; it counts as logged in when
    ``is_logged_in`` is not false and it carries a subject (``sub``) or an e-mail
    the provider marked verified. An unverified e-mail alone is not an identity.
    ``browser_key`` not shaped like ``new_browser_key()`` output is replaced by a new one.
    """
    info = dict(user_info or {})
    if info.get("is_logged_in", True) is not False:
        issuer = str(info.get("iss") or "")
        subject = str(info.get("sub") or "")
        raw_email = info.get("email")
        email = str(raw_email).strip().lower() if raw_email else None
        # verified only by the JSON boolean true, as for admins (webapp.auth)
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
    )
