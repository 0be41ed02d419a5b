"""Browser security headers that the load balancer adds to both web app backends (issue 10,
item 3): a Content-Security-Policy that loads images only from the app and forbids framing,
X-Frame-Options, Referrer-Policy and nosniff. Asserted on every rendered overlay; that the app
works behind them is checked in Chromium (tests/e2e/test_chat_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
import streamlit

from tests.delivery.helpers import (
    OVERLAYS,
    base_response_headers,
    csp_directives,
    find,
    response_headers,
)

pytestmark = pytest.mark.delivery


@pytest.mark.parametrize("service", ["webapp-chat", "webapp-admin"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backend_sends_browser_security_headers(rendered, overlay, service):
    objs = rendered[overlay]
    svc = find(objs, "Service", service)
    name = json.loads(svc["metadata"]["annotations"]["cloud.google.com/backend-config"])
    headers = response_headers(find(objs, "BackendConfig", name["default"]))
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["img-src"] == ["'self'", "data:"]  # no markdown image can call out
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(csp["script-src"])


def test_chat_and_admin_send_the_same_headers():
    chat = base_response_headers("webapp-chat")
    assert "Content-Security-Policy" in chat
    assert chat == base_response_headers("webapp-admin")


def test_csp_script_hash_is_the_inline_script_of_streamlits_page():
    """Streamlit's index.html runs one inline script; the CSP allows exactly it by hash. A
    Streamlit upgrade that changes it fails here: put the new hash into backendconfig.yaml."""
    page = (Path(streamlit.__file__).parent / "static" / "index.html").read_text()
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    expected = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    }
    script_src = csp_directives(base_response_headers("webapp-chat")["Content-Security-Policy"])
    assert {s for s in script_src["script-src"] if s.startswith("'sha256-")} == expected
