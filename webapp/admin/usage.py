"""Usage per user and per model over a period, an estimated cost, and the CSV of it.

Pure: the answers come from ``webapp.store.usage.answers_between``; what is a usable
number is decided here, because the stored stats are untrusted JSON. An answer counts as
one request; its tokens in and out and its time to first token add up when they are
plausible numbers (a count outside ``0..MAX_TOKENS_PER_ANSWER``, a negative or
non-finite time, a string... is left out of the sums and the answer is counted in
``UsageReport.unreadable``, so one bad row cannot break or skew the table).

Cost is an *estimate*: the GPU-hours of the period times the price of one GPU-hour,
shared out by tokens (input + output) — a user or model with a third of the tokens
carries a third of the cost, idle time included. It is not a bill.

Users are shown by what an admin may see: the e-mail or name the chat stored with their
answers (signed-in users only), and a short hash of their key — never the key itself
(a guest's owner key is a browser secret; a signed-in user's key is opaque anyway).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from webapp.access.identity import ANON_PREFIX, CLIENT_PREFIX, UNKNOWN_CLIENT
from webapp.store.records import short_title
from webapp.store.usage import AnswerUsage

PERIODS: dict[str, timedelta] = {"Last day": timedelta(days=1), "Last week": timedelta(days=7)}
#: more tokens than any model's context in one answer: the stored count is garbage
MAX_TOKENS_PER_ANSWER = 10_000_000
#: a first token later than a day: garbage too
MAX_TTFT_S = 86_400.0
LABEL_MAX_CHARS = 120
UNKNOWN_MODEL = "(unknown model)"
GUEST = "Guest"
GUEST_UNKNOWN_ADDRESS = "Guests (address unknown)"
SIGNED_IN = "Signed-in user (name not stored)"
KEY_HEX_CHARS = 10
#: what a spreadsheet may read as the start of a formula (OWASP "CSV injection"),
#: with the full-width forms some spreadsheets fold to them
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
CSV_COLUMNS = (
    "period_start_utc",
    "period_end_utc",
    "user",
    "user_key",
    "model",
    "requests",
    "tokens_in",
    "tokens_out",
    "mean_ttft_s",
    "est_cost_usd",
)


@dataclass(frozen=True)
class Pricing:
    """The cost of the period: ``gpu_hours`` × ``gpu_hourly_usd`` (finite, >= 0)."""

    gpu_hourly_usd: float
    gpu_hours: float

    def __post_init__(self) -> None:
        for name in ("gpu_hourly_usd", "gpu_hours"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not math.isfinite(self.total_usd):
            raise ValueError("the cost of the period is too large to compute")

    @property
    def total_usd(self) -> float:
        return float(self.gpu_hourly_usd) * float(self.gpu_hours)


@dataclass(frozen=True)
class UsageRow:
    """Usage of one user, one model or one user with one model (``None``: all of them)."""

    user: str | None
    user_key: str | None
    model: str | None
    requests: int
    tokens_in: int
    tokens_out: int
    mean_ttft_s: float | None
    cost_usd: float | None

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True)
class UsageReport:
    """The period's usage: per user × model (the CSV), per user, per model, and in total."""

    since: datetime
    until: datetime
    pairs: tuple[UsageRow, ...]
    users: tuple[UsageRow, ...]
    models: tuple[UsageRow, ...]
    total: UsageRow
    unreadable: int
    pricing: Pricing | None


def period_bounds(now: datetime, period: str) -> tuple[datetime, datetime]:
    """``[now - period, now)`` for a name of ``PERIODS`` (``KeyError`` otherwise)."""
    return now - PERIODS[period], now


def default_gpu_hours(gpus: int | None, period: str) -> float:
    """GPU-hours of ``gpus`` GPUs running through the whole period (0 when unknown)."""
    return max(gpus or 0, 0) * PERIODS[period] / timedelta(hours=1)


def short_key(key: str) -> str:
    """A short, stable, non-reversible name for a user key."""
    return hashlib.sha256(key.encode()).hexdigest()[:KEY_HEX_CHARS]


def spreadsheet_safe(text: str) -> str:
    """``text`` that a spreadsheet will not run as a formula: a leading ``'`` when needed."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


@dataclass
class _Tally:
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    ttft_sum_s: float = 0.0
    ttft_n: int = 0

    def add(self, other: _Tally) -> None:
        self.requests += other.requests
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.ttft_sum_s += other.ttft_sum_s
        self.ttft_n += other.ttft_n

    def row(
        self, user: str | None, key: str | None, model: str | None, per_token: float | None
    ) -> UsageRow:
        tokens = self.tokens_in + self.tokens_out
        return UsageRow(
            user=user,
            user_key=key,
            model=model,
            requests=self.requests,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            mean_ttft_s=self.ttft_sum_s / self.ttft_n if self.ttft_n else None,
            cost_usd=None if per_token is None else tokens * per_token,
        )


def _token_count(value: Any) -> int | None:
    """A stored token count: None when missing (counts 0), ``ValueError`` when unusable."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    if not (0 <= value <= MAX_TOKENS_PER_ANSWER) or value != int(value):
        raise ValueError(value)
    return int(value)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(value)
    if not (0 <= value <= MAX_TTFT_S):  # NaN fails this too
        raise ValueError(value)
    return float(value)


def _label(value: Any) -> str:
    """Untrusted text as one short plain line ("" when not text)."""
    return _line(value) if isinstance(value, str) else ""


@lru_cache(maxsize=4096)
def _line(text: str) -> str:
    # a week holds thousands of answers but few distinct model and user names
    return short_title(text, LABEL_MAX_CHARS)


def _tally(answer: AnswerUsage) -> tuple[_Tally, bool]:
    """One answer as a tally, and whether all its stats were usable."""
    tally = _Tally(requests=1)
    readable = True
    try:
        tally.tokens_in = _token_count(answer.prompt_tokens) or 0
    except ValueError:
        readable = False
    try:
        tally.tokens_out = _token_count(answer.completion_tokens) or 0
    except ValueError:
        readable = False
    try:
        ttft = _seconds(answer.ttft_s)
    except ValueError:
        readable, ttft = False, None
    if ttft is not None:
        tally.ttft_sum_s, tally.ttft_n = ttft, 1
    return tally, readable


def _user_name(key: str, stored: str) -> str:
    if key == UNKNOWN_CLIENT:
        return GUEST_UNKNOWN_ADDRESS
    if key.startswith((CLIENT_PREFIX, ANON_PREFIX)):
        return GUEST
    return stored or SIGNED_IN


def _order(text: str | None) -> tuple[str, str]:
    """Sort key of a name: alphabetical whatever the case, then by case."""
    return (text or "").casefold(), text or ""


def summarize(
    answers: Iterable[AnswerUsage],
    since: datetime,
    until: datetime,
    pricing: Pricing | None = None,
) -> UsageReport:
    """Roll the answers of ``[since, until)`` up per user × model, per user and per model.

    With ``pricing``, each row carries its share of the cost by tokens; without it, or
    when the period has no tokens to share by, ``cost_usd`` is None.
    """
    pairs: dict[tuple[str, str], _Tally] = {}
    names: dict[str, str] = {}
    unreadable = 0
    for answer in answers:
        tally, readable = _tally(answer)
        unreadable += not readable
        model = _label(answer.model) or UNKNOWN_MODEL
        pairs.setdefault((answer.user_key, model), _Tally()).add(tally)
        name = _label(answer.user)
        if name:  # answers come oldest first: the latest name stored wins
            names[answer.user_key] = name
    total = _Tally()
    for tally in pairs.values():
        total.add(tally)
    tokens = total.tokens_in + total.tokens_out
    per_token = pricing.total_usd / tokens if pricing is not None and tokens > 0 else None

    def rolled(by) -> dict[Any, _Tally]:
        out: dict[Any, _Tally] = {}
        for (key, model), tally in pairs.items():
            out.setdefault(by(key, model), _Tally()).add(tally)
        return out

    def who(key: str) -> tuple[str, str]:
        return _user_name(key, names.get(key, "")), short_key(key)

    pair_rows = [t.row(*who(k), m, per_token) for (k, m), t in pairs.items()]
    user_rows = [t.row(*who(k), None, per_token) for k, t in rolled(lambda k, m: k).items()]
    model_rows = [t.row(None, None, m, per_token) for m, t in rolled(lambda k, m: m).items()]
    return UsageReport(
        since=since,
        until=until,
        pairs=tuple(sorted(pair_rows, key=lambda r: (_order(r.user), r.user_key, _order(r.model)))),
        users=tuple(sorted(user_rows, key=lambda r: (-r.tokens, _order(r.user), r.user_key))),
        models=tuple(sorted(model_rows, key=lambda r: (-r.tokens, _order(r.model)))),
        total=total.row(None, None, None, per_token),
        unreadable=unreadable,
        pricing=pricing,
    )


def _numbers(row: UsageRow) -> dict[str, Any]:
    return {
        "requests": row.requests,
        "tokens in": row.tokens_in,
        "tokens out": row.tokens_out,
        "mean TTFT (s)": None if row.mean_ttft_s is None else round(row.mean_ttft_s, 3),
        "est. cost (USD)": None if row.cost_usd is None else round(row.cost_usd, 2),
    }


def user_table(report: UsageReport) -> list[dict[str, Any]]:
    """The per-user table as the page shows it."""
    return [{"user": r.user, "key": r.user_key} | _numbers(r) for r in report.users]


def model_table(report: UsageReport) -> list[dict[str, Any]]:
    """The per-model table as the page shows it."""
    return [{"model": r.model} | _numbers(r) for r in report.models]


def usage_csv(report: UsageReport) -> str:
    """The per user × model rows as CSV; text cells cannot start a spreadsheet formula."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    bounds = [t.isoformat(timespec="seconds") for t in (report.since, report.until)]
    for r in report.pairs:
        writer.writerow(
            [
                *bounds,
                spreadsheet_safe(r.user or ""),
                spreadsheet_safe(r.user_key or ""),
                spreadsheet_safe(r.model or ""),
                r.requests,
                r.tokens_in,
                r.tokens_out,
                "" if r.mean_ttft_s is None else round(r.mean_ttft_s, 4),
                "" if r.cost_usd is None else round(r.cost_usd, 6),
            ]
        )
    return out.getvalue()
