"""The producer API for web backends and the CLI: enqueue a job, read a job.

``enqueue`` records the job and queues its submit task; it never talks to the provider,
so it returns in milliseconds. A job whose fingerprint matches an earlier one is settled
by ``tasks.reuse`` instead of being paid for again (see there). Bad input that needs the provider's rules (model, format,
size) fails the job in the worker, before any money is spent, with a clear error code.
"""

from __future__ import annotations

import re
from typing import Any

from providers import get_provider_class
from providers.errors import InvalidInput
from storage.jobs import JobRecord, seconds_from_now
from tasks import events, jobsteps, staging
from tasks.reuse import ReuseMode, check_mode, fingerprint_for, place
from tasks.staging import Source
from workers.runtime import Runtime, get_runtime

DEFAULT_TENANT = "default"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def enqueue(
    source: Source,
    provider: str,
    model: str | None = None,
    options: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    filename: str | None = None,
    tenant: str = DEFAULT_TENANT,
    reuse: ReuseMode = True,
    runtime: Runtime | None = None,
) -> str:
    """Queue an enhancement and return its job id at once.

    Args:
        source: an http(s) URL, an ``s3://`` URI, a local path, bytes or a file object.
        provider: ``"hitpaw"`` or ``"picwish"``.
        model: the provider's model name (its default when None).
        options: provider options (HitPaw ``extension``, ``exif``, ``dpi``; PicWish
            ``return_type``, ``sync``).
        idempotency_key: the same key twice with the same request returns the first job,
            paid once; with a different source, model or options it is refused.
        filename: the source's original name, for the record.
        tenant: whose job it is (1-64 letters, digits, ``_.@-``).
        reuse: True (default) settles the job from an identical earlier or in-flight
            job where the input's bytes or ``s3://`` ETag identify it; ``"url"`` also
            trusts a URL source to mean the same image each time; False opts out.
        runtime: the process runtime (tests); the environment's by default.

    Raises:
        InvalidInput: the provider is unknown; a URL breaks the URL guard (scheme, loopback,
            private or metadata address...); an ``s3://`` bucket is neither ``S3_BUCKET``
            nor in ``S3_SOURCE_BUCKETS``; a local source is not a regular file, is over
            ``LOCAL_SOURCE_MAX_BYTES``, or is not an accepted image (SECURITY.md); ``tenant`` or
            ``reuse`` is not a value they take.
        IdempotencyConflict: ``idempotency_key`` was used before for a different request
            (an ``InvalidInput``, code ``idempotency_conflict``).
    """
    rt = runtime or get_runtime()
    provider_cls = get_provider_class(provider)
    mode = check_mode(reuse)
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        raise InvalidInput(f"tenant must be 1-64 letters, digits or _.@- , not {tenant!r}")
    record = JobRecord(
        provider=provider, model=model or provider_cls.default_model(), options=options or {},
        source=staging.JobSource(uri="pending:"), idempotency_key=idempotency_key,
        tenant=tenant, next_check_at=seconds_from_now(rt.settings.stale_after_s),
    )
    record.source = staging.stage_source(rt, record.id, source, filename)
    try:
        record.fingerprint = fingerprint_for(rt, record, mode)
        stored, created = rt.jobs.create(record)
    except BaseException:  # e.g. IdempotencyConflict: keep no copy of the input
        jobsteps.delete_staged_input(rt, record)
        raise
    if not created:  # an idempotent repeat: the first job has its own input
        jobsteps.delete_staged_input(rt, record)
        return stored.id
    events.transition(rt, stored)
    from tasks.definitions import DISPATCH  # the Celery app is only needed to send

    if place(rt, DISPATCH, stored):  # not settled from an identical job: pay for it
        DISPATCH.submit(stored.id)
    return stored.id


def get_job(job_id: str, *, runtime: Runtime | None = None) -> JobRecord:
    """The record of a job; raises ``UnknownJob`` for an id that was never enqueued."""
    return (runtime or get_runtime()).jobs.get(job_id)


__all__ = ["enqueue", "get_job", "InvalidInput"]
