"""Fault machinery: the per-key QPS cap and the bodies of no documented shape.

The QPS cap is a sliding-window log: a key may make ``n = max(1, floor(qps))`` admitted
requests in any window of ``n / qps`` seconds (1 s for whole numbers, as the vendors
describe it). Refused requests do not count.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from typing import Any

HTML_BODY = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class SlidingWindowLimiter:
    """Admit at most ``qps`` requests a second per key, over a sliding window."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def admit(self, key: str, qps: float) -> float | None:
        """Record a request; return ``None`` if admitted, else seconds until a slot frees."""
        limit = max(1, math.floor(qps))
        window_s = limit / qps
        now = time.monotonic()
        with self._lock:
            seen = self._seen.setdefault(key, deque())
            while seen and now - seen[0] >= window_s:
                seen.popleft()
            if len(seen) >= limit:
                return window_s - (now - seen[0])
            seen.append(now)
            return None

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def retry_after_header(wait_s: float) -> str:
    """A ``Retry-After`` value (whole seconds, at least 1) for a wait of ``wait_s``."""
    return str(max(1, math.ceil(wait_s)))


def malformed_body(kind: str, body: dict[str, Any]) -> tuple[str, str]:
    """Corrupt a documented ``body`` into one of no documented shape.

    Returns ``(text, mimetype)``. Kinds: ``truncated`` (half the JSON), ``flat`` (the
    vendor-sample shape: ``data``'s fields at the top level, no envelope), ``html`` (a
    proxy's error page) and ``empty``.
    """
    text = json.dumps(body)
    if kind == "truncated":
        return text[: max(1, len(text) // 2)], "application/json"
    if kind == "flat":
        return json.dumps(body.get("data") or {}), "application/json"
    if kind == "html":
        return HTML_BODY, "text/html"
    return "", "application/json"

