"""What the chat page says while the model server is being switched or loads: one plain
sentence from the load in progress the admin's switch publishes (``webapp.store.loads``),
or, for a sleeping model the chat woke (``webapp.chat.fleet``), from its pool's condition.
Pure: the page reads the store and draws the sentence as plain text (the model name comes
from the admin console, not from this user, and is still never markdown)."""

from __future__ import annotations

from datetime import UTC, datetime

from webapp.store.loads import LoadInProgress

#: the load phases (``webapp.cluster.loading.PHASES``) in a chat user's words
PLAIN_PHASES = {
    "scheduled": "waiting for a GPU node",
    "pulling image": "pulling the model server's image",
    "starting vLLM": "starting the model server",
    "downloading weights": "downloading the weights",
    "loading weights": "loading the weights",
    "compiling": "compiling the model",
    "profiling memory & KV cache": "measuring GPU memory",
    "capturing graphs": "capturing CUDA graphs",
    "starting API server": "opening its API",
    "ready": "ready",
}


def about(seconds: float) -> str:
    """A rough duration: "5 s", "40 s", "2 min", "1 h 05 min"."""
    whole = max(1, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{(whole + 30) // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _progress(load: LoadInProgress, now: datetime | None) -> str:
    """ "loading the weights, about 40 s left" """
    phase = PLAIN_PHASES.get(load.phase, load.phase)
    eta = load.eta_at(now or datetime.now(UTC))
    if eta is None:
        return phase
    if eta < 1:
        return f"{phase}, almost ready"
    return f"{phase}, about {about(eta)} left"


def switching_sentence(load: LoadInProgress, now: datetime | None = None) -> str:
    """ "Switching to Qwen2.5-7B-Instruct: loading the weights, about 40 s left"."""
    return f"Switching to {load.model}: {_progress(load, now)}"


#: a woken pool's condition (``webapp.chat.fleet.PoolCondition``) while no load is published
WAKING_STEPS = {
    "asleep": "asking for a GPU",
    "loading": "starting the model server",
    "serving": "ready",
    "unknown": "waiting for it to answer",
}


def waking_sentence(
    model: str,
    condition: str,
    load: LoadInProgress | None = None,
    since_s: float | None = None,
    now: datetime | None = None,
) -> str:
    """ "Qwen2.5-7B-Instruct was asleep and is being woken: loading the weights, about
    40 s left" — the load of the woken pool when one is published for ``model``, else its
    condition, and how long the wake has been going on (``since_s``). "unknown": the pools
    cannot be read (the chat's Role may only wake), so the model was just not answering."""
    if load is not None and load.model == model:
        step = _progress(load, now)
    else:
        step = WAKING_STEPS.get(condition, WAKING_STEPS["unknown"])
        if since_s is not None and since_s >= 1:
            step = f"{step}, {about(since_s)} so far"
    said = "was asleep" if condition in ("asleep", "loading", "serving") else "was not answering"
    return f"{model} {said} and is being woken: {step}"
