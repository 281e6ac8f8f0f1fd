"""A submit's claim on its job: taken before the one paid call, renewed while it runs.

The claim (``submit_started_at``, ``lease_expires_at``) says a submit may be inside the
paid call: no other submit may call, and once the claim has lapsed with no answer
recorded the outcome is unknown (the job fails ``outcome_unknown`` rather than risk
paying twice). A claim lasts ``SUBMIT_LEASE_S`` and a thread renews it every third of
that while the call runs, so a worker killed mid-call leaves its job for at most
``SUBMIT_LEASE_S`` (plus a reconcile period), not for the call's longest possible run
(``HTTP_CONNECT_TIMEOUT_S + HTTP_DEADLINE_S``), and a slow call still inside its deadline
is never taken for lost.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from storage.jobs import JobRecord, JobState, seconds_from_now, utcnow
from workers.runtime import Runtime

log = logging.getLogger("enhance.pipeline")


def claim_fields(rt: Runtime, started: datetime) -> dict:
    """The fields of a new claim taken at ``started``: reconcile looks again at its end."""
    return {"submit_started_at": started,
            **_lease(started + timedelta(seconds=rt.settings.submit_lease_s))}


def _lease(until: datetime) -> dict:
    """The claim lapses at ``until``, when reconcile looks at the job again."""
    return {"lease_expires_at": until, "next_check_at": until}


def claim_expires_at(rt: Runtime, record: JobRecord) -> datetime | None:
    """When the job's submit claim lapses unless renewed; None when it holds no claim.

    A claim taken by a worker from before renewals (no ``lease_expires_at``) lasts the
    paid call's longest (``Settings.step_lease_s``).
    """
    started = record.submit_started_at
    if started is None:
        return None
    return record.lease_expires_at or started + timedelta(seconds=rt.settings.step_lease_s)


def claim_live(rt: Runtime, record: JobRecord) -> bool:
    """A submit holds the job's claim and may still be inside the paid call."""
    until = claim_expires_at(rt, record)
    return until is not None and utcnow() < until


class Renewal:
    """Renews a claim from a thread while the paid call runs (``with Renewal(rt, r): ...``).

    A renewal that fails (Redis away) is tried again at the next mark; one that finds the
    claim gone (released, or taken for lost) stops: the call's answer decides the rest.
    """

    def __init__(self, rt: Runtime, record: JobRecord) -> None:
        self._rt, self._id, self._started = rt, record.id, record.submit_started_at
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"claim-renewal-{record.id}")

    def __enter__(self) -> Renewal:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _holds(self, record: JobRecord) -> bool:
        return record.state is JobState.QUEUED and record.submit_started_at == self._started

    def _run(self) -> None:
        lease_s = self._rt.settings.submit_lease_s
        while not self._stop.wait(lease_s / 3):
            fields = _lease(seconds_from_now(lease_s))
            try:
                renewed = self._rt.jobs.update(self._id, self._holds, lambda r, f=fields: f)
            except Exception as exc:  # noqa: BLE001 - the next mark tries again
                log.warning("job %s: submit claim not renewed: %s: %s", self._id,
                            type(exc).__name__, exc)
                continue
            if renewed is None:
                return
