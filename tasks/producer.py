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
from storage.jobs import DEFAULT_TENANT, JobRecord, Priority, seconds_from_now
from tasks import events, jobsteps, notify, staging
from tasks.notify import WebhookNotConfigured, WebhookVerificationFailed, verify_webhook
from tasks.reuse import ReuseMode, admit, check_mode, fingerprint_for, place
from tasks.staging import Source
from workers.runtime import Runtime, get_runtime

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
    priority: str = Priority.INTERACTIVE.value,
    deadline_s: float | None = None,
    webhook: str | None = None,
    webhook_events: list[str] | None = None,
    on_done: str | dict[str, Any] | None = None,
    on_done_queue: str | None = None,
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
        priority: ``"interactive"`` (the default: goes first) or ``"batch"`` (keeps a
            guaranteed share of admissions, ``BATCH_SHARE_EVERY``).
        deadline_s: fail the job ``deadline_exceeded`` if it is not admitted within this
            many seconds (default ``QUEUE_DEADLINE_S``).
        webhook: an http(s) URL that gets a signed Standard Webhooks POST when the job ends
            (README, "Webhooks and callbacks"); it passes the same URL guard as sources.
        webhook_events: which ends to send: ``job.succeeded``, ``job.failed``,
            ``job.cancelled`` (or ``succeeded``...; ``completed`` = all, the default).
        on_done: a Celery task name or signature sent when the job ends, with the job (a
            JSON dict, as the webhook's ``data``) as its first argument.
        on_done_queue: the queue ``on_done`` goes to when its signature names none
            (default ``celery``).
        runtime: the process runtime (tests); the environment's by default.

    Raises:
        InvalidInput: the provider is unknown; a URL breaks the URL guard (scheme, loopback,
            private or metadata address...); an ``s3://`` bucket is neither ``S3_BUCKET``
            nor in ``S3_SOURCE_BUCKETS``; a local source is not a regular file, is over
            ``LOCAL_SOURCE_MAX_BYTES``, or is not an accepted image (SECURITY.md); ``tenant`` or
            ``reuse``, ``priority`` or ``deadline_s`` is not a value they take; the webhook
            URL breaks the URL guard, an event name is unknown, ``on_done`` is not a task
            name or JSON-serialisable signature.
        WebhookNotConfigured: ``webhook`` is given and ``WEBHOOK_SECRET`` is not set.
        IdempotencyConflict: ``idempotency_key`` was used before for a different request
            (an ``InvalidInput``, code ``idempotency_conflict``).
    """
    rt = runtime or get_runtime()
    provider_cls = get_provider_class(provider)
    mode = check_mode(reuse)
    if not isinstance(tenant, str) or not _TENANT_RE.match(tenant):
        raise InvalidInput(f"tenant must be 1-64 letters, digits or _.@- , not {tenant!r}")
    deadline = seconds_from_now(_deadline_s(rt, deadline_s))
    record = JobRecord(
        provider=provider, model=model or provider_cls.default_model(), options=options or {},
        source=staging.JobSource(uri="pending:"), idempotency_key=idempotency_key,
        tenant=tenant, priority=_priority(priority), deadline_at=deadline,
        next_check_at=deadline,
        notify=notify.prepare(rt, webhook, webhook_events, on_done, on_done_queue),
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
        admit(rt, DISPATCH, stored)  # record created -> push to admission
    return stored.id


def _priority(priority: str) -> Priority:
    try:
        return Priority(priority)
    except ValueError:
        raise InvalidInput(f"priority must be one of {', '.join(p.value for p in Priority)}, "
                           f"not {priority!r}") from None


def _deadline_s(rt: Runtime, deadline_s: float | None) -> float:
    if deadline_s is None:
        return rt.settings.queue_deadline_s
    if not isinstance(deadline_s, int | float) or not 0 < deadline_s <= 30 * 24 * 3600:
        raise InvalidInput("deadline_s must be a number of seconds, up to 30 days")
    return float(deadline_s)


def get_job(job_id: str, *, runtime: Runtime | None = None) -> JobRecord:
    """The record of a job; raises ``UnknownJob`` for an id that was never enqueued."""
    return (runtime or get_runtime()).jobs.get(job_id)


__all__ = ["enqueue", "get_job", "verify_webhook", "InvalidInput", "WebhookNotConfigured",
           "WebhookVerificationFailed"]
