"""Scenario 5: malformed provider answers.

Two parts: the generator of ``ops/faults/malformed.py`` (hypothesis, >= 100 distinct
malformed bodies against the real clients over a loopback server), when that module is
present; and real jobs through the sandbox's malformed-body fault, which must all end.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor

from ops.bench.runner import Context
from ops.faults import params as P
from ops.faults.runner import enqueue_batch, finish, prepare, promises


def malformed(ctx: Context, p: P.Malformed) -> dict:
    with ThreadPoolExecutor(1) as pool:  # the generator needs no worker: meanwhile, the jobs
        generating = pool.submit(_generated, p)
        env = prepare(ctx, p.settings, processing_time_s=list(p.processing_s),
                      rate_malformed=p.rate_malformed)
        ctx.stack.worker(env, concurrency=p.concurrency)
        ctx.stack.beat(env)
        batch = enqueue_batch(ctx, p.jobs)
        jobs, _ = finish(ctx, batch, p.final_timeout_s)
        generated = generating.result()
    checks = {"jobs": promises(jobs)}
    if generated.get("available"):
        checks["generated"] = {
            "held": generated["unhandled_exceptions"] == 0 and generated["problems"] == 0
            and generated["distinct_answers"] >= 100,
            "no_unhandled_exception": generated["unhandled_exceptions"] == 0,
            "each_a_protocol_error_with_the_vendors_text": generated["problems"] == 0,
            "at_least_100_distinct": generated["distinct_answers"] >= 100,
        }
    return {"params": P.as_dict(p), "figures": {"generated": generated, "jobs": jobs},
            "promises": {"held": all(c["held"] for c in checks.values()), **checks}}


def _generated(p: P.Malformed) -> dict:
    try:
        module = importlib.import_module("ops.faults.malformed")
    except ImportError as exc:
        return {"available": False, "reason": f"ops/faults/malformed.py not available ({exc})"}
    report = module.run(examples=p.examples, seed=p.seed)
    return {"available": True, **report.as_dict()}
