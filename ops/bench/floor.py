"""The floor under scenario 1: what Celery alone costs, and what the bare calls cost.

- ``celery_ceiling``: empty tasks (``ops.bench.noop``) through the same broker and a
  worker of the same concurrency and configuration: tasks/s and worker CPU per task.
  They run as ``NOOP_CHAINS`` chains in which each task sends the next, as a job's steps
  do: the worker pays for sending its tasks (the message and its ``task-sent`` event)
  as well as for receiving and running them. Empty tasks sent by the bench (the floor
  before 2026-11-30) left out ~1 ms per task of what Celery alone costs a job.
- ``bare_calls``: the provider and storage calls one job needs, made directly in this
  process with the project's clients (``HitPawClient`` submit and query,
  ``open_result`` + ``ObjectStore.stream_result``), timed in CPU (``time.process_time``,
  every thread of this process; nothing else runs in it meanwhile).
"""

from __future__ import annotations

import statistics
import time

from ops.bench.measure import CpuWindow, rounded
from ops.bench.noop import DONE_KEY, noop
from ops.bench.runner import Context
from ops.bench.stack import Launched, wait_until
from providers.base import Phase
from providers.download import open_result
from workers.runtime import get_runtime

BARE_POLL_EVERY_S = 0.5
BARE_TIMEOUT_S = 120.0
WARM_UP_TASKS = 20
NOOP_CHAINS = 20  # chains of empty tasks at once: enough to keep every pool process busy


def celery_ceiling(ctx: Context, worker: Launched, tasks: int) -> dict:
    """Send ``tasks`` empty tasks to an idle worker; time them until all have run.

    A few are run first, untimed, so each pool process has its connections.
    """
    _run_noops(ctx, WARM_UP_TASKS)
    with CpuWindow([worker.pid]) as cpu:
        _run_noops(ctx, tasks)
    return {
        "tasks": tasks,
        "tasks_per_s": rounded(tasks / cpu.wall_s),
        "worker_cpu_ms_per_task": rounded(1000 * cpu.cpu_s / tasks, 3),
    }


def celery_at_rate(ctx: Context, worker: Launched, tasks_per_s: float, tasks: int) -> dict:
    """Empty tasks arriving at ``tasks_per_s`` (the job run's own rate): worker CPU per task.

    Celery's cost per task depends on its rate: a saturated worker handles several
    messages per pass of its event loop, one at a job run's pace pays each pass for one
    (measured: the consumer's CPU per task ~2.4x higher at 20 tasks/s than saturated).
    Each chain's tasks send the next with a countdown, as polls do, so the chains together
    arrive at ``tasks_per_s``; the CPU window spans the run, idle time included, as the
    job run's does.
    """
    chains = min(NOOP_CHAINS, tasks)
    every_s = chains / tasks_per_s
    with CpuWindow([worker.pid]) as cpu:
        _run_noops(ctx, tasks, every_s)
    return {
        "tasks": tasks,
        "tasks_per_s": rounded(tasks_per_s),
        "worker_cpu_ms_per_task": rounded(1000 * cpu.cpu_s / tasks, 3),
    }


def _run_noops(ctx: Context, tasks: int, every_s: float = 0) -> None:
    """Run ``tasks`` empty tasks as chains: the bench sends the first of each, the worker
    the rest (each ``every_s`` after the one before; the chains' starts spread over it)."""
    ctx.redis.delete(DONE_KEY)
    chains = min(NOOP_CHAINS, tasks)
    for i in range(chains):
        noop.apply_async((tasks // chains - 1 + (i < tasks % chains), every_s),
                         countdown=every_s * i / chains or None)
    wait_until(lambda: int(ctx.redis.get(DONE_KEY) or 0) >= tasks, 300 + tasks * every_s,
               f"{tasks} empty tasks running", interval_s=0.02)


def bare_calls(ctx: Context, jobs: int) -> dict:
    """CPU milliseconds per submit, per poll and per store (download + upload)."""
    _measure(ctx, 1)  # warm-up: imports, connections, first-call caches
    cpu = _measure(ctx, jobs)
    return {
        "jobs": jobs,
        "submit_cpu_ms": _mean_ms(cpu["submit"]),
        "poll_cpu_ms": _mean_ms(cpu["poll"]),
        "store_cpu_ms": _mean_ms(cpu["store"]),
        "stored": len(cpu["store"]),
    }


def _mean_ms(seconds: list[float]) -> float:
    return rounded(1000 * statistics.mean(seconds), 3) if seconds else 0.0


def _timed(cpu: dict[str, list[float]], kind: str, call, *args):
    started = time.process_time()
    result = call(*args)
    cpu[kind].append(time.process_time() - started)
    return result


def _measure(ctx: Context, jobs: int) -> dict[str, list[float]]:
    rt = get_runtime()
    provider = rt.provider("hitpaw")
    cpu: dict[str, list[float]] = {"submit": [], "poll": [], "store": []}
    url = ctx.sandbox.sample_url("portrait.jpg")
    pending = [_timed(cpu, "submit", lambda: provider.submit(
        provider.build_request(None, {}, image_url=url))).job_id for _ in range(jobs)]
    deadline = time.monotonic() + BARE_TIMEOUT_S
    while pending and time.monotonic() < deadline:
        time.sleep(BARE_POLL_EVERY_S)  # the bench waits; CPU is what is measured
        for job_id in list(pending):
            status = _timed(cpu, "poll", provider.query, job_id)
            if status.phase is not Phase.IN_PROGRESS:
                pending.remove(job_id)
            if status.phase is Phase.COMPLETED:
                _timed(cpu, "store", _store, rt, job_id, status.result_url)
    return cpu


def _store(rt, job_id: str, url: str | None) -> None:
    with open_result(rt.http, "hitpaw", url, rt.settings) as download:
        rt.objects.stream_result(rt.objects.result_key(f"bare-{job_id}", ".jpg"),
                                 download.stream, content_type="image/jpeg",
                                 expected_size=download.size_bytes)
