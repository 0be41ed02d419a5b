"""Typed errors of the access package (who is the user, who is an admin).

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

Every message here is written for users: it says what to do and never holds a token.
"""

from __future__ import annotations


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
