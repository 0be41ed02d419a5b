"""Fixtures for the delivery checks: every overlay rendered once per session, and a PATH
directory whose gcloud/kubectl record calls and fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.delivery.helpers import K8S, OVERLAYS, recording_tools, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """overlay name -> rendered objects."""
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture
def tripwire(tmp_path) -> Path:
    """PATH dir whose gcloud/kubectl fail (exit 97) and record any call."""
    return recording_tools(tmp_path, 97)
