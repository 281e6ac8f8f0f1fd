"""Every scenario's parameters, full and ``--smoke``; each run records the ones it used.

Smoke values are tiny but take the same code paths (same tasks, queues, budgets, stores),
so a smoke report carries every figure of a full one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MB = 1_000_000
UNCAPPED_RPS = 1000  # "no provider cap": far above anything two cores can send

#: Production polling (the Settings defaults), written out so the report records them.
PRODUCTION_POLLING = {
    "HITPAW_POLL_INTERVAL_S": 3.0, "HITPAW_POLL_MAX_INTERVAL_S": 15.0,
    "PICWISH_POLL_INTERVAL_S": 1.0, "PICWISH_POLL_MAX_INTERVAL_S": 5.0,
}
#: Smoke polling: the same schedule, scaled to sub-second provider latencies.
SMOKE_POLLING = {
    "HITPAW_POLL_INTERVAL_S": 0.2, "HITPAW_POLL_MAX_INTERVAL_S": 1.0,
    "PICWISH_POLL_INTERVAL_S": 0.2, "PICWISH_POLL_MAX_INTERVAL_S": 1.0,
    "MAX_COUNTDOWN_S": 5, "VISIBILITY_TIMEOUT_S": 60,
}


@dataclass(frozen=True)
class Orchestration:
    """Scenario 1: orchestration overhead, with Celery's ceiling and the bare calls."""

    jobs: int = 500
    latency_s: tuple[float, float] = (2.0, 6.0)
    worker_processes: int = 2
    noop_tasks: int = 2000
    bare_jobs: int = 10
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 600.0
    # Latency added: jobs sent one by one at a rate the worker keeps up with (not all at
    # once, whose queueing is throughput, not latency), with a dedicated store worker.
    paced_jobs: int = 100
    paced_jobs_per_s: float = 4.0
    store_worker_processes: int = 1


@dataclass(frozen=True)
class ProviderCap:
    """Scenario 2: PicWish capped at ``qps`` by the sandbox and by our shared budget."""

    jobs: int = 200
    latency_s: tuple[float, float] = (2.0, 6.0)
    qps: float = 2.0
    workers: int = 2
    worker_processes: int = 2
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 600.0


@dataclass(frozen=True)
class Naive:
    """Scenario 3: ours at growing job counts against one sleeping task per job."""

    jobs: int = 20  # the naive way's run: 2 processes, so its rate does not grow with more
    ours_jobs: tuple[int, ...] = (20, 200, 1000, 2000)  # until latency no longer bounds it
    latency_s: tuple[float, float] = (5.0, 5.0)
    worker_processes: int = 2
    naive_poll_interval_s: float = 3.0  # HitPaw's FAQ: poll every 2-5 s
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 900.0


@dataclass(frozen=True)
class LargeResults:
    """Scenario 4: results of hundreds of MB streamed into S3."""

    sizes_bytes: tuple[int, ...] = (100 * MB, 200 * MB, 400 * MB)
    sample: str = "product.png"  # padded inside the PNG (an ancillary chunk before IEND)
    jobs_per_size: int = 2
    latency_s: tuple[float, float] = (1.0, 2.0)
    worker_processes: int = 2
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 600.0


@dataclass(frozen=True)
class ManyInFlight:
    """Scenario 5: many jobs in flight with long provider latency; measured at the plateau."""

    jobs: int = 10_000
    # Polls every 10-13 min: one worker host (2 processes, ~50 tasks/s on 2 shared cores)
    # cannot poll 10,000 jobs every 30-60 s (~220 polls/s); the polls would wait in the
    # queue, overdue, instead of being held. Submitting 10,000 takes ~5 min here, so the
    # provider latency is longer than that.
    latency_s: tuple[float, float] = (900.0, 1000.0)
    worker_processes: int = 2
    settings: dict = field(default_factory=lambda: {
        "HITPAW_POLL_INTERVAL_S": 600.0, "HITPAW_POLL_MAX_INTERVAL_S": 800.0,
        "MAX_COUNTDOWN_S": 800, "VISIBILITY_TIMEOUT_S": 3300,
    })
    submit_timeout_s: float = 900.0
    hold_s: float = 3.0  # samples taken over this long at the plateau


@dataclass(frozen=True)
class Backlog:
    """Scenario 6: a PicWish backlog under the cap, beat running, 2 workers x 2."""

    jobs: int = 10_000
    latency_s: tuple[float, float] = (2.0, 6.0)
    qps: float = 2.0
    workers: int = 2
    worker_processes: int = 2
    check_every_s: float = 30.0  # executions per job is read this often ...
    steady_within: float = 0.05  # ... and the run stops when two readings agree this well
    min_s: float = 90.0
    max_s: float = 300.0
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))


@dataclass(frozen=True)
class Fairness:
    """Scenario 7: tenant B's 20 jobs alone, then behind tenant A's 1,000 (PicWish, capped)."""

    a_jobs: int = 1000
    b_jobs: int = 20
    latency_s: tuple[float, float] = (2.0, 6.0)
    qps: float = 2.0
    workers: int = 2
    worker_processes: int = 2
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 300.0


@dataclass(frozen=True)
class Reuse:
    """Scenario 8: concurrent enqueues of one image's bytes: paid calls."""

    jobs: int = 100
    threads: int = 100
    latency_s: tuple[float, float] = (2.0, 3.0)
    worker_processes: int = 4
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 180.0


@dataclass(frozen=True)
class SpendCap:
    """Scenario 9: a daily credit cap of ``cap`` with 2 workers x 2 racing, no rate cap."""

    cap: float = 100.0  # PicWish credits
    jobs: int = 40  # twice what the cap pays for at the default model's price
    latency_s: tuple[float, float] = (1.0, 2.0)
    workers: int = 2
    worker_processes: int = 2
    settings: dict = field(default_factory=lambda: dict(PRODUCTION_POLLING))
    timeout_s: float = 180.0


@dataclass(frozen=True)
class Params:
    orchestration: Orchestration = field(default_factory=Orchestration)
    provider_cap: ProviderCap = field(default_factory=ProviderCap)
    naive: Naive = field(default_factory=Naive)
    large_results: LargeResults = field(default_factory=LargeResults)
    many_in_flight: ManyInFlight = field(default_factory=ManyInFlight)
    backlog: Backlog = field(default_factory=Backlog)
    fairness: Fairness = field(default_factory=Fairness)
    reuse: Reuse = field(default_factory=Reuse)
    spend_cap: SpendCap = field(default_factory=SpendCap)


def smoke() -> Params:
    fast = (0.2, 0.5)
    return Params(
        orchestration=Orchestration(jobs=20, latency_s=fast, noop_tasks=100, bare_jobs=2,
                                    settings=dict(SMOKE_POLLING), timeout_s=60,
                                    paced_jobs=6, paced_jobs_per_s=10.0),
        provider_cap=ProviderCap(jobs=6, latency_s=fast, workers=1,
                                 settings=dict(SMOKE_POLLING), timeout_s=60),
        naive=Naive(jobs=4, ours_jobs=(4, 12), latency_s=fast, naive_poll_interval_s=0.2,
                    settings=dict(SMOKE_POLLING), timeout_s=60),
        large_results=LargeResults(sizes_bytes=(2 * MB, 4 * MB), latency_s=(0.2, 0.3),
                                   settings=dict(SMOKE_POLLING), timeout_s=60),
        many_in_flight=ManyInFlight(jobs=100, latency_s=(60.0, 70.0), settings={
            "HITPAW_POLL_INTERVAL_S": 30.0, "HITPAW_POLL_MAX_INTERVAL_S": 40.0,
            "MAX_COUNTDOWN_S": 40, "VISIBILITY_TIMEOUT_S": 160,
        }, submit_timeout_s=60, hold_s=1.0),
        backlog=Backlog(jobs=300, latency_s=fast, qps=20.0, workers=1, worker_processes=2,
                        check_every_s=2.0, steady_within=0.25, min_s=4.0, max_s=8.0,
                        settings=dict(SMOKE_POLLING)),
        fairness=Fairness(a_jobs=60, b_jobs=5, latency_s=fast, qps=10.0, workers=1,
                          settings=dict(SMOKE_POLLING), timeout_s=60),
        reuse=Reuse(jobs=12, threads=12, latency_s=fast, worker_processes=2,
                    settings=dict(SMOKE_POLLING), timeout_s=60),
        spend_cap=SpendCap(cap=20.0, jobs=8, latency_s=fast, workers=1,
                           settings=dict(SMOKE_POLLING), timeout_s=60),
    )


def as_dict(params: object) -> dict:
    return asdict(params)
