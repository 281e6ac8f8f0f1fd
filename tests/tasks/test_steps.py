"""The pipeline's steps called directly, with a recording dispatcher instead of Celery.

Real Redis, real S3 over HTTP and the real sandbox; only the hand-off to the next task
is recorded rather than sent, so each step's decisions can be checked one at a time.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from providers.errors import DeadlineExceeded, OutcomeUnknown, ProviderJobFailed, ResultExpired
from storage.jobs import JobState, utcnow
from tasks import admission, pipeline
from tasks.budget import APPT_KEY, PACE_KEY, TURN_KEY
from tests.system import image_bytes


def submitted_job(system, rt, dispatch, provider="hitpaw", **options):
    job_id = system.enqueue(image_bytes(40, 40), provider, None, options=options)
    pipeline.submit_job(rt, dispatch, job_id)
    budget_marks_cleared(rt, provider)
    return rt.jobs.get(job_id)


def budget_marks_cleared(rt, provider: str = "hitpaw") -> None:
    """The budget's marks gone: the last request's pacing mark, the line's next turn (3 ms
    on at 500 req/s) and the turns booked ahead (a submit books its first poll one, 0.2 s
    on). A poll asking at one of them is deferred, which is not what the step tests look
    at: back to back on a quick machine, or at the booked turn on a busy one, it was."""
    rt.redis.delete(PACE_KEY + provider, TURN_KEY + provider, APPT_KEY + provider)


def force(rt, job_id, **fields):
    return rt.jobs.update(job_id, lambda r: True, lambda r: fields)


def book_the_line(rt, seconds: float) -> int:
    """Turns on HitPaw's line booked for the next ``seconds``: the line's next free turn,
    in ms of Redis time, which this returns."""
    now_s, now_us = rt.redis.time()
    busy_ms = now_s * 1000 + now_us // 1000 + int(seconds * 1000)
    rt.redis.set(TURN_KEY + "hitpaw", busy_ms, px=int(seconds * 1000) + 1000)
    return busy_ms


def test_submit_sends_once_and_schedules_the_first_poll_with_a_token(system, rt, dispatch,
                                                                     sandbox):
    record = submitted_job(system, rt, dispatch)
    pipeline.submit_job(rt, dispatch, record.id)  # a duplicate delivery

    assert record.state is JobState.SUBMITTED and record.provider_job_id
    assert dispatch.sent == [("poll", record.id, record.poll_token, dispatch.sent[0][3])]
    assert 0 < dispatch.sent[0][3] <= rt.settings.max_countdown_s
    assert sandbox.count(kind="submit") == 1


def test_a_stale_poll_token_does_nothing(system, rt, dispatch, sandbox):
    record = submitted_job(system, rt, dispatch)
    pipeline.poll_job(rt, dispatch, record.id, "not-the-token")

    assert sandbox.count(kind="query") == 0
    assert rt.jobs.get(record.id).poll_count == 0


def test_poll_past_the_deadline_fails_the_job(system, rt, dispatch, sandbox):
    record = submitted_job(system, rt, dispatch)
    force(rt, record.id, deadline_at=utcnow() - timedelta(seconds=1))

    with pytest.raises(DeadlineExceeded):
        pipeline.poll_job(rt, dispatch, record.id, record.poll_token)
    assert sandbox.count(kind="query") == 0


def test_a_provider_failure_is_a_permanent_error(system, rt, dispatch, sandbox):
    sandbox.configure(rate_job_failure=1.0)
    record = submitted_job(system, rt, dispatch, provider="picwish")

    with pytest.raises(ProviderJobFailed):
        for _ in range(100):  # poll as the chain would, until the provider gives up
            pipeline.poll_job(rt, dispatch, record.id, rt.jobs.get(record.id).poll_token)
            time.sleep(0.05)
    assert rt.jobs.get(record.id).state in (JobState.SUBMITTED, JobState.PROCESSING)


def test_a_poll_scheduled_while_the_line_is_busy_holds_a_turn_and_runs_once(
        system, rt, dispatch, sandbox):
    sandbox.configure(processing_time_s=(30, 30))
    record = submitted_job(system, rt, dispatch)
    busy_ms = book_the_line(rt, 5.0)
    rt.redis.delete(PACE_KEY + "hitpaw")

    queries = sandbox.count(kind="query")
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 1.0)  # at a booked turn
    assert sandbox.count(kind="query") == queries + 1, "still in progress"

    _, _, token, countdown = dispatch.sent[-1]
    assert token != record.poll_token, "the next poll"
    assert countdown >= 4.9 and dispatch.waited[token] > 0, "sent for a turn booked for it"
    assert int(rt.redis.get(TURN_KEY + "hitpaw")) > busy_ms, "the turn is the line's next"
    rt.redis.delete(PACE_KEY + "hitpaw")
    queries = sandbox.count(kind="query")
    pipeline.poll_job(rt, dispatch, record.id, token, dispatch.waited[token])

    assert sandbox.count(kind="query") == queries + 1, "it asked at its turn, not refused"
    assert dispatch.sent[-1][2] != token


def test_a_poll_refused_at_its_turn_books_the_line_s_next_free_turn(
        system, rt, dispatch, sandbox):
    # It used to retry as soon as the marks expired, as if at its turn: under a backlog
    # it took the room of the poll booked next, or was refused again (195 runs in 99 s).
    sandbox.configure(processing_time_s=(30, 30))
    record = submitted_job(system, rt, dispatch)
    busy_ms = book_the_line(rt, 3.0)
    rt.redis.set(PACE_KEY + "hitpaw", "1", px=200)  # the request before it went late

    queries = sandbox.count(kind="query")
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token, 1.0)  # at its turn

    assert sandbox.count(kind="query") == queries, "refused"
    _, _, token, countdown = dispatch.sent[-1]
    assert token == record.poll_token, "deferred, not a new poll"
    assert countdown >= 2.9, "back at the line's next free turn, after the turns booked"
    assert int(rt.redis.get(TURN_KEY + "hitpaw")) > busy_ms, "that turn is now its own"


def test_reconcile_re_drives_each_kind_of_overdue_job(system, rt, dispatch, sandbox):
    queued = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    polling = submitted_job(system, rt, dispatch)
    storing = submitted_job(system, rt, dispatch)
    force(rt, storing.id, state=JobState.STORING, poll_token=None,
          result_expires_at=utcnow() + timedelta(hours=1))
    past = utcnow() - timedelta(seconds=1)
    for job_id in (queued, polling.id, storing.id):
        force(rt, job_id, next_check_at=past)
    dispatch.sent.clear()

    assert pipeline.reconcile(rt, dispatch) == 3

    new_token = rt.jobs.get(polling.id).poll_token
    assert new_token != polling.poll_token, "the lost chain's token must go stale"
    assert sorted(dispatch.sent) == sorted([("poll", polling.id, new_token, 0),
                                            ("store", storing.id)]), \
        "a queued job never gets a submit from reconcile"
    assert admission.waiting(rt, "hitpaw")["interactive"] >= 1, "it went back to admission"
    assert rt.jobs.get(queued).next_check_at == rt.jobs.get(queued).deadline_at
    assert pipeline.reconcile(rt, dispatch) == 0, "no longer overdue"


def test_reconcile_leaves_a_job_whose_submit_claim_is_live_alone(system, rt, dispatch, sandbox):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    force(rt, job_id, submit_started_at=utcnow() - timedelta(seconds=1),
          next_check_at=utcnow() - timedelta(seconds=1))

    assert pipeline.reconcile(rt, dispatch) == 0
    pipeline.submit_job(rt, dispatch, job_id)  # a second submit delivery: not a second chain

    record = rt.jobs.get(job_id)
    assert record.state is JobState.QUEUED and record.error is None
    assert dispatch.sent == [] and sandbox.count(kind="submit") == 0
    assert record.next_check_at == record.submit_started_at + timedelta(
        seconds=rt.settings.step_lease_s), "looked at again when the claim's lease lapses"


@pytest.mark.parametrize(("setup", "code"), [
    ({"submit_started_at": "lapsed"}, OutcomeUnknown.code),
    ({"deadline_at": "past"}, DeadlineExceeded.code),
    ({"state": JobState.SUBMITTED, "deadline_at": "past"}, DeadlineExceeded.code),
    ({"state": JobState.STORING, "result_expires_at": "past"}, ResultExpired.code),
])
def test_reconcile_fails_a_job_that_can_no_longer_succeed(system, rt, dispatch, setup, code):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    values = {"past": utcnow() - timedelta(seconds=1),
              "lapsed": utcnow() - timedelta(seconds=rt.settings.step_lease_s + 1)}
    force(rt, job_id, next_check_at=utcnow() - timedelta(seconds=1),
          **{k: values.get(v, v) if isinstance(v, str) else v for k, v in setup.items()})

    pipeline.reconcile(rt, dispatch)

    record = rt.jobs.get(job_id)
    assert (record.state, record.error.code) == (JobState.FAILED, code)
    assert dispatch.sent == []


def test_a_follower_past_its_queue_deadline_waits_for_its_leader(system, rt, dispatch):
    from tasks.jobsteps import check_still_possible

    leader = system.enqueue(image_bytes(40, 40), "hitpaw")
    follower = system.enqueue(image_bytes(41, 40), "hitpaw")
    past = utcnow() - timedelta(seconds=1)
    waiting = force(rt, follower, follows=leader, deadline_at=past)
    check_still_possible(rt, waiting)  # its leader was admitted in time: no deadline here

    alone = force(rt, leader, deadline_at=past)
    with pytest.raises(DeadlineExceeded):
        check_still_possible(rt, alone)
