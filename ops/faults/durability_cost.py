"""What durable writes cost: a job's two job-store writes that ``CLAIM_DURABILITY``
confirms (the record ``enqueue`` creates, the claim before the paid call), three ways.

Each way gets private ``redis-server`` processes: ``none`` (appendfsync everysec, the
last second of writes may be lost), ``fsync`` (appendfsync always) and ``wait``
(everysec plus one replica acknowledging with ``WAIT``). Reported by the benchmark
(``python -m ops.bench``, scenario 10).
"""

from __future__ import annotations

import time
from pathlib import Path

from ops.bench.measure import percentile, rounded
from ops.faults.redisproc import RedisProcess
from storage.durability import Durability
from storage.jobs import JobRecord, JobSource, JobStore
from workers.embedded import LOOPBACK
from workers.runtime import connect_redis
from workers.settings import Settings

JOBS = 300  # per way: seconds in all, so smoke and full runs measure the same


def claim_costs(work_dir: Path, jobs: int = JOBS) -> dict:
    """Milliseconds (p50 / p95) per durable create, per claim and per job, for each way."""
    out = {}
    with RedisProcess(appendfsync="everysec", work_dir=work_dir) as server:
        out["none"] = _measure(server, "none", jobs)
    with RedisProcess(appendfsync="always", work_dir=work_dir) as server:
        out["fsync"] = _measure(server, "fsync", jobs)
    with RedisProcess(appendfsync="everysec", work_dir=work_dir) as server, \
            RedisProcess(replica_of=(LOOPBACK, server.port), work_dir=work_dir) as replica:
        _wait_linked(replica)
        out["wait"] = _measure(server, "wait", jobs)
    return out


def _measure(server: RedisProcess, mode: str, jobs: int) -> dict:
    settings = Settings(redis_url=server.url)
    durability = Durability(connect_redis(settings, single_connection=True), mode,
                            timeout_ms=1000) if mode != "none" else None
    store = JobStore(connect_redis(settings), durability=durability)
    created, claimed = [], []
    for i in range(jobs):
        began = time.perf_counter()
        record, _ = store.create(JobRecord(provider="hitpaw", model="general_2x",
                                           source=JobSource(uri=f"https://x/{i}.jpg")),
                                 durable=True)
        middle = time.perf_counter()
        store.update(record.id, lambda r: r.submit_started_at is None,
                     lambda r: {"submit_started_at": r.updated_at}, durable=True)
        created.append(1000 * (middle - began))
        claimed.append(1000 * (time.perf_counter() - middle))
    per_job = [a + b for a, b in zip(created, claimed, strict=True)]
    return {f"{what}_{q}_ms": rounded(percentile(values, pct), 3)
            for what, values in (("create", created), ("claim", claimed), ("job", per_job))
            for q, pct in (("p50", 50), ("p95", 95))}


def _wait_linked(replica: RedisProcess, timeout_s: float = 20.0) -> None:
    client = replica.client()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if client.info("replication").get("master_link_status") == "up":
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise RuntimeError("the replica did not sync")
