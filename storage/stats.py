"""Job-level counters shared by every process, kept in one Redis hash.

Fields: ``requests:<provider>:<kind>`` (submit, poll), ``rate_limited:<provider>``,
``submit_outcome_unknown:<provider>`` (failed submits that may have been charged),
``redriven:<state>`` (overdue steps reconcile re-drove: a worker lost, or a poll late
to start), ``cost:<provider>``, ``reused:<provider>`` (jobs settled from an identical job's result)
and ``saved:<provider>`` (the cost those jobs did not pay), ``stored``, ``store_lag_s_sum`` / ``store_lag_count`` (completed to
stored), ``failed:<code>``, and the latency histograms of succeeded jobs
(``hist:<name>:<provider>:<model>:le=<bound>`` per bucket, not cumulative, with ``:sum``
and ``:count``; ``LATENCY_BUCKETS_S``). Read by ``enhance stats`` and the Prometheus metrics.
"""

from __future__ import annotations

import redis

from storage.jobs import KEY_PREFIX

STATS_KEY = KEY_PREFIX + "stats"
#: Upper bounds (seconds) of the latency histograms' buckets; a larger value counts in +Inf.
LATENCY_BUCKETS_S = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
HIST_PREFIX = "hist:"


class Stats:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def incr(self, field: str, amount: float = 1) -> None:
        """Add ``amount`` to ``field``; whole and fractional amounts may mix on one field.

        HINCRBYFLOAT adds both kinds (HINCRBY refuses a field holding a fraction).
        """
        self._redis.hincrbyfloat(STATS_KEY, field, amount)

    def incr_many(self, amounts: dict[str, float]) -> None:
        """``incr`` of several fields in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for field, amount in amounts.items():
                pipe.hincrbyfloat(STATS_KEY, field, amount)
            pipe.execute()

    def read(self) -> dict[str, float]:
        """Every counter, as numbers."""
        return {k.decode(): float(v) for k, v in self._redis.hgetall(STATS_KEY).items()}

    def observe(self, name: str, labels: tuple[str, ...], value_s: float) -> None:
        """Count ``value_s`` into histogram ``name`` for ``labels`` (no colon in a label)."""
        self.incr_many(observation(name, labels, value_s))


def observation(name: str, labels: tuple[str, ...], value_s: float) -> dict[str, float]:
    """The fields one ``value_s`` adds to histogram ``name`` (for ``Stats.incr_many``)."""
    bound = next((b for b in LATENCY_BUCKETS_S if value_s <= b), None)
    base = ":".join((HIST_PREFIX + name, *labels))
    return {f"{base}:le={'+Inf' if bound is None else bound}": 1, f"{base}:sum": value_s,
            f"{base}:count": 1}


def histograms(raw: dict[str, float]) -> dict[tuple[str, tuple[str, ...]], dict]:
    """The histograms in ``Stats.read()``'s figures: (name, labels) -> buckets, sum, count.

    ``buckets`` holds (upper bound, cumulative count) pairs ending with +Inf, as Prometheus
    wants them.
    """
    found: dict[tuple[str, tuple[str, ...]], dict] = {}
    for field, value in raw.items():
        if not field.startswith(HIST_PREFIX):
            continue
        name, *labels, suffix = field[len(HIST_PREFIX):].split(":")
        entry = found.setdefault((name, tuple(labels)), {"per_bucket": {}, "sum": 0.0,
                                                          "count": 0.0})
        if suffix.startswith("le="):
            entry["per_bucket"][suffix[3:]] = value
        else:
            entry[suffix] = value
    for entry in found.values():
        per_bucket, total, entry["buckets"] = entry.pop("per_bucket"), 0.0, []
        for bound in [*map(str, LATENCY_BUCKETS_S), "+Inf"]:
            total += per_bucket.get(bound, 0.0)
            entry["buckets"].append((bound, total))
    return found
