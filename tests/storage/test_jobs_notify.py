"""The job store owes a job's notification in the same MULTI as its final state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.jobs import JobRecord, JobSource, JobState, JobStore, utcnow
from storage.notifications import Notification, WebhookOutcome


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def record(notify: Notification | None) -> JobRecord:
    return JobRecord(provider="picwish", model="hd", source=JobSource(uri="s3://b/in.jpg"),
                     notify=notify)


def finish(store: JobStore, job_id: str, state: JobState = JobState.SUCCEEDED) -> JobRecord:
    return store.update(job_id, lambda r: True, lambda r: {"state": state})


def webhook(**fields) -> Notification:
    return Notification(webhook="https://backend.example/h", webhook_events=["job.succeeded"],
                        **fields)


def test_a_job_ending_with_a_webhook_is_owed_from_its_final_write(store, redis_client):
    job, _ = store.create(record(webhook()))
    assert redis_client.zcard("eq:notify") == 0  # nothing owed before the end

    done = finish(store, job.id)

    assert redis_client.zscore("eq:notify", job.id) == done.updated_at.timestamp()
    assert store.notifications_overdue(utcnow() + timedelta(seconds=1)) == [job.id]
    assert store.notifications_overdue(done.updated_at - timedelta(seconds=1)) == []


def test_settling_the_notification_takes_it_off(store, redis_client):
    job, _ = store.create(record(webhook()))
    finish(store, job.id)

    store.update(job.id, lambda r: True, lambda r: {"notify": r.notify.model_copy(
        update={"webhook_outcome": WebhookOutcome.DELIVERED})})

    assert redis_client.zcard("eq:notify") == 0


def test_an_end_not_subscribed_and_jobs_without_notification_owe_nothing(store, redis_client):
    failed_only = Notification(webhook="https://backend.example/h", webhook_events=["job.failed"])
    quiet, _ = store.create(record(failed_only))
    plain, _ = store.create(record(None))

    finish(store, quiet.id)
    finish(store, plain.id)

    assert redis_client.zcard("eq:notify") == 0


def test_an_on_done_is_owed_whatever_the_end(store, redis_client):
    job, _ = store.create(record(Notification(on_done={"task": "t", "options": {"queue": "q"}})))
    finish(store, job.id, JobState.FAILED)
    assert redis_client.zscore("eq:notify", job.id) is not None


def test_a_final_job_lasts_from_creation_to_its_end_not_to_later_bookkeeping(store):
    job, _ = store.create(record(webhook()))
    done = finish(store, job.id)
    later = store.update(job.id, lambda r: True, lambda r: {"notify": r.notify.model_copy(
        update={"webhook_attempts": 1})})
    assert later.updated_at > done.updated_at
    assert later.duration_s() == done.duration_s()
