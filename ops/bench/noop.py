"""Bench-only: an empty task, to measure Celery's own ceiling on the same broker.

A worker started with ``--include ops.bench.noop`` and the ``bench.noop`` queue runs it
with the project's Celery configuration (late acks, events, JSON). The task counts itself
in Redis (one ``INCR``), so the bench knows when all have run without a result backend,
then sends the next task of its chain while ``hops`` are left: a job's tasks are each
sent by the one before it, from the worker, and that send is Celery's cost too. With
``every_s`` the next is sent with that countdown, so chains can arrive at a given rate.
"""

from __future__ import annotations

import redis

from workers.app import app

NOOP_QUEUE = "bench.noop"
DONE_KEY = "bench:noop:done"

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(app.conf.broker_url, socket_timeout=10)
    return _client


@app.task(name="bench.noop", ignore_result=True, queue=NOOP_QUEUE)
def noop(hops: int = 0, every_s: float = 0) -> None:
    """Do nothing but count, and send the next empty task while ``hops`` are left, with a
    countdown of ``every_s`` (as a poll schedules the next)."""
    _redis().incr(DONE_KEY)
    if hops > 0:
        noop.apply_async((hops - 1, every_s), countdown=every_s or None)
