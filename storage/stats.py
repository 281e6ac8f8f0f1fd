"""Job-level counters shared by every process, kept in one Redis hash.

Fields: ``requests:<provider>:<kind>`` (submit, poll), ``rate_limited:<provider>``,
``submit_outcome_unknown:<provider>`` (failed submits that may have been charged),
``cost:<provider>``, ``reused:<provider>`` (jobs settled from an identical job's result)
and ``saved:<provider>`` (the cost those jobs did not pay), ``stored``, ``store_lag_s_sum`` / ``store_lag_count`` (completed to
stored), ``failed:<code>``. Read by ``enhance stats`` and the Prometheus metrics.
"""

from __future__ import annotations

import redis

from storage.jobs import KEY_PREFIX

STATS_KEY = KEY_PREFIX + "stats"


class Stats:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def incr(self, field: str, amount: float = 1) -> None:
        """Add ``amount`` to ``field``; whole and fractional amounts may mix on one field.

        HINCRBYFLOAT adds both kinds (HINCRBY refuses a field holding a fraction).
        """
        self._redis.hincrbyfloat(STATS_KEY, field, amount)

    def read(self) -> dict[str, float]:
        """Every counter, as numbers."""
        return {k.decode(): float(v) for k, v in self._redis.hgetall(STATS_KEY).items()}
