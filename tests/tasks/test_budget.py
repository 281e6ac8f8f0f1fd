"""ProviderBudget against a real Redis: one budget shared by every worker."""

from __future__ import annotations

import threading
import time

import pytest

from storage.jobs import JobRecord, JobSource, JobState, JobStore, in_states
from tasks.budget import COOLDOWN_KEY, MIN_WAIT_S, SUBMIT_HEADROOM, ProviderBudget, rate_item
from workers.settings import Settings

WINDOW_S = 1.0
MARGIN_S = 0.1  # kept off the window edge, for the time between a call and its timestamp


@pytest.fixture
def make_budget(redis_url, redis_client):
    """Build ``ProviderBudget``s (one per simulated worker) on the test's Redis."""

    def make(**overrides) -> ProviderBudget:
        settings = Settings(redis_url=redis_url, **overrides)
        return ProviderBudget(settings, redis_client, JobStore(redis_client))

    return make


def assert_within_rate(times: list[float], max_rps: int) -> None:
    """No span shorter than the window holds more than ``max_rps`` of ``times``."""
    times = sorted(times)
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t - start < WINDOW_S - MARGIN_S]
        assert len(in_window) <= max_rps, (start, in_window)


def burst(budgets: list[ProviderBudget], provider: str, attempts: int, *, submit: bool) -> list:
    """Call ``try_acquire`` in a tight loop, taking turns; return when each one succeeded."""
    granted = []
    for i in range(attempts):
        if budgets[i % len(budgets)].try_acquire(provider, submit=submit):
            granted.append(time.time())
    return granted


def add_jobs(store: JobStore, provider: str, state: JobState, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        record, _ = store.create(JobRecord(provider=provider, model="m",
                                           source=JobSource(uri="https://example.com/a.png")))
        store.update(record.id, in_states(JobState.QUEUED), lambda r: {"state": state})
        ids.append(record.id)
    return ids


# --- the window item -----------------------------------------------------------------


def test_rate_item_per_second():
    item = rate_item(5)
    assert (item.amount, item.get_expiry()) == (5, 1)


def test_rate_item_rounds_a_fractional_rate_down():
    assert rate_item(2.7).amount == 2


def test_rate_item_below_one_per_second_spreads_the_window():
    item = rate_item(0.25)
    assert (item.amount, item.get_expiry()) == (1, 4)
    assert rate_item(0.3).get_expiry() == 4  # one per 3.33 s, rounded to the slower side


# --- the shared window ---------------------------------------------------------------


def test_two_workers_together_stay_within_max_rps(make_budget):
    workers = [make_budget(picwish_max_rps=4), make_budget(picwish_max_rps=4)]
    granted = burst(workers, "picwish", 40, submit=False)
    assert len(granted) >= 4  # the budget is there to be used
    assert_within_rate(granted, 4)


def test_two_workers_in_threads_stay_within_max_rps(make_budget):
    workers = [make_budget(hitpaw_max_rps=5), make_budget(hitpaw_max_rps=5)]
    granted, lock = [], threading.Lock()

    def hammer(budget):
        times = burst([budget], "hitpaw", 30, submit=False)
        with lock:
            granted.extend(times)

    threads = [threading.Thread(target=hammer, args=(workers[i % 2],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) >= 5
    assert_within_rate(granted, 5)


def test_providers_have_separate_budgets(make_budget):
    budget = make_budget(picwish_max_rps=2, hitpaw_max_rps=2)
    assert len(burst([budget], "picwish", 10, submit=False)) <= 2
    assert burst([budget], "hitpaw", 1, submit=False) != []


def test_wait_s_reports_the_window_reset_when_spent(make_budget):
    budget = make_budget(picwish_max_rps=2)
    burst([budget], "picwish", 5, submit=False)
    assert not budget.try_acquire("picwish", submit=False)
    assert MIN_WAIT_S <= budget.wait_s("picwish") <= WINDOW_S


# --- the 429 cool-down ---------------------------------------------------------------


def test_cool_down_blocks_every_worker(make_budget):
    first, second = make_budget(), make_budget()
    first.back_off("picwish", 30)
    for budget in (first, second):
        assert not budget.try_acquire("picwish", submit=False)
        assert not budget.try_acquire("picwish", submit=True)
        assert 29 < budget.wait_s("picwish") <= 30
    assert second.try_acquire("hitpaw", submit=False)  # the other provider is unaffected


def test_cool_down_ends_after_retry_after(make_budget):
    first, second = make_budget(), make_budget()
    first.back_off("hitpaw", 0.2)
    assert not second.try_acquire("hitpaw", submit=False)
    time.sleep(0.3)
    assert second.try_acquire("hitpaw", submit=False)


def test_cool_down_without_retry_after_lasts_a_second(make_budget, redis_client):
    make_budget().back_off("picwish", None)
    assert 900 < redis_client.pttl(COOLDOWN_KEY + "picwish") <= 1000


def test_a_sub_millisecond_retry_after_still_cools_down(make_budget, redis_client):
    # an HTTP-date Retry-After read a few microseconds before that date
    budget = make_budget()
    budget.back_off("hitpaw", 0.0004)
    assert redis_client.pttl(COOLDOWN_KEY + "hitpaw") <= 1
    time.sleep(0.01)
    assert budget.try_acquire("hitpaw", submit=False)


def test_cool_down_is_capped_at_max_countdown(make_budget, redis_client):
    make_budget(max_countdown_s=20, visibility_timeout_s=900).back_off("picwish", 86400)
    assert 19_000 < redis_client.pttl(COOLDOWN_KEY + "picwish") <= 20_000


def test_cool_down_takes_nothing_from_the_window(make_budget):
    budget = make_budget(picwish_max_rps=3)
    budget.back_off("picwish", 0.1)
    assert burst([budget], "picwish", 5, submit=False) == []
    time.sleep(0.15)
    assert len(burst([budget], "picwish", 5, submit=False)) == 3


# --- submits leave headroom; in-flight cap -------------------------------------------


def test_submits_leave_headroom_for_polls(make_budget):
    budget = make_budget(picwish_max_rps=4)
    submits = burst([budget], "picwish", 10, submit=True)
    assert len(submits) == 4 - SUBMIT_HEADROOM
    assert budget.try_acquire("picwish", submit=False)  # the poll gets the last slot
    assert not budget.try_acquire("picwish", submit=False)


def test_polls_may_spend_the_whole_window(make_budget):
    budget = make_budget(picwish_max_rps=3)
    assert len(burst([budget], "picwish", 10, submit=False)) == 3
    assert not budget.try_acquire("picwish", submit=True)


def test_one_request_per_second_still_allows_a_submit(make_budget):
    budget = make_budget(picwish_max_rps=1)
    assert budget.try_acquire("picwish", submit=True)
    assert not budget.try_acquire("picwish", submit=False)


def test_in_flight_cap_refuses_submits_not_polls(make_budget, redis_client):
    budget = make_budget(picwish_max_in_flight=2, picwish_max_rps=50)
    store = JobStore(redis_client)
    add_jobs(store, "picwish", JobState.SUBMITTED, 1)
    processing = add_jobs(store, "picwish", JobState.PROCESSING, 1)
    add_jobs(store, "hitpaw", JobState.PROCESSING, 5)  # another provider's jobs don't count

    assert not budget.try_acquire("picwish", submit=True)
    assert budget.try_acquire("picwish", submit=False)
    assert budget.try_acquire("hitpaw", submit=True)

    store.update(processing[0], in_states(JobState.PROCESSING),
                 lambda r: {"state": JobState.STORING})
    assert budget.try_acquire("picwish", submit=True)


def test_a_refused_submit_spends_no_budget(make_budget, redis_client):
    budget = make_budget(picwish_max_in_flight=1, picwish_max_rps=2)
    add_jobs(JobStore(redis_client), "picwish", JobState.SUBMITTED, 1)
    assert burst([budget], "picwish", 5, submit=True) == []
    assert len(burst([budget], "picwish", 5, submit=False)) == 2
