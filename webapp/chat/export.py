"""Conversation export as Markdown (to read) and JSON (to keep or re-import). Pure functions.

JSON schema (``format`` and ``version`` let a future importer recognise it)::

    {"format": "vllm-chat-console/conversation", "version": 1,
     "id": str, "title": str, "created": ISO-8601 UTC, "updated": ISO-8601 UTC,
     "settings": object | null,
     "messages": [{"role": str, "content": str, "status": str,
                   "created": ISO-8601 UTC, "meta": object}]}
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from webapp.store.records import Conversation

EXPORT_FORMAT = "vllm-chat-console/conversation"
EXPORT_VERSION = 1

_ROLE_HEADINGS = {"system": "System", "user": "You", "assistant": "Assistant"}
_STATUS_NOTES = {
    "streaming": "Answer still being generated when exported.",
    "stopped": "Answer stopped by the user; partial text.",
    "failed": "Answer failed; partial text.",
    "cut": "Answer cut: it reached the maximum length (max tokens).",
    "interrupted": "Answer interrupted (the server stopped); partial text.",
}


def _iso(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z``; naive datetimes are taken as UTC (as the store keeps them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def to_dict(conversation: Conversation) -> dict[str, Any]:
    """The conversation as the versioned JSON-ready structure documented above."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "id": conversation.id,
        "title": conversation.title,
        "created": _iso(conversation.created_at),
        "updated": _iso(conversation.updated_at),
        "settings": conversation.chat_settings,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "created": _iso(m.created_at),
                "meta": m.meta,
            }
            for m in conversation.messages
        ],
    }


def to_json(conversation: Conversation) -> str:
    """The conversation as pretty-printed UTF-8 JSON text (keys in a stable order)."""
    return json.dumps(to_dict(conversation), ensure_ascii=False, indent=2, default=str) + "\n"


def _meta_line(meta: dict[str, Any]) -> str:
    parts = []
    if meta.get("model"):
        parts.append(f"model {meta['model']}")
    if meta.get("tokens") is not None:
        parts.append(f"{meta['tokens']} tokens")
    if meta.get("tokens_per_s") is not None:
        parts.append(f"{float(meta['tokens_per_s']):.1f} tokens/s")
    return ", ".join(parts)


def to_markdown(conversation: Conversation) -> str:
    """The conversation as a Markdown document: title, date, then one section per message.

    Partial answers carry a note saying why they are partial; errors are quoted.
    """
    lines = [
        f"# {conversation.title}",
        "",
        f"_Exported conversation, started {_iso(conversation.created_at)}._",
    ]
    for m in conversation.messages:
        lines += ["", f"### {_ROLE_HEADINGS.get(m.role, m.role.title())}", ""]
        lines.append(m.content if m.content.strip() else "_(empty)_")
        note = _STATUS_NOTES.get(m.status)
        if note:
            lines += ["", f"> _{note}_"]
        if m.meta.get("error"):
            lines.append("> Error: " + " ".join(str(m.meta["error"]).split()))
        info = _meta_line(m.meta) if m.role == "assistant" else ""
        if info:
            lines += ["", f"<sub>{info}</sub>"]
    return "\n".join(lines) + "\n"


def filename_for_title(title: str, extension: str) -> str:
    """A safe download file name from a conversation title, e.g. ``how-to-bake-bread.md``."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50].strip("-")
    return f"{slug or 'conversation'}.{extension.lstrip('.')}"
