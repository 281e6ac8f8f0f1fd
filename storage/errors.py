"""The storage layer's errors: branches of the one tree rooted in ``providers.errors``.

``providers`` is the bottom layer and owns the root and its "retry or not" split; each
layer adds its own leaves under it (httpx's ``TransportError`` / ``HTTPStatusError`` under
one ``HTTPError``)::

    EnhanceError                      (providers.errors)                     HTTP
    ├── TransientError                (providers.errors)                      503
    │   ├── StorageUnavailable        S3 throttling, 5xx, connection errors   503
    │   └── WaitTimeout               ``wait`` gave up before the job ended   504
    └── PermanentError                (providers.errors)                      500
        ├── StorageFailed             S3 refused the object (permissions)     500
        ├── ResultCheckFailed         the result is not the image it claims   502
        └── ResultNotReady            no stored result (yet): not succeeded   409

The job store's own leaves live beside it in ``storage.jobs``: ``UnknownJob`` (a
``NotFound``, 404) and ``IdempotencyConflict`` (an ``InvalidInput``, 409).

Importing this module registers the classes with ``providers.errors.error_for_code``.
"""

from __future__ import annotations

from providers.errors import PermanentError, TransientError


class StorageUnavailable(TransientError):
    """S3 throttled us, answered 5xx, or could not be reached."""

    code = "storage_unavailable"


class StorageFailed(PermanentError):
    """S3 refused the request for a reason retrying cannot fix."""

    code = "storage_failed"


class ResultCheckFailed(PermanentError):
    """The downloaded result is not an image, is cut short, or its size or dimensions differ."""

    code = "result_check_failed"
    status_code = 502


class WaitTimeout(TransientError):
    """``wait`` / ``await_job`` gave up before the job ended (the job goes on)."""

    code = "wait_timeout"
    status_code = 504


class ResultNotReady(PermanentError):
    """The job has no stored result to hand out: it has not succeeded (or not yet)."""

    code = "result_not_ready"
    status_code = 409
