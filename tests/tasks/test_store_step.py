"""The store step called directly: its lease, its retries, inline results.

Real Redis, S3 over HTTP and the sandbox; the hand-off to the next task is recorded.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from providers.base import JobStatus, Phase
from providers.errors import ResultExpired
from storage.errors import ResultCheckFailed, StorageFailed, StorageUnavailable
from storage.jobs import JobState, utcnow
from storage.objects import ObjectStore, make_s3_client
from tasks import pipeline, store
from tests.system import image_bytes
from tests.tasks.test_steps import force, submitted_job
from workers.embedded import free_port


def storing_job(system, rt, dispatch, provider="hitpaw", **options):
    """A job the provider finished, in ``storing``, its store not started."""
    record = submitted_job(system, rt, dispatch, provider, **options)
    for _ in range(200):
        record = rt.jobs.get(record.id)
        if record.state is JobState.STORING or record.state.final:
            return record
        pipeline.poll_job(rt, dispatch, record.id, record.poll_token)
        time.sleep(0.05)
    raise AssertionError("the sandbox did not finish the job")


def objects_of(rt, job_id):
    listing = rt.objects.client.list_objects_v2(Bucket=rt.objects.bucket,
                                                Prefix=f"{rt.objects.prefix}{job_id}")
    uploads = rt.objects.client.list_multipart_uploads(Bucket=rt.objects.bucket,
                                                       Prefix=f"{rt.objects.prefix}{job_id}")
    return [o["Key"] for o in listing.get("Contents", [])], uploads.get("Uploads", [])


def test_a_second_store_cannot_start_while_the_lease_is_live(system, rt, dispatch, sandbox):
    record = storing_job(system, rt, dispatch)
    force(rt, record.id, lease_token="another-store",
          lease_expires_at=utcnow() + timedelta(seconds=30))
    downloads = sandbox.count(kind="result")

    store.store_result(rt, record.id)

    after = rt.jobs.get(record.id)
    assert (after.state, after.lease_token) == (JobState.STORING, "another-store")
    assert objects_of(rt, record.id) == ([], [])
    assert sandbox.count(kind="result") == downloads, "no second download"


def test_a_claim_over_a_lapsed_lease_is_a_real_redelivery(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    force(rt, record.id, lease_token="a-lost-worker",
          lease_expires_at=utcnow() - timedelta(seconds=1))

    store.store_result(rt, record.id)

    after = rt.jobs.get(record.id)
    assert after.state is JobState.SUCCEEDED and after.store_attempts == 1
    assert after.lease_token is None and after.output.key in objects_of(rt, record.id)[0]


def test_a_result_that_keeps_killing_its_workers_is_given_up(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    limit = rt.settings.max_redeliveries
    force(rt, record.id, lease_token="a-lost-worker", store_attempts=limit - 1,
          lease_expires_at=utcnow() - timedelta(seconds=1))

    with pytest.raises(StorageFailed, match="workers were lost"):
        store.store_result(rt, record.id)


def test_transient_s3_failures_retry_without_spending_redeliveries(system, rt, dispatch):
    # Issue 9: every retry counted as a redelivery, so a few seconds of S3 trouble lost
    # the result after MAX_REDELIVERIES attempts.
    record = storing_job(system, rt, dispatch)
    real = rt.objects
    rt.objects = ObjectStore(make_s3_client(f"http://127.0.0.1:{free_port()}", max_attempts=1,
                                            connect_timeout_s=1), real.bucket, real.prefix)
    try:
        for _ in range(rt.settings.max_redeliveries + 2):
            with pytest.raises(StorageUnavailable):
                store.store_result(rt, record.id)
            after = rt.jobs.get(record.id)
            assert (after.state, after.store_attempts, after.lease_token) == \
                (JobState.STORING, 0, None), "released for the task's retry, not counted"
    finally:
        rt.objects = real

    store.store_result(rt, record.id)  # S3 is back
    assert rt.jobs.get(record.id).state is JobState.SUCCEEDED


def test_retries_end_result_expired_once_the_url_is_dead(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    force(rt, record.id, result_expires_at=utcnow() - timedelta(seconds=1))

    with pytest.raises(ResultExpired):
        store.store_result(rt, record.id)
    assert objects_of(rt, record.id) == ([], [])


def test_without_a_known_expiry_retries_last_the_store_retry_window(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    window = timedelta(seconds=rt.settings.store_retry_window_s + 1)
    force(rt, record.id, result_expires_at=None,
          transitions={**record.transitions, "storing": utcnow() - window})

    with pytest.raises(ResultExpired):
        store.store_result(rt, record.id)


def test_a_lease_taken_over_stops_the_store_at_its_next_renewal(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    lease = store.StoreLease.claim(rt, rt.jobs.get(record.id))
    force(rt, record.id, lease_token="someone-else")
    lease.renew()  # renewals are throttled: nothing is written yet

    lease._renewed_at -= rt.settings.store_lease_s
    with pytest.raises(store.LeaseLost):
        lease.renew()


def test_a_renewal_extends_the_lease_and_the_overdue_time(system, rt, dispatch):
    record = storing_job(system, rt, dispatch)
    lease = store.StoreLease.claim(rt, rt.jobs.get(record.id))
    before = rt.jobs.get(record.id).lease_expires_at
    lease._renewed_at -= rt.settings.store_lease_s

    lease.renew()

    after = rt.jobs.get(record.id)
    assert after.lease_expires_at > before and after.next_check_at == after.lease_expires_at


def png_status(record, data):
    return JobStatus(provider=record.provider, job_id=record.provider_job_id or "x",
                     phase=Phase.COMPLETED, raw_status="1", result_bytes=data)


def test_an_inline_png_is_stored_as_png_whatever_the_source_was(system, rt, dispatch):
    # Issue 9: the format was decided before the header probe (from the JPEG source).
    record = submitted_job(system, rt, dispatch, "picwish")
    assert record.source.image.format == "JPEG"
    force(rt, record.id, state=JobState.STORING, poll_token=None, result_inline=True)

    store.store_bytes(rt, rt.jobs.get(record.id), image_bytes(30, 20, "PNG"))

    output = rt.jobs.get(record.id).output
    assert output.key.endswith(f"{record.id}.png") and output.content_type == "image/png"


def test_an_inline_result_without_bytes_is_an_error_not_an_empty_object(system, rt, dispatch):
    record = submitted_job(system, rt, dispatch, "picwish")
    force(rt, record.id, state=JobState.STORING, poll_token=None, result_inline=True)

    with pytest.raises(ResultCheckFailed, match="no bytes"):
        store.store_bytes(rt, rt.jobs.get(record.id), b"")
    assert objects_of(rt, record.id) == ([], [])


def test_a_second_query_that_returns_no_bytes_fails_instead_of_storing_nothing(
        system, rt, dispatch, monkeypatch):
    record = submitted_job(system, rt, dispatch, "picwish")
    force(rt, record.id, state=JobState.STORING, poll_token=None, result_inline=True)
    provider = rt.provider("picwish")
    monkeypatch.setattr(provider, "query", lambda job_id: png_status(record, None))

    with pytest.raises(ResultCheckFailed, match="no result bytes"):
        store.store_result(rt, record.id)
    assert objects_of(rt, record.id) == ([], [])


def test_a_store_past_its_soft_time_limit_releases_its_lease_for_a_retry(
        system, rt, dispatch, monkeypatch):
    from celery.exceptions import SoftTimeLimitExceeded

    from providers.errors import TransientError

    record = storing_job(system, rt, dispatch)

    def signal_arrives(*args, **kwargs):  # Celery raises it wherever the task is
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(store, "open_result", signal_arrives)
    with pytest.raises(TransientError, match="time limit"):
        store.store_result(rt, record.id)

    after = rt.jobs.get(record.id)
    assert (after.state, after.lease_token, after.store_attempts) == (JobState.STORING, None, 0)
