"""Generation settings: the sidebar's table of them, one options object per answer, and what
a conversation saves and restores of them. No Streamlit: the page draws ``knobs()``.

Adding a setting (say ``presence_penalty``): its default in ``webapp/settings.py``, one row
in ``knobs()`` below, one field in ``webapp.llm.chat.GenerationParams`` (sent to vLLM under
its name); the sidebar, the saved conversation settings and the restore follow the table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_type_hints

from webapp.llm.chat import ChatRequest, GenerationParams
from webapp.llm.prompts import Turn
from webapp.settings import Settings

#: the saved name of the model a conversation was answered by (not a knob: the server's list)
MODEL = "model"


@dataclass(frozen=True)
class Knob:
    """One generation setting the user changes in the sidebar.

    ``key`` names it everywhere: the session-state and widget key, the name it is saved
    under with the conversation, and the ``GenerationParams`` field it fills (the system
    prompt excepted). ``kind``: "text" (at most ``high`` characters), "slider" (``low`` to
    ``high`` by ``step``), "tokens" (a whole number from ``low`` to ``high`` by ``step``,
    also kept within the served model's context by the sidebar).
    """

    key: str
    label: str
    default: Any
    kind: Literal["text", "slider", "tokens"]
    low: float = 0.0
    high: float = 0.0
    step: float = 0.0

    def accepts(self, value: Any) -> bool:
        """Whether a saved ``value`` can be shown again as it is (stored settings are data
        from the database: anything out of today's bounds is not restored)."""
        if self.kind == "text":
            return isinstance(value, str) and len(value) <= self.high
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value) or not self.low <= value <= self.high:
            return False
        return self.kind != "tokens" or float(value).is_integer()

    def widget_value(self, value: Any) -> Any:
        """An accepted value in the type its widget takes (JSON may turn 256 into 256.0)."""
        return {"text": str, "slider": float, "tokens": int}[self.kind](value)


def knobs(settings: Settings) -> tuple[Knob, ...]:
    """The generation settings in the order the sidebar shows them."""
    return (
        Knob("system_prompt", "System prompt", settings.default_system_prompt, "text",
             high=settings.max_prompt_chars),
        Knob("temperature", "Temperature", settings.default_temperature, "slider", 0.0, 2.0, 0.05),
        Knob("top_p", "Top p", settings.default_top_p, "slider", 0.05, 1.0, 0.05),
        Knob("max_tokens", "Max answer tokens", settings.default_max_tokens, "tokens",
             1, 8192, 64),
    )  # fmt: skip


_PARAM_TYPES = get_type_hints(GenerationParams)


@dataclass(frozen=True)
class GenerationOptions:
    """What the next answer is generated with: built once per page run from the sidebar's
    values, passed to ``run_turn`` and from there, as a ``ChatRequest``, to the llm call."""

    system_prompt: str
    params: GenerationParams
    model: str | None = None
    max_model_len: int | None = None

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], model: str | None = None, max_model_len: int | None = None
    ) -> GenerationOptions:
        """From the sidebar's values, keyed like ``knobs()`` (the session state)."""
        params = GenerationParams(
            **{name: kind(values[name]) for name, kind in _PARAM_TYPES.items() if name in values}
        )
        return cls(str(values["system_prompt"]), params, model, max_model_len)

    def saved(self) -> dict[str, Any]:
        """What a conversation keeps of them (``restorable`` reads it back)."""
        return {"system_prompt": self.system_prompt, **dataclasses.asdict(self.params),
                MODEL: self.model}  # fmt: skip

    def request(self, turns: Sequence[Turn]) -> ChatRequest:
        """The llm call for these options (``model`` must be set)."""
        if self.model is None:
            raise ValueError("no model chosen")
        return ChatRequest(
            self.model, self.system_prompt, tuple(turns), self.params, self.max_model_len
        )


def restorable(saved: Mapping[str, Any] | None, table: Sequence[Knob]) -> dict[str, Any]:
    """The saved settings of a conversation that can be put back in the sidebar, by key:
    the valid ones among ``table`` and the model's name; anything else is left out."""
    if not isinstance(saved, Mapping):
        return {}
    out = {
        k.key: k.widget_value(saved[k.key])
        for k in table
        if k.key in saved and k.accepts(saved[k.key])
    }
    model = saved.get(MODEL)
    if isinstance(model, str) and model.strip():
        out[MODEL] = model
    return out
