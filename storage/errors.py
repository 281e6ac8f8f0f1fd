"""The storage layer's errors: branches of the one tree rooted in ``providers.errors``.

``providers`` is the bottom layer and owns the root and its "retry or not" split; each
layer adds its own leaves under it (httpx's ``TransportError`` / ``HTTPStatusError`` under
one ``HTTPError``)::

    EnhanceError                      (providers.errors)
    ├── TransientError                (providers.errors)
    │   └── StorageUnavailable        S3 throttling, 5xx, connection errors
    └── PermanentError                (providers.errors)
        ├── StorageFailed             S3 refused the object (permissions, bad bucket)
        └── ResultCheckFailed         the result is not the image it claims to be

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
