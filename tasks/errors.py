"""Errors of the ``tasks`` layer that the producer API raises (leaves of ``providers.errors``).

    EnhanceError
    └── BrokerUnavailable     jobs recorded and queued for admission; the broker did not
                              take the message that starts admission (503, carries job_ids)
"""

from __future__ import annotations

from providers.errors import EnhanceError


class BrokerUnavailable(EnhanceError):
    """The jobs are recorded, but the broker did not take a message that starts them.

    Each job waits in its admission queue (or follows an identical job): reconcile starts
    it once the broker answers again, so ``job_ids`` are live jobs to follow with
    ``get_job`` / ``wait``, not a request to send again (that would record them twice).
    Neither transient nor permanent: the call must not be retried, the jobs will go on.
    """

    code = "broker_unavailable"
    status_code = 503

    def __init__(self, message: str, job_ids: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.args = (message, list(job_ids))  # rebuilt whole when unpickled
        self.job_ids = list(job_ids)
