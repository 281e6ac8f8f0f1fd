"""ProviderBudget against a real Redis: one paced budget shared by every worker."""

from __future__ import annotations

import math
import threading
import time

import pytest

from tasks.budget import (
    APPT_KEY,
    COOLDOWN_KEY,
    PACE_KEY,
    PACING_MARGIN,
    SENT_KEY,
    SUBMIT_SHARE,
    TURN_KEY,
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


def booked(call, n: int) -> list[tuple[float, float]]:
    """Call ``call`` (it answers a wait in seconds) n times; return each answer as the
    earliest and latest monotonic time it can name, however slowly the machine ran."""
    turns = []
    for _ in range(n):
        before = time.monotonic()
        wait = call()
        turns.append((before + wait, time.monotonic() + wait))
    return turns


def assert_apart(turns: list[tuple[float, float]], step: float) -> None:
    """Each turn ``step`` after the one before, to the millisecond the budget rounds to."""
    for (lo, hi), (next_lo, next_hi) in zip(turns, turns[1:], strict=False):
        assert next_lo - hi - 0.002 <= step <= next_hi - lo + 0.002


Grant = tuple[float, float]  # a grant happened between these two monotonic readings


def acquired(budget, provider: str, **kwargs) -> Grant | None:
    before = time.monotonic()
    return (before, time.monotonic()) if budget.try_acquire(provider, **kwargs) else None


def run_for(budgets, provider: str, seconds: float, *, submit: bool) -> list[Grant]:
    """Call ``try_acquire`` in a tight loop, workers taking turns; return the grants."""
    granted, i = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if grant := acquired(budgets[i % len(budgets)], provider, submit=submit):
            granted.append(grant)
        i += 1
    return granted


def gaps(grants: list[Grant]) -> list[float]:
    """The longest each gap between grants can have been: a pause of the machine between a
    grant and our reading of the clock cannot make a gap look shorter than it was."""
    grants = sorted(grants)
    return [b[1] - a[0] for a, b in zip(grants, grants[1:], strict=False)]


def most_in_any_span(grants: list[Grant], span_s: float) -> int:
    """The most grants that surely fell within one span of ``span_s``."""
    grants = sorted(grants)
    return max(sum(1 for g in grants[i:] if g[1] - start[0] < span_s)
               for i, start in enumerate(grants))


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
    granted: list[Grant] = []
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

    assert min(gaps(granted)) >= workers[0].interval_s("picwish") - CLOCK_SLACK_S
    assert most_in_any_span(granted, 1.0) <= 4, "no one-second span holds more than max_rps"


def test_providers_have_separate_budgets(make_budget):
    budget = make_budget()
    assert budget.try_acquire("picwish", submit=False)
    assert not budget.try_acquire("picwish", submit=False)
    assert budget.try_acquire("hitpaw", submit=False)


def test_cool_down_blocks_every_worker_until_retry_after(make_budget):
    first, second = make_budget(), make_budget()
    backed_off = time.monotonic()
    first.back_off("hitpaw", retry_after_s=0.3)

    assert not first.try_acquire("hitpaw", submit=False)
    assert not second.try_acquire("hitpaw", submit=True)
    (lo, hi), = booked(lambda: second.wait_s("hitpaw"), 1)
    assert backed_off + 0.3 - 0.002 <= hi and lo <= time.monotonic() + 0.3 + second.interval_s("hitpaw")
    time.sleep(0.35)
    assert second.try_acquire("hitpaw", submit=False, booked=True), "back at its booked turn"


@pytest.mark.parametrize(("retry_after_s", "expected_ms"), [
    (None, 1000), (0, 1000), (0.0004, 1), (10_000, 5000),
])
def test_cool_down_length(make_budget, redis_client, retry_after_s, expected_ms):
    budget = make_budget(max_countdown_s=5, visibility_timeout_s=60)
    before = time.monotonic()
    budget.back_off("picwish", retry_after_s)
    left_ms = redis_client.pttl(COOLDOWN_KEY + "picwish")
    elapsed_ms = (time.monotonic() - before) * 1000
    lowest = expected_ms - elapsed_ms - 2
    assert lowest <= left_ms <= expected_ms or (lowest <= 0 and left_ms == -2)  # -2: expired


def test_submits_take_at_most_their_share_and_polls_the_rest(make_budget):
    budget = make_budget(picwish_max_rps=10)
    submits, polls = [], []
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        if grant := acquired(budget, "picwish", submit=True):
            submits.append(grant)
        elif grant := acquired(budget, "picwish", submit=False):
            polls.append(grant)

    interval = budget.interval_s("picwish")
    assert min(gaps(submits)) >= interval / SUBMIT_SHARE - CLOCK_SLACK_S
    assert len(polls) >= len(submits) - 1, "the slots submits may not take go to polls"
    assert min(gaps(submits + polls)) >= interval - CLOCK_SLACK_S


def test_submit_wait_is_the_time_to_the_next_free_submit_slot(make_budget):
    budget = make_budget(picwish_max_rps=2)
    assert budget.submit_wait_s("picwish") == 0
    acquired = time.monotonic()
    assert budget.try_acquire("picwish", submit=True)

    wait = budget.submit_wait_s("picwish")
    elapsed = time.monotonic() - acquired  # however long a busy machine took between them
    submit_interval = budget.interval_s("picwish") / SUBMIT_SHARE
    assert submit_interval - elapsed - 0.002 <= wait <= submit_interval + 0.001
    backed_off = time.monotonic()
    budget.back_off("picwish", 10)
    wait = budget.submit_wait_s("picwish")
    assert 10 - (time.monotonic() - backed_off) - 0.002 <= wait <= 10, "the cool-down counts too"


def test_refused_polls_are_booked_one_turn_apart(make_budget):
    budget = make_budget(picwish_max_rps=2, max_countdown_s=60)
    assert budget.try_acquire("picwish", submit=False)

    first = budget.wait_s("picwish")
    polls = booked(lambda: budget.wait_s("picwish"), 19)

    assert first <= budget.interval_s("picwish")
    assert_apart(polls, budget.interval_s("picwish"))


def test_turns_start_after_the_cool_down(make_budget):
    budget = make_budget(picwish_max_rps=2)
    before = time.monotonic()
    budget.back_off("picwish", 2.0)
    after = time.monotonic()
    turns = booked(lambda: budget.wait_s("picwish"), 3)
    (lo, hi) = turns[0]
    assert lo - 0.002 <= after + 2.0 and before + 2.0 <= hi + 0.002, "the first at its end"
    assert_apart(turns, budget.interval_s("picwish"))


def test_nothing_is_booked_past_the_countdown_ceiling(make_budget, redis_client):
    budget = make_budget(picwish_max_rps=0.2, max_countdown_s=20, visibility_timeout_s=80)
    step = budget.interval_s("picwish")  # 5.25 s
    assert budget.wait_s("picwish") == 0.001
    turns = booked(lambda: budget.wait_s("picwish"), 3)
    assert_apart(turns, step)
    assert budget.wait_s("picwish") == 20.0, "the next turn is past the ceiling: not booked"


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
    b_before = time.monotonic()
    budget.mark_sent("picwish", "job-b")
    b_after = time.monotonic()
    time.sleep(0.2)
    budget.mark_sent("picwish", "job-a")  # a's submit really went only now: its place moves

    # the window is full until b's send + the window
    (lo, hi), = booked(lambda: budget.submit_wait_s("picwish"), 1)
    assert lo - 0.002 <= b_after + window_ms / 1000 and b_before + window_ms / 1000 <= hi + 0.005
    assert not budget.try_acquire("picwish", submit=False)


def test_a_request_sent_late_does_not_hold_back_the_next_turn(make_budget):
    budget = make_budget(picwish_max_rps=2)
    interval = budget.interval_s("picwish")
    assert budget.try_acquire("picwish", submit=False)
    first, second = booked(lambda: budget.wait_s("picwish"), 2)  # two polls book turns
    assert_apart([first, second], interval)

    time.sleep(max(first[1] - time.monotonic(), 0) + 0.15)  # the first comes back late ...
    assert budget.try_acquire("picwish", submit=False, booked=True)
    time.sleep(max(second[1] - time.monotonic(), 0) + 0.01)  # ... the second on time
    assert budget.try_acquire("picwish", submit=False, booked=True), "the window allows it"


def test_no_window_holds_more_requests_than_the_cap(make_budget):
    budget = make_budget(picwish_max_rps=4)
    granted: list[Grant] = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # everyone comes back "booked": only the window holds
        if grant := acquired(budget, "picwish", submit=False, booked=True):
            granted.append(grant)
    _, window_ms = budget.window("picwish")
    assert len(granted) >= 6
    assert most_in_any_span(granted, window_ms / 1000 - CLOCK_SLACK_S) <= 4
    assert min(gaps(granted)) >= budget.gap_ms("picwish") / 1000 - CLOCK_SLACK_S


def test_a_poll_due_while_the_line_is_free_asks_fresh_when_due(make_budget):
    budget = make_budget(picwish_max_rps=2)
    assert budget.appoint_s("picwish", 3.0, "p1") is None


def test_a_poll_due_while_the_line_is_busy_gets_a_turn_of_its_own(make_budget, redis_client):
    budget = make_budget(picwish_max_rps=2, max_countdown_s=60)
    step = budget.interval_s("picwish")
    assert budget.try_acquire("picwish", submit=False)
    budget.wait_s("picwish")  # the line is busy
    line_ms = int(redis_client.get(TURN_KEY + "picwish"))

    appointments = booked(lambda: budget.appoint_s("picwish", 3.0, "p1"), 1) + \
        booked(lambda: budget.appoint_s("picwish", 3.0, "p2"), 1)

    assert_apart(appointments, step)
    assert int(redis_client.get(TURN_KEY + "picwish")) == line_ms, "the line did not move"
    [(_, first), (_, second)] = redis_client.zrange(APPT_KEY + "picwish", 0, -1, withscores=True)
    turn_ms = math.ceil(step * 1000)
    assert (first - line_ms) % turn_ms == 0 and (second - line_ms) % turn_ms == 0, \
        "in the line's rhythm: no gap lost between them and the line's turns"
    turns = booked(lambda: budget.wait_s("picwish"), 10)  # the line passes them
    for lo, hi in turns:
        for at_lo, at_hi in appointments:
            assert hi <= at_lo - step + 0.002 or lo >= at_hi + step - 0.002, \
                "the line's turns keep clear of the appointments"
    assert turns[-1][0] > appointments[-1][1], "the line went past them"


def test_a_poll_due_before_the_lines_next_free_turn_books_that_turn(make_budget):
    budget = make_budget(picwish_max_rps=2, max_countdown_s=60)
    assert budget.try_acquire("picwish", submit=False)
    turns = booked(lambda: budget.wait_s("picwish"), 4)

    before = time.monotonic()
    appointment = budget.appoint_s("picwish", 0.1, "p1")

    assert_apart([turns[-1], (before + appointment, time.monotonic() + appointment)],
                 budget.interval_s("picwish"))


def test_a_fresh_request_keeps_clear_of_an_appointment(make_budget, redis_client):
    budget = make_budget(picwish_max_rps=5)
    assert budget.try_acquire("picwish", submit=False)
    budget.wait_s("picwish")
    appointment = budget.appoint_s("picwish", 0.5, "p1")
    redis_client.delete(TURN_KEY + "picwish", PACE_KEY + "picwish")  # the line is free again
    time.sleep(appointment - budget.interval_s("picwish") / 2)

    assert not budget.try_acquire("picwish", submit=False), "the appointment is near"
    assert budget.try_acquire("picwish", submit=False, booked=True), "the poll holding it goes"


def test_a_send_a_little_late_does_not_move_the_turns_booked_after_it(make_budget,
                                                                        redis_client):
    budget = make_budget(picwish_max_rps=2, max_countdown_s=60)
    assert budget.try_acquire("picwish", submit=False)
    [(_, sent_ms)] = redis_client.zrange(SENT_KEY + "picwish", 0, -1, withscores=True)
    turn_ms = math.ceil(budget.interval_s("picwish") * 1000)
    # the send before it went 30 ms late: the window holds 30 ms past the line's next turn
    redis_client.zadd(SENT_KEY + "picwish", {"late": sent_ms - turn_ms + 30})
    line_ms = int(redis_client.get(TURN_KEY + "picwish"))

    budget.wait_s("picwish")

    assert int(redis_client.get(TURN_KEY + "picwish")) == line_ms + turn_ms, \
        "booked at the line's turn, in its rhythm (the window is checked when it goes)"


def test_a_request_at_its_booked_turn_takes_half_the_windows_margin(make_budget,
                                                                     redis_client):
    budget = make_budget(picwish_max_rps=2)
    n, window_ms = budget.window("picwish")
    slack_ms = budget.slack_ms("picwish")
    assert 0 < slack_ms <= window_ms * (1 - 1 / PACING_MARGIN) / 2, "inside the margin"
    now_s, now_us = redis_client.time()
    now_ms = now_s * 1000 + now_us // 1000
    # two sends: the window holds the next request for slack_ms / 2 more
    redis_client.zadd(SENT_KEY + "picwish", {"a": now_ms - window_ms + slack_ms // 2,
                                             "b": now_ms - window_ms // 2})

    assert not budget.try_acquire("picwish", submit=False), "a fresh request waits"
    assert budget.try_acquire("picwish", submit=False, booked=True), "a booked one goes"
