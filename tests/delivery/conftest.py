"""Fixtures for the delivery checks: every overlay rendered once per session."""

from __future__ import annotations

import pytest

from tests.delivery.helpers import K8S, OVERLAYS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """overlay name -> rendered objects."""
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}
