"""The log of every request the sandbox received, for tests and benchmarks to count.

Entries never hold API keys or bodies: time, provider, kind, method, path, job id where
known, the response status, and the fault injected if any.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

#: Entry kinds: API calls, result downloads and sample downloads.
KINDS = ("submit", "query", "result", "sample")


@dataclass(frozen=True)
class RequestRecord:
    """One request received."""

    ts: float  # Unix time the request arrived
    provider: str | None  # "hitpaw", "picwish", or None for samples
    kind: str  # one of KINDS
    method: str
    path: str
    job_id: str | None
    status: int  # the HTTP status answered
    fault: str | None = None  # "429", "qps", "5xx", "malformed", "slow", "envelope"...
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """A thread-safe list of ``RequestRecord``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def all(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, **match: Any) -> int:
        """How many records have every given field equal (``None`` values are ignored)."""
        wanted = {key: value for key, value in match.items() if value is not None}
        return sum(
            all(getattr(rec, key) == value for key, value in wanted.items())
            for rec in self.all()
        )

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
