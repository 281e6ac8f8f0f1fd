"""Jobs in flight: hundreds on one worker process, and none lost when a worker dies."""

from __future__ import annotations

import pytest

from tests.system import image_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLLING = ("submitted", "processing")


def test_one_worker_process_carries_hundreds_of_jobs_in_flight(system, sandbox):
    # Jobs are held at the provider until all of them are in flight at once, so what is
    # asserted is capacity (nothing blocks on a job), not how fast a loaded machine submits.
    sandbox.configure(processing_time_s=(3000.0, 3000.0))
    system.start_worker(concurrency=1, HITPAW_POLL_INTERVAL_S="4", HITPAW_POLL_MAX_INTERVAL_S="5")
    source = sandbox.sample_url("portrait.jpg")
    jobs = 300
    ids = [system.enqueue(source, "hitpaw", "general_2x") for _ in range(jobs)]

    held = system.wait(ids, timeout_s=300,
                       until=lambda records: all(r.state.value in POLLING for r in records))
    assert sum(r.state.value in POLLING for r in held) == jobs, "not every job was in flight"
    assert sandbox.release(within_s=5) == jobs
    records = system.wait(ids, timeout_s=240)

    assert [r.state.value for r in records] == ["succeeded"] * jobs
    assert sandbox.count(provider="hitpaw", kind="submit") == jobs


def test_a_worker_killed_mid_flight_loses_no_job_and_pays_once(system, sandbox):
    sandbox.configure(processing_time_s=(3.0, 4.0))
    doomed = system.start_worker(concurrency=2)
    system.start_beat()
    ids = [system.enqueue(image_bytes(48, 32), "hitpaw", "general_2x") for _ in range(10)]
    system.wait(ids, timeout_s=60,
                until=lambda rs: all(r.state.value in POLLING for r in rs))

    system.kill(doomed)  # its scheduled polls die with it, unacknowledged
    system.start_worker(concurrency=2)
    records = system.wait(ids, timeout_s=120)

    assert [r.state.value for r in records] == ["succeeded"] * len(ids), \
        [r.error for r in records]
    assert sandbox.count(provider="hitpaw", kind="submit") == len(ids)
    assert "re-driven" in system.logs("worker")


def test_a_lost_admission_message_is_re_driven_by_reconcile(system, sandbox):
    job_id = system.enqueue(image_bytes(40, 40), "picwish", "hd")
    system.runtime.redis.delete("enhance.admit")  # the broker lost the message

    system.start_worker()
    system.start_beat()
    [record] = system.wait([job_id], timeout_s=60)

    assert record.state.value == "succeeded"
    assert sandbox.count(provider="picwish", kind="submit") == 1


def test_a_lost_submit_message_gives_the_job_back_to_admission(system, sandbox):
    from tasks import admission

    env = {"VISIBILITY_TIMEOUT_S": "20"}  # the broker would have redelivered by then
    job_id = system.enqueue(image_bytes(40, 40), "picwish", "hd")
    system.start_worker(queues="enhance.admit", **env)  # admits, nobody submits
    system.wait([job_id], timeout_s=30,
                until=lambda rs: system.runtime.redis.llen("enhance.submit") == 1)
    assert admission.admitted_count(system.runtime, "picwish") == 1
    system.purge()  # the broker lost the submit message

    system.start_worker(**env)
    system.start_beat(**env)
    [record] = system.wait([job_id], timeout_s=90)

    assert record.state.value == "succeeded"
    assert sandbox.count(provider="picwish", kind="submit") == 1
    assert "admitted but its submit was lost" in system.logs("beat") + system.logs("worker")


def test_a_paid_call_longer_than_the_claim_lease_renews_it_and_is_never_taken_for_lost(
        system, sandbox):
    # Issue 9: a claim held its job for the call's longest (52 s) so that a slow call was
    # never taken for lost, which also left a killed worker's job that long. The claim now
    # lasts SUBMIT_LEASE_S and is renewed while the call runs: a 5 s call against a 3 s
    # lease, with reconcile looking every half second, must still end paid once, stored.
    sandbox.configure(create_latency_s=(5.0, 5.0), processing_time_s=(0.2, 0.4))
    env = {"SUBMIT_LEASE_S": "3", "RECONCILE_INTERVAL_S": "0.5",
           "HTTP_READ_TIMEOUT_S": "10", "HTTP_DEADLINE_S": "12"}
    system.start_worker(concurrency=2, **env)  # reconcile runs beside the call
    system.start_beat(**env)
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    system.wait([job_id], timeout_s=30,
                until=lambda rs: rs[0].submit_started_at is not None)

    [record] = system.wait([job_id], timeout_s=60)

    assert (record.state.value, record.error) == ("succeeded", None)
    assert sandbox.count(provider="hitpaw", kind="submit") == 1
    assert record.lease_expires_at is None, "the claim's lease ended with the submission"
    assert "claim not renewed" not in system.logs("worker")


def test_a_submit_interrupted_after_the_paid_call_fails_as_outcome_unknown(system, sandbox):
    from datetime import UTC, datetime, timedelta

    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    # A worker claimed the job (as submit_job claims: with the claim's lease as the next
    # check), called the provider and died before recording the answer.
    lease_s = system.settings.step_lease_s
    system.runtime.jobs.update(job_id, lambda r: True,
                               lambda r: {"submit_started_at": datetime.now(UTC),
                                          "next_check_at": datetime.now(UTC)
                                          + timedelta(seconds=lease_s)})

    system.start_worker()  # admission's submit finds the claim and leaves it alone...
    system.start_beat()  # ...until reconcile sees its lease lapse
    [record] = system.wait([job_id], timeout_s=30)

    assert (record.state.value, record.error.code) == ("failed", "outcome_unknown")
    assert sandbox.count(provider="hitpaw", kind="submit") == 0
