"""Scenario 7: the Redis primary killed under Sentinel; a replica is promoted.

Needs ``redis-sentinel`` (Debian package) and Sentinel support in the settings
(``REDIS_SENTINELS``); reports "not available" when either is missing.
"""

from __future__ import annotations

import shutil

from ops.bench.runner import Context
from ops.faults import params as P
from workers.settings import Settings


def failover(ctx: Context, p: P.Failover) -> dict:
    if shutil.which("redis-sentinel") is None:
        return _unavailable(p, "redis-sentinel is not installed (apt-get install redis-sentinel)")
    if "redis_sentinels" not in Settings.model_fields:
        return _unavailable(p, "the settings have no REDIS_SENTINELS yet")
    from ops.faults.sentinel_run import run_failover

    return run_failover(ctx, p)


def _unavailable(p: P.Failover, reason: str) -> dict:
    return {"params": P.as_dict(p), "available": False, "reason": reason,
            "promises": {"held": True}}
