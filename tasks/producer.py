"""The producer API: the one module a web backend imports.

Synchronous::

    enqueue(source, provider, model=None, options=None, *, labels=..., tenant=..., ...) -> id
    enqueue_many([{"source": ..., "provider": ...}, ...], **common) -> [id, ...]
    get_job(job_id) -> JobRecord
    wait(job_id, timeout_s=...) -> JobRecord            # final; blocks on announcements
    cancel(job_id) -> Cancellation
    output_url(job_id, expires_in=3600) -> str          # presigned HTTPS GET of the result
    list_jobs(state=, provider=, tenant=, label=, since=, cursor=, limit=) -> JobPage

asyncio (never blocking the event loop): ``aenqueue``, ``aenqueue_many``, ``aget_job``,
``await_job`` (alias ``wait_async``), ``acancel``, ``aoutput_url``, ``alist_jobs``, and
``aclose`` for an app's shutdown (``tasks.producer_async``, re-exported here).

``enqueue`` records the job and queues it for admission; it never talks to the provider,
so it returns in milliseconds. A job whose fingerprint matches an earlier one is settled by
``tasks.reuse`` instead of being paid for again. Bad input that needs the provider's rules
(model, format, size) fails the job in the worker, before any money is spent.

Errors are the project's one tree (``providers.errors``, ``storage.errors``), re-exported
here; each class has ``status_code``, the HTTP status a view answers with (README,
"Producer API")::

    except EnhanceError as exc:
        return JSONResponse({"error": exc.code, "message": exc.message}, exc.status_code)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from kombu.exceptions import OperationalError

from providers import PROVIDERS, get_provider_class
from providers.errors import (
    BudgetExhausted,
    EnhanceError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PermanentError,
    TransientError,
    error_for_code,
)
from storage.errors import ResultNotReady, StorageFailed, StorageUnavailable, WaitTimeout
from storage.jobindex import JobFilter
from storage.jobs import (
    DEFAULT_TENANT,
    IdempotencyConflict,
    JobOutput,
    JobRecord,
    JobState,
    Priority,
    UnknownJob,
    seconds_from_now,
)
from tasks import admission, events, jobsteps, notify, staging
from tasks.cancel import Cancellation, cancel_job
from tasks.errors import BrokerUnavailable
from tasks.producer_async import (
    DEFAULT_WAIT_S,
    acancel,
    aclose,
    aenqueue,
    aenqueue_many,
    aget_job,
    alist_jobs,
    aoutput_url,
    await_job,
    wait_async,
)
from tasks.reuse import ReuseMode, check_mode, fingerprint_for, place_many
from tasks.staging import Source
from tasks.webhooks import WebhookNotConfigured, WebhookVerificationFailed, verify_webhook
from workers.runtime import Runtime, get_runtime

_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_LABELS = 8  # labels per job: they ride in the result's S3 metadata (2 KB in all)
_LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")  # S3 metadata keys are lower-case
_LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:@/+-]{1,64}$")
MAX_URL_EXPIRES_S = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week


def enqueue(
    source: Source,
    provider: str,
    model: str | None = None,
    options: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    filename: str | None = None,
    tenant: str = DEFAULT_TENANT,
    labels: Mapping[str, str] | None = None,
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
        filename: the source's original name, for the record (and ``output_url``'s
            download name).
        tenant: whose job it is (1-64 letters, digits, ``_.@-``).
        labels: your own keys for the job, e.g. ``{"user": "42", "order": "A17"}``: kept
            on the record, written into the result's S3 metadata (``label-<key>``),
            filterable in ``list_jobs``. At most 8; keys 1-32 of ``a-z0-9_-`` starting
            with a letter; values 1-64 of ``A-Za-z0-9_.:@/+-``.
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
            ``LOCAL_SOURCE_MAX_BYTES``, or is not an accepted image (SECURITY.md); ``tenant``,
            ``labels``, ``reuse``, ``priority`` or ``deadline_s`` is not a value they take; the
            webhook URL breaks the URL guard, an event name is unknown, ``on_done`` is not
            a task name or JSON-serialisable signature.
        WebhookNotConfigured: ``webhook`` is given and ``WEBHOOK_SECRET`` is not set.
        IdempotencyConflict: ``idempotency_key`` was used before for a different request
            (an ``InvalidInput``, code ``idempotency_conflict``).
        StorageUnavailable: staging a local source into the bucket failed; try again.
        NotDurable: ``CLAIM_DURABILITY`` is set and the new record could not be confirmed
            durable (no replica acknowledged it); nothing was queued, try again.
        BrokerUnavailable: the job is recorded and queued, but the broker did not answer;
            it starts once the broker does (reconcile). ``job_ids[0]`` is its id: follow
            it, do not enqueue it again.
    """
    return enqueue_many([{
        "source": source, "provider": provider, "model": model, "options": options,
        "idempotency_key": idempotency_key, "filename": filename, "tenant": tenant,
        "labels": labels, "reuse": reuse, "priority": priority, "deadline_s": deadline_s,
        "webhook": webhook, "webhook_events": webhook_events, "on_done": on_done,
        "on_done_queue": on_done_queue,
    }], runtime=runtime)[0]


def enqueue_many(requests: Iterable[Mapping[str, Any]], *, runtime: Runtime | None = None,
                 **common: Any) -> list[str]:
    """Queue a batch: each request holds ``enqueue``'s arguments; returns the ids in order.

    ``common`` arguments apply to every request that does not set them (``tenant=``,
    ``labels=``...). All requests are checked (and local sources staged, one upload each)
    before any job is recorded: one bad request raises, naming its index, and no job of
    the batch is queued. The records, the reuse claims and the admission queues then take
    one Redis round trip each for the whole batch, whatever its size.

    Raises:
        InvalidInput, IdempotencyConflict, StorageUnavailable, NotDurable: as ``enqueue``.
        BrokerUnavailable: every job is recorded and queued (``job_ids``, in order), but
            the broker did not answer; they start once it does.
    """
    rt = runtime or get_runtime()
    prepared: list[JobRecord] = []
    try:
        for index, request in enumerate(requests):
            prepared.append(_prepare(rt, index, {**common, **request}))
        # keyed jobs due soon until admission has them (push_many): re-driven after a failure
        stored = rt.jobs.create_many(prepared, durable=True,  # CLAIM_DURABILITY
                                     handoff_s=rt.settings.stale_after_s)
    except BaseException:  # e.g. IdempotencyConflict: keep no copy of any input
        for record in prepared:
            jobsteps.delete_staged_input(rt, record)
        raise
    new = []
    for record, (job, created) in zip(prepared, stored, strict=True):
        if created:
            new.append(job)
        else:  # an idempotent repeat: the first job has its own input
            jobsteps.delete_staged_input(rt, record)
    ids = [job.id for job, _ in stored]
    broker_error = _queue(rt, new)
    if broker_error is not None:
        raise BrokerUnavailable(
            f"job{'s' if len(ids) > 1 else ''} {', '.join(ids)} recorded and queued, but the "
            f"broker did not take the message that starts admission ({broker_error}); they "
            "start once it answers again (reconcile): follow them, do not enqueue them "
            "again", job_ids=ids) from broker_error
    return ids


_ENQUEUE_ARGS = frozenset({"source", "provider", "model", "options", "idempotency_key",
                           "filename", "tenant", "labels", "reuse", "priority", "deadline_s",
                           "webhook", "webhook_events", "on_done", "on_done_queue"})


def _prepare(rt: Runtime, index: int, request: dict[str, Any]) -> JobRecord:
    """A checked record for one request, its local source staged; ``InvalidInput`` if not."""
    unknown = request.keys() - _ENQUEUE_ARGS
    if unknown or "source" not in request or "provider" not in request:
        raise InvalidInput(f"request {index}: needs source and provider; unknown "
                           f"arguments: {', '.join(sorted(unknown)) or 'none'}")
    try:
        return _record_for(rt, **request)
    except InvalidInput as exc:
        if index == 0:
            raise
        raise type(exc)(f"request {index}: {exc.message}", exc.provider) from exc


def _record_for(rt: Runtime, source: Source, provider: str, model: str | None = None,
                options: dict[str, Any] | None = None, idempotency_key: str | None = None,
                filename: str | None = None, tenant: str = DEFAULT_TENANT,
                labels: Mapping[str, str] | None = None, reuse: ReuseMode = True,
                priority: str = Priority.INTERACTIVE.value,
                deadline_s: float | None = None, webhook: str | None = None,
                webhook_events: list[str] | None = None,
                on_done: str | dict[str, Any] | None = None,
                on_done_queue: str | None = None) -> JobRecord:
    provider_cls = get_provider_class(provider)
    mode = check_mode(reuse)
    deadline = seconds_from_now(_deadline_s(rt, deadline_s))
    record = JobRecord(
        provider=provider, model=model or provider_cls.default_model(), options=options or {},
        source=staging.JobSource(uri="pending:"), idempotency_key=idempotency_key,
        tenant=_tenant(tenant), labels=check_labels(labels), priority=_priority(priority),
        deadline_at=deadline, next_check_at=deadline,
        notify=notify.prepare(rt, webhook, webhook_events, on_done, on_done_queue),
    )
    record.source = staging.stage_source(rt, record.id, source, filename)
    try:
        record.fingerprint = fingerprint_for(rt, record, mode)
    except BaseException:
        jobsteps.delete_staged_input(rt, record)
        raise
    return record


def _queue(rt: Runtime, records: list[JobRecord]) -> OperationalError | None:
    """Log the new jobs, settle those an identical job answers, admit the others.

    Returns the broker's error if a message could not be sent. Every job is in its
    admission queue or follows its leader by then, so what was not sent, reconcile sends:
    it starts an admission chain none holds (``send_run`` gives up a chain whose message
    failed) and settles a follower at its ``next_check_at``.
    """
    from tasks.definitions import DISPATCH  # the Celery app is only needed to send

    for record in records:
        events.transition(rt, record)
    dispatch = _SendsLater(DISPATCH)
    to_admit = place_many(rt, dispatch, records)
    for provider, token in admission.push_many(rt, to_admit) if to_admit else ():
        dispatch.send(admission.send_run, rt, provider, token, DISPATCH)
    return dispatch.error


class _SendsLater:
    """Reuse's dispatcher that notes the broker's first failure instead of raising it, so
    the rest of the batch still reaches its admission queue."""

    def __init__(self, dispatch: Any) -> None:
        self._dispatch = dispatch
        self.error: OperationalError | None = None

    def send(self, call: Any, *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except OperationalError as exc:
            self.error = self.error or exc

    def reuse(self, *args: Any, **kwargs: Any) -> None:
        self.send(self._dispatch.reuse, *args, **kwargs)

    def admit(self, *args: Any, **kwargs: Any) -> None:
        self.send(self._dispatch.admit, *args, **kwargs)


def check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """``labels`` as a plain dict, checked; ``InvalidInput`` naming the rule broken."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidInput(f"labels must be a mapping of str to str, not {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise InvalidInput(f"at most {MAX_LABELS} labels, not {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY_RE.fullmatch(key):
            raise InvalidInput(f"label key {key!r} must be 1-32 of a-z 0-9 _ -, starting "
                               "with a letter")
        if not isinstance(value, str) or not _LABEL_VALUE_RE.fullmatch(value):
            raise InvalidInput(f"label {key}={str(value)[:80]!r}: a value is 1-64 of "
                               "A-Z a-z 0-9 _ . : @ / + -")
    return dict(labels)


def _tenant(tenant: str) -> str:
    if not isinstance(tenant, str) or not _TENANT_RE.fullmatch(tenant):
        raise InvalidInput(f"tenant must be 1-64 letters, digits or _.@- , not {tenant!r}")
    return tenant


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


# --- reading, waiting, cancelling --------------------------------------------------------


def get_job(job_id: str, *, runtime: Runtime | None = None) -> JobRecord:
    """The record of a job; raises ``UnknownJob`` (404) for an id that was never enqueued."""
    return (runtime or get_runtime()).jobs.get(job_id)


def wait(job_id: str, timeout_s: float = DEFAULT_WAIT_S, *,
         runtime: Runtime | None = None) -> JobRecord:
    """Block until the job is final and return its record (succeeded, failed or cancelled).

    Blocks on the job's change announcements (Redis pub/sub, as ``enhance submit --wait``
    does), reading the record only when it changed: no polling loop.

    Raises:
        UnknownJob: no job has this id (404).
        WaitTimeout: ``timeout_s`` passed first (504); the job goes on.
        InvalidInput: ``timeout_s`` is not a positive number.
    """
    rt = runtime or get_runtime()
    record = None
    for records in rt.jobs.watch([job_id], check_timeout(timeout_s)):
        if not records:
            raise UnknownJob(f"no job {job_id!r} in the job store")
        record = records[0]
        if record.state.final:
            return record
    raise WaitTimeout(f"job {job_id} is still {record.state.value} after {timeout_s:g} s")


def check_timeout(timeout_s: float) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or \
            not 0 < timeout_s <= 7 * 24 * 3600:
        raise InvalidInput(f"timeout_s must be a positive number of seconds, not {timeout_s!r}")
    return float(timeout_s)


def cancel(job_id: str, *, runtime: Runtime | None = None) -> Cancellation:
    """Cancel a job: queued -> no paid call; submitted/processing -> no more polls, its
    result not stored, its cost kept; storing or final -> unchanged. The answer's
    ``cancelled`` says whether this call cancelled it, ``message`` why (not).

    Raises:
        UnknownJob: no job has this id (404).
    """
    return cancel_job(runtime or get_runtime(), job_id)


def output_url(job_id: str, expires_in: int = 3600, *, download: bool = False,
               runtime: Runtime | None = None) -> str:
    """A presigned HTTPS GET of the job's stored result, valid ``expires_in`` seconds.

    The response carries ``Content-Type`` (the result's) and ``Content-Disposition``
    (``inline``, or ``attachment`` with ``download=True``, and a file name made from the
    source's). Anyone holding the URL can fetch the object until it expires.

    Raises:
        UnknownJob: no job has this id (404).
        ResultNotReady: the job has not succeeded (409).
        InvalidInput: ``expires_in`` is not 1 s - 7 days.
    """
    rt = runtime or get_runtime()
    return presign_result(rt, rt.jobs.get(job_id), expires_in, download)


def presign_result(rt: Runtime, record: JobRecord, expires_in: int, download: bool) -> str:
    """``output_url`` for a record already read (the async twin reads it with asyncio)."""
    output = stored_output(record)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or \
            not 1 <= expires_in <= MAX_URL_EXPIRES_S:
        raise InvalidInput(f"expires_in must be 1-{MAX_URL_EXPIRES_S} seconds, not "
                           f"{expires_in!r}")
    return rt.objects.presign_get(output.uri, expires_in, content_type=output.content_type,
                                  content_disposition=content_disposition(record, download))


def stored_output(record: JobRecord) -> JobOutput:
    """Where the job's result is stored; ``ResultNotReady`` (409) unless it succeeded."""
    if record.state is not JobState.SUCCEEDED or record.output is None:
        raise ResultNotReady(f"job {record.id} has no stored result: it is "
                             f"{record.state.value}")
    return record.output


def download_name(record: JobRecord) -> str:
    """The result's file name: the source's, marked enhanced (ASCII), else the job id."""
    suffix = PurePosixPath(record.output.key).suffix if record.output else ""
    stem = PurePosixPath(record.source.filename or "").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:100]
    return f"{stem}-enhanced{suffix}" if stem else f"{record.id}{suffix}"


def content_disposition(record: JobRecord, download: bool = False) -> str:
    """``inline`` (or ``attachment``) with ``download_name``."""
    return f'{"attachment" if download else "inline"}; filename="{download_name(record)}"'


@dataclass(frozen=True)
class JobPage:
    """One page of ``list_jobs``: the jobs, newest first, and the next page's cursor."""

    jobs: list[JobRecord]
    next_cursor: str | None  # None: no more jobs match


def list_jobs(*, state: str | None = None, provider: str | None = None,
              tenant: str | None = None, label: Mapping[str, str] | str | None = None,
              since: datetime | None = None, cursor: str | None = None, limit: int = 50,
              runtime: Runtime | None = None) -> JobPage:
    """Jobs matching every given filter, newest first, a page at a time.

    Args:
        state: a ``JobState`` value (``queued``... ``cancelled``).
        provider, tenant: exact names.
        label: ``{"user": "42"}`` or ``"user=42"``; every label given must match.
        since: only jobs created at or after this (timezone-aware) time.
        cursor: the ``next_cursor`` of the previous page.
        limit: jobs per page, 1-1000. A page may hold fewer while ``next_cursor`` is set:
            it stops after looking at 5,000 candidates (``storage.jobindex``).

    Raises:
        InvalidInput: a filter, cursor or limit it cannot take (422).
    """
    rt = runtime or get_runtime()
    records, next_cursor = rt.jobs.list_page(
        job_filter(state, provider, tenant, label, since), cursor, limit)
    return JobPage(records, next_cursor)


def job_filter(state: str | None, provider: str | None, tenant: str | None,
               label: Mapping[str, str] | str | None, since: datetime | None) -> JobFilter:
    """``list_jobs``'s filters, checked."""
    if state is not None and state not in {s.value for s in JobState}:
        raise InvalidInput(f"state must be one of {', '.join(s.value for s in JobState)}, "
                           f"not {state!r}")
    if provider is not None and provider not in PROVIDERS:
        raise InvalidInput(f"unknown provider {provider!r}; providers: {', '.join(PROVIDERS)}")
    if isinstance(label, str):
        key, sep, value = label.partition("=")
        if not sep:
            raise InvalidInput(f"label filter {label!r} is not KEY=VALUE")
        label = {key: value}
    if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
        raise InvalidInput("since must be a timezone-aware datetime, e.g. "
                           "datetime(2026, 11, 30, tzinfo=UTC)")
    return JobFilter(state=state, provider=provider,
                     tenant=_tenant(tenant) if tenant is not None else None,
                     labels=check_labels(label), since=since and since.astimezone(UTC))


__all__ = [
    "enqueue", "enqueue_many", "get_job", "wait", "cancel", "output_url", "list_jobs",
    "aenqueue", "aenqueue_many", "aget_job", "await_job", "wait_async", "acancel",
    "aoutput_url", "alist_jobs", "aclose",
    "JobRecord", "JobState", "JobPage", "Cancellation", "check_labels",
    "EnhanceError", "TransientError", "PermanentError", "InvalidInput", "IdempotencyConflict",
    "NotFound", "UnknownJob", "ResultNotReady", "WaitTimeout", "InsufficientCredits",
    "BudgetExhausted", "StorageUnavailable", "StorageFailed", "BrokerUnavailable",
    "verify_webhook", "WebhookNotConfigured", "WebhookVerificationFailed", "error_for_code",
]
