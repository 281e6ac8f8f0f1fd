"""The last step: copy a finished result into S3 before the provider's URL expires.

The result is streamed from the provider's URL straight into a multipart upload, so a
worker's memory stays flat whatever the image size; ``storage.objects`` checks it is the
image it claims to be and leaves nothing behind when anything fails.
"""

from __future__ import annotations

import io
import logging
from typing import BinaryIO

from providers.download import open_result
from providers.images import content_type_for_format, extension_for_format, format_for_extension
from providers.urlguard import strip_credentials
from storage.errors import StorageFailed
from storage.jobs import JobOutput, JobRecord, JobState, in_states, seconds_from_now
from tasks import events
from tasks.pipeline import check_still_possible
from workers.runtime import Runtime

log = logging.getLogger("enhance.store")


def store_result(rt: Runtime, job_id: str) -> None:
    """Stream the result of a job in ``storing`` into the bucket, once."""
    record = rt.jobs.get(job_id)
    if record.state is not JobState.STORING:
        log.info("job %s: store skipped, already %s", job_id, record.state.value)
        return
    check_still_possible(rt, record)
    record = _claim(rt, record)
    if record is None:
        return
    if record.result_inline:  # the store at poll time was lost: ask for the bytes again
        status = events.counted(rt, record.provider, "poll", rt.provider(record.provider).query,
                                record.provider_job_id)
        store_bytes(rt, record, status.result_bytes or b"")
        return
    with open_result(rt.http, record.provider, record.result_url, rt.settings) as download:
        _stream(rt, record, download.stream, download.content_type, download.size_bytes)


def store_bytes(rt: Runtime, record: JobRecord, data: bytes) -> None:
    """Store a result that came inline (PicWish ``return_type=2``)."""
    _stream(rt, record, io.BytesIO(data), None, len(data))


def _claim(rt: Runtime, record: JobRecord) -> JobRecord | None:
    """Count this attempt; give up when a result keeps killing its store tasks."""
    limit = rt.settings.max_redeliveries
    if record.store_attempts >= limit:
        raise StorageFailed(f"gave up storing the result after {limit} attempts",
                            record.provider)
    # A store of a large result can take minutes: the lease runs as long as the broker's
    # own redelivery, so reconcile never starts a second upload of the same key.
    return rt.jobs.update(
        record.id, lambda r: r.state is JobState.STORING and r.updated_at == record.updated_at,
        lambda r: {"store_attempts": r.store_attempts + 1,
                   "next_check_at": seconds_from_now(rt.settings.visibility_timeout_s)},
    )


def _stream(rt, record: JobRecord, stream: BinaryIO, content_type: str | None,
            size_bytes: int | None) -> None:
    image_format = _result_format(record, content_type)
    key = rt.objects.result_key(record.id, extension_for_format(image_format) or ".img")
    stored = rt.objects.stream_result(
        key, stream,
        content_type=content_type_for_format(image_format),
        metadata=object_metadata(record),
        expected_size=size_bytes,
        expected_width=record.result_width,
        expected_height=record.result_height,
    )
    output = JobOutput(uri=stored.uri, bucket=stored.bucket, key=stored.key,
                       size_bytes=stored.size_bytes, content_type=stored.content_type,
                       width=stored.width, height=stored.height)
    done = rt.jobs.update(record.id, in_states(JobState.STORING),
                          lambda r: {"state": JobState.SUCCEEDED, "output": output,
                                     "next_check_at": None})
    if done is not None:
        events.transition(rt, done)
        events.stored(rt, done)


def _result_format(record: JobRecord, content_type: str | None) -> str:
    """The result's image format: from the provider's answer, else the source's."""
    if content_type and content_type.startswith("image/"):
        fmt = format_for_extension("." + content_type.split("/", 1)[1].split(";")[0])
        if fmt:
            return fmt
    if record.source.image:
        return record.source.image.format
    ext = record.options.get("extension") or ".jpg"
    return format_for_extension(ext) or "JPEG"


def object_metadata(record: JobRecord) -> dict[str, str]:
    """S3 user metadata naming where the object came from (no query, no credentials)."""
    return {
        "job-id": record.id,
        "provider": record.provider,
        "model": record.model,
        "source": strip_credentials(record.source.uri.split("?", 1)[0])[:512],
        "provider-job-id": record.provider_job_id or "",
    }
