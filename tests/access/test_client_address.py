"""Which client a session comes from (webapp.access.client_address): only the X-Forwarded-For
entries the trusted proxies appended count, so a client cannot choose its own key."""

from __future__ import annotations

import pytest

from webapp.access.client_address import client_address, forwarded_entries, normalise_address

LB = "34.117.0.9"  # the load balancer's own address, last entry GKE appends
GFE = "35.191.3.4"  # the Google front end the pod sees as its peer


@pytest.mark.parametrize(
    ("forwarded_for", "peer", "hops", "expected"),
    [
        # GKE Ingress: "<client>, <load balancer>" appended
        ([f"203.0.113.7, {LB}"], GFE, 1, "203.0.113.7"),
        # whatever the client wrote itself stays on the left and is ignored
        ([f"1.1.1.1, 203.0.113.7, {LB}"], GFE, 1, "203.0.113.7"),
        ([f"evil, 10.0.0.1, 1.1.1.1, 203.0.113.7, {LB}"], GFE, 1, "203.0.113.7"),
        # several header lines are one list, in order
        (["1.1.1.1", f"203.0.113.7, {LB}"], GFE, 1, "203.0.113.7"),
        # a CDN in front of the load balancer: one more trusted hop
        ([f"9.9.9.9, 198.51.100.2, 203.0.113.99, {LB}"], GFE, 2, "198.51.100.2"),
        # not through the trusted hops (too few entries): the peer, never a client's claim
        (["203.0.113.7"], GFE, 1, GFE),
        ([], GFE, 1, GFE),
        ([f"9.9.9.9, {LB}"], GFE, 2, GFE),
        # 0 hops: the header is ignored altogether
        ([f"203.0.113.7, {LB}"], "198.51.100.20", 0, "198.51.100.20"),
        # the trusted entry is not an address: the peer
        ([f"unknown, {LB}"], GFE, 1, GFE),
        # nothing known at all (localhost: Streamlit gives no peer address)
        ([], None, 1, None),
        ([f"203.0.113.7, {LB}"], None, 0, None),
        # ports, brackets and IPv6 (keyed by /64; IPv4-mapped as IPv4)
        ([f"203.0.113.7:51234, {LB}"], GFE, 1, "203.0.113.7"),
        ([f"[2001:db8:1:2:aaaa::1]:443, {LB}"], GFE, 1, "2001:db8:1:2::/64"),
        ([f"2001:db8:1:2:bbbb::9, {LB}"], GFE, 1, "2001:db8:1:2::/64"),
        ([f"::ffff:203.0.113.7, {LB}"], GFE, 1, "203.0.113.7"),
    ],
)
def test_client_address(forwarded_for, peer, hops, expected):
    assert client_address(forwarded_for, peer, hops) == expected


def test_a_client_cannot_change_its_address_by_what_it_sends():
    seen = {
        client_address([f"{spoof}203.0.113.7, {LB}"], GFE, 1)
        for spoof in ("", "1.2.3.4, ", "5.6.7.8, 9.9.9.9, ", "garbage, ", "203.0.113.8, ")
    }
    assert seen == {"203.0.113.7"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ('"203.0.113.7"', "203.0.113.7"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("[::1]:80", "::/64"),
        ("2001:db8::1", "2001:db8::/64"),
        ("", None),
        (None, None),
        ("unknown", None),
        ("999.1.1.1", None),
        ("_hidden", None),
    ],
)
def test_normalise_address(value, expected):
    assert normalise_address(value) == expected


def test_entries_split_on_commas_and_skip_blanks():
    assert forwarded_entries(["a, b,,c", " ", "d"]) == ["a", "b", "c", "d"]


def test_negative_hops_are_a_programming_error():
    with pytest.raises(ValueError):
        client_address([], None, -1)
