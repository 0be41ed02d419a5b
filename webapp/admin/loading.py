"""What the admin page shows of a model server starting: each phase with how long it took,
what the past loads of the same model on the same GPU type predict, and the ETA. Pure.

Built from ``webapp.cluster.loading`` (phases read from the pod and the vLLM log, the
estimate from past loads); drawn by ``webapp.admin.ui.loading.loading_section``. Every
text here is plain text: the model name and log lines come from outside and are drawn
literally by the UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from webapp.cluster.loading import PHASES, Estimate, LoadProgress, PhaseTiming, fmt_duration

STATES = {"done": "done", "current": "in progress", "skipped": "skipped", "pending": "to do"}
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class PhaseRow:
    """One line of the phase table."""

    phase: str  # "Loading weights"
    state: str  # done | in progress | skipped | to do
    took: str  # "12 s", "40 s so far", "" (to do, skipped)
    predicted: str  # median of past loads, "" without any


@dataclass(frozen=True)
class LoadView:
    """A load as the page shows it: a headline, a progress fraction, the phase table."""

    model: str
    gpu_type: str
    headline: str
    fraction: float  # 0..1, for a progress bar
    rows: tuple[PhaseRow, ...]
    note: str  # what the prediction is based on
    ready: bool
    log_tail: tuple[str, ...] = ()


def phase_label(phase: str) -> str:
    """``"loading weights"`` -> ``"Loading weights"`` (``vLLM`` keeps its case)."""
    return phase[:1].upper() + phase[1:]


def _row(timing: PhaseTiming, guess: Estimate) -> PhaseRow:
    if timing.state == "done":
        took = fmt_duration(timing.seconds)
    elif timing.state == "current":
        took = f"{fmt_duration(timing.seconds)} so far"
    else:
        took = ""
    predicted = guess.predicted.get(timing.phase)
    return PhaseRow(
        phase=phase_label(timing.phase),
        state=STATES[timing.state],
        took=took,
        predicted="" if predicted is None else fmt_duration(predicted),
    )


def _headline(progress: LoadProgress, guess: Estimate) -> str:
    if progress.ready:
        said = f"Ready after {fmt_duration(progress.elapsed_s)}"
        if guess.predicted_total_s is not None:
            said += f" (predicted {fmt_duration(guess.predicted_total_s)})"
        return said
    current = next((p for p in progress.phases if p.state == "current"), None)
    if current is None:
        return "Waiting for the model server's pod"
    what = phase_label(current.phase)
    so_far = fmt_duration(current.seconds)
    if guess.eta_s is None:
        return f"{what} ({so_far} so far)"
    if guess.overdue:
        usual = fmt_duration(guess.predicted.get(current.phase, 0.0))
        rest = f", then about {fmt_duration(guess.eta_s)}" if guess.eta_s >= 1 else ""
        return f"{what}: taking longer than usual ({so_far} so far, usually {usual}){rest}"
    return f"{what}: about {fmt_duration(guess.eta_s)} left"


def _fraction(progress: LoadProgress, guess: Estimate) -> float:
    if progress.ready:
        return 1.0
    if guess.eta_s is not None and progress.elapsed_s + guess.eta_s > 0:
        return min(1.0, progress.elapsed_s / (progress.elapsed_s + guess.eta_s))
    current = progress.current
    return 0.0 if current is None else PHASES.index(current) / (len(PHASES) - 1)


def _note(gpu_type: str, guess: Estimate) -> str:
    where = f"on {gpu_type}" if gpu_type else "on this GPU type"
    if guess.based_on == 0:
        return f"No finished load of this model {where} yet, so no prediction."
    loads = "load" if guess.based_on == 1 else "loads"
    return f"Predicted from the median of the last {guess.based_on} {loads} of this model {where}."


def load_view(
    model: str,
    gpu_type: str,
    progress: LoadProgress,
    guess: Estimate,
    log_tail: Sequence[str] = (),
) -> LoadView:
    """The view of one load; ``log_tail``: the last lines of the pod's log (kept as text)."""
    return LoadView(
        model=model,
        gpu_type=gpu_type,
        headline=_headline(progress, guess),
        fraction=_fraction(progress, guess),
        rows=tuple(_row(t, guess) for t in progress.phases),
        note=_note(gpu_type, guess),
        ready=progress.ready,
        log_tail=tuple(str(line) for line in log_tail)[-LOG_TAIL_LINES:],
    )
