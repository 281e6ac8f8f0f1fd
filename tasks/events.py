"""What every step reports: one log line per transition, counters, the shared budget.

Logs and counters are an interface: operators read them, tests assert them. A transition
logs one line with the job id, provider, state, duration and cost; never a secret or a
provider result URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from providers.errors import RateLimited
from storage.jobs import JobRecord, JobState
from storage.stats import observation
from tasks import admission
from workers.runtime import Runtime

log = logging.getLogger("enhance.jobs")
T = TypeVar("T")
FinalHook = Callable[[Runtime, JobRecord], None]
_final_hooks: list[FinalHook] = []


def on_final(hook: FinalHook) -> FinalHook:
    """Call ``hook(rt, record)`` after every transition into a final state.

    This is the one place that learns a job has ended, whichever step ended it. A hook
    that raises is logged and skipped: the job's end is already recorded, and what the
    hook missed is caught up later (reconcile).
    """
    if hook not in _final_hooks:
        _final_hooks.append(hook)
    return hook


def transition(rt: Runtime, record: JobRecord) -> None:
    """Log that ``record`` entered its current state."""
    fields = {
        "job_id": record.id, "provider": record.provider, "model": record.model,
        "state": record.state.value, "duration_s": round(record.duration_s(), 3),
        "cost": record.cost, "polls": record.poll_count, "reused_from": record.reused_from,
    }
    if record.error:
        fields["error_code"] = record.error.code
        fields["error"] = record.error.message
        rt.stats.incr(f"failed:{record.error.code}")
    if record.output:
        fields["output_uri"] = record.output.uri
    level = logging.WARNING if record.state is JobState.FAILED else logging.INFO
    text = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and k != "error")
    if record.error:
        text += f": {record.error.message}"
    log.log(level, "%s", text, extra={"job": fields})
    admission.on_transition(rt, record)  # a job leaving flight frees its admission slot
    if record.state.final:
        _job_ended(rt, record)


def _job_ended(rt: Runtime, record: JobRecord) -> None:
    for hook in _final_hooks:
        try:
            hook(rt, record)
        except Exception:  # noqa: BLE001 - the end is recorded; the hook is caught up later
            log.exception("job %s: %s failed after the job ended", record.id,
                          getattr(hook, "__name__", hook))


def counted(rt: Runtime, provider: str, kind: str, call: Callable[..., T], *args) -> T:
    """Make one provider request, counting it, and turning a 429 into a shared slow-down."""
    rt.stats.incr(f"requests:{provider}:{kind}")
    try:
        return call(*args)
    except RateLimited as exc:
        rt.stats.incr(f"rate_limited:{provider}")
        rt.budget.back_off(provider, exc.retry_after_s)
        raise


def submit_outcome_unknown(rt: Runtime, provider: str) -> None:
    """Count a submit whose failure does not prove it was not taken (may be charged)."""
    rt.stats.incr(f"submit_outcome_unknown:{provider}")


def charged(rt: Runtime, provider: str, cost: float | None) -> None:
    if cost:
        rt.stats.incr(f"cost:{provider}", float(cost))


def stored(rt: Runtime, record: JobRecord) -> None:
    """Count a stored result and how long it waited after the provider finished.

    The job's latencies go to three histograms by provider and model: ``job`` (queued to
    succeeded), ``provider`` (submitted to the poll that saw it done) and ``store_lag``
    (that poll to stored).
    """
    amounts: dict[str, float] = {"stored": 1}  # one round trip for all of them
    times = record.transitions
    started, done = times.get(JobState.STORING.value), times.get(JobState.SUCCEEDED.value)
    if started and done:
        amounts.update(store_lag_s_sum=(done - started).total_seconds(), store_lag_count=1)
        labels = (record.provider, record.model)
        queued = times.get(JobState.QUEUED.value, record.created_at)
        amounts.update(observation("job", labels, (done - queued).total_seconds()))
        if submitted := times.get(JobState.SUBMITTED.value):
            amounts.update(observation("provider", labels, (started - submitted).total_seconds()))
        amounts.update(observation("store_lag", labels, (done - started).total_seconds()))
    rt.stats.incr_many(amounts)
