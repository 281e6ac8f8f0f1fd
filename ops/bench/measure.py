"""What the bench measures, and how: process trees with psutil, Redis memory, percentiles.

A worker is its main process (the consumer: it holds scheduled tasks) plus its prefork
pool children (they run tasks). RSS is summed over the tree; pages the children share
with the main process after the fork are counted once per process, so the sum is an
upper bound and ``rss_main`` is given beside it. CPU is user + system seconds of the
whole tree.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil
import redis

MIB = 1024 * 1024
SAMPLE_INTERVAL_S = 0.25


def process_tree(pid: int) -> list[psutil.Process]:
    """The process ``pid`` and all its descendants (empty when it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the trees rooted at ``pids``."""
    total = 0.0
    for pid in pids:
        for proc in process_tree(pid):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def tree_rss(pids: Iterable[int]) -> tuple[int, int, int]:
    """RSS in bytes: summed over the trees, of the largest main process, of the largest child."""
    total, main, child = 0, 0, 0
    for pid in pids:
        for i, proc in enumerate(process_tree(pid)):
            with contextlib.suppress(psutil.Error):
                rss = proc.memory_info().rss
                total += rss
                if i == 0:
                    main = max(main, rss)
                else:
                    child = max(child, rss)
    return total, main, child


def redis_used_memory(client: redis.Redis) -> int:
    """Redis ``INFO memory`` ``used_memory``, in bytes."""
    return int(client.info("memory")["used_memory"])


def in_flight(client: redis.Redis) -> int:
    """Jobs not final yet, from the job store's state counts."""
    counts = client.hgetall("eq:counts")
    live = ("queued", "submitted", "processing", "storing")
    return sum(int(counts.get(state.encode(), 0)) for state in live)


@dataclass
class Sample:
    t_s: float
    rss_total: int
    rss_main: int
    rss_child: int
    redis_used: int
    in_flight: int


@dataclass
class TreeSampler:
    """Samples worker RSS, Redis memory and jobs in flight from a thread, until stopped."""

    pids: list[int]
    client: redis.Redis
    interval_s: float = SAMPLE_INTERVAL_S
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> Sample:
        total, main, child = tree_rss(self.pids)
        return Sample(time.monotonic(), total, main, child, redis_used_memory(self.client),
                      in_flight(self.client))

    def __enter__(self) -> TreeSampler:
        self.samples.append(self.sample())
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(redis.RedisError, psutil.Error):
                self.samples.append(self.sample())

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with contextlib.suppress(redis.RedisError, psutil.Error):
            self.samples.append(self.sample())

    def peak(self, key: Callable[[Sample], float]) -> Sample:
        return max(self.samples, key=key)


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile by linear interpolation (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


class CpuWindow:
    """CPU seconds the worker trees used between ``start()`` and ``stop()``."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.started_cpu_s = 0.0
        self.cpu_s = 0.0
        self.started_mono = 0.0
        self.wall_s = 0.0

    def __enter__(self) -> CpuWindow:
        self.started_cpu_s = tree_cpu_s(self.pids)
        self.started_mono = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cpu_s = tree_cpu_s(self.pids) - self.started_cpu_s
        self.wall_s = time.monotonic() - self.started_mono
