"""Cancelling a job in each state, against the real stack; the sandbox's request log shows
what the provider was asked."""

from __future__ import annotations

import pytest

from storage.jobs import JobState
from tasks import admission, producer
from tests.system import image_bytes
from workers.constants import ALL_QUEUES, STORE_QUEUE
from workers.metrics import collect_stats

pytestmark = pytest.mark.integration


def test_a_queued_job_cancelled_is_never_sent_to_the_provider(system, sandbox):
    rt = system.runtime
    job_id = system.enqueue(image_bytes(30, 20), "hitpaw", "general_2x")  # no worker yet

    answer = producer.cancel(job_id, runtime=rt)

    assert answer.cancelled and answer.state == "cancelled"
    assert "nothing was paid" in answer.message
    assert admission.waiting(rt, "hitpaw") == {"interactive": 0, "batch": 0}
    # a job queued after it is admitted, submitted and stored: the cancelled one never is
    system.start_worker()
    later = system.enqueue(image_bytes(31, 20), "hitpaw", "general_2x")
    assert producer.wait(later, 60, runtime=rt).state is JobState.SUCCEEDED
    record = rt.jobs.get(job_id)
    assert record.state is JobState.CANCELLED and record.provider_job_id is None
    assert sandbox.count(kind="submit") == 1
    assert collect_stats(rt)["jobs"]["cancelled"] == 1
    assert not rt.objects.exists(rt.objects.input_key(job_id, ".jpg"))  # staged input gone


def _poll_tasks_done(system) -> int:
    return sum("enhance.poll[" in line and "succeeded" in line
               for line in system.logs("worker").splitlines())


def test_a_processing_job_cancelled_is_polled_no_more_and_its_result_never_stored(system,
                                                                                  sandbox):
    rt = system.runtime
    sandbox.configure(processing_time_s=(600.0, 600.0))  # held until released
    system.start_worker(HITPAW_POLL_INTERVAL_S="1", HITPAW_POLL_MAX_INTERVAL_S="1")
    job_id = system.enqueue(image_bytes(30, 20), "hitpaw", "general_2x")
    [record] = system.wait([job_id], until=lambda rs: rs[0].poll_count >= 1)
    assert record.state is JobState.PROCESSING

    answer = producer.cancel(job_id, runtime=rt)

    assert answer.cancelled and "no longer polled" in answer.message
    cancelled = rt.jobs.get(job_id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.cost and cancelled.cost > 0  # it was paid for: the cost stays
    done_at_cancel = _poll_tasks_done(system)
    sandbox.release(within_s=0.1)  # the provider finishes the job now
    # the poll scheduled before the cancel runs, finds the job final and asks nothing
    system.wait([job_id], until=lambda _: _poll_tasks_done(system) > done_at_cancel,
                timeout_s=30)
    assert _poll_tasks_done(system) > done_at_cancel
    cancelled_at = cancelled.transitions["cancelled"].timestamp()
    polls = [r for r in sandbox.requests()
             if r.kind == "query" and r.job_id == cancelled.provider_job_id]
    assert polls and all(r.ts < cancelled_at for r in polls)
    final = rt.jobs.get(job_id)
    assert final.state is JobState.CANCELLED and final.output is None
    assert final.poll_count == cancelled.poll_count
    assert not rt.objects.exists(rt.objects.result_key(job_id, ".jpg"))
    assert sandbox.count(kind="submit") == 1


def test_a_storing_job_is_not_cancelled_its_store_completes_and_the_answer_says_why(
        system, sandbox):
    rt = system.runtime
    no_store = ",".join(q for q in ALL_QUEUES if q != STORE_QUEUE)
    system.start_worker(queues=no_store)  # the store message waits until a store worker comes
    job_id = system.enqueue(image_bytes(30, 20), "hitpaw", "general_2x")
    [record] = system.wait([job_id], until=lambda rs: rs[0].state is JobState.STORING)
    assert record.state is JobState.STORING

    answer = producer.cancel(job_id, runtime=rt)

    assert not answer.cancelled and answer.state == "storing"
    assert "charged" in answer.message and f"cost {record.cost:g}" in answer.message
    system.start_worker(queues=STORE_QUEUE)
    assert producer.wait(job_id, 60, runtime=rt).state is JobState.SUCCEEDED


def test_cancelling_a_final_job_changes_nothing(system, sandbox):
    rt = system.runtime
    queued = system.enqueue(image_bytes(32, 20), "picwish")
    producer.cancel(queued, runtime=rt)
    system.start_worker()
    done = system.enqueue(image_bytes(30, 20), "picwish")
    assert producer.wait(done, 60, runtime=rt).state is JobState.SUCCEEDED

    for job_id, state in ((done, "succeeded"), (queued, "cancelled")):
        before = rt.jobs.get(job_id)
        answer = producer.cancel(job_id, runtime=rt)
        assert not answer.cancelled and answer.state == state
        assert answer.message == f"nothing to cancel: the job already ended {state}"
        assert rt.jobs.get(job_id) == before
    with pytest.raises(producer.UnknownJob):
        producer.cancel("feedface", runtime=rt)


def test_a_cancelled_leader_hands_its_flight_over_without_counting_a_failure(
        system, sandbox, redis_client):
    rt = system.runtime
    photo = image_bytes(44, 33)
    leader, follower, quitter, last = (system.enqueue(photo, "hitpaw", "general_2x", reuse=True)
                                       for _ in range(4))
    assert rt.jobs.get(follower).follows == leader

    producer.cancel(quitter, runtime=rt)  # a follower cancelled leaves the flight
    producer.cancel(leader, runtime=rt)

    record = rt.jobs.get(follower)
    flight = f"eq:reuse:flight:tenant:default:{record.fingerprint}"
    assert redis_client.hget(flight, "leader").decode() == follower
    assert redis_client.hget(flight, "failures") is None
    system.start_worker()
    records = system.wait([follower, last])
    assert [r.state for r in records] == [JobState.SUCCEEDED] * 2
    assert records[0].leaders_failed == 0 and records[0].cost > 0
    assert records[1].reused_from == follower
    assert rt.jobs.get(quitter).state is JobState.CANCELLED
    assert sandbox.count(kind="submit") == 1
