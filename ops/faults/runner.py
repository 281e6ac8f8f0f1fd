"""Shared steps of the fault scenarios: a clean start, a batch of jobs, the bucket's state."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import kombu.pools

from ops.bench.runner import Context
from ops.faults.outcome import Batch, Observer, read_records, tally, wait_final
from workers.app import app
from workers.runtime import get_runtime

#: Every fault the sandbox can inject, off: each scenario turns on only its own.
QUIET_SANDBOX = {
    "rate_429": 0.0, "rate_5xx": 0.0, "rate_slow": 0.0, "slow_response_s": 0.0,
    "rate_malformed": 0.0, "rate_job_failure": 0.0, "rate_envelope_error": 0.0,
    "rate_cut_download": 0.0, "retry_after_s": 1, "result_ttl_s": 3600.0,
}
PROVIDERS = ("hitpaw", "picwish")
ENQUEUE_RETRY_S = 30.0  # a producer keeps trying this long while Redis restarts


def prepare(ctx: Context, settings: dict, **sandbox: object) -> dict[str, str]:
    """Stop every process, empty Redis, S3 and the sandbox; return the workers' env."""
    ctx.stack.stop_beats()
    ctx.fresh(**{**QUIET_SANDBOX, **supported(ctx, sandbox)})
    ctx.stack.kills.clear()
    return use(ctx, settings)


def use(ctx: Context, settings: dict) -> dict[str, str]:
    """Point this process (the producer) at ``ctx``'s stack; return the workers' env."""
    # Fresh connections (and producers): the pooled ones may be to another stack's broker,
    # or to a Redis the last scenario killed. The app's pools are kombu's, kept per broker
    # URL: a Redis restarted on the same URL left the crash storm's `inspect` a dead
    # connection (a later scenario's broadcast failed "Connection closed by server").
    kombu.pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    return ctx.use(**settings)


def supported(ctx: Context, sandbox: dict) -> dict:
    """The sandbox options this sandbox has (``create_latency_s`` may be missing)."""
    known = ctx.sandbox._http.get(f"{ctx.sandbox.base_url}/_sandbox/config", timeout=10).json()
    return {k: v for k, v in sandbox.items() if k in known}


def enqueue_batch(ctx: Context, count: int, providers: tuple[str, ...] = PROVIDERS,
                  batch: Batch | None = None, **options: object) -> Batch:
    """Enqueue ``count`` jobs, each with a source URL of its own (to find its paid calls);
    ``options`` go to every ``enqueue`` (``webhook=...``)."""
    from tasks.producer import enqueue

    batch = batch or Batch()
    base = ctx.sandbox.sample_url("portrait.jpg")
    for i in range(count):
        source = f"{base}?ref={uuid.uuid4().hex}"
        job_id = _with_retry(lambda s=source, i=i: enqueue(s, providers[i % len(providers)],
                                                            runtime=get_runtime(), **options))
        batch.sources[job_id] = source
    return batch


def _with_retry(call):
    deadline = time.monotonic() + ENQUEUE_RETRY_S
    while True:
        try:
            return call()
        except Exception:  # noqa: BLE001 - Redis restarting: a producer would retry
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def finish(ctx: Context, batch: Batch, timeout_s: float) -> tuple[dict, list]:
    """Wait for the batch to end; return its tally and records."""
    finished = wait_final(batch.ids, timeout_s)
    records = read_records(batch.ids)
    figures = tally(batch, records, sandbox_jobs(ctx))
    figures["timed_out"] = not finished
    return figures, records


def sandbox_jobs(ctx: Context) -> list[dict]:
    response = ctx.sandbox._http.get(f"{ctx.sandbox.base_url}/_sandbox/jobs", timeout=120)
    response.raise_for_status()
    return response.json()


def bucket_state(records: list) -> dict:
    """Objects and multipart uploads in the bucket, against the jobs that succeeded."""
    rt = get_runtime()
    client, bucket = rt.objects.client, rt.settings.s3_bucket
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    outputs = {r.output.key for r in records if r.output}
    results = [k for k in keys if not k.startswith(f"{rt.settings.s3_prefix}inputs/")]
    return {
        "objects": len(results),
        "succeeded_with_object": sum(1 for key in outputs if key in keys),
        "objects_of_no_succeeded_job": len(set(results) - outputs),
        "multipart_uploads_left": len(uploads),
    }


def promises(figures: dict, **extra: bool) -> dict:
    """The scenario's pass/fail lines: every job final, none paid twice, no internal error."""
    checks = {
        "all_final": figures["not_final"] == 0 and not figures.get("timed_out"),
        "none_paid_twice": figures["paid_twice"] == 0,
        "no_internal_error": "error" not in figures["failed_by_code"],  # code of "internal error"
        **extra,
    }
    return {"held": all(checks.values()), **checks}


def through_fault(ctx: Context, p, settings: dict,
                  fault: Callable[[], float]) -> tuple[dict, dict]:
    """Half of ``p.jobs`` in flight, ``fault()``, then the other half: figures and promises.

    One worker (``p.concurrency``) and beat run throughout and must carry on unrestarted;
    ``fault()`` returns the time recovery is measured from.
    """
    env = prepare(ctx, settings, processing_time_s=list(p.processing_s))
    ctx.stack.worker(env, concurrency=p.concurrency)
    ctx.stack.beat(env)
    procs = [*ctx.stack.workers, *ctx.stack.beats]
    batch = enqueue_batch(ctx, p.jobs // 2)
    with Observer(batch) as observer:
        at = fault()
        enqueue_batch(ctx, p.jobs - p.jobs // 2, batch=batch)  # producers carry on
        figures, records = finish(ctx, batch, p.final_timeout_s)
    survived = sum(proc.alive() for proc in procs)
    figures.update({"processes_alive_after": f"{survived}/{len(procs)}",
                    "recovery": observer.recovery_s(at, records)})
    return figures, promises(figures, processes_carried_on=survived == len(procs))
