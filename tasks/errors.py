"""Errors of the ``tasks`` layer that the producer API raises (leaves of ``providers.errors``).

    EnhanceError
    └── PermanentError
        └── BrokerUnavailable     jobs recorded and queued for admission; the broker did not
                                  take the message that starts admission (503, job_ids)
"""

from __future__ import annotations

from providers.errors import PermanentError


class BrokerUnavailable(PermanentError):
    """The jobs are recorded, but the broker did not take a message that starts them.

    Each job waits in its admission queue (or follows an identical job): reconcile starts
    it once the broker answers again, so ``job_ids`` are live jobs to follow with
    ``get_job`` / ``wait``, not a request to send again (that would record them twice).
    Permanent for the call (it must not be retried: the jobs go on), answered 503.
    """

    code = "broker_unavailable"
    status_code = 503

    def __init__(self, message: str, provider: str | None = None,
                 vendor_code: int | str | None = None, http_status: int | None = None,
                 retry_after_s: float | None = None, body: str | None = None,
                 job_ids: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message, provider, vendor_code, http_status, retry_after_s, body)
        self.args = (*self.args, list(job_ids))  # rebuilt whole when unpickled
        self.job_ids = list(job_ids)
