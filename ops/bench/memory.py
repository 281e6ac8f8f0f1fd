"""Scenarios 4-5: memory with large results, and with many jobs in flight."""

from __future__ import annotations

import time

from ops.bench import params as P
from ops.bench.measure import MIB, TreeSampler, rounded
from ops.bench.runner import Context, enqueue_many, job_figures, run_jobs
from ops.bench.stack import wait_until
from workers.app import app
from workers.constants import POLL_QUEUE

UNACKED_KEY = "unacked"  # kombu's Redis transport: messages delivered, not yet acked


def large_results(ctx: Context, p: P.LargeResults) -> dict:
    """Scenario 4: for each result size, a fresh worker stores ``jobs_per_size`` results."""
    settings = {"HITPAW_MAX_RPS": P.UNCAPPED_RPS, **p.settings}
    rows = []
    for size in p.sizes_bytes:
        ctx.fresh(processing_time_s=list(p.latency_s), large_result_bytes=size)
        env = ctx.use(**settings)
        worker = ctx.stack.worker(env, app, p.worker_processes)
        figures = job_figures(run_jobs(ctx, [worker], p.jobs_per_size, "hitpaw", p.timeout_s,
                                       p.sample))
        ctx.stack.stop_workers()
        rows.append({
            "result_bytes": size, "result_mib": rounded(size / MIB, 1),
            "jobs": figures["jobs"], "succeeded": figures["succeeded"],
            "all_succeeded": figures["all_succeeded"],
            "failure_codes": figures["failure_codes"],
            "worker_rss_idle_mib": figures["worker_rss_idle_mib"],
            "worker_rss_peak_mib": figures["worker_rss_peak_mib"],
            "worker_rss_child_peak_mib": figures["worker_rss_child_peak_mib"],
            "store_lag_p50_s": figures["store_lag_p50_s"],
        })
    ctx.stack.reset_s3()  # hand moto's memory back
    growth = [r["worker_rss_peak_mib"] - r["worker_rss_idle_mib"] for r in rows]
    return {"params": {**P.as_dict(p), "settings": settings},
            "figures": {"by_size": rows,
                        "rss_growth_mib_min": rounded(min(growth), 1),
                        "rss_growth_mib_max": rounded(max(growth), 1)}}


def many_in_flight(ctx: Context, p: P.ManyInFlight) -> dict:
    """Scenario 5: ``jobs`` HitPaw jobs held in flight; measure at the plateau, then stop."""
    ctx.fresh(processing_time_s=list(p.latency_s))
    settings = {"HITPAW_MAX_RPS": P.UNCAPPED_RPS, "HITPAW_MAX_IN_FLIGHT": p.jobs * 2,
                "WORKER_ETA_TASK_LIMIT": p.jobs + 1000, **p.settings}
    env = ctx.use(**settings)
    worker = ctx.stack.worker(env, app, p.worker_processes)
    started = time.monotonic()
    with TreeSampler([worker.pid], ctx.redis, interval_s=1.0) as sampler:
        idle = sampler.samples[0]
        enqueue_many(ctx, p.jobs, "hitpaw")
        enqueued_s = time.monotonic() - started
        reached = _wait_plateau(ctx, p)
        plateau_s = time.monotonic() - started
        time.sleep(p.hold_s)
        at = [sampler.sample() for _ in range(3)]
    ctx.stack.stop_workers(kill=True)  # the measurement is taken; don't wait for 10k jobs
    return {"params": {**P.as_dict(p), "settings": settings},
            "figures": _plateau_figures(ctx, idle, at, reached, enqueued_s, plateau_s)}


def _all_submitted(ctx: Context) -> bool:
    """No job left in ``queued``: each was submitted (or ended)."""
    return int(ctx.redis.hget("eq:counts", "queued") or 0) <= 0


def _wait_plateau(ctx: Context, p: P.ManyInFlight) -> bool:
    """All jobs submitted, and (nearly) all their polls delivered to the worker and held."""
    try:
        wait_until(lambda: _all_submitted(ctx), p.submit_timeout_s,
                   "every job submitted", interval_s=0.5)
        first_poll_s = min(p.settings["HITPAW_POLL_INTERVAL_S"] * 1.5 + 10, 120)
        wait_until(lambda: ctx.redis.hlen(UNACKED_KEY) >= 0.98 * p.jobs, first_poll_s,
                   "every first poll held by the worker", interval_s=0.5)
        return True
    except RuntimeError:
        return False


def _plateau_figures(ctx, idle, at, reached, enqueued_s, plateau_s) -> dict:
    in_flight = max(min(s.in_flight for s in at), 1)
    rss = max(s.rss_total for s in at)
    rss_main = max(s.rss_main for s in at)
    redis_used = max(s.redis_used for s in at)
    return {
        "plateau_reached": reached,
        "in_flight": min(s.in_flight for s in at),
        "unacked_messages_held": ctx.redis.hlen(UNACKED_KEY),
        "poll_queue_backlog": ctx.redis.llen(POLL_QUEUE),
        "enqueue_s": rounded(enqueued_s, 2), "plateau_after_s": rounded(plateau_s, 2),
        "worker_rss_idle_mib": rounded(idle.rss_total / MIB, 1),
        "worker_rss_mib": rounded(rss / MIB, 1),
        "worker_rss_main_mib": rounded(rss_main / MIB, 1),
        "worker_rss_bytes_per_in_flight_job": rounded((rss - idle.rss_total) / in_flight, 1),
        "worker_main_rss_bytes_per_in_flight_job":
            rounded((rss_main - idle.rss_main) / in_flight, 1),
        "redis_used_mib": rounded(redis_used / MIB, 1),
        "redis_bytes_per_in_flight_job": rounded((redis_used - idle.redis_used) / in_flight, 1),
    }
