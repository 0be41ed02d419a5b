"""The chat feature's own signals.

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

What users read about failures comes from the lower
packages' typed errors (``webapp.llm.errors``, ``webapp.store.errors``) through
``webapp.chat.messages``; nothing here is ever shown."""

from __future__ import annotations


class TurnCancelled(Exception):
    """Thrown into a running turn (``run_turn``) by a page that stops drawing it: the user
    pressed Stop (``browser_gone=False``), or the browser is gone — tab closed or reloaded,
    the app shutting down (``browser_gone=True``). The turn keeps the partial answer, marks
    it stopped or interrupted, saves it and frees the answer slot."""

    def __init__(self, *, browser_gone: bool = False) -> None:
        self.browser_gone = browser_gone
        super().__init__("browser gone" if browser_gone else "stopped")


class FleetUnavailable(Exception):
    """The model pools could not be read or a sleeping pool could not be woken (no cluster
    access, refused by RBAC, the API server down, the fleet code missing). ``reason`` says
    why in a few plain words written for users (never a secret or an API message); the chat
    then behaves as without discovery, or keeps the message and says the model stays asleep."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
