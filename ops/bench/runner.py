"""Running jobs through the real system and turning what happened into figures.

The bench process is the producer: it enqueues with ``tasks.producer.enqueue`` against
the same Redis and broker the workers use. Figures come from three independent records:
the job records (``transitions``: when each state was entered), the sandbox's request
log (what reached the provider, with its status), and the workers' own counters
(``inspect().stats()["total"]``: tasks each worker accepted, by name).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ops.bench.measure import MIB, CpuWindow, Sample, TreeSampler, percentile, rounded
from ops.bench.stack import Launched, Stack, wait_until
from storage.jobs import JobRecord, JobState
from workers.app import app, celery_config
from workers.runtime import Runtime, get_runtime, set_runtime
from workers.settings import Settings

CHUNK = 1000  # records read per MGET


class Context:
    """The stack plus the bench process's own producer runtime for the current settings."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.sandbox = stack.sandbox
        self.redis = stack.redis()

    def use(self, **settings: object) -> dict[str, str]:
        """Point the producer at ``settings``; return the workers' environment."""
        env = self.stack.env(**settings)
        fields = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
        config = Settings(**fields)
        app.conf.update(celery_config(config))
        old = set_runtime(Runtime(config))
        if old is not None:
            old.close()
        _ensure_bucket(get_runtime())
        return env

    def fresh(self, **sandbox_config: object) -> None:
        """Stop workers; empty Redis, S3 and the sandbox; apply ``sandbox_config``."""
        self.stack.stop_workers()
        self.stack.flush()
        self.stack.reset_s3()
        self.sandbox.reset()
        self.sandbox.configure(**{"hitpaw_qps": None, "picwish_qps": None,
                                  "large_result_bytes": None, **sandbox_config})

    def close(self) -> None:
        self.stack.stop_workers()
        old = set_runtime(None)
        if old is not None:
            old.close()
        self.redis.close()


def _ensure_bucket(rt: Runtime) -> None:
    client, bucket = rt.objects.client, rt.settings.s3_bucket
    try:
        client.head_bucket(Bucket=bucket)
    except Exception:  # noqa: BLE001 - botocore's 404 has no class of its own
        client.create_bucket(Bucket=bucket)


def enqueue_many(ctx: Context, count: int, provider: str, sample: str = "portrait.jpg",
                 **kwargs) -> list[str]:
    """Enqueue ``count`` jobs of one of the sandbox's samples; return their ids.

    ``kwargs`` go to ``enqueue`` (``tenant=``, ``priority=``...).
    """
    from tasks.producer import enqueue

    rt = get_runtime()
    url = ctx.sandbox.sample_url(sample)
    return [enqueue(url, provider, runtime=rt, **kwargs) for _ in range(count)]


def final_count() -> int:
    counts = get_runtime().jobs.counts()
    return counts["succeeded"] + counts["failed"]


def wait_final(ctx: Context, count: int, timeout_s: float, already: int = 0) -> bool:
    """Wait until ``count`` more jobs than ``already`` are final; False on timeout."""
    try:
        wait_until(lambda: final_count() - already >= count, timeout_s, f"{count} jobs ending",
                   interval_s=0.2)
        return True
    except RuntimeError:
        return False


def records(ids: list[str]) -> list[JobRecord]:
    jobs = get_runtime().jobs
    return [rec for i in range(0, len(ids), CHUNK) for rec in jobs.get_many(ids[i:i + CHUNK])]


def task_totals(workers: list[Launched]) -> Counter:
    """Tasks the workers accepted, by task name (their own counters)."""
    nodes = [w.node for w in workers]
    replies = app.control.inspect(destination=nodes, timeout=5).stats() or {}
    totals: Counter = Counter()
    for stats in replies.values():
        totals.update(stats.get("total", {}))
    return totals



def parse_suite_args(prog: str, description: str | None, scenarios: dict, *, out_dir: Path,
                     smoke_help: str, out_help: str,
                     argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of a scenario suite (``ops.bench``, ``ops.faults``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--scenarios", default=",".join(scenarios),
                        help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--out", type=Path, default=out_dir, help=out_help)
    args = parser.parse_args(argv)
    args.scenarios = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in args.scenarios if n not in scenarios]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    return args

@dataclass
class JobsRun:
    """What one batch of jobs left behind."""

    ids: list[str]
    finished: bool
    records: list[JobRecord]
    cpu: CpuWindow
    sampler: TreeSampler
    log: list[dict]
    totals: Counter
    extra: dict = field(default_factory=dict)


def run_jobs(ctx: Context, workers: list[Launched], count: int, provider: str,
             timeout_s: float, sample: str = "portrait.jpg") -> JobsRun:
    """Enqueue ``count`` jobs, wait for them, and collect every record of the run."""
    pids = [w.pid for w in workers]
    before = task_totals(workers)
    already = final_count()
    with TreeSampler(pids, ctx.redis) as sampler, CpuWindow(pids) as cpu:
        ids = enqueue_many(ctx, count, provider, sample)
        finished = wait_final(ctx, count, timeout_s, already)
    totals = task_totals(workers)
    totals.subtract(before)
    return JobsRun(ids, finished, records(ids), cpu, sampler, ctx.sandbox.requests_log(provider),
                   totals)


def _seconds(rec: JobRecord, start: JobState, end: JobState) -> float | None:
    a, b = rec.transitions.get(start.value), rec.transitions.get(end.value)
    return (b - a).total_seconds() if a and b else None


def job_figures(run: JobsRun) -> dict:
    """Throughput, latencies, provider requests, tasks, memory and CPU of a run."""
    n = len(run.ids)
    ok = [r for r in run.records if r.state is JobState.SUCCEEDED]
    e2e = [s for r in ok if (s := _seconds(r, JobState.QUEUED, JobState.SUCCEEDED)) is not None]
    lag = [s for r in ok if (s := _seconds(r, JobState.STORING, JobState.SUCCEEDED)) is not None]
    span_s = _span_s(run.records)
    return {
        "jobs": n, "succeeded": len(ok), "failed": n - len(ok), "all_succeeded": len(ok) == n,
        "timed_out": not run.finished, "span_s": rounded(span_s, 3),
        "failure_codes": dict(Counter(r.error.code for r in run.records if r.error)),
        "jobs_per_s": rounded(len(ok) / span_s if span_s else 0.0),
        "e2e_p50_s": rounded(percentile(e2e, 50)), "e2e_p95_s": rounded(percentile(e2e, 95)),
        "store_lag_p50_s": rounded(percentile(lag, 50)),
        "store_lag_p95_s": rounded(percentile(lag, 95)),
        **provider_figures(run.log, n),
        **task_figures(run, n),
        **memory_figures(run.sampler.samples),
        "worker_cpu_s": rounded(run.cpu.cpu_s, 3),
        "worker_cpu_ms_per_job": rounded(1000 * run.cpu.cpu_s / n if n else 0.0, 3),
    }


def _span_s(recs: list[JobRecord]) -> float:
    """From the first job created to the last one final."""
    ends = [r.updated_at for r in recs if r.state.final]
    if not recs or not ends:
        return 0.0
    return (max(ends) - min(r.created_at for r in recs)).total_seconds()


def provider_figures(log: list[dict], jobs: int) -> dict:
    """Requests that reached the sandbox, per job, and how many were answered 429."""
    kinds = Counter(rec["kind"] for rec in log)
    per_job = (lambda k: rounded(kinds[k] / jobs if jobs else 0.0))  # noqa: E731
    return {
        "provider_submits_per_job": per_job("submit"),
        "provider_polls_per_job": per_job("query"),
        "result_downloads_per_job": per_job("result"),
        "provider_requests": len(log),
        "provider_429s": sum(1 for rec in log if rec["status"] == 429),
    }


def task_figures(run: JobsRun, jobs: int) -> dict:
    """Celery tasks per job: as the workers counted them, and as the records imply."""
    ours = {name: count for name, count in run.totals.items() if name.startswith("enhance.")}
    from_records = sum(1 + r.poll_count + (1 if r.output else 0) for r in run.records)
    return {
        "celery_tasks_per_job": rounded(sum(ours.values()) / jobs if jobs else 0.0),
        "celery_tasks_by_name": ours,
        "celery_tasks_per_job_from_records": rounded(from_records / jobs if jobs else 0.0),
    }


def memory_figures(samples: list[Sample]) -> dict:
    """Peak worker RSS and Redis memory per in-flight job (at the most jobs in flight)."""
    idle = samples[0]
    busiest = max(samples, key=lambda s: (s.in_flight, s.redis_used))
    redis_per_job = ((busiest.redis_used - idle.redis_used) / busiest.in_flight
                     if busiest.in_flight else 0.0)
    return {
        "worker_rss_idle_mib": rounded(idle.rss_total / MIB, 1),
        "worker_rss_peak_mib": rounded(max(s.rss_total for s in samples) / MIB, 1),
        "worker_rss_main_peak_mib": rounded(max(s.rss_main for s in samples) / MIB, 1),
        "worker_rss_child_peak_mib": rounded(max(s.rss_child for s in samples) / MIB, 1),
        "peak_in_flight": busiest.in_flight,
        "redis_bytes_per_in_flight_job": rounded(max(redis_per_job, 0.0), 1),
    }


def elapsed(since: float) -> float:
    return rounded(time.monotonic() - since, 2)
