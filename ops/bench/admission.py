"""Scenarios 6-9: admission under load, each beside what it is compared to.

- 6 ``backlog``: 10,000 PicWish jobs queued under the 2 req/s cap with beat and 2 worker
  hosts x 2 processes: task executions per job against the pipeline's minimum, worker
  RSS, Redis bytes per queued job, failures, paid calls per job. At 2 req/s the backlog
  would take hours; the run stops once executions per job is steady.
- 7 ``fairness``: tenant B's 20 jobs alone, then enqueued right after tenant A's 1,000:
  B's wait (enqueue -> provider accepted the submit) in both, and what first-in first-out
  would have made it.
- 8 ``reuse``: 100 threads enqueue the same image's bytes at once: paid calls (1 expected).
- 9 ``spend_cap``: a daily credit cap of N with twice N's worth of jobs and 2 x 2 worker
  processes racing, no rate cap: credits the provider charged against N.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ops.bench import params as P
from ops.bench.measure import MIB, TreeSampler, percentile, redis_used_memory, rounded
from ops.bench.runner import Context, enqueue_many, records, task_totals, wait_final
from ops.bench.stack import wait_until
from storage.jobs import JobRecord, JobState
from tasks import admission, spend
from workers.app import app
from workers.runtime import get_runtime


def _capped(p, qps: float, **more) -> dict:
    return {"PICWISH_MAX_RPS": qps, "PICWISH_MAX_IN_FLIGHT": 100_000,
            "HITPAW_MAX_RPS": P.UNCAPPED_RPS, "HITPAW_MAX_IN_FLIGHT": 100_000,
            **p.settings, **more}


def _workers(ctx: Context, env: dict, count: int, processes: int) -> list:
    return [ctx.stack.worker(env, app, processes) for _ in range(count)]


def _paid(ctx: Context, recs: list[JobRecord]) -> dict:
    """Paid calls the provider saw against the jobs holding their provider job ids.

    ``paid_twice``: paid calls no job holds (a second submit whose job was lost) plus
    provider jobs two of our jobs hold. Read after the workers stopped.
    """
    paid = ctx.sandbox.jobs()
    ours = [r.provider_job_id for r in recs if r.provider_job_id]
    held = set(ours)
    return {"paid_calls": len(paid), "jobs_with_provider_job": len(held),
            "paid_twice": sum(1 for job in paid if job["id"] not in held)
            + len(ours) - len(held),
            "credits_charged": rounded(sum(job["cost"] or 0 for job in paid), 3)}


# --- 6: backlog -------------------------------------------------------------------------


def backlog(ctx: Context, p: P.Backlog) -> dict:
    """Queue ``jobs`` under the cap; read executions per job until it is steady; stop."""
    ctx.fresh(processing_time_s=list(p.latency_s), picwish_qps=p.qps)
    settings = _capped(p, p.qps)
    env = ctx.use(**settings)
    workers = _workers(ctx, env, p.workers, p.worker_processes)
    ctx.stack.beat(env)
    pids = [w.pid for w in workers]
    before = task_totals(workers)
    with TreeSampler(pids, ctx.redis, interval_s=1.0) as sampler:
        idle_redis = redis_used_memory(ctx.redis)
        started = time.monotonic()
        ids = enqueue_many(ctx, p.jobs, "picwish")
        enqueue_s = time.monotonic() - started
        queued = sum(admission.waiting(get_runtime(), "picwish").values())
        queued_redis = redis_used_memory(ctx.redis)
        readings = _until_steady(ctx, workers, before, p, started)
    # The figure is steady: the rest would take hours. A warm shutdown lets a submit
    # under way record its provider job, so a paid call without a job is a real one.
    ctx.stack.stop_workers()
    recs = records(ids)
    counts = Counter(r.state.value for r in recs)
    last = readings[-1]
    return {"params": {**P.as_dict(p), "settings": settings}, "figures": {
        "jobs": p.jobs, "enqueue_s": rounded(enqueue_s, 2),
        "queued_after_enqueue": queued,
        "redis_bytes_per_queued_job": rounded((queued_redis - idle_redis) / max(queued, 1), 1),
        "ran_s": last["t_s"], "steady": _steady(readings, p.steady_within),
        "readings": readings,
        "succeeded": counts.get("succeeded", 0), "failed": counts.get("failed", 0),
        "still_queued": counts.get("queued", 0),
        "task_executions_per_job": last["executions_per_job"],
        "minimum_executions_per_job": last["minimum_per_job"],
        "executions_vs_minimum": rounded(last["executions_per_job"] / last["minimum_per_job"]
                                         if last["minimum_per_job"] else 0.0),
        "celery_tasks_by_name": last["by_name"],
        "jobs_per_s": last["jobs_per_s"],
        "worker_rss_peak_mib": rounded(max(s.rss_total for s in sampler.samples) / MIB, 1),
        "worker_rss_main_peak_mib": rounded(max(s.rss_main for s in sampler.samples) / MIB, 1),
        "worker_processes": p.workers * p.worker_processes,
        **_paid(ctx, recs),
    }}


def _until_steady(ctx, workers, before: Counter, p: P.Backlog, started: float) -> list[dict]:
    readings: list[dict] = []
    while True:
        time.sleep(p.check_every_s)
        readings.append(_reading(ctx, workers, before, started))
        elapsed = time.monotonic() - started
        if elapsed >= p.max_s or (elapsed >= p.min_s and _steady(readings, p.steady_within)):
            return readings


def _reading(ctx, workers, before: Counter, started: float) -> dict:
    """Executions so far per job done: tasks the workers ran / jobs that succeeded.

    The minimum is what those jobs needed (1 admission + 1 submit + polls + 1 store);
    jobs in flight at the reading have run some tasks already, so both lean the same way.
    """
    totals = task_totals(workers)
    totals.subtract(before)
    ours = {k: v for k, v in totals.items() if k.startswith("enhance.")}
    counts = get_runtime().jobs.counts()
    done = counts["succeeded"]
    polls = sum(1 for r in ctx.sandbox.requests_log("picwish") if r["kind"] == "query")
    elapsed = time.monotonic() - started
    return {"t_s": rounded(elapsed, 1), "succeeded": done, "failed": counts["failed"],
            "executions_per_job": rounded(sum(ours.values()) / done if done else 0.0),
            "minimum_per_job": rounded(3 + polls / done if done else 0.0),
            "jobs_per_s": rounded(done / elapsed), "by_name": ours}


def _steady(readings: list[dict], within: float) -> bool:
    if len(readings) < 2 or not readings[-1]["executions_per_job"]:
        return False
    a, b = readings[-2]["executions_per_job"], readings[-1]["executions_per_job"]
    return abs(b - a) <= within * b


# --- 7: fairness ------------------------------------------------------------------------


def fairness(ctx: Context, p: P.Fairness) -> dict:
    """B alone, then B right behind A's backlog: B's waits for admission."""
    ctx.fresh(processing_time_s=list(p.latency_s), picwish_qps=p.qps)
    settings = _capped(p, p.qps)
    env = ctx.use(**settings)
    _workers(ctx, env, p.workers, p.worker_processes)
    alone_ids = enqueue_many(ctx, p.b_jobs, "picwish", tenant="b")
    wait_final(ctx, p.b_jobs, p.timeout_s)
    alone = _waits(records(alone_ids))
    alone_s = alone["span_s"]
    a_ids = enqueue_many(ctx, p.a_jobs, "picwish", tenant="a")
    b_ids = enqueue_many(ctx, p.b_jobs, "picwish", tenant="b")
    rt = get_runtime()
    wait_until(lambda: all(r.state is not JobState.QUEUED for r in rt.jobs.get_many(b_ids)),
               p.timeout_s, "tenant B's jobs admitted", interval_s=0.5)
    behind = _waits(records(b_ids))
    a_recs = records(a_ids)
    ctx.stack.stop_workers(kill=True)  # A's backlog would take ~20 minutes more
    a_admitted = sum(1 for r in a_recs if r.state is not JobState.QUEUED)
    fifo_s = (p.a_jobs + p.b_jobs) / (p.b_jobs / alone_s) if alone_s else 0.0
    return {"params": {**P.as_dict(p), "settings": settings}, "figures": {
        "b_alone_wait_p50_s": alone["p50_s"], "b_alone_wait_p95_s": alone["p95_s"],
        "b_behind_a_wait_p50_s": behind["p50_s"], "b_behind_a_wait_p95_s": behind["p95_s"],
        "b_p95_vs_alone": rounded(behind["p95_s"] / alone["p95_s"] if alone["p95_s"] else 0.0),
        "a_admitted_meanwhile": a_admitted,
        "fifo_b_wait_estimate_s": rounded(fifo_s, 1),
        "admission_rate_alone_per_s": rounded(p.b_jobs / alone_s if alone_s else 0.0),
    }}


def _waits(recs: list[JobRecord]) -> dict:
    """Enqueue -> the provider accepted the submit, per job (admission's wait + the call)."""
    waits = [(r.transitions[JobState.SUBMITTED.value] - r.created_at).total_seconds()
             for r in recs if JobState.SUBMITTED.value in r.transitions]
    return {"p50_s": rounded(percentile(waits, 50), 2), "p95_s": rounded(percentile(waits, 95), 2),
            "span_s": max(waits, default=0.0)}


# --- 8: reuse ---------------------------------------------------------------------------


def reuse(ctx: Context, p: P.Reuse) -> dict:
    """``threads`` producers enqueue one image's bytes at the same instant."""
    ctx.fresh(processing_time_s=list(p.latency_s))
    settings = {"HITPAW_MAX_RPS": P.UNCAPPED_RPS, "HITPAW_MAX_IN_FLIGHT": 100_000,
                **p.settings}
    env = ctx.use(**settings)
    ctx.stack.worker(env, app, p.worker_processes)
    image = ctx.sandbox.sample_bytes("portrait.jpg")
    rt = get_runtime()
    from tasks.producer import enqueue

    start = threading.Barrier(p.threads)

    def one(_: int) -> str:
        start.wait()
        return enqueue(image, "hitpaw", runtime=rt, filename="portrait.jpg")

    with ThreadPoolExecutor(p.threads) as pool:
        ids = list(pool.map(one, range(p.jobs)))
    finished = wait_final(ctx, p.jobs, p.timeout_s)
    recs = records(ids)
    ctx.stack.stop_workers()
    outputs = {r.output.key for r in recs if r.output}
    return {"params": {**P.as_dict(p), "settings": settings}, "figures": {
        "jobs": p.jobs, "timed_out": not finished,
        "succeeded": sum(1 for r in recs if r.state is JobState.SUCCEEDED),
        "failed": sum(1 for r in recs if r.state is JobState.FAILED),
        "reused": sum(1 for r in recs if r.reused_from), "distinct_outputs": len(outputs),
        "expected_paid_calls": 1, "without_reuse_paid_calls": p.jobs,
        **_paid(ctx, recs),
    }}


# --- 9: spend cap -----------------------------------------------------------------------


def spend_cap(ctx: Context, p: P.SpendCap) -> dict:
    """Twice the cap's worth of jobs, racing processes, SPEND_CAP_POLICY=fail to end."""
    ctx.fresh(processing_time_s=list(p.latency_s))
    settings = _capped(p, P.UNCAPPED_RPS, PICWISH_DAILY_CREDIT_LIMIT=p.cap,
                       SPEND_CAP_POLICY="fail")
    env = ctx.use(**settings)
    _workers(ctx, env, p.workers, p.worker_processes)
    ids = enqueue_many(ctx, p.jobs, "picwish")
    finished = wait_final(ctx, p.jobs, p.timeout_s)
    recs = records(ids)
    ctx.stack.stop_workers()
    paid = _paid(ctx, recs)
    ledger = spend.spent_today(get_runtime(), "picwish").get("total", 0.0)
    return {"params": {**P.as_dict(p), "settings": settings}, "figures": {
        "cap_credits": p.cap, "jobs": p.jobs, "timed_out": not finished,
        "succeeded": sum(1 for r in recs if r.state is JobState.SUCCEEDED),
        "failure_codes": dict(Counter(r.error.code for r in recs if r.error)),
        "spent_vs_cap": rounded(paid["credits_charged"] / p.cap if p.cap else 0.0),
        "ledger_credits": rounded(ledger, 3), **paid,
    }}
