"""What every step needs and no step owns: the checks that end a job, its final transitions.

``tasks.pipeline`` (submit, poll, reconcile) and ``tasks.store`` (the store step) both
import from here, and this module imports neither: layers point down.

A job becomes final in one place, ``finish``: it records the transition, logs it and
deletes the job's staged input (``inputs/<job id>.<ext>``, written by ``tasks.staging``),
which nothing needs once the job is final. A bucket lifecycle rule is the backstop for an
input whose deletion failed (``storage.objects.ObjectStore.apply_lifecycle``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from providers.errors import (
    DeadlineExceeded,
    EnhanceError,
    OutcomeUnknown,
    ResultExpired,
)
from storage.errors import StorageFailed, StorageUnavailable
from storage.jobs import Guard, JobError, JobRecord, JobState, utcnow
from tasks import events
from tasks.claim import claim_live
from workers.runtime import Runtime

log = logging.getLogger("enhance.pipeline")


def finish(rt: Runtime, job_id: str, guard: Guard, fields: dict[str, Any]) -> JobRecord | None:
    """Make a job final with ``fields`` (``state`` among them) if ``guard`` holds.

    Returns the final record, or None when the guard refused (someone else acted first).
    """
    record = rt.jobs.update(job_id, guard, lambda r: {**fields, "next_check_at": None,
                                                      "poll_token": None, "lease_token": None,
                                                      "lease_expires_at": None})
    if record is not None:
        events.transition(rt, record)
        delete_staged_input(rt, record)
    return record


def fail_job(rt: Runtime, job_id: str, exc: BaseException) -> JobRecord | None:
    """Move a job that is not final yet to ``failed``, recording the error."""
    if not isinstance(exc, EnhanceError):
        exc = EnhanceError(f"internal error: {type(exc).__name__}: {exc}")
    error = JobError.from_exception(exc)
    return finish(rt, job_id, lambda r: not r.state.final,
                  {"state": JobState.FAILED, "error": error})


def delete_staged_input(rt: Runtime, record: JobRecord) -> None:
    """Delete the input ``tasks.staging`` put in the bucket for this job, if any; never raises."""
    if not rt.objects.is_staged_input(record.source.uri, record.id):
        return  # a URL, or the producer's own s3:// object: not ours to delete
    try:
        rt.objects.delete(record.source.uri)
    except (StorageUnavailable, StorageFailed) as exc:  # the lifecycle rule is the backstop
        log.warning("job %s: staged input %s not deleted: %s", record.id, record.source.uri,
                    exc.message)


def check_still_possible(rt: Runtime, record: JobRecord) -> None:
    """Raise the error that ends a job whose next step can no longer succeed."""
    now = utcnow()
    if record.state is JobState.QUEUED:
        _check_queued(rt, record, now)
    if record.state in (JobState.SUBMITTED, JobState.PROCESSING) and record.deadline_at \
            and now > record.deadline_at:
        deadline_s = getattr(rt.settings, f"{record.provider}_job_deadline_s")
        raise DeadlineExceeded(f"the provider did not finish within {deadline_s} s",
                               record.provider)
    expires_at = result_expires_at(rt, record)
    if record.state is JobState.STORING and expires_at and now > expires_at:
        raise ResultExpired(f"the result expired at {expires_at.isoformat()} "
                            "before it could be stored", record.provider)


def _check_queued(rt: Runtime, record: JobRecord, now: datetime) -> None:
    """A claim whose lease lapsed without an answer, or a job never admitted in time."""
    if record.submit_started_at is not None:
        if not claim_live(rt, record):
            raise OutcomeUnknown(
                "a previous submit attempt was interrupted after calling the provider; "
                "not submitting again to avoid paying twice", record.provider)
    elif record.follows is None and record.deadline_at and now > record.deadline_at:
        # a follower waits on its leader, which was admitted in time: its deadline rules
        raise DeadlineExceeded("the job was not admitted to the provider before its "
                               "deadline", record.provider)


def result_expires_at(rt: Runtime, record: JobRecord) -> datetime | None:
    """Until when a store may be retried: the result's expiry, else STORE_RETRY_WINDOW_S."""
    if record.result_expires_at is not None:
        return record.result_expires_at
    storing = record.transitions.get(JobState.STORING.value)
    return storing + timedelta(seconds=rt.settings.store_retry_window_s) if storing else None
