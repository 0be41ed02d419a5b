"""Typed errors raised by the vLLM client layer.

Error policy (the same sentence opens every ``errors`` module): the UI decides what a user
sees, mapping each type to its own plain-language words and showing a message as is only where
its ``errors`` module says it is written for users, and no message ever holds a secret, a stack
trace or another user's data.

No message here is written for users: ``detail`` carries what the model server or the
connection said (for logs; the chat page quotes a short excerpt of a 4xx reason), and
``webapp.chat.messages`` maps each class to the words a user sees.
"""

from __future__ import annotations


class LLMError(Exception):
    """Base class for every failure talking to the model server."""

    #: whether retrying the same request may succeed
    retryable: bool = True

    def __init__(self, detail: str = "", *, partial_text: str = "") -> None:
        super().__init__(detail or self.__class__.__name__)
        self.detail = detail
        #: text already received before the failure (kept, never thrown away)
        self.partial_text = partial_text


class BackendUnreachable(LLMError):
    """No TCP/HTTP connection to the model server."""


class BackendTimeout(LLMError):
    """The model server accepted the request but did not answer in time."""


class BackendHTTPError(LLMError):
    """The model server answered with an HTTP error status."""

    def __init__(self, status: int, detail: str = "", *, partial_text: str = "") -> None:
        super().__init__(detail, partial_text=partial_text)
        self.status = status
        self.retryable = status >= 500 or status == 429


class BackendAuthError(BackendHTTPError):
    """401/403: the API key is missing or wrong."""

    retryable = False


class ModelNotFound(BackendHTTPError):
    """404: the server does not serve the requested model (it was switched?)."""


class ChatTemplateMissing(BackendHTTPError):
    """400 from /v1/chat/completions: the model has no chat template (a base model)."""

    retryable = False


class ContextOverflow(LLMError):
    """The prompt (plus max_tokens) does not fit the model's context window."""

    retryable = False

    def __init__(
        self,
        detail: str = "",
        *,
        prompt_tokens: int | None = None,
        limit: int | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(detail, partial_text=partial_text)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class StreamInterrupted(LLMError):
    """The connection dropped after the answer had started; ``partial_text`` holds what came."""


class AnswerDeadline(StreamInterrupted):
    """The answer ran past its total time (``LLM_ANSWER_DEADLINE_S``) and was stopped;
    ``partial_text`` holds what came. The per-chunk read timeout cannot catch a server that
    keeps sending forever."""

    def __init__(self, deadline_s: float, *, partial_text: str = "") -> None:
        self.deadline_s = deadline_s
        super().__init__(f"answer still running after {deadline_s:g} s", partial_text=partial_text)


class InvalidPrompt(LLMError):
    """The user's input cannot be sent (empty, too long)."""

    retryable = False


class EmptyPrompt(InvalidPrompt):
    """Empty or whitespace-only prompt."""
