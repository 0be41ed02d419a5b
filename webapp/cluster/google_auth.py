"""The pod's Google credentials and their bearer token, for the Google REST APIs the console
reads over plain HTTP (Managed Service for Prometheus, Compute Engine quotas).

Credentials are found once per process and scope set (Workload Identity on GKE, or
GOOGLE_APPLICATION_CREDENTIALS elsewhere); their token is refreshed only when it expires, not
fetched anew on every refresh of the admin page. No token is ever logged or kept elsewhere.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from webapp.cluster.errors import NoGoogleCredentials


@lru_cache(maxsize=4)
def default_credentials(scopes: tuple[str, ...]) -> Any:
    """The process's Google credentials for ``scopes``, found once."""
    import google.auth

    credentials, _ = google.auth.default(scopes=list(scopes))
    return credentials


def bearer_token(credentials: Any, scopes: tuple[str, ...]) -> str:
    """A valid access token of ``credentials`` (None: ``default_credentials(scopes)``),
    refreshed only when it has expired. Raises ``NoGoogleCredentials``."""
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import Request

    try:
        if credentials is None:
            credentials = default_credentials(scopes)
        if not credentials.valid:
            credentials.refresh(Request())
    except GoogleAuthError as exc:
        raise NoGoogleCredentials(type(exc).__name__) from None
    return str(credentials.token)
