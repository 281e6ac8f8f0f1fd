"""Bench-only: the naive way, as the vendor samples do it, to compare against.

One task per job submits to HitPaw, then ``time.sleep``s in a loop between polls, then
downloads the result and uploads it to S3. This is the one place in the project where a
task sleeps: it exists only so the benchmark can show what that costs (a worker process
is held for the whole provider latency). Never route production work here.

It uses the project's own clients (``HitPawClient``, ``open_result``,
``ObjectStore.stream_result``) so that only the orchestration differs. Each job's outcome
is written to the ``bench:naive:done`` hash in Redis.
"""

from __future__ import annotations

import json
import time

from providers.base import Phase
from providers.download import open_result
from providers.errors import EnhanceError
from workers.app import app
from workers.runtime import get_runtime

NAIVE_QUEUE = "bench.naive"
DONE_KEY = "bench:naive:done"


@app.task(name="bench.naive", ignore_result=True, queue=NAIVE_QUEUE)
def enhance_naive(key: str, source_url: str, poll_interval_s: float, timeout_s: float) -> None:
    """Submit, sleep-poll, download and upload one job; record how it went."""
    rt = get_runtime()
    started = time.time()
    outcome = {"started": started, "ok": False, "polls": 0}
    try:
        status, outcome["polls"] = _submit_and_wait(rt, source_url, poll_interval_s, timeout_s)
        if status is not None and status.phase is Phase.COMPLETED:
            _store(rt, key, status.result_url)
            outcome["ok"] = True
    except EnhanceError as exc:
        outcome["error"] = f"{exc.code}: {exc.message}"
    outcome["done"] = time.time()
    rt.redis.hset(DONE_KEY, key, json.dumps(outcome))


def _submit_and_wait(rt, source_url: str, poll_interval_s: float, timeout_s: float):
    provider = rt.provider("hitpaw")
    submission = provider.submit(provider.build_request(None, {}, image_url=source_url))
    status, polls = submission.status, 0
    deadline = time.monotonic() + timeout_s
    while (status is None or status.phase is Phase.IN_PROGRESS) and time.monotonic() < deadline:
        time.sleep(poll_interval_s)  # the vendor samples' way: the process waits here
        status = provider.query(submission.job_id)
        polls += 1
    return status, polls


def _store(rt, key: str, result_url: str | None) -> None:
    with open_result(rt.http, "hitpaw", result_url, rt.settings) as download:
        rt.objects.stream_result(
            rt.objects.result_key(key, ".jpg"), download.stream,
            content_type=download.content_type or "image/jpeg",
            expected_size=download.size_bytes,
        )
