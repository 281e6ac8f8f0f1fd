"""One request budget per provider, shared by every worker process on every host.

Celery's ``rate_limit`` is per worker; this is not. Requests to a provider are *paced*
through Redis: after each one, no worker may send the next for ``1 / *_MAX_RPS`` seconds
(plus ``PACING_MARGIN``). Pacing rather than a per-second window, because the benchmark
showed a window's burst (two requests at the end of one second, two at the start of the
next) reaching the provider's own sliding window as a 429: evenly spaced requests cannot.

- A 429 (or ``Retry-After``) puts the provider in a shared cool-down: every worker slows
  down at once.
- Submits start new paid work; polls finish work already paid for. Submits are paced
  again at ``SUBMIT_SHARE`` of the budget, so when it is short, polls go first.

The checks and the two pacing marks happen in one Lua script, atomically. Submit slots
are taken by admission alone (``tasks.admission``), which also holds the in-flight caps:
it asks ``submit_wait_s`` when the next one is free and schedules itself then. A poll
refused a request reschedules itself; it never sleeps. ``wait_s`` books it the next free
turn on the provider's poll chain (one pacing interval after the last booked one), so a
backlog of refused polls comes back one at a time, in order, instead of as a storm.
"""

from __future__ import annotations

import math
import random

import redis

from storage.jobs import KEY_PREFIX
from workers.settings import Settings

COOLDOWN_KEY = KEY_PREFIX + "cooldown:"  # + provider: set for the Retry-After time
PACE_KEY = KEY_PREFIX + "pace:"  # + provider: set while the next request must wait
SUBMIT_PACE_KEY = KEY_PREFIX + "pace-submit:"  # + provider: the same, for submits
TURN_KEY = KEY_PREFIX + "turn:"  # + provider + ":poll": when the next refused poll may return
PACING_MARGIN = 1.1  # spacing = margin / max_rps: room for jitter between send and arrival
SUBMIT_SHARE = 0.5  # the most of the budget submits may take while polls wait

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
if KEYS[3] then
    if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
"""

# KEYS: cool-down, pace key, turn chain of polls.
# ARGV: interval (ms), horizon (ms). Returns ms until the booked turn.
_BOOK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local free = now + math.max(redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]), 0)
local turn = math.max(free, tonumber(redis.call('GET', KEYS[3]) or '0'))
local interval = tonumber(ARGV[1])
if turn - now > tonumber(ARGV[2]) then return tonumber(ARGV[2]) end
redis.call('SET', KEYS[3], turn + interval, 'PX', turn + interval - now + 1000)
return turn - now
"""


class ProviderBudget:
    """Shared request budgets of both providers."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._book = client.register_script(_BOOK)

    def interval_s(self, provider: str) -> float:
        """Seconds between two requests to ``provider``, from every worker together."""
        return PACING_MARGIN / getattr(self._settings, f"{provider}_max_rps")

    def try_acquire(self, provider: str, *, submit: bool) -> bool:
        """Take the provider's next request slot; False when it is not free yet."""
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        keys = [COOLDOWN_KEY + provider, PACE_KEY + provider]
        if submit:
            keys.append(SUBMIT_PACE_KEY + provider)
        submit_ms = math.ceil(interval_ms / SUBMIT_SHARE)
        return bool(self._acquire(keys=keys, args=[interval_ms, submit_ms]))

    def submit_keys(self, provider: str) -> list[str]:
        """The keys a submit slot depends on: cool-down, pace, submit pace."""
        return [COOLDOWN_KEY + provider, PACE_KEY + provider, SUBMIT_PACE_KEY + provider]

    def submit_intervals_ms(self, provider: str) -> tuple[int, int]:
        """The pace and submit-pace marks a submit sets, in ms."""
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        return interval_ms, math.ceil(interval_ms / SUBMIT_SHARE)

    def submit_wait_s(self, provider: str) -> float:
        """Seconds until a submit slot may be free (0: try now). Reads, books nothing."""
        with self._redis.pipeline(transaction=False) as pipe:
            for key in (COOLDOWN_KEY, PACE_KEY, SUBMIT_PACE_KEY):
                pipe.pttl(key + provider)
            blocked_ms = max([*pipe.execute(), 0])
        return round(blocked_ms / 1000, 3)

    def wait_s(self, provider: str, *, waited: bool = False) -> float:
        """How long a refused poll waits before it asks again (at most ``max_countdown_s``).

        A poll refused for the first time books the next turn: turns follow the cool-down
        and the pacing mark, one interval apart, so N refused polls come back spread over
        N intervals rather than all at once. A poll refused again when its booked turn
        came (``waited``) keeps its place at the front: it asks again as soon as the
        marks that stopped it expire.
        """
        if waited:
            return self._front_of_line_s(provider)
        turn = TURN_KEY + provider + ":poll"
        horizon_ms = int(self._settings.max_countdown_s * 1000)
        wait_ms = self._book(keys=[COOLDOWN_KEY + provider, PACE_KEY + provider, turn],
                             args=[math.ceil(self.interval_s(provider) * 1000), horizon_ms])
        return round(max(int(wait_ms), 1) / 1000, 3)

    def _front_of_line_s(self, provider: str) -> float:
        with self._redis.pipeline(transaction=False) as pipe:
            for key in (COOLDOWN_KEY, PACE_KEY):
                pipe.pttl(key + provider)
            blocked_ms = max([*pipe.execute(), 1])
        spread_s = random.uniform(0, self.interval_s(provider) / 4)  # not all at one instant
        return round(min(blocked_ms / 1000 + spread_s, self._settings.max_countdown_s), 3)

    def back_off(self, provider: str, retry_after_s: float | None) -> None:
        """Slow every worker down after a 429: no request to ``provider`` for a while."""
        seconds = retry_after_s if retry_after_s and retry_after_s > 0 else 1.0
        seconds = min(seconds, self._settings.max_countdown_s)
        self._redis.set(COOLDOWN_KEY + provider, "1", px=math.ceil(seconds * 1000))
