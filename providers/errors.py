"""The project's one exception tree.

Its root lives in ``providers`` because that is the bottom layer: ``storage``, ``tasks``
and ``workers`` all import it from here. Each layer adds its own leaves: the storage
errors (``StorageUnavailable``, ``StorageFailed``, ``ResultCheckFailed``) are in
``storage.errors``. The tree is split first by "retry or not"::

    EnhanceError                      base of every error this project raises
    ├── TransientError                worth retrying later, unchanged
    │   ├── RateLimited               429 / over a request budget (honours retry_after_s)
    │   ├── ProviderUnavailable       5xx, connection refused, connect timeout
    │   ├── ResolverUnavailable       DNS cannot answer for a URL's host now (EAI_AGAIN)
    │   └── ProviderTimeout           the request went out, no answer in time
    └── PermanentError                retrying the same request cannot help
        ├── InvalidInput              bad model, extension, size, URL (caught before paying)
        ├── AuthFailed                bad API key, service not enabled
        ├── InsufficientCredits       the account ran out of coins / credits
        ├── NotFound                  unknown job or task id
        ├── ProviderJobFailed         the provider ran the job and reported failure
        ├── ProtocolError             a response of no documented shape
        ├── ResultExpired             the result URL expired before it was stored
        ├── OutcomeUnknown            a paid request may or may not have gone through
        ├── BudgetExhausted           our own daily spend cap refuses the job (policy fail)
        └── DeadlineExceeded          the provider did not finish within the deadline

Every class carries ``code``, the stable error code written into a failed job record and
printed by the CLI (``invalid_input``, ``rate_limited``...), and ``status_code``, the HTTP
status a web backend's view answers with when the producer API raises it (the table is in
the README, "Producer API"; ``error_for_code(code).status_code`` maps a failed job's error
code the same way). ``status_code`` is ours to suggest; ``http_status`` is what a provider
or S3 answered, when the error came from an HTTP answer. Exceptions survive Celery's
JSON serialisation: ``__init__`` passes every argument to ``super().__init__`` positionally
and the fields are plain values.
"""

from __future__ import annotations

from typing import Any

BODY_EXCERPT_CHARS = 500  # how much of an unexpected response body an error keeps


class EnhanceError(Exception):
    """Base of every error raised by enhance-queue."""

    code: str = "error"
    status_code: int = 500  # what a view answers with (README, "Producer API")
    retryable: bool = False

    def __init__(
        self,
        message: str,
        provider: str | None = None,
        vendor_code: int | str | None = None,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        body: str | None = None,
    ) -> None:
        if body is not None and len(body) > BODY_EXCERPT_CHARS:
            body = body[:BODY_EXCERPT_CHARS] + "...[truncated]"
        super().__init__(message, provider, vendor_code, http_status, retry_after_s, body)
        self.message = message
        self.provider = provider
        self.vendor_code = vendor_code
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.body = body

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a job record and printed by ``--json``."""
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        for field in ("provider", "vendor_code", "http_status"):
            if getattr(self, field) is not None:
                data[field] = getattr(self, field)
        return data


class TransientError(EnhanceError):
    """A failure worth retrying later with the same request."""

    code = "transient"
    status_code = 503
    retryable = True


class RateLimited(TransientError):
    """The provider answered 429, or our shared request budget is spent."""

    code = "rate_limited"
    status_code = 429


class ProviderUnavailable(TransientError):
    """The provider answered 5xx, or could not be reached (the request was not taken)."""

    code = "provider_unavailable"


class ResolverUnavailable(TransientError):
    """DNS could not answer for a URL's host now (``EAI_AGAIN``): asked again later. A
    host that does not exist is ``HostNotFound``, which is the caller's input."""

    code = "resolver_unavailable"


class ProviderTimeout(TransientError):
    """The request was sent but no answer came in time: it may have been acted upon."""

    code = "provider_timeout"
    status_code = 504


class PermanentError(EnhanceError):
    """A failure that retrying the same request cannot fix."""

    code = "permanent"


class InvalidInput(PermanentError):
    """The request breaks a documented limit (model, format, size, URL length...)."""

    code = "invalid_input"
    status_code = 422


class AuthFailed(PermanentError):
    """The API key is wrong, expired, or not allowed to use this API."""

    code = "auth_failed"
    status_code = 503  # our deployment's key, not the caller's: the service is unavailable


class InsufficientCredits(PermanentError):
    """The provider account has no coins or credits left for this request."""

    code = "insufficient_credits"
    status_code = 402


class NotFound(PermanentError):
    """The provider does not know the job or task id."""

    code = "not_found"
    status_code = 404


class ProviderJobFailed(PermanentError):
    """The provider accepted the job and then reported that it failed."""

    code = "provider_failed"
    status_code = 502


class ProtocolError(PermanentError):
    """The provider answered with a body of no documented shape (kept in ``body``)."""

    code = "protocol_error"
    status_code = 502


class ResultExpired(PermanentError):
    """The provider's result expired before it could be stored."""

    code = "result_expired"
    status_code = 502


class OutcomeUnknown(PermanentError):
    """A paid request may have gone through; retrying could pay twice."""

    code = "outcome_unknown"
    status_code = 502


class BudgetExhausted(PermanentError):
    """A daily spend cap of ours has no room for this job (``SPEND_CAP_POLICY=fail``)."""

    code = "budget_exhausted"
    status_code = 402


class DeadlineExceeded(PermanentError):
    """The provider did not finish the job before the job's deadline."""

    code = "deadline_exceeded"
    status_code = 504


def error_for_code(code: str) -> type[EnhanceError]:
    """Return the exception class whose ``code`` is ``code`` (``EnhanceError`` if none)."""
    stack: list[type[EnhanceError]] = [EnhanceError]
    while stack:
        cls = stack.pop()
        if cls.code == code:
            return cls
        stack.extend(cls.__subclasses__())
    return EnhanceError
