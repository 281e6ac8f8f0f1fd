"""What a durable claim costs: the latency of one job-store update, three ways.

Each way gets private ``redis-server`` processes: ``none`` (appendfsync everysec, the
claim may be lost with the last second), ``fsync`` (appendfsync always) and ``wait``
(everysec plus one replica acknowledging with ``WAIT``). A claim is one compare-and-set
update per job, so the difference is the cost per job.
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


def claim_costs(work_dir: Path, claims: int = 300) -> dict:
    """Milliseconds per durable claim (p50 / p95) for ``none``, ``fsync`` and ``wait``."""
    out = {}
    with RedisProcess(appendfsync="everysec", work_dir=work_dir) as server:
        out["none"] = _measure(server, "none", claims)
    with RedisProcess(appendfsync="always", work_dir=work_dir) as server:
        out["fsync"] = _measure(server, "fsync", claims)
    with RedisProcess(appendfsync="everysec", work_dir=work_dir) as server, \
            RedisProcess(replica_of=(LOOPBACK, server.port), work_dir=work_dir) as replica:
        _wait_linked(replica)
        out["wait"] = _measure(server, "wait", claims)
    return out


def _measure(server: RedisProcess, mode: str, claims: int) -> dict:
    settings = Settings(redis_url=server.url)
    durability = Durability(connect_redis(settings, single_connection=True), mode,
                            timeout_ms=1000) if mode != "none" else None
    store = JobStore(connect_redis(settings), durability=durability)
    ids = [store.create(JobRecord(provider="hitpaw", model="general_2x",
                                  source=JobSource(uri=f"https://x/{i}.jpg")))[0].id
           for i in range(claims)]
    took = []
    for job_id in ids:
        began = time.perf_counter()
        store.update(job_id, lambda r: r.submit_started_at is None,
                     lambda r: {"submit_started_at": r.updated_at}, durable=True)
        took.append(1000 * (time.perf_counter() - began))
    return {"p50_ms": rounded(percentile(took, 50), 3), "p95_ms": rounded(percentile(took, 95), 3)}


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
