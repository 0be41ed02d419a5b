"""Typed errors of GPU telemetry (``webapp.cluster.telemetry``).

Kept apart from ``webapp.cluster.errors`` for now (the lead may move them there). Each
failure names the source in plain words, says why in plain words, and gives the command
that turns the source on: the admin page shows exactly that in the GPU panel, and nothing
else of the page is affected. No token, URL query or response body is ever kept here.
"""

from __future__ import annotations

from dataclasses import dataclass

from webapp.cluster.errors import ClusterError


@dataclass(frozen=True)
class SourceFailure:
    """Why one telemetry source gave no GPU figures, and how to turn it on."""

    source: str  # plain name of the source
    reason: str  # plain reason: down, slow, garbage, not configured, refused
    turn_on: str  # the command (or setting) that makes this source work

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class TelemetryUnavailable(ClusterError):
    """No source gave GPU telemetry; ``failures`` says, per source tried, why and what to do."""

    def __init__(self, failures: tuple[SourceFailure, ...]) -> None:
        self.failures = failures
        super().__init__("; ".join(str(f) for f in failures) or "no GPU telemetry source")
