"""Usage roll-up, cost estimate and CSV (webapp.admin.usage): table-driven, no database."""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from webapp.access.identity import UNKNOWN_CLIENT, client_limits_key
from webapp.admin.usage import (
    CSV_COLUMNS,
    GUEST,
    GUEST_UNKNOWN_ADDRESS,
    MAX_TOKENS_PER_ANSWER,
    SIGNED_IN,
    UNKNOWN_MODEL,
    Pricing,
    default_gpu_hours,
    model_table,
    period_bounds,
    short_key,
    spreadsheet_safe,
    summarize,
    usage_csv,
    user_table,
)
from webapp.settings import Settings
from webapp.store.usage import AnswerUsage

SINCE = datetime(2025, 3, 1, 12, 0)
UNTIL = SINCE + timedelta(days=1)
ALICE = "oidc:" + "a" * 64
BOB = "oidc:" + "b" * 64
GUEST_KEY = client_limits_key("203.0.113.7")


def ans(key=ALICE, model="m1", tin=None, tout=None, ttft=None, user=None, minute=0):
    return AnswerUsage(key, SINCE + timedelta(minutes=minute), model, tin, tout, ttft, user)


# --- what counts as a usable number -----------------------------------------------------

# (prompt_tokens, completion_tokens, ttft_s) -> (tokens in, tokens out, mean ttft, unreadable)
STATS = [
    ((12, 30, 0.25), (12, 30, 0.25, 0)),
    ((None, None, None), (0, 0, None, 0)),
    ((12.0, 30.0, 1), (12, 30, 1.0, 0)),
    ((0, 0, 0), (0, 0, 0.0, 0)),
    ((MAX_TOKENS_PER_ANSWER, 1, 86_400), (MAX_TOKENS_PER_ANSWER, 1, 86_400.0, 0)),
    ((MAX_TOKENS_PER_ANSWER + 1, 5, None), (0, 5, None, 1)),
    ((10**30, 2**63 + 5, None), (0, 0, None, 1)),
    ((1e300, math.inf, math.nan), (0, 0, None, 1)),
    ((-1, 5, -0.5), (0, 5, None, 1)),
    ((12.5, 3, 86_401), (0, 3, None, 1)),
    (("12", [30], "0.2"), (0, 0, None, 1)),
    ((True, False, True), (0, 0, None, 1)),
    (({"n": 1}, 3, {"s": 1}), (0, 3, None, 1)),
]


@pytest.mark.parametrize(("stored", "expected"), STATS, ids=[repr(s) for s, _ in STATS])
def test_only_plausible_numbers_are_summed_and_the_rest_is_counted_unreadable(stored, expected):
    report = summarize([ans(tin=stored[0], tout=stored[1], ttft=stored[2])], SINCE, UNTIL)

    row = report.total
    assert (row.requests, row.tokens_in, row.tokens_out, row.mean_ttft_s, report.unreadable) == (
        1, *expected
    )  # fmt: skip


def test_mean_time_to_first_token_is_over_the_answers_that_have_one():
    answers = [ans(ttft=0.2), ans(ttft=0.4), ans(ttft=None), ans(model="m2", ttft=3.0)]

    report = summarize(answers, SINCE, UNTIL)

    assert [(r.model, r.requests, r.mean_ttft_s) for r in report.models] == [
        ("m1", 3, pytest.approx(0.3)),
        ("m2", 1, 3.0),
    ]
    assert report.total.mean_ttft_s == pytest.approx(3.6 / 3)


# --- two users, two models, the cost shared by tokens -----------------------------------

TWO_BY_TWO = [
    ans(ALICE, "m1", 100, 300, 0.5, "alice@example.com"),
    ans(ALICE, "m2", 50, 50, 1.5, "alice@example.com", minute=1),
    ans(BOB, "m1", 200, 200, 1.0, "Bob", minute=2),
    ans(BOB, "m1", 60, 40, None, "Bob", minute=3),
]  # 1000 tokens: alice 500, bob 500; m1 900, m2 100


def test_per_user_per_model_and_per_pair_with_the_cost_shared_by_tokens():
    report = summarize(TWO_BY_TWO, SINCE, UNTIL, Pricing(gpu_hourly_usd=2.0, gpu_hours=24))

    assert user_table(report) == [
        {"user": "alice@example.com", "key": short_key(ALICE), "requests": 2, "tokens in": 150,
         "tokens out": 350, "mean TTFT (s)": 1.0, "est. cost (USD)": 24.0},
        {"user": "Bob", "key": short_key(BOB), "requests": 2, "tokens in": 260,
         "tokens out": 240, "mean TTFT (s)": 1.0, "est. cost (USD)": 24.0},
    ]  # fmt: skip
    assert model_table(report) == [
        {"model": "m1", "requests": 3, "tokens in": 360, "tokens out": 540,
         "mean TTFT (s)": 0.75, "est. cost (USD)": 43.2},
        {"model": "m2", "requests": 1, "tokens in": 50, "tokens out": 50,
         "mean TTFT (s)": 1.5, "est. cost (USD)": 4.8},
    ]  # fmt: skip
    assert [(r.user, r.model, r.tokens, r.cost_usd) for r in report.pairs] == [
        ("alice@example.com", "m1", 400, pytest.approx(19.2)),
        ("alice@example.com", "m2", 100, pytest.approx(4.8)),
        ("Bob", "m1", 500, pytest.approx(24.0)),
    ]
    for rows in (report.pairs, report.users, report.models):
        assert sum(r.cost_usd for r in rows) == pytest.approx(48.0)
    assert report.total.cost_usd == pytest.approx(48.0)


@pytest.mark.parametrize(
    ("answers", "pricing"),
    [
        (TWO_BY_TWO, None),  # no price configured
        ([ans(tin=0, tout=0), ans(model="m2")], Pricing(2.0, 24)),  # no tokens to share by
        ([], Pricing(2.0, 24)),  # nothing in the period
    ],
    ids=["no-price", "no-tokens", "empty"],
)
def test_no_cost_is_shown_when_it_cannot_be_shared(answers, pricing):
    report = summarize(answers, SINCE, UNTIL, pricing)

    assert all(r.cost_usd is None for r in (*report.pairs, *report.users, *report.models))
    assert report.total.cost_usd is None


def test_an_empty_period_is_an_empty_report():
    report = summarize([], SINCE, UNTIL, Pricing(2.0, 24))

    assert (report.pairs, report.users, report.models, report.unreadable) == ((), (), (), 0)
    assert (report.total.requests, report.total.tokens, report.total.mean_ttft_s) == (0, 0, None)
    assert usage_csv(report).splitlines() == [",".join(f'"{c}"' for c in CSV_COLUMNS)]


@pytest.mark.parametrize(
    ("price", "hours"),
    [(-0.01, 1), (1, -1), (math.nan, 1), (1, math.inf), ("2", 1), (1e300, 1e300)],
)
def test_pricing_refuses_what_is_not_a_finite_amount(price, hours):
    with pytest.raises(ValueError):
        Pricing(gpu_hourly_usd=price, gpu_hours=hours)


@pytest.mark.parametrize(
    ("gpus", "period", "hours"),
    [
        (2, "Last day", 48.0),
        (1, "Last week", 168.0),
        (None, "Last day", 0.0),
        (-3, "Last week", 0.0),
    ],
)
def test_default_gpu_hours_are_the_gpus_through_the_whole_period(gpus, period, hours):
    assert default_gpu_hours(gpus, period) == hours


def test_periods_end_now():
    now = datetime(2025, 3, 8, 9, 30)
    assert period_bounds(now, "Last day") == (datetime(2025, 3, 7, 9, 30), now)
    assert period_bounds(now, "Last week") == (datetime(2025, 3, 1, 9, 30), now)
    with pytest.raises(KeyError):
        period_bounds(now, "Last century")


# --- who: what an admin may see ----------------------------------------------------------

# (user key, names stored with the answers, oldest first) -> shown name
WHO = [
    (ALICE, ["alice@example.com"], "alice@example.com"),
    (ALICE, ["Alice", None, "alice@example.com", ""], "alice@example.com"),  # the latest wins
    (ALICE, [None], SIGNED_IN),
    (ALICE, [42], SIGNED_IN),  # not text
    (ALICE, ["  "], SIGNED_IN),
    (GUEST_KEY, [None], GUEST),
    (GUEST_KEY, ["mallory@example.com"], GUEST),  # a guest cannot name themselves
    ("anon:" + "Zx9" * 8, [None], GUEST),  # an old conversation without a limits key
    (UNKNOWN_CLIENT, [None], GUEST_UNKNOWN_ADDRESS),
    (ALICE, ["**Eve**\u202e \n![x](http://e/x.png)"], "**Eve** ![x](http://e/x.png)"),
    (ALICE, ["A" * 500], "A" * 119 + "…"),
]


@pytest.mark.parametrize(("key", "stored", "shown"), WHO)
def test_users_are_shown_by_the_name_stored_as_one_plain_line_and_a_short_hash(key, stored, shown):
    report = summarize([ans(key, user=u, minute=i) for i, u in enumerate(stored)], SINCE, UNTIL)

    (row,) = report.users
    assert (row.user, row.user_key) == (shown, short_key(key))
    assert key.split(":", 1)[1][:8] not in row.user_key  # never the key itself
    assert len(row.user_key) == 10


@pytest.mark.parametrize(
    ("stored", "shown"),
    [("m1", "m1"), (None, UNKNOWN_MODEL), ("", UNKNOWN_MODEL), (5, UNKNOWN_MODEL),
     ("org/model\n`x`", "org/model `x`")],
)  # fmt: skip
def test_models_are_shown_as_one_plain_line(stored, shown):
    (row,) = summarize([ans(model=stored)], SINCE, UNTIL).models
    assert row.model == shown


# --- CSV ---------------------------------------------------------------------------------

SAFE = [
    ("alice@example.com", "alice@example.com"),
    ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
    ("+1", "'+1"),
    ("-1+2", "'-1+2"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("＝1+1", "'＝1+1"),
    ("a=b", "a=b"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "safe"), SAFE)
def test_spreadsheet_safe(text, safe):
    assert spreadsheet_safe(text) == safe


def test_csv_has_one_row_per_user_and_model_with_guarded_text_cells():
    answers = [
        *TWO_BY_TWO,
        ans(GUEST_KEY, "-m3", 5, 5, 0.1, minute=4),
        ans(BOB, "=cmd|' /C calc'!A0", 10**30, 1, None, '=HYPERLINK("x","a,b")', minute=5),
    ]
    report = summarize(answers, SINCE, UNTIL, Pricing(2.0, 24))

    rows = list(csv.DictReader(io.StringIO(usage_csv(report))))

    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["user"], r["model"], r["requests"], r["tokens_in"], r["tokens_out"]) for r in rows] == [
        ("'=HYPERLINK(\"x\",\"a,b\")", "'=cmd|' /C calc'!A0", "1", "0", "1"),
        ("'=HYPERLINK(\"x\",\"a,b\")", "m1", "2", "260", "240"),
        ("alice@example.com", "m1", "1", "100", "300"),
        ("alice@example.com", "m2", "1", "50", "50"),
        ("Guest", "'-m3", "1", "5", "5"),
    ]  # fmt: skip
    assert {(r["period_start_utc"], r["period_end_utc"]) for r in rows} == {
        ("2025-03-01T12:00:00", "2025-03-02T12:00:00")
    }
    assert sum(float(r["est_cost_usd"]) for r in rows) == pytest.approx(48.0)
    assert rows[4]["mean_ttft_s"] == "0.1" and rows[0]["mean_ttft_s"] == ""
    assert report.unreadable == 1


# --- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "price"), [(None, None), ("", None), ("  ", None), ("2.5", 2.5), ("0", 0.0)])  # fmt: skip
def test_gpu_hourly_price_setting(monkeypatch, env, price):
    monkeypatch.delenv("GPU_HOURLY_PRICE_USD", raising=False)
    if env is not None:
        monkeypatch.setenv("GPU_HOURLY_PRICE_USD", env)
    assert Settings().gpu_hourly_price_usd == price


@pytest.mark.parametrize("env", ["-1", "nan", "inf", "1e9", "two dollars"])
def test_gpu_hourly_price_setting_refuses_what_is_not_a_price(monkeypatch, env):
    monkeypatch.setenv("GPU_HOURLY_PRICE_USD", env)
    with pytest.raises(ValidationError, match="gpu_hourly_price_usd"):
        Settings()
