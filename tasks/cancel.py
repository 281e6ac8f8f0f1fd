"""Cancelling a job (``tasks.producer.cancel``, ``enhance cancel``).

What a cancel does depends on where the job is when it lands:

- ``queued``: the job ends ``cancelled`` and leaves its admission queue; no paid call is
  made. A submit admission already sent finds the job final and does nothing. If a submit
  had already claimed the job, its paid call may be under way: the job still ends
  ``cancelled`` (the answer says so), a submission that comes back has its cost recorded
  on the job, and it is never polled.
- ``submitted`` / ``processing``: the job ends ``cancelled``; the provider keeps the job
  and its cost stays recorded. The scheduled poll finds the job final and asks nothing,
  and a poll already in the air loses its compare-and-set: no more polls, and a result
  the provider produces later is never stored.
- ``storing``: the provider has finished and been paid; the store goes on and the job
  ends ``succeeded`` (or ``failed``). The answer says so; nothing changes.
- final (``succeeded``, ``failed``, ``cancelled``): nothing changes; the answer says so.

A cancel ends the job through ``jobsteps.finish``, the path every final transition takes
(log line, admission slot, staged input, ``events.on_final`` hooks such as webhooks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from storage.jobs import JobRecord, JobState
from tasks.jobsteps import finish
from workers.runtime import Runtime

CANCELLABLE = (JobState.QUEUED, JobState.SUBMITTED, JobState.PROCESSING)


@dataclass(frozen=True)
class Cancellation:
    """The answer to a cancel: whether this call cancelled the job, and why (not)."""

    job_id: str
    cancelled: bool  # True: this call moved the job to ``cancelled``
    state: str  # the job's state after the call
    message: str  # one sentence for the person who asked

    def to_dict(self) -> dict:
        return asdict(self)


def cancel_job(rt: Runtime, job_id: str) -> Cancellation:
    """Cancel ``job_id`` if it is queued, submitted or processing (see the module).

    Raises:
        UnknownJob: no job has this id.
    """
    seen: list[JobRecord] = []

    def cancellable(record: JobRecord) -> bool:
        seen[:] = [record]
        return record.state in CANCELLABLE

    done = finish(rt, job_id, cancellable, {"state": JobState.CANCELLED})
    if done is not None:
        return Cancellation(job_id, True, done.state.value, _cancelled_message(seen[0]))
    record = seen[0]
    if record.state is JobState.STORING:
        return Cancellation(job_id, False, record.state.value,
                            "not cancelled: the provider has finished the job and charged it "
                            f"({_cost(record)}); its result is being stored and the job will "
                            "end succeeded or failed")
    return Cancellation(job_id, False, record.state.value,
                        f"nothing to cancel: the job already ended {record.state.value}")


def _cancelled_message(before: JobRecord) -> str:
    if before.state is JobState.QUEUED and before.submit_started_at is None:
        return "cancelled before it was sent to the provider: nothing was paid"
    if before.state is JobState.QUEUED:
        return ("cancelled while its submit was being sent: if the provider took it, its "
                "cost is recorded on the job; it will not be polled nor stored")
    return (f"cancelled; the provider had the job ({_cost(before)}): it is no longer "
            "polled and its result will not be stored")


def _cost(record: JobRecord) -> str:
    return f"cost {record.cost:g}" if record.cost is not None else "cost not reported"
