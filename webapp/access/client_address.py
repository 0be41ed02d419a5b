"""Which network client a chat session comes from, for the limits of anonymous users.

A guest has no identity that survives a reload (a reload is a new Streamlit session with a
new browser key), so the limits of guests are keyed by the client's IP address instead.
The app never sees that address directly behind a load balancer; it is in the
``X-Forwarded-For`` header, whose left part the client writes itself. Only the entries that
trusted proxies appended can be believed, counted from the right:

- GKE Ingress (Google's external Application Load Balancer) appends
  ``<client address>, <load balancer address>`` to whatever the client sent, so with one
  trusted hop (``TRUSTED_PROXY_HOPS=1``, the default) the client is the second entry from
  the right, and a client that writes its own ``X-Forwarded-For`` only adds entries further
  left, which are ignored;
- every further trusted proxy in front of it (which appends the address it got the request
  from) moves the client one entry to the left: ``TRUSTED_PROXY_HOPS=2`` and so on;
- ``TRUSTED_PROXY_HOPS=0``: the header is ignored and the TCP peer address is used (no
  proxy in front of the app).

A header with fewer entries than the trusted hops promise did not come through them: the
peer address is used then (behind GKE it is a shared Google front end, so such requests
share one set of limits rather than escape them). The chat pods accept connections only
from the load balancer (``k8s/base/webapp-networkpolicy.yaml``), which is what makes the
appended entries trustworthy.

IPv6 clients are keyed by their /64 network: one host usually owns a whole /64 and could
otherwise take a fresh address for every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

#: a client's IPv6 addresses within this prefix length count as one client
IPV6_CLIENT_PREFIX = 64


def normalise_address(value: str | None) -> str | None:
    """An IP address (port and brackets removed) as the limits key it; None if not one.

    IPv4-mapped IPv6 addresses become IPv4; other IPv6 addresses become their /64 network.
    """
    text = (value or "").strip().strip('"')
    if not text:
        return None
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:51234
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def forwarded_entries(header_values: Iterable[str]) -> list[str]:
    """The ``X-Forwarded-For`` entries in order; several header lines count as one list."""
    return [e.strip() for value in header_values for e in value.split(",") if e.strip()]


def client_address(forwarded_for: Iterable[str], peer: str | None, trusted_hops: int) -> str | None:
    """The client's address as the trusted proxies saw it (see the module docstring).

    ``forwarded_for``: every ``X-Forwarded-For`` header value of the request, in order;
    ``peer``: the TCP peer address, None when unknown. None when no address can be told.
    """
    if trusted_hops < 0:
        raise ValueError("trusted_hops must be 0 or more")
    entries = forwarded_entries(forwarded_for)
    if trusted_hops and len(entries) > trusted_hops:
        found = normalise_address(entries[-(trusted_hops + 1)])
        if found is not None:
            return found
    return normalise_address(peer)
