"""AppTest of the admin usage section (webapp.admin.ui.usage.usage_section), on answers saved
the way the chat saves them (tests.support.usage_answers), down to the CSV the download
button serves."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1 import app_test as app_test_module

from tests.support.usage_answers import (
    ALICE,
    BOB,
    EVIL,
    GUEST_OWNER,
    LLAMA,
    QWEN,
    Ago,
    save_answer,
    seed_two_users_two_models,
)
from webapp.admin.ui.usage import NO_PRICE, UNAVAILABLE
from webapp.admin.usage import GUEST, short_key
from webapp.store import ConversationStore


def section(database_url: str, price: float | None, gpus: int | None) -> None:
    from webapp.admin.ui.usage import usage_section
    from webapp.settings import Settings
    from webapp.store import ConversationStore

    settings = Settings(database_url=database_url, gpu_hourly_price_usd=price)
    usage_section(ConversationStore(database_url), settings, gpus=gpus)


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def seeded(database_url):
    seed_two_users_two_models(database_url)
    return database_url


@pytest.fixture
def downloads(monkeypatch):
    """``read(button) -> MemoryFile``: what the browser gets when it follows a download
    button (``content``, ``mimetype``, ``filename``)."""
    storages: list[MemoryMediaFileStorage] = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, media_endpoint: str) -> None:
            super().__init__(media_endpoint)
            storages.append(self)

    monkeypatch.setattr(app_test_module, "MemoryMediaFileStorage", Recording)

    def read(button):
        return storages[-1].get_file(button.proto.url.rsplit("/", 1)[1])

    return read


def run(database_url, price=2.0, gpus=1) -> AppTest:
    at = AppTest.from_function(section, args=(database_url, price, gpus), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def _drawn_text(at) -> str:
    """Everything drawn as markdown (captions, headings, alerts): never a user's name."""
    kinds = ("markdown", "caption", "subheader", "info", "warning", "error")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def test_two_users_two_models_and_a_guest_table_and_csv(seeded, downloads):
    at = run(seeded)

    users = at.dataframe[0].value.to_dict("records")
    assert users == [
        {"user": "alice@example.com", "key": short_key(ALICE.key), "requests": 3,
         "tokens in": 190, "tokens out": 310, "mean TTFT (s)": pytest.approx(0.533),
         "est. cost (USD)": 24.0},
        {"user": EVIL, "key": short_key(BOB.key), "requests": 1, "tokens in": 200,
         "tokens out": 200, "mean TTFT (s)": 0.3, "est. cost (USD)": 19.2},
        {"user": GUEST, "key": short_key(GUEST_OWNER.limits_key), "requests": 1,
         "tokens in": 60, "tokens out": 40, "mean TTFT (s)": 2.0, "est. cost (USD)": 4.8},
    ]  # fmt: skip
    models = at.dataframe[1].value.to_dict("records")
    assert models == [
        {"model": LLAMA, "requests": 3, "tokens in": 350, "tokens out": 450,
         "mean TTFT (s)": 0.3, "est. cost (USD)": 38.4},
        {"model": QWEN, "requests": 2, "tokens in": 100, "tokens out": 100,
         "mean TTFT (s)": 1.5, "est. cost (USD)": 9.6},
    ]  # fmt: skip
    assert at.number_input(key="usage_gpu_hours_Last day").value == 24.0
    assert "estimated cost $48.00" in _drawn_text(at)
    assert "an estimate, not a bill" in _drawn_text(at)
    assert "HYPERLINK" not in _drawn_text(at) and "Bob" not in _drawn_text(at)

    (button,) = at.get("download_button")
    download = downloads(button)
    assert download.mimetype == "text/csv"
    assert re.fullmatch(r"usage-\d{8}-\d{4}-\d{8}-\d{4}\.csv", download.filename)
    rows = list(csv.DictReader(io.StringIO(download.content.decode())))
    got = [(r["user"], r["user_key"], r["model"], r["requests"], r["tokens_in"],
            r["tokens_out"], r["est_cost_usd"]) for r in rows]  # fmt: skip
    assert got == [
        ("'" + EVIL, short_key(BOB.key), LLAMA, "1", "200", "200", "19.2"),
        ("alice@example.com", short_key(ALICE.key), LLAMA, "2", "150", "250", "19.2"),
        ("alice@example.com", short_key(ALICE.key), QWEN, "1", "40", "60", "4.8"),
        (GUEST, short_key(GUEST_OWNER.limits_key), QWEN, "1", "60", "40", "4.8"),
    ]


def test_the_last_week_adds_older_answers_and_its_gpu_hours(seeded):
    at = run(seeded)
    at.radio(key="usage_period").set_value("Last week").run()

    assert at.number_input(key="usage_gpu_hours_Last week").value == 168.0
    users = {r["key"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert users[short_key(BOB.key)]["requests"] == 2
    assert users[short_key(BOB.key)]["tokens in"] == 700
    # 2000 tokens share 168 h x $2: Bob has 1400 of them
    assert users[short_key(BOB.key)]["est. cost (USD)"] == pytest.approx(235.2)


def test_the_admin_corrects_the_gpu_hours_and_the_cost_follows(seeded):
    at = run(seeded, gpus=None)
    assert at.number_input(key="usage_gpu_hours_Last day").value == 0.0

    at.number_input(key="usage_gpu_hours_Last day").set_value(10.0).run()

    assert [r["est. cost (USD)"] for r in at.dataframe[1].value.to_dict("records")] == [16.0, 4.0]


def test_without_a_price_the_tables_show_no_cost_and_say_how_to_get_one(seeded):
    at = run(seeded, price=None)

    assert NO_PRICE in _drawn_text(at)
    assert not at.number_input
    for table in at.dataframe:
        assert table.value["est. cost (USD)"].isna().all()
    assert at.dataframe[0].value["requests"].sum() == 5


def test_an_empty_period_says_so(database_url):
    store = ConversationStore(database_url, clock=Ago(timedelta(days=3)))
    save_answer(store, ALICE, LLAMA, 1, 1, 0.1)  # outside the last day
    store.dispose()

    at = run(database_url)

    assert [i.value for i in at.info] == ["No answers were saved in the last day."]
    assert not at.dataframe and not at.get("download_button")


def test_huge_and_garbage_stats_are_left_out_and_said(database_url, downloads):
    store = ConversationStore(database_url)
    conv = store.create_conversation(BOB.key).id
    for meta in [
        {"model": LLAMA, "prompt_tokens": 10**30, "completion_tokens": 2**70, "ttft_s": 1e308},
        {"model": "-" + QWEN, "prompt_tokens": "many", "completion_tokens": 5, "user": "=1+1"},
    ]:
        store.add_message(BOB.key, conv, "assistant", "x", "complete", meta)
    store.dispose()

    at = run(database_url)

    assert at.dataframe[0].value.to_dict("records") == [
        {"user": "=1+1", "key": short_key(BOB.key), "requests": 2, "tokens in": 0,
         "tokens out": 5, "mean TTFT (s)": None, "est. cost (USD)": 48.0},
    ]  # fmt: skip
    assert "2 answer(s) had token counts or times that are not usable" in _drawn_text(at)
    rows = list(
        csv.DictReader(io.StringIO(downloads(at.get("download_button")[0]).content.decode()))
    )
    assert [(r["user"], r["model"]) for r in rows] == [("'=1+1", "'-" + QWEN), ("'=1+1", LLAMA)]


def test_a_database_that_cannot_be_read_is_a_plain_message(tmp_path):
    (tmp_path / "file").write_text("")

    at = run(f"sqlite:///{tmp_path / 'file' / 'app.db'}")

    assert [w.value for w in at.warning] == [UNAVAILABLE]
    assert not at.dataframe
