"""Scenario 7, run: jobs in flight on a Sentinel-watched Redis whose primary is SIGKILLed.

The job store and the broker both go through the Sentinels (``REDIS_SENTINELS``,
``CELERY_BROKER_URL=sentinel://...``); claims wait for the replica (``CLAIM_DURABILITY=
wait``), so a claim written before the crash is on the node that becomes primary.
The killed primary is restarted once the replica is promoted, as an orchestrator would:
the Sentinels turn it into the new primary's replica, and claims can be confirmed again
(until then submits wait: ``store_not_durable`` is transient).
"""

from __future__ import annotations

import time

from ops.bench.runner import Context
from ops.faults import params as P
from ops.faults.redisproc import Sentinels
from ops.faults.runner import through_fault


def run_failover(ctx: Context, p: P.Failover) -> dict:
    with Sentinels(work_dir=ctx.stack.work_dir) as sentinels:
        settings = {**p.settings, "REDIS_URL": sentinels.primary.url,
                    "REDIS_SENTINELS": sentinels.addresses,
                    "REDIS_SENTINEL_MASTER": Sentinels.MASTER,
                    "CELERY_BROKER_URL": sentinels.broker_url,
                    "CLAIM_DURABILITY": "wait", "CLAIM_WAIT_TIMEOUT_MS": 1000}
        try:
            return _run(ctx, p, sentinels, settings)
        finally:
            ctx.stack.stop_workers(kill=True)
            ctx.stack.stop_beats()


def _run(ctx: Context, p: P.Failover, sentinels: Sentinels, settings: dict) -> dict:
    times = {}

    def kill_primary() -> float:
        time.sleep(p.kill_after_s)
        sentinels.primary.kill()
        times["killed"] = time.time()
        times["promoted"] = sentinels.wait_promoted()
        sentinels.primary.start()  # back from its AOF; the Sentinels make it a replica
        return times["killed"]

    figures, held = through_fault(ctx, p, settings, kill_primary)
    figures["promotion_s"] = round(times["promoted"] - times["killed"], 2)
    return {"params": P.as_dict(p), "figures": figures, "promises": held}
