"""Plain-language messages for typed errors (no streamlit import: unit-tested)."""

from __future__ import annotations

from webapp.llm.errors import (
    AnswerDeadline,
    BackendAuthError,
    BackendHTTPError,
    BackendTimeout,
    BackendUnreachable,
    ChatTemplateMissing,
    ContextOverflow,
    EmptyPrompt,
    LLMError,
    ModelNotFound,
    StreamInterrupted,
)
from webapp.store.records import short_title
from webapp.ui.text import literal


def llm_error_message(err: LLMError) -> str:
    """One or two sentences: what happened and what the user can do."""
    if isinstance(err, EmptyPrompt):
        return "Your message is empty. Type something before sending."
    if isinstance(err, ContextOverflow):
        if err.prompt_tokens and err.limit:
            size = f" ({err.prompt_tokens:,} tokens; at most {err.limit:,} fit)"
        else:
            size = ""
        return (
            f"This message is too long for the model's context window{size}. "
            "Shorten it, lower *Max answer tokens*, or start a new chat."
        )
    if isinstance(err, AnswerDeadline):
        return (
            f"The answer was still running after {err.deadline_s:g} seconds, the most one "
            "answer may take here, and was stopped. The part received is kept above. Press "
            "Retry, or ask for a shorter answer."
        )
    if isinstance(err, StreamInterrupted):
        return (
            "The connection to the model dropped before the answer was complete. "
            "The part received is kept above. Press Retry to ask again."
        )
    if isinstance(err, BackendUnreachable):
        return (
            "The model server cannot be reached. It may be starting, being switched "
            "to another model, or down. Your message is kept: press Retry in a moment."
        )
    if isinstance(err, BackendTimeout):
        return "The model server did not answer in time. It may be overloaded; press Retry."
    if isinstance(err, BackendAuthError):
        return (
            "The model server refused the app's credentials. "
            "Ask an administrator to check LLM_API_KEY."
        )
    if isinstance(err, ModelNotFound):
        return (
            "The model you were talking to is no longer served (it may have been switched). "
            "Pick the current model in the sidebar and press Retry."
        )
    if isinstance(err, ChatTemplateMissing):
        return "This model has no chat template. Ask an administrator to set LLM_MODE=completion."
    if isinstance(err, BackendHTTPError):
        if err.status == 429:
            return "The model server is busy (too many requests). Wait a moment and press Retry."
        if err.status >= 500:
            return (
                f"The model server had an internal error (HTTP {err.status}). "
                "Press Retry; if it keeps failing, tell an administrator."
            )
        return f"The model server rejected the request (HTTP {err.status}): {_short(err.detail)}"
    return "Something went wrong while talking to the model. Press Retry."


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def answer_note(status: str, ended: str | None = None) -> str | None:
    """The small note shown under an answer that did not finish normally.

    ``ended="app"`` marks an answer cut short because its page lost the app: the app shut
    down (rollout, drained node) or the tab was closed or reloaded.
    """
    if status == "interrupted" and ended == "app":
        return (
            ":material/restart_alt: Interrupted — the app restarted or the page was closed "
            "while answering; this is the part received. Press Retry for a full answer."
        )
    return {
        "stopped": ":material/stop_circle: Stopped — the answer is incomplete.",
        "cut": ":material/content_cut: Cut off at the *Max answer tokens* limit. Raise it and regenerate for more.",
        "interrupted": ":material/warning: Interrupted — the connection dropped; this is the part received.",
        "streaming": ":material/pending: Still being written elsewhere, or its writer stopped; reload to see more.",
        "failed": None,
    }.get(status)


def busy_message(ahead: int | None) -> str:
    """What the user reads while the model server has not started their answer:
    ``ahead`` requests before theirs in its queue (None: unknown)."""
    if not ahead:
        return ":material/hourglass_top: Waiting for the model…"
    requests = "1 request" if ahead == 1 else f"{ahead:,} requests"
    return (
        f":material/hourglass_top: The model is busy: {requests} ahead of yours. "
        "Your answer starts when its turn comes."
    )


def stats_line(meta: dict) -> str:
    """``128 tokens · first token 0.21 s · 35.2 tokens/s`` from an answer's stats."""
    parts = []
    n = meta.get("completion_tokens")
    if n is not None:
        approx = "" if meta.get("usage_source") == "server" else "≈"
        parts.append(f"{approx}{n} token{'' if n == 1 else 's'}")
    ttft = meta.get("ttft_s")
    if ttft is not None:
        parts.append(f"first token {ttft:.2f} s")
    tps = meta.get("tokens_per_s")
    if tps:
        parts.append(f"{tps:.1f} tokens/s")
    if meta.get("model"):
        parts.append(literal(str(meta["model"])))  # the server's name for it, as text
    return " · ".join(parts)


def display_title(title: str) -> str:
    """A conversation title for a heading or a sidebar button: short, one line, plain text."""
    return literal(short_title(title))
