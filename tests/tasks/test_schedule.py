"""Poll and retry countdowns: backoff, ceilings, jitter, progress estimates, Retry-After."""

from __future__ import annotations

import random

import pytest

from providers.base import JobStatus, Phase
from tasks.schedule import (
    BACKOFF_FACTOR,
    FOLLOW_UP_FLOOR_SHARE,
    FOLLOW_UP_SHARE,
    PREDICTED_JITTER_SHARE,
    PROGRESS_MIN,
    first_poll_delay_s,
    jittered,
    next_poll_delay_s,
    remaining_from_progress,
    retry_delay_s,
)
from workers.settings import Settings

SAMPLES = 500


def make_settings(**overrides) -> Settings:
    fields = dict(
        picwish_poll_interval_s=1.0, picwish_poll_max_interval_s=5.0,
        hitpaw_poll_interval_s=3.0, hitpaw_poll_max_interval_s=15.0,
        poll_jitter=0.0, max_countdown_s=60.0, visibility_timeout_s=900,
    )
    return Settings(**{**fields, **overrides})


def status(progress: int | None) -> JobStatus:
    return JobStatus(provider="picwish", job_id="t", phase=Phase.IN_PROGRESS,
                     raw_status="1", progress=progress)


@pytest.fixture
def exact():
    return make_settings()


# --- first poll and backoff ----------------------------------------------------------


@pytest.mark.parametrize(("provider", "expected"), [("picwish", 1.0), ("hitpaw", 3.0)])
def test_first_poll_waits_the_providers_interval(exact, provider, expected):
    assert first_poll_delay_s(provider, exact) == expected


def test_polls_back_off_by_the_factor(exact):
    delays = [next_poll_delay_s("hitpaw", n, None, 0, exact) for n in (1, 2, 3, 4)]
    assert delays == [3.0, round(3 * BACKOFF_FACTOR, 3), round(3 * BACKOFF_FACTOR**2, 3),
                      round(3 * BACKOFF_FACTOR**3, 3)]


def test_poll_count_zero_waits_the_first_interval(exact):
    assert next_poll_delay_s("picwish", 0, None, 0, exact) == 1.0


def test_backoff_stops_at_the_providers_ceiling(exact):
    delays = [next_poll_delay_s("picwish", n, None, 0, exact) for n in range(1, 30)]
    assert delays == sorted(delays)
    assert max(delays) == 5.0
    assert delays[-10:] == [5.0] * 10


def test_a_job_polled_for_hours_keeps_the_ceiling(exact):
    # a short ceiling and a long deadline make poll counts in the thousands
    assert next_poll_delay_s("picwish", 5000, None, 0, exact) == 5.0


# --- progress-based estimate ---------------------------------------------------------


def test_progress_estimates_the_rest_at_the_pace_so_far():
    assert remaining_from_progress(status(50), 4.0) == 4.0
    assert remaining_from_progress(status(80), 8.0) == pytest.approx(2.0)
    assert remaining_from_progress(status(100), 99.0) == pytest.approx(1.0)  # read as 99 %


@pytest.mark.parametrize("progress", [None, 0, PROGRESS_MIN - 1])
def test_too_little_progress_gives_no_estimate(progress):
    assert remaining_from_progress(status(progress), 30.0) is None


def test_no_status_gives_no_estimate():
    assert remaining_from_progress(None, 30.0) is None


def test_estimate_replaces_backoff(exact):
    # 40 % done after 2 s: 3 s to go, although backoff alone would say 5 s
    assert next_poll_delay_s("picwish", 8, status(40), 2.0, exact) == 3.0


def test_estimate_never_polls_sooner_than_the_first_interval(exact):
    assert next_poll_delay_s("hitpaw", 6, status(95), 1.0, exact) == 3.0


def test_estimate_is_kept_under_the_ceiling(exact):
    assert next_poll_delay_s("picwish", 1, status(10), 100.0, exact) == 5.0


def test_low_progress_falls_back_to_backoff(exact):
    assert next_poll_delay_s("picwish", 2, status(1), 100.0, exact) == 1.5


# --- jitter --------------------------------------------------------------------------


def test_jitter_stays_within_its_fraction():
    settings = make_settings(poll_jitter=0.2)
    rng = random.Random(7)
    values = [jittered(10.0, settings, rng) for _ in range(SAMPLES)]
    assert all(8.0 <= v <= 12.0 for v in values)
    assert min(values) < 8.5 and max(values) > 11.5  # it does spread
    assert len(set(values)) > SAMPLES // 2


def test_jitter_is_reproducible_with_a_seeded_source():
    settings = make_settings(poll_jitter=0.3)
    first = [next_poll_delay_s("hitpaw", n, None, 0, settings, random.Random(42)) for n in range(8)]
    again = [next_poll_delay_s("hitpaw", n, None, 0, settings, random.Random(42)) for n in range(8)]
    assert first == again


def test_jittered_poll_stays_near_the_providers_ceiling():
    settings = make_settings(poll_jitter=0.2)
    rng = random.Random(3)
    values = [next_poll_delay_s("picwish", 50, None, 0, settings, rng) for _ in range(SAMPLES)]
    assert all(4.0 <= v <= 6.0 for v in values)


def test_first_poll_jitter_bounds():
    settings = make_settings(poll_jitter=0.5)
    rng = random.Random(11)
    values = [first_poll_delay_s("hitpaw", settings, rng) for _ in range(SAMPLES)]
    assert all(1.5 <= v <= 4.5 for v in values)


def test_countdowns_never_pass_max_countdown():
    settings = make_settings(poll_jitter=1.0, picwish_poll_interval_s=50.0,
                             picwish_poll_max_interval_s=500.0, max_countdown_s=60.0)
    rng = random.Random(5)
    values = [next_poll_delay_s("picwish", n, None, 0, settings, rng) for n in range(1, 200)]
    values += [first_poll_delay_s("picwish", settings, rng) for _ in range(100)]
    assert max(values) == 60.0


def test_countdowns_have_a_floor():
    settings = make_settings(poll_jitter=1.0)
    rng = random.Random(9)
    assert min(jittered(0.01, settings, rng) for _ in range(SAMPLES)) == 0.05


def test_countdowns_are_rounded_to_milliseconds():
    settings = make_settings(poll_jitter=0.2)
    rng = random.Random(1)
    assert all(round(v, 3) == v for v in (jittered(1.2345678, settings, rng) for _ in range(50)))


# --- retries of transient failures ---------------------------------------------------


def test_retry_backoff_doubles(exact):
    assert [retry_delay_s(n, exact) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_retry_backoff_stops_at_max_countdown(exact):
    assert retry_delay_s(6, exact) == 60.0
    assert retry_delay_s(3000, exact) == 60.0  # no overflow however many attempts


def test_retry_after_is_honoured_when_longer(exact):
    assert retry_delay_s(0, exact, retry_after_s=12.0) == 12.0
    assert retry_delay_s(5, exact, retry_after_s=3.0) == 32.0


def test_retry_after_is_honoured_despite_jitter():
    settings = make_settings(poll_jitter=0.5)
    values = [retry_delay_s(0, settings, retry_after_s=10.0) for _ in range(SAMPLES)]
    assert all(10.0 <= v <= 15.0 for v in values)
    assert len(set(values)) > SAMPLES // 2  # still spread, not all piled on 10 s


def test_retry_jitter_bounds():
    settings = make_settings(poll_jitter=0.2)
    values = [retry_delay_s(3, settings) for _ in range(SAMPLES)]
    assert all(6.4 <= v <= 9.6 for v in values)
    assert len(set(values)) > 1


def test_retry_after_beyond_max_countdown_is_cut_to_it():
    settings = make_settings(poll_jitter=0.2)
    values = [retry_delay_s(0, settings, retry_after_s=3600.0) for _ in range(SAMPLES)]
    assert set(values) == {60.0}


def test_follow_ups_come_after_a_share_of_the_time_run_so_far(exact):
    """A job still running at its (predicted) first poll is the tail: it is looked at again
    after FOLLOW_UP_SHARE of its time so far, not a whole backoff step later."""
    assert next_poll_delay_s("hitpaw", 1, None, 5.0, exact) == round(FOLLOW_UP_SHARE * 5.0, 3)
    assert next_poll_delay_s("hitpaw", 1, None, 1.0, exact) == 3.0 * FOLLOW_UP_FLOOR_SHARE
    assert next_poll_delay_s("hitpaw", 1, None, 100.0, exact) == 3.0  # the backoff is sooner
    assert next_poll_delay_s("picwish", 1, status(50), 4.0, exact) == 4.0  # progress decides
    # a provider that reports progress keeps its own pace even while progress is too low
    # to estimate from: under a cap, sooner looks would take the budget's turns
    assert next_poll_delay_s("picwish", 1, status(2), 10.0, exact) == 1.0


def test_follow_ups_of_a_long_job_cost_at_most_three_polls_more_than_the_backoff(exact):
    def polls_until(end_s: float, elapsed: bool) -> int:
        at_s, count = 3.0, 1
        while at_s < end_s:
            at_s += next_poll_delay_s("hitpaw", count, None, at_s if elapsed else 0, exact)
            count += 1
        return count

    for end_s in (6.0, 10.0, 15.0, 60.0, 300.0):
        assert polls_until(end_s, elapsed=False) <= polls_until(end_s, elapsed=True)
        assert polls_until(end_s, elapsed=True) <= polls_until(end_s, elapsed=False) + 3


def test_a_predicted_first_poll_is_jittered_less():
    settings = make_settings(poll_jitter=0.2)
    rng = random.Random(3)
    delays = [first_poll_delay_s("hitpaw", settings, rng, predicted_s=10.0)
              for _ in range(SAMPLES)]
    spread = 10.0 * 0.2 * PREDICTED_JITTER_SHARE
    assert 10.0 - spread <= min(delays) and max(delays) <= 10.0 + spread
