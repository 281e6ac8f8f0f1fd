"""The last step: copy a finished result into S3 before the provider's URL expires.

The result is streamed from the provider's URL straight into a multipart upload, so a
worker's memory stays flat whatever the image size; ``storage.objects`` checks it is the
image it claims to be and leaves nothing of its own behind when anything fails.

One store at a time per job: a store holds a lease on the job (``lease_token`` and
``lease_expires_at`` in the record) and renews it while the result streams. A second store
(a redelivered message, a re-drive by reconcile) cannot start while the lease is live; a
store that finds its lease taken over stops before completing its upload. A claim over a
lapsed lease is a real redelivery (a worker lost mid-store): only those count towards
``MAX_REDELIVERIES``. Transient failures (S3 or the CDN) release the lease and are retried
with backoff for as long as the result URL lives, then the job fails ``result_expired``.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from typing import BinaryIO

from celery.exceptions import SoftTimeLimitExceeded

from providers.base import ImageInfo
from providers.download import open_result
from providers.errors import TransientError
from providers.images import extension_for_format
from providers.urlguard import strip_credentials
from storage.errors import ResultCheckFailed, StorageFailed
from storage.jobs import JobOutput, JobRecord, JobState, seconds_from_now, utcnow
from tasks import events
from tasks.jobsteps import check_still_possible, finish
from workers.runtime import Runtime

log = logging.getLogger("enhance.store")


class LeaseLost(Exception):
    """Another store took this job over (our lease lapsed): stop without touching the job."""


def store_result(rt: Runtime, job_id: str) -> None:
    """Stream the result of a job in ``storing`` into the bucket, once."""
    record = rt.jobs.get(job_id)
    if record.state is not JobState.STORING:
        log.info("job %s: store skipped, already %s", job_id, record.state.value)
        return
    check_still_possible(rt, record)
    lease = StoreLease.claim(rt, record)
    if lease is None:
        return
    try:
        _store_claimed(rt, lease)
    except LeaseLost:
        log.warning("job %s: store lease taken over by another store; this one stopped",
                    job_id)
    except SoftTimeLimitExceeded as exc:
        lease.release()
        raise TransientError("the store ran past its time limit", record.provider) from exc
    except TransientError:
        lease.release()  # the task's retry may claim it at once
        raise


def _store_claimed(rt: Runtime, lease: StoreLease) -> None:
    record = lease.record
    if not record.result_inline:
        with open_result(rt.http, record.provider, record.result_url, rt.settings) as download:
            _stream(rt, lease, download.stream, download.size_bytes)
        return
    # The store at poll time was lost: ask for the bytes again (a free, repeatable read).
    status = events.counted(rt, record.provider, "poll", rt.provider(record.provider).query,
                            record.provider_job_id)
    if status.result_bytes:
        _stream(rt, lease, io.BytesIO(status.result_bytes), len(status.result_bytes))
    elif status.result_url:
        with open_result(rt.http, record.provider, status.result_url, rt.settings) as download:
            _stream(rt, lease, download.stream, download.size_bytes)
    else:
        raise ResultCheckFailed("the provider returned no result bytes when asked again",
                                record.provider)


def store_bytes(rt: Runtime, record: JobRecord, data: bytes) -> None:
    """Store a result that came inline (PicWish ``return_type=2``) with a poll answer."""
    if not data:
        raise ResultCheckFailed("the provider's inline result has no bytes", record.provider)
    lease = StoreLease.claim(rt, record)
    if lease is None:
        return
    try:
        _stream(rt, lease, io.BytesIO(data), len(data))
    except LeaseLost:
        log.warning("job %s: store lease taken over by another store", record.id)
    except TransientError:
        lease.release()
        raise


class StoreLease:
    """This store's hold on a job in ``storing``; renewed while the result streams."""

    def __init__(self, rt: Runtime, record: JobRecord) -> None:
        self.rt = rt
        self.record = record
        self.token = record.lease_token or ""
        self._renewed_at = time.monotonic()

    @classmethod
    def claim(cls, rt: Runtime, record: JobRecord) -> StoreLease | None:
        """Take the job's store lease, or None while another store holds a live one.

        Raises:
            StorageFailed: the result has already cost ``MAX_REDELIVERIES`` lost workers.
        """
        token, now = uuid.uuid4().hex[:16], utcnow()
        expires_at = seconds_from_now(rt.settings.store_lease_s)
        claimed = rt.jobs.update(
            record.id,
            lambda r: r.state is JobState.STORING and (
                r.lease_expires_at is None or r.lease_expires_at <= now),
            lambda r: {"lease_token": token, "lease_expires_at": expires_at,
                       "next_check_at": expires_at,
                       # a lease that lapsed unreleased: its worker was lost mid-store
                       "store_attempts": r.store_attempts + (r.lease_token is not None)},
        )
        if claimed is None:
            log.info("job %s: store skipped, another store holds the job", record.id)
            return None
        limit = rt.settings.max_redeliveries
        if claimed.store_attempts >= limit:
            raise StorageFailed(f"gave up storing the result: {claimed.store_attempts} workers "
                                f"were lost storing it (MAX_REDELIVERIES={limit})",
                                record.provider)
        return cls(rt, claimed)

    def renew(self, _bytes_read: int = 0) -> None:
        """Extend the lease (at most every third of its length); ``LeaseLost`` if taken over."""
        lease_s = self.rt.settings.store_lease_s
        if time.monotonic() - self._renewed_at < lease_s / 3:
            return
        expires_at = seconds_from_now(lease_s)
        renewed = self.rt.jobs.update(self.record.id, self.holds,
                                      lambda r: {"lease_expires_at": expires_at,
                                                 "next_check_at": expires_at})
        if renewed is None:
            raise LeaseLost(self.record.id)
        self._renewed_at = time.monotonic()

    def release(self) -> None:
        """Give the lease back, so a retry can claim it at once; never raises."""
        settings = self.rt.settings
        try:
            self.rt.jobs.update(  # reconcile re-drives it if the retry is lost too
                self.record.id, self.holds,
                lambda r: {"lease_token": None, "lease_expires_at": None,
                           "next_check_at": seconds_from_now(settings.max_countdown_s
                                                             + settings.store_lease_s)})
        except Exception:  # noqa: BLE001 - the lease lapses by itself
            log.exception("job %s: store lease not released", self.record.id)

    def holds(self, record: JobRecord) -> bool:
        return record.state is JobState.STORING and record.lease_token == self.token


def _stream(rt: Runtime, lease: StoreLease, stream: BinaryIO, size_bytes: int | None) -> None:
    record = lease.record

    def key_for(info: ImageInfo) -> str:  # the bytes decide the extension
        return rt.objects.result_key(record.id, extension_for_format(info.format) or ".img")

    stored = rt.objects.stream_result(
        key_for, stream,
        metadata=object_metadata(record),
        expected_size=size_bytes,
        expected_width=record.result_width,
        expected_height=record.result_height,
        on_progress=lease.renew,
    )
    output = JobOutput(uri=stored.uri, bucket=stored.bucket, key=stored.key,
                       size_bytes=stored.size_bytes, content_type=stored.content_type,
                       width=stored.width, height=stored.height)
    done = finish(rt, record.id, lease.holds, {"state": JobState.SUCCEEDED, "output": output})
    if done is None:
        raise LeaseLost(record.id)
    events.stored(rt, done)


def object_metadata(record: JobRecord) -> dict[str, str]:
    """S3 user metadata naming where the object came from (no query, no credentials), and
    the producer's labels as ``label-<key>``."""
    return {
        "job-id": record.id,
        "provider": record.provider,
        "model": record.model,
        "source": strip_credentials(record.source.uri.split("?", 1)[0])[:512],
        "provider-job-id": record.provider_job_id or "",
        **{f"label-{key}": value for key, value in record.labels.items()},
    }
