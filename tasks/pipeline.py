"""The pipeline's steps as plain functions: submit, poll, store, reconcile.

Each step reads the job record, decides, and changes the record by compare-and-set
before it tells the ``Dispatcher`` what runs next. A step that finds the record already
moved on does nothing: duplicate and stale deliveries are harmless. Steps raise
``PermanentError`` for the task to record as the job's failure and ``TransientError``
for the task to retry; they never sleep.

    queued --submit--> submitted --poll--> processing --poll--> storing --store--> succeeded
       \\________________\\____________________\\__________________\\______________> failed
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Protocol

from providers.base import JobStatus, Phase, Submission
from providers.errors import (
    DeadlineExceeded,
    EnhanceError,
    InvalidInput,
    OutcomeUnknown,
    ProviderJobFailed,
    ProviderTimeout,
    ResultExpired,
    TransientError,
    error_for_code,
)
from storage.jobs import JobError, JobRecord, JobState, in_states, seconds_from_now, utcnow
from tasks import events, staging
from tasks.schedule import first_poll_delay_s, next_poll_delay_s, size_class
from workers.runtime import Runtime

log = logging.getLogger("enhance.pipeline")

POLLING = (JobState.SUBMITTED, JobState.PROCESSING)


class Dispatcher(Protocol):
    """Sends the next step of a job; the real one enqueues Celery tasks."""

    def submit(self, job_id: str, countdown_s: float = 0, waited: bool = False) -> None: ...

    def poll(self, job_id: str, token: str, countdown_s: float, waited: bool = False) -> None: ...

    def store(self, job_id: str, countdown_s: float = 0) -> None: ...


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def fail_job(rt: Runtime, job_id: str, exc: BaseException) -> JobRecord | None:
    """Move a job that is not final yet to ``failed``, recording the error."""
    if not isinstance(exc, EnhanceError):
        exc = EnhanceError(f"internal error: {type(exc).__name__}: {exc}")
    error = JobError.from_exception(exc)
    record = rt.jobs.update(
        job_id,
        lambda r: not r.state.final,
        lambda r: {"state": JobState.FAILED, "error": error, "next_check_at": None,
                   "poll_token": None},
    )
    if record is not None:
        events.transition(rt, record)
    return record


def _budget_wait_s(rt: Runtime, provider: str, *, submit: bool, waited: bool) -> float:
    """0 when the provider budget lets this request go now, else the countdown to retry."""
    if rt.budget.try_acquire(provider, submit=submit):
        return 0
    return rt.budget.wait_s(provider, submit=submit, waited=waited)


# --- submit --------------------------------------------------------------------------


def submit_job(rt: Runtime, dispatch: Dispatcher, job_id: str, waited: bool = False) -> None:
    """Send a queued job to its provider, exactly once, and schedule its first poll.

    ``waited`` says this delivery already waited for its turn in the provider budget.
    """
    record = rt.jobs.get(job_id)
    if record.state is not JobState.QUEUED:
        log.info("job %s: submit skipped, already %s", job_id, record.state.value)
        return
    check_still_possible(rt, record)
    provider = rt.provider(record.provider)
    request = staging.build_provider_request(rt, provider, record)
    wait_s = _budget_wait_s(rt, record.provider, submit=True, waited=waited)
    if wait_s:
        dispatch.submit(job_id, countdown_s=wait_s, waited=True)
        return
    started = utcnow()
    claimed = rt.jobs.update(
        job_id,
        lambda r: r.state is JobState.QUEUED and r.submit_started_at is None,
        lambda r: {"submit_started_at": started,
                   "next_check_at": started + timedelta(seconds=rt.settings.stale_after_s)},
    )
    if claimed is None:
        return
    submission = _send_submit(rt, provider, request, record, started)
    _record_submission(rt, dispatch, record, submission)


def _send_submit(rt, provider, request, record: JobRecord, started) -> Submission:
    """The one paid call. A failure that proves it was not taken releases the claim."""
    try:
        return events.counted(rt, record.provider, "submit", provider.submit, request)
    except ProviderTimeout as exc:
        raise OutcomeUnknown(
            f"submit sent but no answer came ({exc.message}); not retrying to avoid paying "
            "twice", record.provider) from exc
    except TransientError:
        rt.jobs.update(
            record.id,
            lambda r: r.state is JobState.QUEUED and r.submit_started_at == started,
            lambda r: {"submit_started_at": None},
        )
        raise


def _record_submission(rt, dispatch: Dispatcher, record: JobRecord, sub: Submission) -> None:
    settings = rt.settings
    token = new_token()
    predicted = rt.durations.predict(record.provider, record.model, _size_class(record))
    delay = first_poll_delay_s(record.provider, settings, predicted_s=predicted)
    deadline_s = getattr(settings, f"{record.provider}_job_deadline_s")
    updated = rt.jobs.update(
        record.id,
        in_states(JobState.QUEUED),
        lambda r: {"state": JobState.SUBMITTED, "provider_job_id": sub.job_id,
                   "cost": sub.cost, "deadline_at": seconds_from_now(deadline_s),
                   "poll_token": token,
                   "next_check_at": seconds_from_now(delay + settings.stale_after_s)},
    )
    events.charged(rt, record.provider, sub.cost)
    if updated is None:  # failed meanwhile (e.g. by reconcile): keep what we paid for
        rt.jobs.update(record.id, lambda r: True,
                       lambda r: {"provider_job_id": sub.job_id, "cost": sub.cost})
        return
    events.transition(rt, updated)
    if sub.status is not None:
        apply_status(rt, dispatch, updated, token, sub.status)
    else:
        dispatch.poll(record.id, token, delay)


# --- poll ----------------------------------------------------------------------------


def poll_job(rt: Runtime, dispatch: Dispatcher, job_id: str, token: str,
             waited: bool = False) -> None:
    """Ask the provider once about a job; finish it or schedule the next poll."""
    record = rt.jobs.get(job_id)
    if record.state not in POLLING or record.poll_token != token:
        log.debug("job %s: stale poll %s ignored", job_id, token)
        return
    check_still_possible(rt, record)
    wait_s = _budget_wait_s(rt, record.provider, submit=False, waited=waited)
    if wait_s:
        dispatch.poll(job_id, token, wait_s, waited=True)
        return
    provider = rt.provider(record.provider)
    status = events.counted(rt, record.provider, "poll", provider.query, record.provider_job_id)
    apply_status(rt, dispatch, record, token, status)


def apply_status(rt, dispatch: Dispatcher, record: JobRecord, token: str, status: JobStatus) -> None:
    """Act on one provider answer for the poll holding ``token``."""
    if status.phase is Phase.IN_PROGRESS:
        _schedule_next_poll(rt, dispatch, record, token, status)
    elif status.phase is Phase.COMPLETED:
        _start_storing(rt, dispatch, record, token, status)
    else:
        cls = error_for_code(status.error_code or "provider_failed")
        if not issubclass(cls, (ProviderJobFailed, InvalidInput)):
            cls = ProviderJobFailed
        raise cls(status.error_message or f"the provider reported {status.raw_status}",
                  record.provider, status.raw_status)


def _holds(token: str):
    return lambda r: r.state in POLLING and r.poll_token == token


def _schedule_next_poll(rt, dispatch, record: JobRecord, token: str, status: JobStatus) -> None:
    settings = rt.settings
    elapsed_s = (utcnow() - record.transitions[JobState.SUBMITTED.value]).total_seconds()
    delay = next_poll_delay_s(record.provider, record.poll_count + 1, status, elapsed_s, settings)
    nxt = new_token()
    updated = rt.jobs.update(
        record.id, _holds(token),
        lambda r: {"state": JobState.PROCESSING, "progress": status.progress,
                   "poll_count": r.poll_count + 1, "poll_token": nxt,
                   "next_check_at": seconds_from_now(delay + settings.stale_after_s)},
    )
    if updated is None:
        return
    if record.state is not JobState.PROCESSING:
        events.transition(rt, updated)
    dispatch.poll(record.id, nxt, delay)


def _size_class(record: JobRecord) -> str:
    image = record.source.image
    return size_class(image.megapixels if image else None)


def _learn_duration(rt: Runtime, record: JobRecord) -> None:
    """Teach the duration model how long this job took the provider."""
    submitted = record.transitions.get(JobState.SUBMITTED.value)
    if submitted is None:
        return
    done_s = (utcnow() - submitted).total_seconds()
    last_s = (record.updated_at - submitted).total_seconds() if record.poll_count else None
    rt.durations.observe(record.provider, record.model, _size_class(record), done_s, last_s)


def _start_storing(rt, dispatch, record: JobRecord, token: str, status: JobStatus) -> None:
    updated = rt.jobs.update(
        record.id, _holds(token),
        lambda r: {"state": JobState.STORING, "progress": 100, "poll_count": r.poll_count + 1,
                   "poll_token": None, "result_url": status.result_url,
                   "result_inline": status.result_bytes is not None,
                   "result_expires_at": status.result_expires_at,
                   "result_width": status.width, "result_height": status.height,
                   "result_size_bytes": None if status.result_bytes else status.size_bytes,
                   "cost": r.cost if r.cost is not None else status.cost,
                   "next_check_at": seconds_from_now(rt.settings.stale_after_s)},
    )
    if updated is None:
        return
    _learn_duration(rt, record)
    events.transition(rt, updated)
    if status.result_bytes is not None:  # the result is already here: store it now
        from tasks.store import store_bytes

        store_bytes(rt, updated, status.result_bytes)
    else:
        dispatch.store(record.id)


# --- reconcile -----------------------------------------------------------------------


def reconcile(rt: Runtime, dispatch: Dispatcher, limit: int = 500) -> int:
    """Re-drive every job whose next step is overdue; return how many were re-driven."""
    redriven = 0
    for job_id in rt.jobs.overdue(utcnow(), limit=limit):
        try:
            redriven += _redrive(rt, dispatch, rt.jobs.get(job_id))
        except EnhanceError as exc:
            if not isinstance(exc, TransientError):
                fail_job(rt, job_id, exc)
    return redriven


def _redrive(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> int:
    check_still_possible(rt, record)
    fields = {"next_check_at": seconds_from_now(rt.settings.stale_after_s)}
    if record.state in POLLING:
        fields["poll_token"] = new_token()  # the lost chain's token goes stale
    moved = rt.jobs.update(record.id, lambda r: r.updated_at == record.updated_at,
                           lambda r: fields)
    if moved is None:  # it moved on meanwhile: not overdue after all
        return 0
    log.warning("job %s: %s step overdue, re-driven", record.id, record.state.value)
    if moved.state is JobState.QUEUED:
        dispatch.submit(moved.id)
    elif moved.state in POLLING:
        dispatch.poll(moved.id, moved.poll_token, 0)
    else:
        dispatch.store(moved.id)
    return 1


def check_still_possible(rt: Runtime, record: JobRecord) -> None:
    """Raise the error that ends a job whose next step can no longer succeed."""
    now = utcnow()
    if record.state is JobState.QUEUED and record.submit_started_at is not None:
        raise OutcomeUnknown(
            "a previous submit attempt was interrupted after calling the provider; "
            "not submitting again to avoid paying twice", record.provider)
    if record.state in POLLING and record.deadline_at and now > record.deadline_at:
        deadline_s = getattr(rt.settings, f"{record.provider}_job_deadline_s")
        raise DeadlineExceeded(f"the provider did not finish within {deadline_s} s",
                               record.provider)
    if record.state is JobState.STORING and record.result_expires_at \
            and now > record.result_expires_at:
        raise ResultExpired(f"the result expired at {record.result_expires_at.isoformat()} "
                            "before it could be stored", record.provider)
