"""The Celery tasks: thin wrappers that call the plain steps of ``tasks.pipeline``.

A step's ``PermanentError`` is recorded as the job's failure (logged once, not raised
again); a ``TransientError`` is retried with backoff, honouring ``Retry-After``, and once
the retries are spent the job fails with that error. Scheduling the next poll is not a
retry, and neither is a 429: neither touches the retry budget.
"""

from __future__ import annotations

import logging

from celery import Task

from providers.errors import PermanentError, RateLimited, TransientError
from tasks import pipeline
from tasks.schedule import retry_delay_s
from tasks.store import store_result
from workers.app import app
from workers.runtime import get_runtime
from workers.settings import get_settings

log = logging.getLogger("enhance.tasks")


class JobTask(Task):
    """A task whose first argument is a job id; its final failure fails the job."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        pipeline.fail_job(get_runtime(), args[0], exc)


def run_step(task: Task, step, job_id: str, *args) -> None:
    """Run one pipeline step for ``job_id`` with the project's failure policy."""
    rt = get_runtime()
    try:
        step(rt, DISPATCH, job_id, *args)
    except PermanentError as exc:
        pipeline.fail_job(rt, job_id, exc)
    except RateLimited as exc:  # feedback, not failure: it spends no retry
        countdown = retry_delay_s(0, rt.settings, exc.retry_after_s)
        log.info("job %s: %s, trying again in %.1f s", job_id, exc.message, countdown)
        task.apply_async((job_id, *args), countdown=countdown)
    except TransientError as exc:
        countdown = retry_delay_s(task.request.retries, rt.settings, exc.retry_after_s)
        log.info("job %s: %s, retrying in %.1f s", job_id, exc.message, countdown)
        raise task.retry(exc=exc, countdown=countdown) from exc


@app.task(name="enhance.submit", base=JobTask, bind=True,
          max_retries=get_settings().submit_max_retries)
def submit(self: Task, job_id: str, waited: bool = False) -> None:
    """Send a queued job to its provider (once) and schedule its first poll."""
    run_step(self, pipeline.submit_job, job_id, waited)


@app.task(name="enhance.poll", base=JobTask, bind=True, max_retries=30)
def poll(self: Task, job_id: str, token: str, waited: bool = False) -> None:
    """Ask the provider about a job once; schedule the next poll or the store."""
    run_step(self, pipeline.poll_job, job_id, token, waited)


@app.task(name="enhance.store", base=JobTask, bind=True, max_retries=20)
def store(self: Task, job_id: str) -> None:
    """Stream a finished result into the bucket."""
    run_step(self, lambda rt, _dispatch, jid: store_result(rt, jid), job_id)


@app.task(name="enhance.reconcile", ignore_result=True)
def reconcile() -> int:
    """Re-drive every job whose next step is overdue (run by beat)."""
    return pipeline.reconcile(get_runtime(), DISPATCH)


class CeleryDispatcher:
    """Sends the pipeline's next steps as Celery tasks on their queues."""

    def submit(self, job_id: str, countdown_s: float = 0, waited: bool = False) -> None:
        submit.apply_async((job_id, waited), countdown=countdown_s or None)

    def poll(self, job_id: str, token: str, countdown_s: float, waited: bool = False) -> None:
        poll.apply_async((job_id, token, waited), countdown=countdown_s or None)

    def store(self, job_id: str, countdown_s: float = 0) -> None:
        store.apply_async((job_id,), countdown=countdown_s or None)


DISPATCH = CeleryDispatcher()
