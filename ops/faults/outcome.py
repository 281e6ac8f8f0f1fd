"""What a scenario's jobs came to: the promises checked from independent records.

Job records say how each job ended; the sandbox's job list says what was paid for (every
job the sandbox created is a charged submit, found by the job's unique source URL); the
``Observer`` samples the records while the scenario runs, so each job's updates are known
with their times, and recovery after each fault is measured from them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ops.bench.measure import percentile, rounded
from storage.jobs import JobRecord
from tasks.pipeline import poll_due_at
from workers.runtime import get_runtime

CHUNK = 500


def read_records(ids: list[str]) -> list[JobRecord]:
    jobs = get_runtime().jobs
    out: list[JobRecord] = []
    for i in range(0, len(ids), CHUNK):
        out.extend(jobs.get_many(ids[i:i + CHUNK]))
    return out


@dataclass
class Batch:
    """The jobs of one scenario: our id -> the unique source URL it was enqueued with."""

    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return list(self.sources)


class Observer:
    """Samples the batch's records in a thread; keeps every distinct update time per job,
    and the state each update left it in (``_phase``)."""

    def __init__(self, batch: Batch, interval_s: float = 1.0) -> None:
        self.batch = batch
        self.interval_s = interval_s
        self.updates: dict[str, set[float]] = {}
        # job -> update time -> (its state, when its scheduled poll is due, if one is)
        self.seen: dict[str, dict[float, tuple[str, float | None]]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="observer")

    def __enter__(self) -> Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                recs = read_records(self.batch.ids)
            except Exception:  # noqa: BLE001 - Redis down is a scenario, not a crash
                self.errors += 1
                continue
            for rec in recs:
                at = rec.updated_at.timestamp()
                self.updates.setdefault(rec.id, set()).add(at)
                self.seen.setdefault(rec.id, {})[at] = (_phase(rec), _poll_due(rec))

    def _last(self, job_id: str, at: float) -> tuple[str, float | None]:
        """The job as last seen updated at or before ``at``: state, poll due time."""
        seen = self.seen.get(job_id, {})
        before = [t for t in seen if t <= at]
        return seen[max(before)] if before else ("unseen", None)

    def state_at(self, job_id: str, at: float) -> str:
        """The job's state as last seen updated at or before ``at`` ("unseen" if never)."""
        return self._last(job_id, at)[0]

    def due_at(self, job_id: str, at: float) -> float:
        """When the job's next step was due, as seen at ``at``: its scheduled poll's due
        time, or ``at`` itself for a step already under way (a claim, a store)."""
        poll_due = self._last(job_id, at)[1]
        return at if poll_due is None else max(poll_due, at)

    def _moved_again(self, at: float, job_ids: list[str],
                     records: list[JobRecord]) -> dict[str, float]:
        """Seconds from ``at`` until each of ``job_ids`` was next updated (seen or final)."""
        final_at = {r.id: r.updated_at.timestamp() for r in records}
        waits = {}
        for job_id in job_ids:
            after = [t for t in sorted(self.updates.get(job_id, ())) if t > at]
            moved = after[0] if after else final_at.get(job_id)
            if moved is not None and moved > at:
                waits[job_id] = moved - at
        return waits

    def moved_again_s(self, at: float, job_ids: list[str], records: list[JobRecord]) -> list[float]:
        """Seconds from ``at`` until each of ``job_ids`` was next updated (seen or final)."""
        return list(self._moved_again(at, job_ids, records).values())

    def moved_again_by_state(self, kills: list[dict], records: list[JobRecord]) -> dict:
        """``moved_again_s`` of every kill's jobs, grouped by the state each job was in at
        its kill: which step's re-drive sets the recovery time."""
        waits: dict[str, list[tuple[float, float]]] = {}
        for kill in kills:
            for job_id, wait in self._moved_again(kill["at"], kill["jobs"], records).items():
                past_due = kill["at"] + wait - self.due_at(job_id, kill["at"])
                waits.setdefault(self.state_at(job_id, kill["at"]), []).append(
                    (wait, max(past_due, 0.0)))
        return {state: {"jobs": len(w), "p50_s": rounded(percentile([a for a, _ in w], 50)),
                        "max_s": rounded(max(a for a, _ in w)),
                        "past_due_p50_s": rounded(percentile([b for _, b in w], 50)),
                        "past_due_max_s": rounded(max(b for _, b in w))}
                for state, w in sorted(waits.items())}

    def moved_again_past_due_s(self, kills: list[dict], records: list[JobRecord]) -> list[float]:
        """Seconds from when each kill's job's step was due (its scheduled poll's due time,
        or the kill for a step under way) until it moved again: the time the kill cost."""
        return [max(kill["at"] + wait - self.due_at(job_id, kill["at"]), 0.0)
                for kill in kills
                for job_id, wait in self._moved_again(kill["at"], kill["jobs"], records).items()]

    def recovery_s(self, at: float, records: list[JobRecord]) -> dict:
        """Seconds from ``at`` until each job not final then was updated again."""
        waits = []
        for rec in records:
            seen = sorted(self.updates.get(rec.id, ()))
            before = [t for t in seen if t <= at]
            if not before or (rec.state.final and rec.updated_at.timestamp() <= at):
                continue  # not created yet, or already final
            after = [t for t in seen if t > at]
            if after:
                waits.append(after[0] - at)
        return {"jobs": len(waits), "p50_s": rounded(percentile(waits, 50)),
                "max_s": rounded(max(waits, default=0.0))}


def _poll_due(rec: JobRecord) -> float | None:
    """When the record's scheduled poll is due, if one is (``poll_due_at``)."""
    due = poll_due_at(rec, get_runtime().settings)
    return None if due is None else due.timestamp()


def _phase(rec: JobRecord) -> str:
    """The record's state, a queued job split by whether a submit holds its claim."""
    if rec.state.value == "queued":
        return "queued, claimed" if rec.submit_started_at else "queued, unclaimed"
    return rec.state.value


def paid_submits(sandbox_jobs: list[dict], batch: Batch) -> Counter:
    """Charged submits per job of ``batch`` (sandbox jobs created for its source URL)."""
    by_source = Counter(job["source_url"] for job in sandbox_jobs)
    return Counter({job_id: by_source.get(url, 0) for job_id, url in batch.sources.items()})


def tally(batch: Batch, records: list[JobRecord], sandbox_jobs: list[dict]) -> dict:
    """The promises: every job final, none paid twice; outcomes by error code."""
    paid = paid_submits(sandbox_jobs, batch)
    per_job = Counter(paid.values())
    failed = Counter(r.error.code for r in records if r.state.value == "failed" and r.error)
    return {
        "enqueued": len(batch.sources),
        "succeeded": sum(r.state.value == "succeeded" for r in records),
        "failed_by_code": dict(sorted(failed.items())),
        "not_final": sum(not r.state.final for r in records),
        "not_final_states": dict(Counter(r.state.value for r in records if not r.state.final)),
        "paid_submits": sum(paid.values()),
        "jobs_by_paid_submits": {str(k): v for k, v in sorted(per_job.items())},
        "paid_twice": sum(1 for n in paid.values() if n > 1),
        "succeeded_unpaid": sum(1 for r in records
                                if r.state.value == "succeeded" and paid[r.id] == 0),
        "error_messages": _messages(records),
    }


def _messages(records: list[JobRecord], per_code: int = 3) -> dict[str, list[str]]:
    """A few distinct error messages per code, for the reader of the report."""
    out: dict[str, list[str]] = {}
    for rec in records:
        if rec.error:
            seen = out.setdefault(rec.error.code, [])
            if rec.error.message[:300] not in seen and len(seen) < per_code:
                seen.append(rec.error.message[:300])
    return out


def unknown_outcomes_matched(records: list[JobRecord], kills: list[dict],
                             window_s: float) -> dict:
    """``outcome_unknown`` jobs, and how many had a kill land during their paid call.

    The paid call runs from the submit claim (``submit_started_at``) for at most the
    connect + read timeouts (``window_s``).
    """
    unknown = [r for r in records if r.error and r.error.code == "outcome_unknown"]
    matched = 0
    for rec in unknown:
        start = _ts(rec.submit_started_at)
        if start is not None and any(start <= k["at"] <= start + window_s for k in kills):
            matched += 1
    return {"outcome_unknown": len(unknown), "matched_to_a_kill": matched,
            "unmatched": len(unknown) - matched}


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


def wait_final(ids: list[str], timeout_s: float, interval_s: float = 0.25,
               until: Callable[[JobRecord], bool] = lambda r: r.state.final) -> bool:
    """Wait until every job is final (or ``until`` holds for it); False on timeout. Redis
    errors count as not yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if all(until(r) for r in read_records(ids)):
                return True
        except Exception:  # noqa: BLE001 - the store may be restarting
            pass
        time.sleep(interval_s)
    return False
