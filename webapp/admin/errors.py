"""Typed errors of the admin package itself.

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

Policy (the same as ``webapp.cluster.errors``): every message here is written for the
admin page, plain language, nothing secret; ``webapp.admin.messages`` says what is shown
for each error, from this package and the packages below it.
"""

from __future__ import annotations


class AdminError(Exception):
    """Base of the errors the admin package raises itself."""


class JobBusy(AdminError):
    """A job of the same kind started from this console is still running."""

    def __init__(self, kind: str, actor: str, target: str) -> None:
        self.kind, self.actor, self.target = kind, actor, target
        super().__init__(f"{actor} is already changing {target}; wait until it finishes.")


class NotCancellable(AdminError):
    """The running job has no way to stop early (e.g. a GKE operation, which runs to DONE)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"A {kind} job cannot be cancelled; wait until it finishes.")


class InvalidCanaryPlan(AdminError):
    """The admin's canary plan (steps, soak, thresholds) cannot run; ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class InvalidCapacityRequest(AdminError, ValueError):
    """A capacity check asked with impossible numbers (negative replicas, no GPU type)."""


class NotEnoughCapacity(AdminError):
    """The GPU pool cannot hold what a deploy, scale or canary adds (``admin.capacity``):
    the message says why and what to change, written for the page; ``verdict`` is the
    ``CapacityVerdict`` it comes from. Raised before anything is written."""

    def __init__(self, message: str, verdict: object = None) -> None:
        self.verdict = verdict
        super().__init__(message)
