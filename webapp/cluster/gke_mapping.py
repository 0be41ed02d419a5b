"""How a Google API error becomes one of the typed node-pool errors (``errors``).

Every message is plain language for the admin page: the client library's messages start
with the HTTP method and the full request URL (``GET https://container.googleapis.com/
v1/projects/...: Not found: ...``), which must never reach a page, so ``plain_message``
strips them and ``map_error`` writes its own sentences where it can.
"""

from __future__ import annotations

import re

from google.api_core import exceptions as gexc

from webapp.cluster.errors import (
    GkeForbidden,
    GkeUnavailable,
    InvalidNodePoolRequest,
    NodePoolError,
    NodePoolNotFound,
    OperationInProgress,
)

_OP_NAME = re.compile(r"operation-[A-Za-z0-9-]+")
_REQUEST_PREFIX = re.compile(r"^\s*(?:[A-Z]+ )?https?://\S+:\s*")
_URL = re.compile(r"https?://\S+")


def plain_message(message: str) -> str:
    """``message`` without the request line (method + URL) the client puts in front, and
    with any other URL left out: what GKE said, never where the console sent it."""
    return _URL.sub("(address omitted)", _REQUEST_PREFIX.sub("", message)).strip()


def api_status(exc: gexc.GoogleAPICallError) -> str:
    """The google.rpc status name from the error body (FAILED_PRECONDITION, ...), if any."""
    resp = getattr(exc, "response", None)
    try:
        return str(resp.json()["error"].get("status", "")) if resp is not None else ""
    except Exception:
        return ""


def map_error(exc: gexc.GoogleAPICallError, cluster: str, location: str) -> NodePoolError:
    """The typed error for a failed call on ``cluster`` in ``location``."""
    message = plain_message(str(getattr(exc, "message", "") or exc))
    status = api_status(exc)
    if isinstance(exc, gexc.FailedPrecondition | gexc.BadRequest) and (
        "incompatible operation" in message.lower()
        or (status == "FAILED_PRECONDITION" and _OP_NAME.search(message))
    ):
        found = _OP_NAME.search(message)
        return OperationInProgress(found.group(0) if found else None)
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return GkeForbidden(
            f"The app is not allowed to manage cluster {cluster} "
            "(it needs the Kubernetes Engine Cluster Admin or Developer role on the project)."
        )
    if isinstance(exc, gexc.NotFound):
        # GKE's own text names the resource path; ``NodePools`` words a pool that is missing
        return NodePoolNotFound(
            f"Cluster {cluster} (location {location}) or what was asked of it does not "
            "exist: check GKE_PROJECT, GKE_LOCATION and GKE_CLUSTER."
        )
    if isinstance(exc, gexc.InvalidArgument | gexc.BadRequest | gexc.FailedPrecondition):
        return InvalidNodePoolRequest(f"GKE refused the request: {message}")
    if isinstance(exc, gexc.ServerError | gexc.TooManyRequests):
        return GkeUnavailable(f"The GKE API is unavailable right now ({exc.code}); try again.")
    return NodePoolError(f"GKE API error: {message}")


def is_transport_error(exc: Exception) -> bool:
    """True for a network failure on the way to the API (requests or google-auth)."""
    import requests
    from google.auth import exceptions as auth_exc

    return isinstance(exc, requests.exceptions.RequestException | auth_exc.TransportError)
