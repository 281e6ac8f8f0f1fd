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
from datetime import datetime, timedelta
from typing import Protocol

import redis

from providers import PROVIDERS
from providers.base import JobStatus, Phase, Submission
from providers.errors import (
    BudgetExhausted,
    EnhanceError,
    InsufficientCredits,
    InvalidInput,
    OutcomeUnknown,
    PermanentError,
    ProtocolError,
    ProviderJobFailed,
    RateLimited,
    TransientError,
    error_for_code,
)
from storage.durability import NotDurable
from storage.jobs import (
    ConcurrentWriters,
    JobRecord,
    JobState,
    UnknownJob,
    in_states,
    seconds_from_now,
    utcnow,
)
from tasks import admission, events, spend, staging
from tasks.claim import Renewal, claim_expires_at, claim_fields, claim_live
from tasks.jobsteps import check_still_possible, fail_job
from tasks.schedule import first_look_late, first_poll_delay_s, next_poll_delay_s, size_class
from tasks.store import store_bytes
from workers.runtime import Runtime

log = logging.getLogger("enhance.pipeline")

POLLING = (JobState.SUBMITTED, JobState.PROCESSING)
BUSY_QUANTILE = 0.98  # first polls while jobs wait for admission: polls per job near 1
BOOKED_S = 0.001  # the least ``waited`` of a poll that comes at a turn booked for it
# Failures of the job store itself, not of one entry: reconcile keeps the entry for later.
_TRY_LATER = (redis.ConnectionError, redis.TimeoutError, ConcurrentWriters)


class Dispatcher(Protocol):
    """Sends the next step of a job; the real one enqueues Celery tasks."""

    def admit(self, provider: str, token: str, countdown_s: float = 0) -> None: ...

    def submit(self, job_id: str, countdown_s: float = 0) -> None: ...

    def submit_many(self, jobs: list[tuple[str, float]]) -> None:
        """Send several submits, each ``(job_id, countdown_s)``, at once."""

    def poll(self, job_id: str, token: str, countdown_s: float, waited: float = 0.0) -> None: ...

    def store(self, job_id: str, countdown_s: float = 0) -> None: ...

    def reuse(self, job_id: str, leader_id: str | None = None, action: str | None = None,
              countdown_s: float = 0) -> None: ...

    def waiting_submits(self) -> int:
        """Submit messages waiting in the broker's queue, not yet taken by any worker."""


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def _budget_wait_s(rt: Runtime, provider: str, *, booked: bool) -> float:
    """0 when the provider budget lets this poll go now, else the countdown to its next
    turn (booked now: ``ProviderBudget.wait_s``)."""
    if rt.budget.try_acquire(provider, submit=False, booked=booked):
        return 0
    return rt.budget.wait_s(provider)


# --- submit --------------------------------------------------------------------------


def submit_job(rt: Runtime, dispatch: Dispatcher, job_id: str) -> None:
    """Send a job admission let through to its provider, exactly once; schedule its poll.

    The submit never waits on the budget: admission took the slot before sending it.
    The request is built (and the source fetched, where needed) once, before the claim.
    """
    record = rt.jobs.get(job_id)
    if record.state is not JobState.QUEUED or claim_live(rt, record):
        log.info("job %s: submit skipped, %s", job_id,
                 "claimed by a live submit" if record.state is JobState.QUEUED
                 else f"already {record.state.value}")
        if not record.state.final and record.state is not JobState.STORING:
            return
        admission.release(rt, record)
        return
    check_still_possible(rt, record)
    provider = rt.provider(record.provider)
    request = staging.build_provider_request(rt, provider, record)
    reservation = _reserve(rt, dispatch, record)
    if reservation is None:
        return
    started = utcnow()
    try:
        claimed = _claim_durably(rt, job_id, started)
    except NotDurable:
        spend.refund(rt, reservation)
        raise
    if claimed is None:
        spend.refund(rt, reservation)
        return
    admission.claimed(rt, claimed)
    submission = _send_submit(rt, dispatch, provider, request, claimed, reservation)
    if submission is not None:
        _record_submission(rt, dispatch, record, submission, reservation)


def _reserve(rt, dispatch, record: JobRecord) -> spend.Reservation | None:
    """Set the expected cost aside; over a cap, fail (policy) or give the job back to wait."""
    reservation = spend.reserve(rt, record)
    if reservation.refused is None:
        return reservation
    if rt.settings.spend_cap_policy == "fail":
        raise BudgetExhausted(f"the {reservation.refused} daily spend cap of "
                              f"{record.provider} has no room for this job", record.provider)
    spend.hold_for_cap(rt, reservation)
    admission.requeue(rt, record, dispatch)
    return None


def _release_claim(rt: Runtime, record: JobRecord) -> None:
    """The paid call was not taken: the job may be submitted again."""
    rt.jobs.update(
        record.id,
        lambda r: r.state is JobState.QUEUED and r.submit_started_at == record.submit_started_at,
        lambda r: {"submit_started_at": None, "lease_expires_at": None,
                   "next_check_at": seconds_from_now(rt.settings.step_lease_s
                                                     + rt.settings.max_countdown_s)},
    )


def _claim_durably(rt, job_id: str, started) -> JobRecord | None:
    """Claim the job for one paid call; the claim is durable before it returns.

    A claim the store cannot confirm durable (``CLAIM_DURABILITY``) is released, and the
    submit retried later: a claim lost to a Redis crash would let the job be paid twice.
    """
    try:
        return rt.jobs.update(
            job_id,
            lambda r: r.state is JobState.QUEUED and r.submit_started_at is None,
            lambda r: claim_fields(rt, started),
            durable=True,
        )
    except NotDurable:
        rt.jobs.update(job_id, lambda r: r.submit_started_at == started,
                       lambda r: {"submit_started_at": None, "lease_expires_at": None})
        raise


def _send_submit(rt, dispatch, provider, request, record: JobRecord,
                 reservation: spend.Reservation) -> Submission | None:
    """The one paid call. A failure that proves it was not taken releases the claim.

    A 429 (the shared cool-down is set) gives the job back to the front of admission,
    which books its next submit slot after the cool-down: a blind countdown would bypass
    the budget and, under a backlog, meet the next 429. Any other transient failure is
    an unknown outcome (``provider.submit_not_taken``): counted, then failed
    ``outcome_unknown`` or sent again, by ``UNKNOWN_SUBMIT_POLICY``.
    """
    rt.budget.mark_sent(record.provider, record.id)  # admission took its place; it goes now
    try:
        with Renewal(rt, record):  # the claim outlives the call, however long it takes
            return events.counted(rt, record.provider, "submit", provider.submit, request)
    except InsufficientCredits as exc:  # not charged: the job waits for the top-up
        spend.refund(rt, reservation)
        _release_claim(rt, record)
        spend.pause(rt, record.provider, exc.message)
        admission.push(rt, record, front=True)
        return None
    except RateLimited as exc:  # refused, not charged: its turn comes again through admission
        spend.refund(rt, reservation)
        _release_claim(rt, record)
        log.info("job %s: %s; given back to admission", record.id, exc.message)
        admission.requeue(rt, record, dispatch)
        return None
    except TransientError as exc:
        if not provider.submit_not_taken(exc):
            _unknown_submit_outcome(rt, record, exc)  # the reservation stays: maybe charged
        spend.refund(rt, reservation)
        _release_claim(rt, record)
        raise
    except PermanentError as exc:  # refused outright: not charged, unless the answer was garbled
        if not isinstance(exc, ProtocolError):
            spend.refund(rt, reservation)
        raise


def _unknown_submit_outcome(rt: Runtime, record: JobRecord, exc: TransientError) -> None:
    """Count a submit that may have been taken; raise ``OutcomeUnknown`` unless resubmitting."""
    events.submit_outcome_unknown(rt, record.provider)
    if rt.settings.unknown_submit_policy == "resubmit":
        log.warning("job %s: submit outcome unknown (%s); sending it again "
                    "(UNKNOWN_SUBMIT_POLICY=resubmit): it may be paid twice", record.id, exc)
        return
    raise OutcomeUnknown(
        f"submit outcome unknown ({exc.message}): {record.provider} may have created and "
        "charged the job; not sending it again (UNKNOWN_SUBMIT_POLICY=fail)",
        record.provider, exc.vendor_code, exc.http_status) from exc


def _record_submission(rt, dispatch: Dispatcher, record: JobRecord, sub: Submission,
                       reservation: spend.Reservation) -> None:
    settings = rt.settings
    token = new_token()
    spend.settle(rt, reservation, record.model, sub.cost)
    backlog, paused = admission.backlog_and_pause(rt, record.provider)
    if paused:  # a probe went through: the account has credit again
        spend.unpause(rt, record.provider)
    quantile = BUSY_QUANTILE if backlog else None
    predicted = rt.durations.predict(record.provider, record.model, _size_class(record),
                                     quantile=quantile)
    delay = first_poll_delay_s(record.provider, settings, predicted_s=predicted)
    countdown, waited = (delay, 0.0)
    if sub.status is None:  # it will be polled: at a turn of its own if the line is busy
        countdown, waited = _poll_turn(rt, record.provider, token, delay)
    deadline_s = getattr(settings, f"{record.provider}_job_deadline_s")
    updated = rt.jobs.update(
        record.id,
        in_states(JobState.QUEUED),
        lambda r: {"state": JobState.SUBMITTED, "provider_job_id": sub.job_id,
                   "cost": sub.cost, "deadline_at": seconds_from_now(deadline_s),
                   "poll_token": token, "lease_expires_at": None,  # the claim's, now done
                   "next_check_at": seconds_from_now(countdown + poll_overdue_s(settings))},
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
        dispatch.poll(record.id, token, countdown, waited=waited)


# --- poll ----------------------------------------------------------------------------


def _poll_turn(rt: Runtime, provider: str, token: str, delay_s: float) -> tuple[float, float]:
    """(countdown, waited) of a poll due in ``delay_s``: while the budget's line is busy it
    comes at a turn booked for it now (``appoint_s``), and ``waited`` (the time past due,
    at least ``BOOKED_S``) says so; else it comes when due and asks fresh."""
    turn_s = rt.budget.appoint_s(provider, delay_s, token)
    if turn_s is None:
        return delay_s, 0.0
    return turn_s, round(max(turn_s - delay_s, BOOKED_S), 3)


def poll_overdue_s(settings) -> float:
    """How long after a poll is due it is taken for lost if it has not started.

    A worker that dies holding scheduled polls (countdowns live in its memory) leaves them
    unstarted: reconcile re-drives them this soon after they were due. A poll that has
    started holds its job for ``poll_lease_s`` instead, so it is never re-driven while its
    call can last; one merely late to start is re-driven at worst once, and its own run
    then finds a stale token and asks nothing.
    """
    return settings.poll_grace_s


def poll_due_at(record: JobRecord, settings) -> datetime | None:
    """When the job's scheduled poll is due (its overdue time less ``poll_overdue_s``);
    None when no poll is scheduled."""
    if record.state not in POLLING or not record.poll_token or record.next_check_at is None:
        return None
    return record.next_check_at - timedelta(seconds=poll_overdue_s(settings))


def poll_lease_s(settings) -> float:
    """How long a started poll holds its job: its request's connect and read timeouts plus
    the grace. A body still dripping past that (up to ``HTTP_DEADLINE_S``) may see the poll
    re-driven: a poll is a free read, and the stale one's answer is dropped by its token."""
    return settings.http_connect_timeout_s + settings.http_read_timeout_s + settings.poll_grace_s


def poll_job(rt: Runtime, dispatch: Dispatcher, job_id: str, token: str,
             waited: float = 0.0, due_at: datetime | None = None) -> None:
    """Ask the provider once about a job; finish it or schedule the next poll.

    ``waited``: seconds this poll has already waited on the budget (0: it comes on time;
    messages from before it was counted say ``True``, read as one second). ``due_at``:
    when this message's countdown ended (None: it runs on time); a busy worker runs later.
    """
    waited = float(waited)
    record = rt.jobs.get_and_hold(job_id, poll_lease_s(rt.settings))
    if record.state not in POLLING or record.poll_token != token:
        log.debug("job %s: stale poll %s ignored", job_id, token)
        return
    check_still_possible(rt, record)
    wait_s = _budget_wait_s(rt, record.provider, booked=waited > 0)
    if wait_s:
        _defer_poll(rt, dispatch, record, token, wait_s, waited)
        return
    provider = rt.provider(record.provider)
    try:
        status = events.counted(rt, record.provider, "poll", provider.query,
                                record.provider_job_id)
    except ProtocolError as exc:
        _poll_again_after_garbled_answer(rt, dispatch, record, token, exc)
        return
    except RateLimited:  # the cool-down is set: a turn after it, booked through the budget
        _defer_poll(rt, dispatch, record, token, rt.budget.wait_s(record.provider), waited)
        return
    late_s = _late_s(due_at)
    if record.state is JobState.SUBMITTED:  # a first look re-driven by reconcile ran late
        late_s = max(late_s, record.first_look_late_s)
    apply_status(rt, dispatch, record, token, status, waited_s=waited, late_s=late_s)


def _late_s(due_at: datetime | None) -> float:
    """Seconds since ``due_at`` (0 without one, or on a clock behind the sender's)."""
    return max((utcnow() - due_at).total_seconds(), 0.0) if due_at is not None else 0.0


def _defer_poll(rt, dispatch: Dispatcher, record: JobRecord, token: str, wait_s: float,
                waited_s: float) -> None:
    """Wait for the budget; the poll stays this one's (not overdue) while it waits."""
    overdue_at = seconds_from_now(wait_s + poll_overdue_s(rt.settings))
    if rt.jobs.update(record.id, _holds(token), lambda r: {"next_check_at": overdue_at}):
        dispatch.poll(record.id, token, wait_s, waited=round(waited_s + wait_s, 3))


def _poll_again_after_garbled_answer(rt, dispatch: Dispatcher, record: JobRecord, token: str,
                                     exc: ProtocolError) -> None:
    """A poll is a free, repeatable read: a garbled answer is asked again, a few times."""
    limit = rt.settings.poll_protocol_retries
    if record.poll_protocol_errors >= limit:
        raise exc
    rt.stats.incr(f"poll_protocol_retries:{record.provider}")
    delay = first_poll_delay_s(record.provider, rt.settings)
    nxt = new_token()
    updated = rt.jobs.update(
        record.id, _holds(token),
        lambda r: {"poll_token": nxt, "poll_protocol_errors": r.poll_protocol_errors + 1,
                   "next_check_at": seconds_from_now(delay + poll_overdue_s(rt.settings))})
    if updated is not None:
        log.warning("job %s: garbled poll answer (%d of %d retried), asking again in %.1f s: %s",
                    record.id, updated.poll_protocol_errors, limit, delay, exc.message)
        dispatch.poll(record.id, nxt, delay)


def apply_status(rt, dispatch: Dispatcher, record: JobRecord, token: str, status: JobStatus,
                 *, waited_s: float = 0.0, late_s: float = 0.0) -> None:
    """Act on one provider answer for the poll holding ``token`` (which waited ``waited_s``
    on the budget, then ran ``late_s`` after its message was due, before it asked)."""
    if status.phase is Phase.IN_PROGRESS:
        _schedule_next_poll(rt, dispatch, record, token, status, late_s=late_s)
    elif status.phase is Phase.COMPLETED:
        _start_storing(rt, dispatch, record, token, status, waited_s=waited_s, late_s=late_s)
    else:
        cls = error_for_code(status.error_code or "provider_failed")
        if not issubclass(cls, (ProviderJobFailed, InvalidInput)):
            cls = ProviderJobFailed
        raise cls(status.error_message or f"the provider reported {status.raw_status}",
                  record.provider, status.raw_status)


def _holds(token: str):
    return lambda r: r.state in POLLING and r.poll_token == token


def _schedule_next_poll(rt, dispatch, record: JobRecord, token: str, status: JobStatus,
                        *, late_s: float = 0.0) -> None:
    """Poll again later; the first look remembers how late it ran (``_learn_duration``)."""
    settings = rt.settings
    first = {"first_look_late_s": round(late_s, 3)} if record.state is JobState.SUBMITTED else {}
    elapsed_s = (utcnow() - record.transitions[JobState.SUBMITTED.value]).total_seconds()
    delay = next_poll_delay_s(record.provider, record.poll_count + 1, status, elapsed_s, settings)
    nxt = new_token()
    countdown, waited = _poll_turn(rt, record.provider, nxt, delay)
    updated = rt.jobs.update(
        record.id, _holds(token),
        lambda r: {"state": JobState.PROCESSING, "progress": status.progress,
                   "poll_count": r.poll_count + 1, "poll_token": nxt, "poll_protocol_errors": 0,
                   "next_check_at": seconds_from_now(countdown + poll_overdue_s(settings)),
                   **first},
    )
    if updated is None:
        return
    if record.state is not JobState.PROCESSING:
        events.transition(rt, updated)
    dispatch.poll(record.id, nxt, countdown, waited=waited)


def _size_class(record: JobRecord) -> str:
    image = record.source.image
    return size_class(image.megapixels if image else None)


def _learn_duration(rt: Runtime, record: JobRecord, waited_s: float, late_s: float) -> None:
    """Teach the duration model how long this job took the provider.

    The model must not learn our own delays, or it times first polls later, they are
    as late again, and so on: the look that found the job done counts from when it was
    due (``waited_s`` on the budget and ``late_s`` on a busy worker earlier). Under a cap
    the budget's waits had put first polls 20-30 s after the submit of 2-6 s jobs; after
    a 500-job burst busy workers' late polls had put them at 9.6 s. A job whose first
    look ran late teaches nothing (``first_look_late``). A later look counts from when it
    was due even when it ran late: counted from when it ran, the burst's late follow-ups
    left the prediction at 5.6 and 8.8 s in two benchmark runs, counted from when due at
    4.1 and 5.4 s (2-6 s jobs: 5.2 s). The job was last seen in progress at its first
    in-progress poll (the ``processing`` transition), not at ``updated_at``, which a
    deferred poll moves too; that poll's own lateness stays in: the provider said the job
    was still running when it asked.
    """
    submitted = record.transitions.get(JobState.SUBMITTED.value)
    if submitted is None:
        return
    done_s = (utcnow() - submitted).total_seconds() - waited_s - late_s
    seen = record.transitions.get(JobState.PROCESSING.value)
    last_s = (seen - submitted).total_seconds() if seen is not None else None
    first_late_s = late_s if last_s is None else record.first_look_late_s
    first_due_s = done_s if last_s is None else last_s - first_late_s
    if first_look_late(first_late_s, first_due_s):
        return
    rt.durations.observe(record.provider, record.model, _size_class(record), done_s, last_s)


def _start_storing(rt, dispatch, record: JobRecord, token: str, status: JobStatus,
                   *, waited_s: float = 0.0, late_s: float = 0.0) -> None:
    updated = rt.jobs.update(
        record.id, _holds(token),
        lambda r: {"state": JobState.STORING, "progress": 100, "poll_count": r.poll_count + 1,
                   "poll_token": None, "result_url": status.result_url,
                   "result_inline": status.result_bytes is not None,
                   "result_expires_at": status.result_expires_at,
                   "result_width": status.width, "result_height": status.height,
                   "result_size_bytes": None if status.result_bytes else status.size_bytes,
                   "cost": r.cost if r.cost is not None else status.cost,
                   "next_check_at": seconds_from_now(rt.settings.store_lease_s)},
    )
    if updated is None:
        return
    _learn_duration(rt, record, waited_s, late_s)
    events.transition(rt, updated)
    if status.result_bytes is not None:  # the result is already here: store it now
        store_bytes(rt, updated, status.result_bytes)
    else:
        dispatch.store(record.id)


# --- reconcile -----------------------------------------------------------------------


def reconcile(rt: Runtime, dispatch: Dispatcher, limit: int = 500) -> int:
    """Re-drive every job whose next step is overdue; return how many were re-driven.

    Never sends a submit: a queued job goes back to admission, whose chain is revived
    when its lease lapsed.

    Each job is handled on its own: whatever one job raises is logged and, unless it is
    transient, that entry leaves the due set, so no bad entry can stop the loop for good.
    """
    redriven = 0
    for job_id in rt.jobs.overdue(utcnow(), limit=limit):
        try:
            redriven += _reconcile_one(rt, dispatch, job_id)
        except _TRY_LATER as exc:  # the job store itself is in trouble: keep the entry
            log.warning("job %s: not re-driven now: %s: %s", job_id, type(exc).__name__, exc)
        except Exception:  # noqa: BLE001 - one bad entry must not stop the others
            log.exception("job %s: reconcile could not handle it; dropped from the due set",
                          job_id)
            _forget(rt, job_id)
    return redriven + admission.sweep(rt, PROVIDERS, dispatch)


def _reconcile_one(rt: Runtime, dispatch: Dispatcher, job_id: str) -> int:
    try:
        return _redrive(rt, dispatch, rt.jobs.get(job_id))
    except UnknownJob:
        log.error("job %s: in the due set but has no record; dropped", job_id)
        _forget(rt, job_id)
    except TransientError as exc:  # Redis, S3 or a provider hiccup: next round tries again
        log.warning("job %s: not re-driven now: %s", job_id, exc.message)
    except EnhanceError as exc:  # its next step can no longer succeed
        if fail_job(rt, job_id, exc) is None:
            _forget(rt, job_id)  # already final: the due entry is left over
    return 0


def _forget(rt: Runtime, job_id: str) -> None:
    try:
        rt.jobs.forget_due(job_id)
        rt.stats.incr("reconcile_dropped")
    except Exception:  # noqa: BLE001 - Redis is down: the next run tries again
        log.exception("job %s: could not drop it from the due set", job_id)


def _redrive(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> int:
    check_still_possible(rt, record)
    if record.state is JobState.QUEUED and record.follows is None:
        return _redrive_queued(rt, dispatch, record)
    fields = {"next_check_at": seconds_from_now(_redrive_overdue_s(rt, record.state))}
    if record.state in POLLING:
        fields["poll_token"] = new_token()  # the lost chain's token goes stale
    lost_due = poll_due_at(record, rt.settings)
    if record.state is JobState.SUBMITTED and lost_due is not None:
        # the first look comes this late (it has no countdown to tell): it teaches nothing
        fields["first_look_late_s"] = round(_late_s(lost_due), 3)
    moved = rt.jobs.update(record.id, lambda r: r.updated_at == record.updated_at,
                           lambda r: fields)
    if moved is None:  # it moved on meanwhile: not overdue after all
        return 0
    if moved.follows is not None:  # waits on an identical job: never paid for here
        dispatch.reuse(moved.id)
        return 1
    log.warning("job %s: %s step overdue, re-driven", record.id, record.state.value)
    rt.stats.incr(f"redriven:{record.state.value}")
    if moved.state in POLLING:
        dispatch.poll(moved.id, moved.poll_token, 0)
    else:
        dispatch.store(moved.id)
    return 1


def _redrive_queued(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> int:
    """A live submit claim is left alone; an unclaimed overdue job goes back to admission."""
    lease_end = claim_expires_at(rt, record)
    if lease_end is not None:  # live (a lapsed claim raised above)
        rt.jobs.update(record.id, lambda r: r.updated_at == record.updated_at,
                       lambda r: {"next_check_at": lease_end})
        return 0
    moved = rt.jobs.update(record.id, lambda r: r.updated_at == record.updated_at,
                           lambda r: {"next_check_at": r.deadline_at})
    if moved is None:
        return 0
    log.warning("job %s: queued step overdue, given back to admission", record.id)
    admission.requeue(rt, moved, dispatch)
    return 1


def _redrive_overdue_s(rt: Runtime, state: JobState) -> float:
    """How long a re-driven step may take before it is overdue again."""
    if state in POLLING:  # sent now, but it may wait behind a busy worker's queue
        return poll_lease_s(rt.settings)
    if state is JobState.STORING:
        return rt.settings.store_lease_s
    return rt.settings.stale_after_s
