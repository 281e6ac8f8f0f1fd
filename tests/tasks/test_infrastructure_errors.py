"""A broker or job-store outage during a step never fails the job: reconcile re-drives it."""

from __future__ import annotations

import pytest
import redis
from kombu.exceptions import OperationalError

from storage.jobs import JobState
from tasks.definitions import poll, submit
from tests.system import image_bytes


@pytest.mark.parametrize("exc", [
    OperationalError("Error 111 connecting to 127.0.0.1:6380. Connection refused."),
    redis.ConnectionError("Connection closed by server."),
    redis.TimeoutError("Timeout reading from socket"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
])
def test_an_unreachable_broker_or_store_leaves_the_job_for_reconcile(system, exc, caplog):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")

    submit.on_failure(exc, "task-id", (job_id,), {}, None)

    assert system.job(job_id).state is JobState.QUEUED
    assert "left for reconcile" in caplog.text


def test_any_other_unexpected_error_still_fails_the_job(system):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")

    poll.on_failure(KeyError("surprise"), "task-id", (job_id,), {}, None)

    record = system.job(job_id)
    assert (record.state, record.error.code) == (JobState.FAILED, "error")
