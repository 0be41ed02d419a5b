"""Typed errors of the conversation store and of the usage limits.

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

Every message here is written for users (plain language, never a database URL or SQL), so
the UI may show ``str(error)`` as is or choose its own words per class.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the conversation store raises."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or used right now (down, locked, disk full...)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "Saved conversations are unavailable right now: the database cannot be reached. "
            "Try again in a moment; if it persists, tell the administrator."
        )


class SettingsTooLarge(StoreError):
    """A conversation's chat settings are larger than the store keeps."""

    def __init__(self, limit: int, got: int) -> None:
        self.limit, self.got = limit, got
        super().__init__(
            f"These chat settings are too large to save ({got:,} characters; the limit is "
            f"{limit:,}). Shorten the system prompt."
        )


class ConversationNotFound(StoreError):
    """No such conversation *for this user*: missing and not-yours look the same on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "This conversation does not exist or is not available to you. "
            "It may have been deleted, or the link is incomplete."
        )


class LimitExceeded(Exception):
    """Base class of the usage limits a user can hit; the message says what to do."""


class RateLimited(LimitExceeded):
    """Too many messages in the last minute."""

    def __init__(self, limit_per_minute: int, retry_after_s: int) -> None:
        self.limit_per_minute = limit_per_minute
        self.retry_after_s = retry_after_s
        super().__init__(
            f"You have sent {limit_per_minute} messages in the last minute, the most allowed. "
            f"Please wait {retry_after_s} s before sending another."
        )


class GenerationInProgress(LimitExceeded):
    """The user (a guest: their network address) already has an answer being generated."""

    def __init__(self) -> None:
        super().__init__(
            "An answer is already being generated for you (perhaps in another tab or window). "
            "You can go on as soon as it has finished or been stopped: then press Retry. "
            "If the app restarted while answering, that answer is let go within 30 seconds."
        )


class ModelBusy(LimitExceeded):
    """Every generation slot of the whole app (all replicas) is taken."""

    def __init__(self, running: int) -> None:
        self.running = running
        super().__init__(
            f"The model is busy with {running} answer{'' if running == 1 else 's'} right now; "
            "try again in a few seconds (press Retry). Your message is kept."
        )


class PromptTooLong(LimitExceeded):
    """The prompt has more characters than allowed."""

    def __init__(self, limit: int, got: int, what: str = "message") -> None:
        self.limit = limit
        self.got = got
        self.what = what
        advice = (
            "Shorten it or split it into several messages."
            if what == "message"
            else f"Shorten the {what} in the sidebar's settings."
        )
        super().__init__(
            f"Your {what} is {got:,} characters long; the limit is {limit:,}. "
            f"{advice} Nothing was sent."
        )


class TooManyConversations(LimitExceeded):
    """The user keeps the maximum number of conversations (only with ``prune_oldest=False``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"You already keep {limit} conversations, the most allowed. "
            "Delete some to start a new one."
        )
