"""What the duration model learns from a finished job: the provider's time, not our delays.

The poll that finds a job done counts from when it was due, not from when a busy worker
ran it (nor after its waits on the budget), and a job whose first poll ran late teaches
nothing. The steps are called directly (real
Redis and sandbox, a recording dispatcher), and once through a real worker, whose poll
task reads its due time from Celery's ``eta``. The submit is backdated by far more than
the test takes, so no assertion depends on how fast it runs.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from providers.base import JobStatus, Phase
from storage.jobs import JobState, utcnow
from tasks import definitions, pipeline
from tasks.schedule import (
    DONE_AT_FIRST_POLL_SHRINK,
    LATE_LOOK_SHARE,
    DurationModel,
    first_look_late,
    first_poll_delay_s,
)
from tests.system import image_bytes
from tests.tasks.test_lean_polling import BENCH_SETTINGS
from tests.tasks.test_steps import budget_marks_cleared

DUE_S = 60.0  # seconds after the submit the poll was due (6 s late is late)


def backdated_submitted_job(system, rt, dispatch, ago_s: float):
    """A hitpaw job, done at the sandbox, submitted ``ago_s`` ago (its poll not sent)."""
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    pipeline.submit_job(rt, dispatch, job_id)
    budget_marks_cleared(rt)
    submitted = utcnow() - timedelta(seconds=ago_s)
    return rt.jobs.update(
        job_id, lambda r: r.state is JobState.SUBMITTED,
        lambda r: {"transitions": {**r.transitions, JobState.SUBMITTED.value: submitted}})


def due(record, after_s: float):
    return record.transitions[JobState.SUBMITTED.value] + timedelta(seconds=after_s)


def learnt(rt, record) -> list[float]:
    key = rt.durations._key(record.provider, record.model, pipeline._size_class(record))
    return [float(v) for v in rt.redis.lrange(key, 0, -1)]


@pytest.fixture(autouse=True)
def _instant_jobs(sandbox):
    sandbox.configure(processing_time_s=(0.0, 0.0))


def test_a_poll_run_a_little_late_counts_from_when_it_was_due(system, rt, dispatch):
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + 2)  # 2 s late

    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 0.0, due(record, DUE_S))

    assert rt.jobs.get(record.id).state is JobState.STORING
    # Done at the first look: a bit less than when it was due (not than when it ran).
    assert learnt(rt, record) == [pytest.approx(DUE_S * DONE_AT_FIRST_POLL_SHRINK, abs=0.3)]


def test_a_first_poll_run_late_teaches_nothing(system, rt, dispatch):
    late_s = LATE_LOOK_SHARE * DUE_S + 30
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + late_s)

    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 0.0, due(record, DUE_S))

    assert rt.jobs.get(record.id).state is JobState.STORING
    assert learnt(rt, record) == []


def test_a_first_poll_re_driven_by_reconcile_teaches_nothing(system, rt, dispatch):
    # The lost poll's worker died; reconcile's poll has no countdown, so no due time of its
    # own: counted from when it ran, a crash taught the model the crash's delay.
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + 40)
    rt.jobs.update(record.id, lambda r: True,
                   lambda r: {"next_check_at": due(record, DUE_S) + timedelta(
                       seconds=pipeline.poll_overdue_s(rt.settings))})

    assert pipeline.reconcile(rt, dispatch) >= 1
    redriven = rt.jobs.get(record.id)
    assert redriven.first_look_late_s >= 39
    pipeline.poll_job(rt, dispatch, record.id, redriven.poll_token)  # no due time

    assert rt.jobs.get(record.id).state is JobState.STORING
    assert learnt(rt, record) == []


def test_budget_waits_come_off_and_do_not_make_a_poll_late(system, rt, dispatch):
    waited_s = 10.0  # deferred by the budget: this message was due 10 s after the first
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + waited_s + 2)

    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, waited_s,
                      due(record, DUE_S + waited_s))

    assert learnt(rt, record) == [pytest.approx(DUE_S * DONE_AT_FIRST_POLL_SHRINK, abs=0.3)]


def test_a_job_seen_running_on_time_is_learnt_though_a_later_poll_ran_late(
        system, rt, dispatch, sandbox):
    """Only the first look decides: dropping jobs whose later looks ran late would keep
    the short jobs (done at the first look) and drop the long ones."""
    sandbox.configure(processing_time_s=(600.0, 600.0))
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + 30.5)
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 0.0, due(record, DUE_S))
    first = rt.jobs.get(record.id)  # seen running by a first poll run 30.5 s late
    seen_s = (first.transitions[JobState.PROCESSING.value]
              - first.transitions[JobState.SUBMITTED.value]).total_seconds()
    assert first.state is JobState.PROCESSING and first.first_look_late_s >= 30.0
    assert first_look_late(first.first_look_late_s, seen_s - first.first_look_late_s)

    on_time = pipeline.new_token()  # as if that first look had run on time
    rt.jobs.update(record.id, lambda r: True,
                   lambda r: {"first_look_late_s": 0.0, "poll_token": on_time})
    pipeline.apply_status(rt, dispatch, rt.jobs.get(record.id), on_time, done_status(first),
                          late_s=20.0)  # found done by a poll that ran 20 s late

    assert rt.jobs.get(record.id).state is JobState.STORING
    # Between the look that saw it running and when the look that saw it done was due.
    assert learnt(rt, record) == [pytest.approx(seen_s - 10.0, abs=0.3)]


def test_a_job_whose_first_poll_ran_late_teaches_nothing_when_found_done_later(
        system, rt, dispatch, sandbox):
    sandbox.configure(processing_time_s=(600.0, 600.0))
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + 30.5)
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 0.0, due(record, DUE_S))
    first = rt.jobs.get(record.id)

    pipeline.apply_status(rt, dispatch, first, first.poll_token, done_status(first))

    assert rt.jobs.get(record.id).state is JobState.STORING
    assert learnt(rt, record) == []


def done_status(record) -> JobStatus:
    return JobStatus(provider=record.provider, job_id=record.provider_job_id,
                     phase=Phase.COMPLETED, raw_status="COMPLETED",
                     result_url="http://example.invalid/result.jpg")


@pytest.mark.integration
@pytest.mark.slow
def test_the_poll_task_reads_its_due_time_from_celery(system, rt, dispatch):
    system.start_worker(concurrency=1)
    record = backdated_submitted_job(system, rt, dispatch, ago_s=DUE_S + 2)

    definitions.poll.apply_async((record.id, record.poll_token, 0.0), eta=due(record, DUE_S))
    [done] = system.wait([record.id], timeout_s=60)

    assert done.state is JobState.SUCCEEDED
    assert learnt(rt, record) == [pytest.approx(DUE_S * DONE_AT_FIRST_POLL_SHRINK, abs=0.3)]


def test_celery_eta_text_and_none_read_as_due_times():
    assert definitions.due_at(None) is None
    aware = definitions.due_at("2026-11-30T13:00:00.250000+00:00")
    assert aware == definitions.due_at("2026-11-30T13:00:00.250000")  # no zone: UTC
    assert aware.utcoffset() == timedelta(0)


def replay(model: DurationModel, rng: random.Random, jobs: int, late_s: tuple[float, float]):
    """Jobs of 2-6 s, one after another, whose polls all run ``late_s`` late, each taught
    as the pipeline teaches it (done: when that look was due; running: when a look ran;
    nothing when the first look ran late)."""
    for _ in range(jobs):
        duration_s = rng.uniform(2.0, 6.0)
        due_s = first_poll_delay_s("hitpaw", BENCH_SETTINGS, rng,
                                   predicted_s=model.predict("hitpaw", "general_2x", "s"))
        late = rng.uniform(*late_s)
        first_in_progress_s = None
        while due_s + late < duration_s:  # seen running when the late poll ran
            first_in_progress_s = first_in_progress_s or due_s + late
            due_s = due_s + late + 0.25 * BENCH_SETTINGS.hitpaw_poll_interval_s
        first_due_s = due_s if first_in_progress_s is None else first_in_progress_s - late
        if not first_look_late(late, first_due_s):
            model.observe("hitpaw", "general_2x", "s", due_s, first_in_progress_s)


@pytest.mark.parametrize("late_s", [(1.5, 3.0), (3.0, 8.0)])
def test_late_polls_of_a_burst_leave_the_prediction_where_on_time_ones_put_it(redis_client,
                                                                              late_s):
    """2-6 s jobs (80th percentile 5.2 s), 100 polled on time, then 500 polled late by
    busy workers. Taught from when they ran, the late polls pushed the prediction from
    about 5 s to 10 s (1.5-3 s late) or 26 s (3-8 s late); from when they were due and
    shrunk like on-time ones, they pulled it down to 3.0-3.8 s or 2.7 s (seeds 5-7)."""
    rng = random.Random(5)
    model = DurationModel(redis_client, prefix=f"eq:test-durations:late:{late_s[0]}:")
    replay(model, rng, 100, (0.0, 0.05))
    on_time = model.predict("hitpaw", "general_2x", "s")
    replay(model, rng, 500, late_s)
    assert on_time is not None and 4.3 <= on_time <= 6.2
    assert model.predict("hitpaw", "general_2x", "s") == on_time
