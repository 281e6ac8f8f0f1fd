"""Lean polling: once the system has seen jobs of a kind, most need a single poll.

The polls-per-job ratio is decided by the schedule (``tasks/schedule.py``) and the
duration model, so it is asserted on a recorded, seeded schedule: jobs of known durations
played through the real schedule functions and the real ``DurationModel`` on Redis. The
same figure measured on live workers depends on how busy the machine is (a late poll
finds more jobs done, a slow submit skews a learnt duration): the benchmark reports it
(``ops.bench``, scenario 1: polls per job), no test asserts it. The integration test checks
what load cannot change: the worker learns durations and every poll is a provider query.
"""

from __future__ import annotations

import random

import pytest

from tasks.schedule import DurationModel, first_poll_delay_s, next_poll_delay_s
from workers.settings import Settings

SETTINGS = Settings(hitpaw_poll_interval_s=0.2, hitpaw_poll_max_interval_s=0.4,
                    poll_jitter=0.2)


def play(model: DurationModel, durations_s: list[float], rng: random.Random) -> list[int]:
    """Polls each job of a batch submitted at once needs; the finished jobs teach the model."""
    polls = []
    predicted = model.predict("hitpaw", "general_2x", "s")  # none of the batch is done yet
    for duration_s in durations_s:
        at_s = first_poll_delay_s("hitpaw", SETTINGS, rng, predicted_s=predicted)
        count, last_in_progress_s = 1, None
        while at_s < duration_s:
            last_in_progress_s = at_s
            at_s += next_poll_delay_s("hitpaw", count, None, at_s, SETTINGS, rng)
            count += 1
        model.observe("hitpaw", "general_2x", "s", at_s, last_in_progress_s)
        polls.append(count)
    return polls


def test_polls_per_job_approach_one_once_durations_are_learnt(redis_client):
    """20 seeded runs of 10 learning jobs then 20 learnt ones, all of 1.5-1.8 s.

    One run's ratio swings between 1.25 and 2.0 with the jitter draws, which is why the
    old live-worker bound of 1.6 failed under load: the bound holds for the mean of many.
    """
    before, after = [], []
    for seed in range(1, 21):
        rng = random.Random(seed)
        model = DurationModel(redis_client, prefix=f"eq:test-durations:{seed}:")
        durations = [rng.uniform(1.5, 1.8) for _ in range(30)]
        before += play(model, durations[:10], rng)
        after += play(model, durations[10:], rng)
        assert model.predict("hitpaw", "general_2x", "s") >= 1.5

    assert sum(before) / len(before) >= 4, "with 0.2-0.4 s intervals a 1.5 s job takes several"
    assert sum(after) / len(after) <= 1.6
    assert sum(p == 1 for p in after) / len(after) > 0.5, "most learnt jobs need one poll"


def test_without_a_prediction_the_schedule_backs_off_to_its_ceiling():
    rng = random.Random(7)
    delays = [next_poll_delay_s("hitpaw", n, None, 0.0, SETTINGS, rng) for n in range(1, 8)]
    assert delays[0] == pytest.approx(0.2, rel=0.2)
    assert all(d <= 0.4 * 1.2 for d in delays)
    assert delays[-1] >= 0.4 * 0.8


BENCH_SETTINGS = Settings(hitpaw_poll_interval_s=3.0, hitpaw_poll_max_interval_s=15.0,
                          poll_jitter=0.2)


def test_learnt_schedule_keeps_the_wait_after_a_job_ends_short(redis_client):
    """The benchmark's uncapped jobs (2-6 s, one at a time, learnt from the earlier ones):
    polls per job stay under the issue's 1.3 while the median wait between a job ending
    and the poll that sees it done stays about 1 s (with the quarter-past quantile and a
    fixed 3 s follow-up step it was 2.0 s; the p95 is the early jobs waiting for the first
    poll, about 3 s either way)."""
    rng = random.Random(11)
    model = DurationModel(redis_client, prefix="eq:test-durations:tail:")
    polls, waits = [], []
    for i in range(600):
        duration_s = rng.uniform(2.0, 6.0)
        predicted = model.predict("hitpaw", "general_2x", "s")
        at_s = first_poll_delay_s("hitpaw", BENCH_SETTINGS, rng, predicted_s=predicted)
        count, first_in_progress_s = 1, None
        while at_s < duration_s:
            first_in_progress_s = first_in_progress_s or at_s
            at_s += next_poll_delay_s("hitpaw", count, None, at_s, BENCH_SETTINGS, rng)
            count += 1
        model.observe("hitpaw", "general_2x", "s", at_s, first_in_progress_s)
        if i >= 100:  # once learnt
            polls.append(count)
            waits.append(at_s - duration_s)
    waits.sort()
    assert sum(polls) / len(polls) <= 1.3
    assert waits[len(waits) // 2] <= 1.15
    assert waits[int(len(waits) * 0.95)] <= 3.1


@pytest.mark.integration
@pytest.mark.slow
def test_workers_learn_durations_and_every_poll_is_one_query(system, sandbox):
    sandbox.configure(processing_time_s=(1.5, 1.8))
    system.start_worker(concurrency=2, HITPAW_POLL_INTERVAL_S="0.2",
                        HITPAW_POLL_MAX_INTERVAL_S="0.4")
    source = sandbox.sample_url("portrait.jpg")

    learning = [system.enqueue(source, "hitpaw", "general_2x") for _ in range(10)]
    first = system.wait(learning, timeout_s=60)
    model = system.runtime.durations
    record = first[0]
    size = "s" if record.source.image and record.source.image.megapixels < 1 else "any"
    prediction = model.predict("hitpaw", "general_2x", size)
    learnt = [system.enqueue(source, "hitpaw", "general_2x") for _ in range(10)]
    second = system.wait(learnt, timeout_s=60)

    assert all(r.state.value == "succeeded" for r in first + second)
    assert all(r.poll_count >= 1 for r in first + second)  # how many depends on the load
    assert prediction is not None and prediction >= 1.0, "the jobs' durations were learnt"
    queries = sandbox.count(provider="hitpaw", kind="query")
    assert queries == sum(r.poll_count for r in first + second)
