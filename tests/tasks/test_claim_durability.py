"""A submit whose claim cannot be made durable makes no paid call and keeps no claim."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.durability import NotDurable
from storage.jobs import JobState, utcnow
from tasks import pipeline
from tests.system import System, image_bytes
from tests.tasks.dispatch import RecordingDispatcher


@pytest.fixture
def durable_system(system_env, tmp_path):
    # No replica answers on the test Redis: WAIT 1 can never be satisfied.
    env = {**system_env, "CLAIM_DURABILITY": "wait", "CLAIM_WAIT_TIMEOUT_MS": "20"}
    deployment = System(env, tmp_path)
    yield deployment
    deployment.stop()


def test_an_unconfirmed_claim_is_released_before_any_paid_call(durable_system, system,
                                                              sandbox):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")  # not durable
    dispatch = RecordingDispatcher()

    with pytest.raises(NotDurable):
        pipeline.submit_job(durable_system.runtime, dispatch, job_id)

    record = durable_system.job(job_id)
    assert (record.state, record.submit_started_at) == (JobState.QUEUED, None)
    assert sandbox.count(kind="submit") == 0
    assert dispatch.sent == []


def test_a_new_record_that_cannot_be_made_durable_is_taken_back(durable_system, sandbox):
    # Issue 9, failover: a job created in the unreplicated window came back unknown_job.
    rt = durable_system.runtime
    def nonzero_counts():
        return {state: n for state, n in rt.jobs.counts().items() if n}

    counts_before = nonzero_counts()

    with pytest.raises(NotDurable):
        durable_system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x",
                               idempotency_key="k-1")

    assert rt.jobs.job_for_key("hitpaw", "k-1") is None, "a retry with the key starts anew"
    assert nonzero_counts() == counts_before
    assert rt.jobs.overdue(utcnow() + timedelta(days=30)) == []
    assert list(rt.redis.scan_iter("eq:job:*")) == []
    client, bucket = rt.objects.client, rt.settings.s3_bucket
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "input deleted"
