"""ProviderBudget against a real Redis: one paced budget shared by every worker."""

from __future__ import annotations

import threading
import time

import pytest

from tasks.budget import (
    COOLDOWN_KEY,
    PACE_KEY,
    PACING_MARGIN,
    SUBMIT_SHARE,
    ProviderBudget,
)
from workers.settings import Settings

CLOCK_SLACK_S = 0.03  # between Redis setting or expiring a key and our clock reading it


@pytest.fixture
def make_budget(redis_url, redis_client):
    """Build ``ProviderBudget``s (one per simulated worker) on the test's Redis."""

    def make(**overrides) -> ProviderBudget:
        settings = Settings(redis_url=redis_url, **overrides)
        return ProviderBudget(settings, redis_client)

    return make


def run_for(budgets, provider: str, seconds: float, *, submit: bool) -> list[float]:
    """Call ``try_acquire`` in a tight loop, workers taking turns; return grant times."""
    granted, i = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if budgets[i % len(budgets)].try_acquire(provider, submit=submit):
            granted.append(time.monotonic())
        i += 1
    return granted


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_interval_is_the_rate_with_a_margin(make_budget):
    budget = make_budget(picwish_max_rps=2, hitpaw_max_rps=0.5)
    assert budget.interval_s("picwish") == pytest.approx(PACING_MARGIN / 2)
    assert budget.interval_s("hitpaw") == pytest.approx(PACING_MARGIN * 2)


def test_two_workers_together_send_evenly_spaced_requests(make_budget):
    workers = [make_budget(picwish_max_rps=10), make_budget(picwish_max_rps=10)]
    granted = run_for(workers, "picwish", 1.0, submit=False)

    interval = workers[0].interval_s("picwish")
    assert 5 <= len(granted) <= 1.0 / interval + 1
    assert min(gaps(granted)) >= interval - CLOCK_SLACK_S


def test_workers_in_threads_never_crowd_a_second(make_budget):
    workers = [make_budget(picwish_max_rps=4) for _ in range(6)]
    granted: list[float] = []
    lock = threading.Lock()

    def work(budget):
        for t in run_for([budget], "picwish", 1.5, submit=False):
            with lock:
                granted.append(t)

    threads = [threading.Thread(target=work, args=(b,)) for b in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    granted.sort()
    assert min(gaps(granted)) >= workers[0].interval_s("picwish") - CLOCK_SLACK_S
    for i, start in enumerate(granted):  # no one-second span holds more than max_rps
        assert sum(1 for t in granted[i:] if t - start < 1.0) <= 4


def test_providers_have_separate_budgets(make_budget):
    budget = make_budget()
    assert budget.try_acquire("picwish", submit=False)
    assert not budget.try_acquire("picwish", submit=False)
    assert budget.try_acquire("hitpaw", submit=False)


def test_cool_down_blocks_every_worker_until_retry_after(make_budget):
    first, second = make_budget(), make_budget()
    first.back_off("hitpaw", retry_after_s=0.3)

    assert not first.try_acquire("hitpaw", submit=False)
    assert not second.try_acquire("hitpaw", submit=True)
    assert 0.25 <= second.wait_s("hitpaw") <= 0.3 + second.interval_s("hitpaw")
    time.sleep(0.35)
    assert second.try_acquire("hitpaw", submit=False, booked=True), "back at its booked turn"


@pytest.mark.parametrize(("retry_after_s", "expected_ms"), [
    (None, 1000), (0, 1000), (0.0004, 1), (10_000, 5000),
])
def test_cool_down_length(make_budget, redis_client, retry_after_s, expected_ms):
    budget = make_budget(max_countdown_s=5, visibility_timeout_s=60)
    budget.back_off("picwish", retry_after_s)
    assert expected_ms - 50 <= redis_client.pttl(COOLDOWN_KEY + "picwish") <= expected_ms


def test_submits_take_at_most_their_share_and_polls_the_rest(make_budget):
    budget = make_budget(picwish_max_rps=10)
    submits, polls = [], []
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        if budget.try_acquire("picwish", submit=True):
            submits.append(time.monotonic())
        elif budget.try_acquire("picwish", submit=False):
            polls.append(time.monotonic())

    interval = budget.interval_s("picwish")
    assert min(gaps(submits)) >= interval / SUBMIT_SHARE - CLOCK_SLACK_S
    assert len(polls) >= len(submits) - 1, "the slots submits may not take go to polls"
    assert min(gaps(sorted(submits + polls))) >= interval - CLOCK_SLACK_S


def test_submit_wait_is_the_time_to_the_next_free_submit_slot(make_budget):
    budget = make_budget(picwish_max_rps=2)
    assert budget.submit_wait_s("picwish") == 0
    assert budget.try_acquire("picwish", submit=True)

    submit_interval = budget.interval_s("picwish") / SUBMIT_SHARE
    assert submit_interval - CLOCK_SLACK_S <= budget.submit_wait_s("picwish") <= submit_interval + 0.001
    budget.back_off("picwish", 10)
    assert 9.9 <= budget.submit_wait_s("picwish") <= 10, "the cool-down counts too"


def test_refused_polls_are_booked_one_turn_apart(make_budget):
    budget = make_budget(picwish_max_rps=2, max_countdown_s=60)
    assert budget.try_acquire("picwish", submit=False)

    polls = [budget.wait_s("picwish") for _ in range(20)]

    assert polls[0] <= budget.interval_s("picwish")
    assert gaps(polls) == pytest.approx([budget.interval_s("picwish")] * 19, abs=CLOCK_SLACK_S)


def test_turns_start_after_the_cool_down(make_budget):
    budget = make_budget(picwish_max_rps=2)
    budget.back_off("picwish", 2.0)
    waits = [budget.wait_s("picwish") for _ in range(3)]
    assert 1.9 <= waits[0] <= 2.0
    assert gaps(waits) == pytest.approx([budget.interval_s("picwish")] * 2, abs=CLOCK_SLACK_S)


def test_nothing_is_booked_past_the_countdown_ceiling(make_budget, redis_client):
    budget = make_budget(picwish_max_rps=0.2, max_countdown_s=20, visibility_timeout_s=80)
    waits = [budget.wait_s("picwish") for _ in range(5)]  # 5.25 s apart
    step = budget.interval_s("picwish")
    assert waits[:4] == pytest.approx([0.001, step, 2 * step, 3 * step], abs=CLOCK_SLACK_S)
    assert waits[4:] == [20.0]


def test_a_task_refused_at_its_turn_keeps_its_place_at_the_front(make_budget, redis_client):
    budget = make_budget(picwish_max_rps=2)
    assert budget.try_acquire("picwish", submit=False)  # the pace mark is now set
    booked = [budget.wait_s("picwish") for _ in range(3)]

    again = budget.wait_s("picwish", waited=True)

    pace_left_s = redis_client.pttl(PACE_KEY + "picwish") / 1000
    assert pace_left_s - 0.01 <= again <= pace_left_s + budget.interval_s("picwish") / 4 + 0.01
    assert budget.wait_s("picwish") == pytest.approx(booked[-1] + budget.interval_s("picwish"),
                                                     abs=CLOCK_SLACK_S), "the chain did not move"


def test_a_fresh_request_does_not_jump_a_booked_turn(make_budget):
    budget = make_budget(picwish_max_rps=5)
    assert budget.try_acquire("picwish", submit=False)
    booked_s = budget.wait_s("picwish")  # a refused poll books the next turn
    time.sleep(booked_s + 0.02)

    assert not budget.try_acquire("picwish", submit=False), "the booked poll goes first"
    assert not budget.try_acquire("picwish", submit=True)
    assert budget.try_acquire("picwish", submit=False, booked=True)


def test_the_window_counts_when_requests_were_sent(make_budget):
    budget = make_budget(picwish_max_rps=2)
    n, window_ms = budget.window("picwish")
    assert (n, window_ms) == (2, round(2 * budget.interval_s("picwish") * 1000))
    budget.mark_sent("picwish", "job-a")  # say admission took job a's place now
    time.sleep(0.1)
    budget.mark_sent("picwish", "job-b")
    time.sleep(0.2)
    budget.mark_sent("picwish", "job-a")  # a's submit really went only now: its place moves

    expected = window_ms / 1000 - 0.2  # the window is full until b's send + the window
    assert expected - CLOCK_SLACK_S <= budget.submit_wait_s("picwish") <= expected + 0.005
    assert not budget.try_acquire("picwish", submit=False)


def test_a_request_sent_late_does_not_hold_back_the_next_turn(make_budget):
    budget = make_budget(picwish_max_rps=2)
    interval = budget.interval_s("picwish")
    assert budget.try_acquire("picwish", submit=False)
    first, second = budget.wait_s("picwish"), budget.wait_s("picwish")  # two polls book turns
    assert second == pytest.approx(first + interval, abs=CLOCK_SLACK_S)

    time.sleep(first + 0.15)  # the first comes back late (a busy worker) ...
    assert budget.try_acquire("picwish", submit=False, booked=True)
    time.sleep(second - first - 0.15 + 0.01)  # ... the second on time: the window allows it
    assert budget.try_acquire("picwish", submit=False, booked=True)


def test_no_window_holds_more_requests_than_the_cap(make_budget):
    budget = make_budget(picwish_max_rps=4)
    granted: list[float] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # everyone comes back "booked": only the window holds
        if budget.try_acquire("picwish", submit=False, booked=True):
            granted.append(time.monotonic())
    _, window_ms = budget.window("picwish")
    assert len(granted) >= 6
    for i, start in enumerate(granted):
        assert sum(1 for t in granted[i:] if t - start < window_ms / 1000 - CLOCK_SLACK_S) <= 4
    assert min(gaps(granted)) >= budget.gap_ms("picwish") / 1000 - CLOCK_SLACK_S
