"""Scenario 10: what ``CLAIM_DURABILITY`` costs per job (``ops.faults.durability_cost``).

A job makes two durable writes: the record ``enqueue`` creates and the claim before the
paid call. Each way (``none``: appendfsync everysec; ``fsync``: appendfsync always;
``wait``: one replica acknowledging with ``WAIT``) runs on private ``redis-server``
processes, so the figure does not depend on the stack's Redis. Smoke and full runs
measure the same number of jobs: it takes seconds.
"""

from __future__ import annotations

from pathlib import Path

from ops.bench.runner import Context
from ops.faults.durability_cost import JOBS, claim_costs


def durable_claims(ctx: Context, _params: None) -> dict:
    costs = claim_costs(Path(ctx.stack.work_dir), JOBS)
    base = costs["none"]["job_p50_ms"]
    return {"params": {"jobs": JOBS},
            "figures": {"ms_by_durability": costs,
                        "extra_ms_per_job_p50": {mode: round(c["job_p50_ms"] - base, 3)
                                                 for mode, c in costs.items()}}}
