"""Scenarios 1-3: orchestration overhead, a provider cap, and the naive way side by side."""

from __future__ import annotations

import contextlib
import json
import time

from ops.bench import params as P
from ops.bench.floor import bare_calls, celery_ceiling
from ops.bench.measure import CpuWindow, rounded
from ops.bench.naive import DONE_KEY as NAIVE_DONE_KEY
from ops.bench.naive import NAIVE_QUEUE, enhance_naive
from ops.bench.noop import NOOP_QUEUE
from ops.bench.runner import Context, job_figures, run_jobs
from ops.bench.stack import wait_until
from workers.app import app
from workers.constants import ALL_QUEUES


def _uncapped(p, **more) -> dict:
    return {"HITPAW_MAX_RPS": P.UNCAPPED_RPS, "PICWISH_MAX_RPS": P.UNCAPPED_RPS,
            "HITPAW_MAX_IN_FLIGHT": 100_000, "PICWISH_MAX_IN_FLIGHT": 100_000,
            **p.settings, **more}


def orchestration(ctx: Context, p: P.Orchestration) -> dict:
    """Scenario 1: N HitPaw jobs, no cap, one worker; against Celery's floor."""
    ctx.fresh(processing_time_s=list(p.latency_s))
    settings = _uncapped(p)
    env = ctx.use(**settings)
    worker = ctx.stack.worker(env, app, p.worker_processes, queues=(*ALL_QUEUES, NOOP_QUEUE),
                              include=("ops.bench.noop",))
    ceiling = celery_ceiling(ctx, worker, p.noop_tasks)
    figures = job_figures(run_jobs(ctx, [worker], p.jobs, "hitpaw", p.timeout_s))
    bare = bare_calls(ctx, p.bare_jobs)
    ctx.stack.stop_workers()
    return {"params": {**P.as_dict(p), "settings": settings},
            "figures": {**figures, "celery_ceiling": ceiling, "bare_calls": bare,
                        **_against_floor(figures, ceiling, bare)}}


def _against_floor(ours: dict, ceiling: dict, bare: dict) -> dict:
    tasks_per_job = ours["celery_tasks_per_job"] or 1.0
    bound = ceiling["tasks_per_s"] / tasks_per_job
    predicted = (ceiling["worker_cpu_ms_per_task"] * tasks_per_job + bare["submit_cpu_ms"]
                 + ours["provider_polls_per_job"] * bare["poll_cpu_ms"] + bare["store_cpu_ms"])
    return {
        "ceiling_jobs_per_s": rounded(bound),
        "jobs_per_s_vs_ceiling": rounded(ours["jobs_per_s"] / bound if bound else 0.0),
        "floor_cpu_ms_per_job": rounded(predicted, 3),
        "cpu_per_job_vs_floor": rounded(ours["worker_cpu_ms_per_job"] / predicted
                                        if predicted else 0.0),
    }


def provider_cap(ctx: Context, p: P.ProviderCap) -> dict:
    """Scenario 2: PicWish at ``qps`` (sandbox and our budget), several worker processes."""
    ctx.fresh(processing_time_s=list(p.latency_s), picwish_qps=p.qps)
    settings = _uncapped(p, PICWISH_MAX_RPS=p.qps)
    env = ctx.use(**settings)
    workers = [ctx.stack.worker(env, app, p.worker_processes) for _ in range(p.workers)]
    figures = job_figures(run_jobs(ctx, workers, p.jobs, "picwish", p.timeout_s))
    ctx.stack.stop_workers()
    ideal = p.qps / 2  # one submit + one poll per job, at best
    figures.update({
        "ideal_jobs_per_s": rounded(ideal),
        "jobs_per_s_vs_ideal": rounded(figures["jobs_per_s"] / ideal),
        "provider_requests_per_s": rounded(figures["provider_requests"] / figures["span_s"]
                                           if figures["span_s"] else 0.0),
    })
    return {"params": {**P.as_dict(p), "settings": settings}, "figures": figures}


def naive(ctx: Context, p: P.Naive) -> dict:
    """Scenario 3: the same jobs on the same worker: ours, then one sleeping task each."""
    ctx.fresh(processing_time_s=list(p.latency_s))
    settings = _uncapped(p)
    env = ctx.use(**settings)
    worker = ctx.stack.worker(env, app, p.worker_processes, queues=(*ALL_QUEUES, NAIVE_QUEUE),
                              include=("ops.bench.naive",))
    ours = job_figures(run_jobs(ctx, [worker], p.jobs, "hitpaw", p.timeout_s))
    theirs = _run_naive(ctx, worker, p)
    ctx.stack.stop_workers()
    ratio = ours["jobs_per_s"] / theirs["jobs_per_s"] if theirs["jobs_per_s"] else 0.0
    return {"params": {**P.as_dict(p), "settings": settings},
            "figures": {"ours": ours, "naive": theirs, "jobs_per_s_ratio": rounded(ratio)}}


def _run_naive(ctx: Context, worker, p: P.Naive) -> dict:
    ctx.redis.delete(NAIVE_DONE_KEY)
    ctx.sandbox.reset()
    url = ctx.sandbox.sample_url("portrait.jpg")
    with CpuWindow([worker.pid]) as cpu:
        sent = time.time()
        for i in range(p.jobs):
            enhance_naive.apply_async((f"naive-{i}", url, p.naive_poll_interval_s, p.timeout_s))
        with contextlib.suppress(RuntimeError):  # a timeout shows as jobs not succeeded
            wait_until(lambda: ctx.redis.hlen(NAIVE_DONE_KEY) >= p.jobs, p.timeout_s,
                       "naive jobs ending", interval_s=0.2)
    outcomes = [json.loads(v) for v in ctx.redis.hvals(NAIVE_DONE_KEY)]
    ok = [o for o in outcomes if o["ok"]]
    span_s = max((o["done"] for o in outcomes), default=sent) - sent
    log = ctx.sandbox.requests_log("hitpaw")
    return {
        "jobs": p.jobs, "succeeded": len(ok), "all_succeeded": len(ok) == p.jobs,
        "span_s": rounded(span_s, 3),
        "jobs_per_s": rounded(len(ok) / span_s if span_s > 0 else 0.0),
        "provider_polls_per_job": rounded(sum(1 for r in log if r["kind"] == "query") / p.jobs),
        "provider_429s": sum(1 for r in log if r["status"] == 429),
        "celery_tasks_per_job": 1.0,
        "worker_cpu_ms_per_job": rounded(1000 * cpu.cpu_s / p.jobs, 3),
    }
