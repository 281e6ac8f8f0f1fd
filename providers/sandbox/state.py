"""Everything one running sandbox holds: config, RNG, balances, jobs, limiter, log."""

from __future__ import annotations

import threading
from pathlib import Path
from random import Random
from typing import Any

from .config import SandboxConfig
from .faults import SlidingWindowLimiter
from .jobs import JobStore
from .records import RequestLog


class SandboxState:
    """Shared, thread-safe state behind the Flask app."""

    def __init__(self, config: SandboxConfig, work_dir: Path) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._rng = Random(config.seed)
        self.work_dir = work_dir
        self.samples_dir = work_dir / "samples"
        self.jobs = JobStore(work_dir / "jobs", config.render_workers)
        self.limiter = SlidingWindowLimiter()
        self.log = RequestLog()

    @property
    def config(self) -> SandboxConfig:
        """The current config (an immutable snapshot)."""
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Validate and swap in a patched config; a new ``seed`` reseeds the RNG."""
        with self._lock:
            self._config = self._config.patched(**changes)
            if "seed" in changes:
                self._rng.seed(self._config.seed)
            return self._config

    def chance(self, rate: float) -> bool:
        """True with probability ``rate``."""
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options: tuple[Any, ...]) -> Any:
        """A random element of ``options``."""
        with self._lock:
            return self._rng.choice(options)

    def uniform(self, low: float, high: float) -> float:
        """A number drawn uniformly from [low, high]."""
        with self._lock:
            return self._rng.uniform(low, high)

    def processing_time_s(self) -> float:
        """A processing time drawn from the configured range."""
        low, high = self._config.processing_time_s
        with self._lock:
            return self._rng.uniform(low, high)

    def spend(self, field: str, amount: int) -> bool:
        """Take ``amount`` from balance ``field`` (None = unlimited); False if short."""
        with self._lock:
            balance = getattr(self._config, field)
            if balance is None:
                return True
            if balance < amount:
                return False
            self._config = self._config.model_copy(update={field: balance - amount})
            return True

    def refund(self, field: str, amount: int) -> None:
        """Give ``amount`` back to balance ``field`` (no-op when unlimited)."""
        with self._lock:
            balance = getattr(self._config, field)
            if balance is not None:
                self._config = self._config.model_copy(update={field: balance + amount})

    def reset(self) -> None:
        """Forget jobs, results, the request log and the QPS windows (config is kept)."""
        self.jobs.clear()
        self.log.clear()
        self.limiter.clear()
