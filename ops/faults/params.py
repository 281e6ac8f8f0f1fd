"""Every fault scenario's parameters, full and ``--smoke``; each report records its own.

Full runs use the production timings (Settings defaults) except where a figure says
otherwise; smoke runs scale every time down so the whole suite takes under 2 minutes on a
quiet machine and takes the same code paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ops.bench.params import as_dict  # noqa: F401 - one for both suites' reports

#: Budgets far above what the sandbox needs: the scenarios are about faults, not pacing.
OPEN_BUDGET = {"HITPAW_MAX_RPS": 50, "PICWISH_MAX_RPS": 50,
               "HITPAW_MAX_IN_FLIGHT": 100_000, "PICWISH_MAX_IN_FLIGHT": 100_000}
FULL_SETTINGS = dict(OPEN_BUDGET)  # reconcile, leases: the production defaults
SMOKE_SETTINGS = {
    **OPEN_BUDGET,
    "HITPAW_POLL_INTERVAL_S": 0.3, "HITPAW_POLL_MAX_INTERVAL_S": 1,
    "PICWISH_POLL_INTERVAL_S": 0.3, "PICWISH_POLL_MAX_INTERVAL_S": 1,
    "MAX_COUNTDOWN_S": 5, "VISIBILITY_TIMEOUT_S": 20, "STALE_AFTER_S": 8,
    "POLL_GRACE_S": 1, "STORE_LEASE_S": 5, "LEASE_GRACE_S": 1, "SUBMIT_LOST_AFTER_S": 3,
    "HTTP_CONNECT_TIMEOUT_S": 1, "HTTP_READ_TIMEOUT_S": 3, "HTTP_DEADLINE_S": 5,
    "RECONCILE_INTERVAL_S": 1,
}


@dataclass(frozen=True)
class Run:
    """What every scenario has: jobs, how long the sandbox takes them, one worker's size."""

    jobs: int = 60
    processing_s: tuple[float, float] = (3.0, 10.0)
    concurrency: int = 4
    final_timeout_s: float = 900.0
    settings: dict = field(default_factory=lambda: dict(FULL_SETTINGS))


@dataclass(frozen=True)
class CrashStorm(Run):
    jobs: int = 500
    create_latency_s: tuple[float, float] = (0.8, 1.2)
    workers: int = 2
    kill_every_s: float = 10.0
    storm_s: float = 180.0


@dataclass(frozen=True)
class RedisRestart(Run):
    jobs: int = 200
    down_s: float = 3.0
    restart_after_s: float = 8.0  # into the run, when jobs are in every state


@dataclass(frozen=True)
class ProviderStorms(Run):
    jobs_per_storm: int = 60
    processing_s: tuple[float, float] = (2.0, 5.0)
    slow_response_s: float = 8.0  # longer than the read timeout below
    settings: dict = field(default_factory=lambda: {**FULL_SETTINGS, "HTTP_READ_TIMEOUT_S": 5})


@dataclass(frozen=True)
class StorageOutage(Run):
    processing_s: tuple[float, float] = (2.0, 4.0)
    outage_s: float = 60.0


@dataclass(frozen=True)
class Malformed(Run):
    examples: int = 300
    seed: int = 20261130
    rate_malformed: float = 0.1  # of the real jobs' sandbox answers
    processing_s: tuple[float, float] = (1.0, 3.0)
    final_timeout_s: float = 600.0


@dataclass(frozen=True)
class Expiry(Run):
    jobs: int = 20
    processing_s: tuple[float, float] = (1.0, 2.0)
    result_ttl_s: float = 1.0
    final_timeout_s: float = 600.0
    settings: dict = field(default_factory=lambda: {**FULL_SETTINGS,
                                                    "HITPAW_POLL_INTERVAL_S": 5,
                                                    "PICWISH_POLL_INTERVAL_S": 5})


@dataclass(frozen=True)
class Failover(Run):
    jobs: int = 120
    processing_s: tuple[float, float] = (3.0, 8.0)
    kill_after_s: float = 8.0


@dataclass(frozen=True)
class Webhooks(CrashStorm):
    """Every job asks for a webhook; the crash storm's kills, and the receiver down for
    ``outage_s`` from ``outage_at_s`` after the first enqueue (production retry timings)."""

    jobs: int = 150
    processing_s: tuple[float, float] = (2.0, 6.0)
    storm_s: float = 60.0
    outage_at_s: float = 15.0
    outage_s: float = 20.0


@dataclass(frozen=True)
class Params:
    crash_storm: CrashStorm = field(default_factory=CrashStorm)
    redis_restart: RedisRestart = field(default_factory=RedisRestart)
    provider_storms: ProviderStorms = field(default_factory=ProviderStorms)
    storage_outage: StorageOutage = field(default_factory=StorageOutage)
    malformed: Malformed = field(default_factory=Malformed)
    expiry: Expiry = field(default_factory=Expiry)
    failover: Failover = field(default_factory=Failover)
    webhooks: Webhooks = field(default_factory=Webhooks)


def smoke() -> Params:
    fast = (0.3, 1.0)
    s = dict(SMOKE_SETTINGS)
    return Params(
        crash_storm=CrashStorm(jobs=30, processing_s=fast, create_latency_s=(0.2, 0.4),
                               kill_every_s=4, storm_s=8, final_timeout_s=90, settings=s),
        redis_restart=RedisRestart(jobs=10, processing_s=(1.0, 2.0), down_s=1,
                                   restart_after_s=1.5,  # jobs still in flight
                                   final_timeout_s=60, settings=s),
        provider_storms=ProviderStorms(jobs_per_storm=5, processing_s=fast,
                                       slow_response_s=4, final_timeout_s=60,
                                       settings={**s, "HTTP_READ_TIMEOUT_S": 2,
                                                 "HTTP_DEADLINE_S": 3}),
        storage_outage=StorageOutage(jobs=6, processing_s=fast, outage_s=3,
                                     final_timeout_s=60, settings=s),
        malformed=Malformed(examples=120, jobs=6, rate_malformed=0.2, processing_s=fast,
                            final_timeout_s=60, settings=s),
        expiry=Expiry(jobs=3, processing_s=(0.1, 0.2), result_ttl_s=0.3, final_timeout_s=60,
                      settings={**s, "HITPAW_POLL_INTERVAL_S": 1,
                                "PICWISH_POLL_INTERVAL_S": 1}),
        failover=Failover(jobs=8, processing_s=fast, kill_after_s=2, final_timeout_s=120,
                          settings=s),
        webhooks=Webhooks(jobs=20, processing_s=fast, create_latency_s=(0.2, 0.4),
                          kill_every_s=4, storm_s=8, outage_at_s=1, outage_s=3,
                          final_timeout_s=90,
                          settings={**s, "WEBHOOK_RETRY_BASE_S": 0.5, "WEBHOOK_TIMEOUT_S": 2,
                                    "NOTIFY_LOST_AFTER_S": 3}),
    )


