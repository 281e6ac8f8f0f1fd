"""The producer API's asyncio twins (import them from ``tasks.producer``).

None blocks the event loop. Reads and waits talk to Redis with ``redis.asyncio``
(``aget_job``, ``await_job``, ``alist_jobs``; one client per event loop, made on first
use). What does blocking I/O runs in a worker thread (``asyncio.to_thread``):
``aenqueue`` / ``aenqueue_many`` (they may read a local file and upload it to S3, and run
the job store's scripts and the Celery publish with the synchronous clients),
``acancel`` (the final transition, which deletes the staged input from S3) and
``aoutput_url``'s presigning (the record itself is read with asyncio).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import redis.asyncio

from storage import jobindex
from storage.errors import WaitTimeout
from storage.jobs import JobRecord, UnknownJob, parse_record
from tasks.cancel import Cancellation
from workers.runtime import Runtime, connect_redis_async, get_runtime
from workers.settings import Settings

DEFAULT_WAIT_S = 3600.0  # ``wait`` / ``await_job`` give up after this by default

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loop -> {(settings, kind): client}


def _sync():
    """``tasks.producer``, which imports this module: imported when first called."""
    from tasks import producer

    return producer


def _client(settings: Settings, subscriber: bool = False) -> redis.asyncio.Redis:
    """This event loop's ``redis.asyncio`` client of the job store: for commands (a few
    connections, shared), or for subscriptions (one connection per waiting ``await_job``)."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (settings, subscriber)  # by value (frozen settings hash): an id is reused
    if key not in per_loop:
        per_loop[key] = connect_redis_async(settings, bounded=not subscriber)
    return per_loop[key]


async def aenqueue(source: Any, provider: str, model: str | None = None,
                   options: dict[str, Any] | None = None, *, runtime: Runtime | None = None,
                   **kwargs: Any) -> str:
    """``enqueue`` in a worker thread (it may upload the source to S3)."""
    return await asyncio.to_thread(_sync().enqueue, source, provider, model, options,
                                   runtime=runtime, **kwargs)


async def aenqueue_many(requests: Iterable[Mapping[str, Any]], *,
                        runtime: Runtime | None = None, **common: Any) -> list[str]:
    """``enqueue_many`` in a worker thread."""
    return await asyncio.to_thread(_sync().enqueue_many, list(requests), runtime=runtime,
                                   **common)


async def aget_job(job_id: str, *, runtime: Runtime | None = None) -> JobRecord:
    """``get_job`` over ``redis.asyncio``; ``UnknownJob`` (404) for an unknown id."""
    rt = runtime or get_runtime()
    return parse_record(job_id, await _client(rt.settings).get(rt.jobs.record_key(job_id)))


async def await_job(job_id: str, timeout_s: float = DEFAULT_WAIT_S, *,
                    runtime: Runtime | None = None) -> JobRecord:
    """``wait`` for asyncio: awaits the job's change announcements, no polling loop.

    Raises:
        UnknownJob: no job has this id (404).
        WaitTimeout: ``timeout_s`` passed first (504); the job goes on.
    """
    rt = runtime or get_runtime()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _sync().check_timeout(timeout_s)
    async with _client(rt.settings, subscriber=True).pubsub() as pubsub:
        await pubsub.subscribe(rt.jobs.events_channel(job_id))
        # read once the server confirmed the subscription (SUBSCRIBE is sent without
        # waiting): a change between the read and the subscription would be missed
        while (left_s := deadline - loop.time()) > 0:
            message = await pubsub.get_message(timeout=left_s)
            if message is not None and message["type"] == "subscribe":
                break
        record = await aget_job(job_id, runtime=rt)
        while not record.state.final:
            left_s = deadline - loop.time()
            if left_s <= 0:
                raise WaitTimeout(f"job {job_id} is still {record.state.value} after "
                                  f"{timeout_s:g} s")
            message = await pubsub.get_message(timeout=left_s)
            if message is not None and message["type"] == "message":
                record = await aget_job(job_id, runtime=rt)
    return record


wait_async = await_job


async def acancel(job_id: str, *, runtime: Runtime | None = None) -> Cancellation:
    """``cancel`` in a worker thread (a final transition deletes the staged input)."""
    return await asyncio.to_thread(_sync().cancel, job_id, runtime=runtime)


async def aoutput_url(job_id: str, expires_in: int = 3600, *, download: bool = False,
                      runtime: Runtime | None = None) -> str:
    """``output_url``: the record read over ``redis.asyncio``, presigned in a thread."""
    rt = runtime or get_runtime()
    record = await aget_job(job_id, runtime=rt)
    return await asyncio.to_thread(_sync().presign_result, rt, record, expires_in, download)


async def alist_jobs(*, state: str | None = None, provider: str | None = None,
                     tenant: str | None = None, label: Mapping[str, str] | str | None = None,
                     since: datetime | None = None, cursor: str | None = None,
                     limit: int = 50, runtime: Runtime | None = None):
    """``list_jobs`` over ``redis.asyncio``."""
    rt = runtime or get_runtime()
    flt = _sync().job_filter(state, provider, tenant, label, since)
    page, raws = await jobindex.arun(jobindex.page(rt.jobs.prefix, flt, cursor, limit),
                                     _client(rt.settings))
    return _sync().JobPage([JobRecord.model_validate_json(raw) for raw in raws], page.cursor)


async def aclose() -> None:
    """Close this event loop's ``redis.asyncio`` clients (an app's shutdown hook)."""
    for client in _clients.pop(asyncio.get_running_loop(), {}).values():
        await client.aclose()


__all__ = ["aclose", "aenqueue", "aenqueue_many", "aget_job", "await_job", "wait_async", "acancel",
           "aoutput_url", "alist_jobs", "UnknownJob"]
