"""Scenarios 1-4 and 6: crashes, Redis restarts, provider storms, S3 outages, expiry.

Each returns ``{"params", "figures", "promises"}``; ``promises["held"]`` is what the smoke
test and the report's table check. Figures are measured, never asserted on.
"""

from __future__ import annotations

import time
from pathlib import Path

from ops.bench.measure import percentile, rounded
from ops.bench.runner import Context
from ops.faults import params as P
from ops.faults.outcome import Observer, unknown_outcomes_matched
from ops.faults.redisproc import RedisProcess
from ops.faults.runner import (
    bucket_state,
    enqueue_batch,
    finish,
    prepare,
    promises,
    through_fault,
    use,
)
from workers.app import app
from workers.runtime import get_runtime


def start_workers(ctx: Context, env: dict, count: int, concurrency: int) -> None:
    for _ in range(count):
        ctx.stack.worker(env, concurrency=concurrency)


def call_window_s() -> float:
    """The longest a paid call can last: connect, then the answer's overall deadline."""
    s = get_runtime().settings
    return s.http_connect_timeout_s + getattr(s, "http_deadline_s", s.http_read_timeout_s)


# --- 1: crash storm --------------------------------------------------------------------
def crash_storm(ctx: Context, p: P.CrashStorm) -> dict:
    """Worker process groups SIGKILLed every ``kill_every_s`` and restarted; beat once."""
    env = prepare(ctx, p.settings, processing_time_s=list(p.processing_s),
                  create_latency_s=list(p.create_latency_s))
    stack = ctx.stack
    start_workers(ctx, env, p.workers, p.concurrency)
    stack.beat(env)
    batch = enqueue_batch(ctx, p.jobs)
    with Observer(batch) as observer:
        kill_storm(ctx, env, p)
        figures, records = finish(ctx, batch, p.final_timeout_s)
    kills = [k for k in stack.kills if k["what"] == "worker"]
    figures.update(unknown_outcomes_matched(records, kills, call_window_s()))
    own = [observer.moved_again_s(k["at"], k["jobs"], records) for k in kills]
    everyone = [observer.recovery_s(k["at"], records) for k in kills]
    past_due = observer.moved_again_past_due_s(kills, records)
    figures.update({"worker_kills": len(kills),
                    "beat_kills": sum(k["what"] == "beat" for k in stack.kills),
                    "killed_workers_jobs": sum(len(k["jobs"]) for k in kills),
                    "recovery_after_kill_p50_s": rounded(percentile(
                        [w for waits in own for w in waits], 50)),
                    "recovery_after_kill_max_s": rounded(max(
                        (w for waits in own for w in waits), default=0.0)),
                    "recovery_after_kill_past_due_p50_s": rounded(percentile(past_due, 50)),
                    "recovery_after_kill_past_due_max_s": rounded(max(past_due, default=0.0)),
                    "recovery_after_kill_by_state": observer.moved_again_by_state(kills, records),
                    "reconcile_redriven": {k: int(v) for k, v in get_runtime().stats.read().items()
                                           if k.startswith("redriven:")},
                    "all_jobs_moved_again_after_kill_max_s": max(
                        (r["max_s"] for r in everyone), default=0.0)})
    return {"params": P.as_dict(p), "figures": figures,
            "promises": promises(figures, every_unknown_outcome_matched_a_kill=(
                figures["unmatched"] == 0))}


def kill_storm(ctx: Context, env: dict, p: P.CrashStorm) -> None:
    """One kill every ``kill_every_s`` on a fixed schedule (restarts do not push it back)."""
    stack, began = ctx.stack, time.monotonic()
    kills = max(int(p.storm_s // p.kill_every_s), 2)
    for n in range(1, kills + 1):
        time.sleep(max(began + n * p.kill_every_s - time.monotonic(), 0))
        victim = stack.workers[n % len(stack.workers)]
        jobs = held_jobs(victim.node)
        stack.kill(victim, "worker")
        stack.kills[-1]["jobs"] = jobs
        stack.worker(env, concurrency=p.concurrency, wait=False)  # as a supervisor would
        if n == kills // 2:
            stack.kill(stack.beats[0], "beat")
            stack.beat(env)


def held_jobs(node: str) -> list[str]:
    """The jobs whose steps a worker holds: running, reserved or scheduled (its countdowns).

    Asked right before the worker is killed: these are the jobs its death leaves behind.
    Admission runs hold no job; an unanswered inspection gives none.
    """
    inspect = app.control.inspect(destination=[node], timeout=2.0)
    held: set[str] = set()
    for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
        for task in (reply or {}).get(node, []):
            task = task.get("request", task)  # scheduled() wraps the request
            if task.get("name") != "enhance.admit" and task.get("args"):
                held.add(str(task["args"][0]))
    return sorted(held)


# --- 2: Redis restarts -----------------------------------------------------------------
def redis_restart(ctx: Context, p: P.RedisRestart) -> dict:
    """2a: the one Redis (broker + job store) SIGKILLed and restarted from its AOF.
    2b: a separate broker Redis restarted empty; the job store re-drives every step."""
    same = _restart_run(ctx, p, ctx.stack.store_redis, "same", p.settings)
    with RedisProcess(appendonly=False, work_dir=Path(ctx.stack.work_dir)) as broker:
        separate = _restart_run(ctx, p, broker, "broker",
                                {**p.settings, "CELERY_BROKER_URL": broker.url})
        ctx.stack.stop_workers(kill=True)
        ctx.stack.stop_beats()
    use(ctx, p.settings)  # the producer back on the stack's own broker
    held = same["promises"]["held"] and separate["promises"]["held"]
    return {"params": P.as_dict(p), "figures": {"aof_restart": same["figures"],
                                                 "empty_broker_restart": separate["figures"]},
            "promises": {"held": held, "aof_restart": same["promises"],
                         "empty_broker_restart": separate["promises"]}}


def _restart_run(ctx: Context, p: P.RedisRestart, server, which: str, settings: dict) -> dict:
    def restart() -> float:
        time.sleep(p.restart_after_s)
        server.kill()
        time.sleep(p.down_s)
        server.start()
        return time.time()

    figures, held = through_fault(ctx, p, settings, restart)
    figures["restarted"] = which
    return {"figures": figures, "promises": held}


# --- 3: provider storms ----------------------------------------------------------------
STORMS = {
    "5xx_20pct": {"rate_5xx": 0.2},
    "429_with_retry_after": {"rate_429": 0.3, "retry_after_s": 1},
    "429_without_retry_after": {"rate_429": 0.3, "retry_after_s": None},
    "slow_answers": {"rate_slow": 0.1},
    "downloads_cut_mid_body": {"rate_cut_download": 0.3},
}


def provider_storms(ctx: Context, p: P.ProviderStorms) -> dict:
    env = prepare(ctx, p.settings, processing_time_s=list(p.processing_s))
    ctx.stack.worker(env, concurrency=p.concurrency)
    ctx.stack.beat(env)
    figures, checks = {}, {}
    for name, faults in STORMS.items():
        if name == "slow_answers":
            faults = {**faults, "slow_response_s": p.slow_response_s}
        ctx.sandbox.configure(**{**_quiet_faults(), **faults})
        batch = enqueue_batch(ctx, p.jobs_per_storm)
        figures[name], records = finish(ctx, batch, p.final_timeout_s)
        checks[name] = promises(figures[name])
    ctx.sandbox.configure(**_quiet_faults())
    return {"params": P.as_dict(p), "figures": figures,
            "promises": {"held": all(c["held"] for c in checks.values()), **checks}}


def _quiet_faults() -> dict:
    from ops.faults.runner import QUIET_SANDBOX

    return {k: v for k, v in QUIET_SANDBOX.items() if k != "result_ttl_s"}


# --- 4: storage outage -----------------------------------------------------------------
def storage_outage(ctx: Context, p: P.StorageOutage) -> dict:
    """S3 answering 500, then not answering, for ``outage_s`` while results are ready."""
    env = prepare(ctx, p.settings, processing_time_s=list(p.processing_s))
    ctx.stack.worker(env, concurrency=p.concurrency)
    ctx.stack.beat(env)
    figures, checks, everything = {}, {}, []
    for mode in ("error", "hang"):
        batch = enqueue_batch(ctx, p.jobs)
        ctx.stack.proxy.set_mode(mode)
        began = time.monotonic()
        time.sleep(p.outage_s)
        ctx.stack.proxy.set_mode("pass")
        figures[mode], records = finish(ctx, batch, p.final_timeout_s)
        figures[mode]["outage_s"] = rounded(time.monotonic() - began, 1)
        everything += records
        checks[mode] = promises(
            figures[mode], every_result_stored=figures[mode]["succeeded"] == p.jobs)
    figures["bucket"] = bucket = bucket_state(everything)
    checks["bucket"] = {"none_stored_twice": bucket["objects_of_no_succeeded_job"] == 0,
                        "no_multipart_left": bucket["multipart_uploads_left"] == 0}
    checks["bucket"]["held"] = all(checks["bucket"].values())
    return {"params": P.as_dict(p), "figures": figures,
            "promises": {"held": all(c["held"] for c in checks.values()), **checks}}


# --- 6: expiry -------------------------------------------------------------------------
def expiry(ctx: Context, p: P.Expiry) -> dict:
    """Result URLs that expire before the store starts, or while it downloads."""
    env = prepare(ctx, p.settings, processing_time_s=list(p.processing_s),
                  result_ttl_s=p.result_ttl_s)
    ctx.stack.worker(env, concurrency=p.concurrency)
    ctx.stack.beat(env)
    figures, checks = {}, {}
    runs = {"before_the_store": {"rate_cut_download": 0.0},
            "during_the_store": {"rate_cut_download": 1.0}}  # cut, then expired at retry
    for name, faults in runs.items():
        ctx.sandbox.configure(**faults)
        batch = enqueue_batch(ctx, p.jobs)
        result, records = finish(ctx, batch, p.final_timeout_s)
        result.update(bucket_state(records))
        figures[name] = result
        checks[name] = promises(
            result, all_result_expired=result["failed_by_code"].get("result_expired", 0)
            == result["enqueued"], nothing_in_bucket=result["objects"] == 0,
            no_multipart_left=result["multipart_uploads_left"] == 0)
    return {"params": P.as_dict(p), "figures": figures,
            "promises": {"held": all(c["held"] for c in checks.values()), **checks}}
