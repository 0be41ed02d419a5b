"""Usage limits (webapp.chat.limits), on SQLite and PostgreSQL, with a hand-driven clock (no sleeping)."""

from __future__ import annotations

import threading
import time

import pytest

from webapp.chat.limits import (
    DEFAULT_LEASE_S,
    GenerationInProgress,
    LeaseKeeper,
    ModelBusy,
    PromptTooLong,
    RateLimited,
    UsageLimits,
    check_prompt_length,
)
from webapp.settings import Settings

ALICE = "oidc:" + "a" * 64
BOB = "oidc:" + "b" * 64


@pytest.fixture
def limits(store):
    return UsageLimits(store, messages_per_minute=3, max_prompt_chars=10, max_conversations=5)


@pytest.mark.parametrize(
    ("prompt", "limit", "too_long"),
    [("", 1, False), ("abcde", 5, False), ("abcdef", 5, True), ("é" * 5, 5, False)],
)
def test_prompt_length(prompt, limit, too_long):
    if too_long:
        with pytest.raises(PromptTooLong) as err:
            check_prompt_length(prompt, limit)
        assert (err.value.limit, err.value.got) == (limit, len(prompt))
        assert f"{len(prompt):,} characters" in str(err.value)
    else:
        check_prompt_length(prompt, limit)


def test_limits_come_from_settings(store):
    settings = Settings(messages_per_minute=7, max_prompt_chars=99, max_conversations_per_user=3)
    lim = UsageLimits.from_settings(store, settings)
    assert (lim.messages_per_minute, lim.max_prompt_chars, lim.max_conversations) == (7, 99, 3)
    with pytest.raises(PromptTooLong):
        lim.check_prompt("x" * 100)


def test_rate_limit_is_a_sliding_minute_per_user(limits, clock):
    limits.record_message(ALICE)  # t=0
    clock.advance(20)
    limits.record_message(ALICE)  # t=20
    limits.record_message(ALICE)  # t=20
    clock.advance(10)  # t=30
    with pytest.raises(RateLimited) as err:
        limits.record_message(ALICE)
    assert err.value.retry_after_s == 30  # the t=0 message leaves the window at t=60
    assert "wait 30 s" in str(err.value)
    limits.record_message(BOB)  # others are not affected
    clock.advance(30.5)  # t=60.5: one slot free again; the refused try was not counted
    limits.record_message(ALICE)
    with pytest.raises(RateLimited) as err:
        limits.record_message(ALICE)
    assert err.value.retry_after_s == 20


def test_retry_after_is_at_least_one_second(limits, clock):
    for _ in range(3):
        limits.record_message(ALICE)
    clock.advance(59.9)
    with pytest.raises(RateLimited) as err:
        limits.record_message(ALICE)
    assert err.value.retry_after_s == 1


def test_one_generation_at_a_time_per_user(limits):
    lease = limits.acquire_generation(ALICE)
    with pytest.raises(GenerationInProgress):
        limits.acquire_generation(ALICE)
    other = limits.acquire_generation(BOB)
    limits.release_generation(lease)
    limits.release_generation(limits.acquire_generation(ALICE))
    limits.release_generation(other)


def test_a_dead_processs_lease_expires(limits, clock):
    stale = limits.acquire_generation(ALICE, lease_s=60)  # its process is then killed
    clock.advance(59)
    with pytest.raises(GenerationInProgress):
        limits.acquire_generation(ALICE)
    clock.advance(1)
    fresh = limits.acquire_generation(ALICE)
    # The dead holder can neither extend nor release the new holder's lease.
    assert limits.renew_generation(stale) is False
    limits.release_generation(stale)
    with pytest.raises(GenerationInProgress):
        limits.acquire_generation(ALICE)
    limits.release_generation(fresh)


def test_renewing_keeps_a_long_answer_going(limits, clock):
    lease = limits.acquire_generation(ALICE, lease_s=60)
    for _ in range(5):
        clock.advance(50)
        assert limits.renew_generation(lease, lease_s=60) is True
    with pytest.raises(GenerationInProgress):
        limits.acquire_generation(ALICE)


def test_context_manager_releases_even_on_error(limits):
    with pytest.raises(RuntimeError), limits.generation(ALICE):
        raise RuntimeError("stream broke")
    with limits.generation(ALICE) as lease:
        assert lease.owner == ALICE


# ---------------------------------------------------------------- the app-wide cap (issue 10)
GUESTS = [f"client:{n:064x}" for n in range(8)]


@pytest.fixture
def capped(store):
    return UsageLimits(
        store, messages_per_minute=3, max_prompt_chars=10, max_conversations=5,
        max_concurrent_generations=3,
    )  # fmt: skip


def test_the_cap_comes_from_settings(store):
    lim = UsageLimits.from_settings(store, Settings(max_concurrent_generations=4))
    assert lim.max_concurrent_generations == 4
    assert Settings().max_concurrent_generations == 32


def test_at_most_the_cap_of_answers_run_at_once_across_keys(capped):
    leases = [capped.acquire_generation(g) for g in GUESTS[:3]]
    with pytest.raises(ModelBusy) as err:
        capped.acquire_generation(GUESTS[3])
    assert err.value.running == 3
    assert "busy with 3 answers right now; try again in a few seconds" in str(err.value)
    assert capped.running_generations() == 3  # the refused try took nothing
    capped.release_generation(leases[0])
    leases.append(capped.acquire_generation(GUESTS[3]))
    assert capped.running_generations() == 3
    for lease in leases[1:]:
        capped.release_generation(lease)
    assert capped.running_generations() == 0


def test_a_key_with_an_answer_is_told_so_even_when_the_app_is_full(capped):
    for g in GUESTS[:3]:
        capped.acquire_generation(g)
    with pytest.raises(GenerationInProgress):
        capped.acquire_generation(GUESTS[0])


def test_expired_leases_do_not_count_against_the_cap(capped, clock):
    for g in GUESTS[:3]:
        capped.acquire_generation(g, lease_s=60)  # their processes are then killed
    clock.advance(59)
    with pytest.raises(ModelBusy):
        capped.acquire_generation(GUESTS[3])
    assert capped.running_generations() == 3
    clock.advance(1)
    assert capped.running_generations() == 0
    fresh = [capped.acquire_generation(g) for g in GUESTS[3:6]]
    assert len(fresh) == 3


def _take_slot(url, clock, barrier, key, results):
    """One replica: its own store (own engine and connections) on the shared database."""
    from webapp.store import ConversationStore

    replica = ConversationStore(url, clock=clock)
    limits = UsageLimits(
        replica, messages_per_minute=3, max_prompt_chars=10, max_conversations=5,
        max_concurrent_generations=2,
    )  # fmt: skip
    replica.migrated_engine()
    try:
        barrier.wait(timeout=30)
        limits.acquire_generation(key)
        results.append("taken")
    except ModelBusy:
        results.append("busy")
    finally:
        replica.dispose()


def test_replicas_taking_the_last_slots_at_once_never_exceed_the_cap(database_url, clock):
    """Eight replicas ask for one of two slots at the same moment: exactly two get one."""
    from webapp.store import ConversationStore

    setup = ConversationStore(database_url)
    setup.migrate()
    setup.dispose()
    barrier = threading.Barrier(len(GUESTS))
    results: list[str] = []
    threads = [
        threading.Thread(target=_take_slot, args=(database_url, clock, barrier, g, results))
        for g in GUESTS
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["busy"] * 6 + ["taken"] * 2


# ---------------------------------------------------------------- leases kept alive
def test_a_running_answer_keeps_its_slot_while_a_dead_ones_runs_out(limits, clock):
    """The keeper renews what its process still runs; a killed process renews nothing, so
    its user (or guest address) is blocked for one lease time only."""
    keeper = LeaseKeeper(limits, every_s=3600)  # rounds driven by hand below
    alive = limits.acquire_generation(ALICE, lease_s=DEFAULT_LEASE_S)
    limits.acquire_generation(BOB, lease_s=DEFAULT_LEASE_S)  # then its process is killed
    keeper.hold(alive)
    for _ in range(10):  # five minutes of a long answer
        clock.advance(DEFAULT_LEASE_S / 2)
        keeper.renew_now()
    with pytest.raises(GenerationInProgress):
        limits.acquire_generation(ALICE)
    limits.release_generation(limits.acquire_generation(BOB))  # the dead one ran out
    keeper.drop(alive)
    keeper.renew_now()
    clock.advance(DEFAULT_LEASE_S)
    limits.release_generation(limits.acquire_generation(ALICE))


def test_the_keeper_thread_renews_on_its_own(limits, clock):
    keeper = LeaseKeeper(limits, every_s=0.01)
    lease = limits.acquire_generation(ALICE, lease_s=DEFAULT_LEASE_S)
    keeper.hold(lease)
    clock.advance(DEFAULT_LEASE_S - 1)
    deadline = time.monotonic() + 30  # guards a hung test only
    while not _renewed(limits, lease):
        assert time.monotonic() < deadline, "never renewed"
        time.sleep(0.01)
    keeper.drop(lease)


def _renewed(limits, lease) -> bool:
    from sqlalchemy import select

    from webapp.store.models import generation_leases as L

    with limits.store.engine.connect() as conn:
        expires = conn.execute(select(L.c.expires_at).where(L.c.token == lease.token)).scalar()
    return expires is not None and expires > lease.expires_at
