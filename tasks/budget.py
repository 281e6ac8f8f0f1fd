"""One request budget per provider, shared by every worker process on every host.

Celery's ``rate_limit`` is per worker; this is not. The ``limits`` library keeps a moving
window per provider in Redis, so N workers together never send more than ``*_MAX_RPS``.
A 429 (or ``Retry-After``) from a provider puts that provider in a shared cool-down, so
every worker slows down at once. Submits, which start new paid work, must leave headroom
in the window (``SUBMIT_HEADROOM``): when the budget is short, polls of jobs already paid
for go first. A task that finds the budget spent reschedules itself; it never sleeps.
"""

from __future__ import annotations

import math
import time

import redis
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from storage.jobs import KEY_PREFIX, JobStore
from workers.settings import Settings

COOLDOWN_KEY = KEY_PREFIX + "cooldown:"  # + provider: set for the Retry-After time
SUBMIT_HEADROOM = 1  # free slots a submit must leave in the window for polls
MIN_WAIT_S = 0.1  # shortest reschedule when the budget is spent


def rate_item(max_rps: float) -> RateLimitItemPerSecond:
    """A window item allowing ``max_rps`` requests per second (or 1 per 1/rps seconds)."""
    if max_rps >= 1:
        return RateLimitItemPerSecond(int(max_rps), 1)
    return RateLimitItemPerSecond(1, math.ceil(1 / max_rps))


class ProviderBudget:
    """Shared request budgets and in-flight caps of both providers."""

    def __init__(self, settings: Settings, client: redis.Redis, jobs: JobStore) -> None:
        self._settings = settings
        self._redis = client
        self._jobs = jobs
        self._limiter = MovingWindowRateLimiter(RedisStorage(settings.redis_url))
        self._items = {
            name: rate_item(getattr(settings, f"{name}_max_rps")) for name in ("hitpaw", "picwish")
        }

    def try_acquire(self, provider: str, *, submit: bool) -> bool:
        """Take one request from the provider's budget; False when it is spent."""
        if self._redis.exists(COOLDOWN_KEY + provider):
            return False
        item = self._items[provider]
        if submit:
            cap = getattr(self._settings, f"{provider}_max_in_flight")
            if self._jobs.in_flight(provider) >= cap:
                return False
            if item.amount > SUBMIT_HEADROOM and not self._limiter.test(
                item, provider, cost=SUBMIT_HEADROOM + 1
            ):
                return False
        return self._limiter.hit(item, provider)

    def wait_s(self, provider: str) -> float:
        """How long to wait before trying again: the cool-down, else the window's reset."""
        cooldown_ms = self._redis.pttl(COOLDOWN_KEY + provider)
        if cooldown_ms and cooldown_ms > 0:
            return max(cooldown_ms / 1000, MIN_WAIT_S)
        stats = self._limiter.get_window_stats(self._items[provider], provider)
        return max(stats.reset_time - time.time(), MIN_WAIT_S)

    def back_off(self, provider: str, retry_after_s: float | None) -> None:
        """Slow every worker down after a 429: no request to ``provider`` for a while."""
        seconds = retry_after_s if retry_after_s and retry_after_s > 0 else 1.0
        seconds = min(seconds, self._settings.max_countdown_s)
        self._redis.set(COOLDOWN_KEY + provider, "1", px=math.ceil(seconds * 1000))
