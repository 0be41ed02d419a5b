"""Pure prompt building: chat messages for chat models, a transcript for base models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "assistant"]

#: labels of the plain-text transcript used for base (completion) models
USER_LABEL = "User"
ASSISTANT_LABEL = "Assistant"

#: the model must stop as soon as it starts writing the next turn itself
COMPLETION_STOP = [f"\n{USER_LABEL}:", f"\n{ASSISTANT_LABEL}:", "\n\n\n"]


@dataclass(frozen=True)
class Turn:
    """One message of the conversation as sent to the model."""

    role: Role
    content: str


def chat_messages(system: str, turns: Sequence[Turn]) -> list[dict[str, str]]:
    """OpenAI-style message dicts; the system prompt first when it is not blank."""
    out: list[dict[str, str]] = []
    if system.strip():
        out.append({"role": "system", "content": system.strip()})
    out.extend({"role": t.role, "content": t.content} for t in turns)
    return out


def completion_prompt(system: str, turns: Sequence[Turn]) -> str:
    """A transcript a base model continues: ``User: … / Assistant: …`` ending with ``Assistant:``.

    Lines of user text that start with a role label are indented so that a
    user cannot forge a turn boundary (and the stop sequences stay reliable).
    """
    parts: list[str] = []
    if system.strip():
        parts.append(system.strip())
    for t in turns:
        label = USER_LABEL if t.role == "user" else ASSISTANT_LABEL
        parts.append(f"{label}: {_neutralise(t.content.strip())}")
    parts.append(f"{ASSISTANT_LABEL}:")
    return "\n\n".join(parts)


def _neutralise(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith((f"{USER_LABEL}:", f"{ASSISTANT_LABEL}:")):
            lines[i] = " " + line
    return "\n".join(lines)
