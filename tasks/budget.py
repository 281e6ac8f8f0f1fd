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
- A submit is refused while the provider has ``*_MAX_IN_FLIGHT`` jobs.

All three checks and the two pacing marks happen in one Lua script, atomically. A task
refused a request reschedules itself; it never sleeps. ``wait_s`` books it the next free
turn on a per-provider chain (one pacing interval after the last booked one), so a
backlog of refused tasks comes back one at a time, in order, instead of as a storm.
"""

from __future__ import annotations

import math
import random

import redis

from storage.jobs import KEY_PREFIX, JobStore
from workers.settings import Settings

COOLDOWN_KEY = KEY_PREFIX + "cooldown:"  # + provider: set for the Retry-After time
PACE_KEY = KEY_PREFIX + "pace:"  # + provider: set while the next request must wait
SUBMIT_PACE_KEY = KEY_PREFIX + "pace-submit:"  # + provider: the same, for submits
TURN_KEY = KEY_PREFIX + "turn:"  # + provider + kind: when the next refused task may return
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

# KEYS: cool-down, pace key of this kind, turn chain of this kind.
# ARGV: interval of this kind (ms), horizon (ms). Returns ms until the booked turn.
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
    """Shared request budgets and in-flight caps of both providers."""

    def __init__(self, settings: Settings, client: redis.Redis, jobs: JobStore) -> None:
        self._settings = settings
        self._redis = client
        self._jobs = jobs
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
            if self._at_cap(provider):
                return False
            keys.append(SUBMIT_PACE_KEY + provider)
        submit_ms = math.ceil(interval_ms / SUBMIT_SHARE)
        return bool(self._acquire(keys=keys, args=[interval_ms, submit_ms]))

    def _at_cap(self, provider: str) -> bool:
        cap = getattr(self._settings, f"{provider}_max_in_flight")
        return self._jobs.in_flight(provider) >= cap

    def wait_s(self, provider: str, *, submit: bool = False, waited: bool = False) -> float:
        """How long a refused task waits before it asks again (at most ``max_countdown_s``).

        A task refused for the first time books the next turn of its kind: turns follow
        the cool-down and the pacing mark, one interval apart, so N refused tasks come
        back spread over N intervals rather than all at once. A task refused again when
        its booked turn came (``waited``) keeps its place at the front: it asks again as
        soon as the marks that stopped it expire.
        """
        if waited:
            return self._front_of_line_s(provider, submit)
        if submit and self._at_cap(provider):  # turns come with finished jobs, not time
            return min(getattr(self._settings, f"{provider}_poll_interval_s") * 2,
                       self._settings.max_countdown_s)
        interval = self.interval_s(provider) / (SUBMIT_SHARE if submit else 1)
        pace = (SUBMIT_PACE_KEY if submit else PACE_KEY) + provider
        turn = TURN_KEY + provider + (":submit" if submit else ":poll")
        horizon_ms = int(self._settings.max_countdown_s * 1000)
        wait_ms = self._book(keys=[COOLDOWN_KEY + provider, pace, turn],
                             args=[math.ceil(interval * 1000), horizon_ms])
        return round(max(int(wait_ms), 1) / 1000, 3)

    def _front_of_line_s(self, provider: str, submit: bool) -> float:
        keys = [COOLDOWN_KEY + provider, PACE_KEY + provider]
        if submit:
            keys.append(SUBMIT_PACE_KEY + provider)
        with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            blocked_ms = max([*pipe.execute(), 1])
        spread_s = random.uniform(0, self.interval_s(provider) / 4)  # not all at one instant
        return round(min(blocked_ms / 1000 + spread_s, self._settings.max_countdown_s), 3)

    def back_off(self, provider: str, retry_after_s: float | None) -> None:
        """Slow every worker down after a 429: no request to ``provider`` for a while."""
        seconds = retry_after_s if retry_after_s and retry_after_s > 0 else 1.0
        seconds = min(seconds, self._settings.max_countdown_s)
        self._redis.set(COOLDOWN_KEY + provider, "1", px=math.ceil(seconds * 1000))
