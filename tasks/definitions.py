"""The Celery tasks: thin wrappers that call the plain steps of ``tasks.pipeline``.

A step's ``PermanentError`` is recorded as the job's failure first, then the task ends
with ``JobFailed`` (in no retry list), so Flower shows a job that failed as a FAILURE task
carrying the job's error code; a raised exception is acknowledged, never requeued. A
``TransientError`` is retried with backoff, honouring ``Retry-After``, and once the retries
are spent the job fails with that error. Scheduling the next poll is not a retry, and
neither is a 429: neither touches the retry budget. A store is retried for as long as its
result lives (``tasks.store``), so its task has no retry limit of its own.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

import redis
from celery import Task
from celery.exceptions import TimeLimitExceeded
from kombu.exceptions import ChannelError, OperationalError

from providers.errors import PermanentError, RateLimited, TransientError
from tasks import admission, events, jobsteps, notify, pipeline, reuse
from tasks.schedule import retry_delay_s
from tasks.store import store_result
from workers.app import app
from workers.constants import SUBMIT_QUEUE
from workers.runtime import get_runtime
from workers.settings import get_settings

log = logging.getLogger("enhance.tasks")

#: The broker or the job store out of reach (restarting, failing over, read-only replica):
#: nothing is wrong with the job, and every step leaves a ``next_check_at``, so reconcile
#: re-drives the job once they answer again. Failing it would turn a Redis blip into a
#: lost, and often already paid, job.
INFRASTRUCTURE_ERRORS = (OperationalError, redis.ConnectionError, redis.TimeoutError,
                         redis.exceptions.ReadOnlyError)


class JobFailed(Exception):  # noqa: N818 - named for what Flower shows: the job failed
    """The task's job was failed (already recorded): ends the task as a Celery FAILURE."""

    def __init__(self, job_id: str, code: str, message: str) -> None:
        super().__init__(job_id, code, message)
        self.job_id, self.code, self.message = job_id, code, message

    def __str__(self) -> str:
        return f"job {self.job_id} failed: {self.code}: {self.message}"


class JobTask(Task):
    """A task whose first argument is a job id; its final failure fails the job."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, JobFailed):  # recorded before it was raised
            return
        if isinstance(exc, TimeLimitExceeded):  # its lease lapses: reconcile re-drives it
            log.error("job %s: %s killed at its hard time limit", args[0], self.name)
            return
        if isinstance(exc, INFRASTRUCTURE_ERRORS):
            log.warning("job %s: %s: %s; left for reconcile to re-drive", args[0],
                        type(exc).__name__, exc)
            return
        jobsteps.fail_job(get_runtime(), args[0], exc)


def run_step(task: Task, step, job_id: str, *args) -> None:
    """Run one pipeline step for ``job_id`` with the project's failure policy."""
    rt = get_runtime()
    try:
        step(rt, DISPATCH, job_id, *args)
    except PermanentError as exc:
        jobsteps.fail_job(rt, job_id, exc)
        raise JobFailed(job_id, exc.code, exc.message) from exc
    except RateLimited as exc:  # feedback, not failure: it spends no retry
        countdown = retry_delay_s(0, rt.settings, exc.retry_after_s)
        log.info("job %s: %s, trying again in %.1f s", job_id, exc.message, countdown)
        task.apply_async((job_id, *args), countdown=countdown)
    except TransientError as exc:
        countdown = retry_delay_s(task.request.retries, rt.settings, exc.retry_after_s)
        log.info("job %s: %s, retrying in %.1f s", job_id, exc.message, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc


@app.task(name="enhance.admit", bind=True, ignore_result=True, acks_late=True,
          reject_on_worker_lost=True, max_retries=None)
def admit(self: Task, provider: str, token: str) -> int:
    """One admission run: send the submits the provider can take now, schedule the next."""
    try:
        return admission.admit(get_runtime(), DISPATCH, provider, token)
    except TransientError as exc:
        countdown = retry_delay_s(min(self.request.retries, 5), get_settings(),
                                  exc.retry_after_s)
        raise self.retry(exc=exc, countdown=countdown) from exc


@app.task(name="enhance.submit", base=JobTask, bind=True,
          max_retries=get_settings().submit_max_retries)
def submit(self: Task, job_id: str, *_old: object) -> None:
    """Send a job admission let through to its provider (once); schedule its first poll.

    ``_old`` takes the ``waited`` flag of submits queued before admission existed.
    """
    run_step(self, pipeline.submit_job, job_id)


@app.task(name="enhance.poll", base=JobTask, bind=True, max_retries=30)
def poll(self: Task, job_id: str, token: str, waited: float = 0.0) -> None:
    """Ask the provider about a job once; schedule the next poll or the store."""
    # Not one of the step's arguments: run_step sends those again after a 429.
    step = functools.partial(pipeline.poll_job, due_at=due_at(self.request.eta))
    run_step(self, step, job_id, token, waited)


def due_at(eta: str | datetime | None) -> datetime | None:
    """When a task's countdown ended: Celery's ``eta`` (ISO text in the message; None
    for a task sent without a countdown), made aware (UTC when it names no zone)."""
    if eta is None:
        return None
    when = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@app.task(name="enhance.store", base=JobTask, bind=True, max_retries=None)
def store(self: Task, job_id: str) -> None:
    """Stream a finished result into the bucket."""
    run_step(self, lambda rt, _dispatch, jid: store_result(rt, jid), job_id)


@app.task(name="enhance.reuse", base=JobTask, bind=True, max_retries=20)
def reuse_result(self: Task, job_id: str, leader_id: str | None = None,
                 action: str | None = None) -> None:
    """Settle a job that waited on an identical one: copy its result, or carry on alone."""
    run_step(self, reuse.settle_follower, job_id, leader_id, action)


@app.task(name="enhance.notify", ignore_result=True, acks_late=True,
          reject_on_worker_lost=True)
def notify_job(job_id: str, token: str | None = None) -> None:
    """Send a finished job's on_done callback and make one webhook attempt (``tasks.notify``)."""
    notify.run(get_runtime(), notify.send, job_id, token)


@app.task(name="enhance.notify_sweep", ignore_result=True)
def notify_sweep() -> int:
    """Re-send notifications a lost worker left owed, and webhook retries now due (beat)."""
    return notify.sweep(get_runtime(), notify.send)


@app.task(name="enhance.reconcile", ignore_result=True)
def reconcile() -> int:
    """Re-drive every job whose next step is overdue (run by beat)."""
    return pipeline.reconcile(get_runtime(), DISPATCH)


class CeleryDispatcher:
    """Sends the pipeline's next steps as Celery tasks on their queues."""

    def admit(self, provider: str, token: str, countdown_s: float = 0) -> None:
        admit.apply_async((provider, token), countdown=countdown_s or None)

    def submit(self, job_id: str, countdown_s: float = 0) -> None:
        submit.apply_async((job_id,), countdown=countdown_s or None)

    def submit_many(self, jobs: list[tuple[str, float]]) -> None:
        """One producer for the batch an admission run sends (about half the cost each)."""
        with app.producer_or_acquire() as producer:
            for job_id, countdown_s in jobs:
                submit.apply_async((job_id,), countdown=countdown_s or None, producer=producer)

    def poll(self, job_id: str, token: str, countdown_s: float, waited: float = 0.0) -> None:
        poll.apply_async((job_id, token, waited), countdown=countdown_s or None)

    def store(self, job_id: str, countdown_s: float = 0) -> None:
        store.apply_async((job_id,), countdown=countdown_s or None)

    def reuse(self, job_id: str, leader_id: str | None = None, action: str | None = None,
              countdown_s: float = 0) -> None:
        reuse_result.apply_async((job_id, leader_id, action), countdown=countdown_s or None)

    def waiting_submits(self) -> int:
        with app.connection_for_read() as conn:
            try:
                return conn.default_channel.queue_declare(SUBMIT_QUEUE, passive=True).message_count
            except ChannelError:  # Redis drops an empty queue's key: none waiting
                return 0


DISPATCH = CeleryDispatcher()


@events.on_final
def settle_followers(rt, record) -> None:
    """A job that paid has ended: its followers get its result or carry on alone."""
    reuse.job_ended(rt, DISPATCH, record)
