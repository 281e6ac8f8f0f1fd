"""One request budget per provider, shared by every worker process on every host.

Celery's ``rate_limit`` is per worker; this is not. Requests to a provider are *paced*
through Redis: after each one, no worker may send the next for ``1 / *_MAX_RPS`` seconds
(plus ``PACING_MARGIN``). Pacing rather than a per-second window, because the benchmark
showed a window's burst (two requests at the end of one second, two at the start of the
next) reaching the provider's own sliding window as a 429: evenly spaced requests cannot.

- A 429 (or ``Retry-After``) puts the provider in a shared cool-down: every worker slows
  down at once.
- Submits start new paid work; polls finish work already paid for. A poll booked on the
  line goes before any submit, and submits are paced again at ``SUBMIT_SHARE`` of the
  budget, so polls always keep a share of it.

The checks and the pacing marks happen in Lua scripts, atomically. Every request takes
its turn on one shared *line* (``TURN_KEY``: the next free turn, in Redis time): a poll
refused a request books the next turn and comes back then (``wait_s``), admission books
the submit slots it takes on the same line (``tasks.admission``), and a poll asking
fresh goes only when nobody is booked ahead of it. So a refused poll is refused once, not
again and again at every pacing mark a submit took meanwhile (the benchmark counted
nine poll executions per provider request before the line was shared). A submit marks
the pace again when it actually sends (``mark_sent``): admission took its slot a task
dispatch earlier, and the provider's window counts arrivals, not our bookings.
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
TURN_KEY = KEY_PREFIX + "turn:"  # + provider: the next free turn on the shared line (ms)
#: spacing = margin / max_rps: room for jitter between taking a slot and the request's
#: arrival. Once submits re-mark the pace when they send, the benchmark's capped
#: scenario (2 req/s, load average ~9 on 2 cores) saw the tightest span of three
#: requests at 1.052 s against the provider's 1 s window (1.017 s at margin 1.1 without).
PACING_MARGIN = 1.05
#: The most of the budget submits may take. Booked polls go first anyway (the line); at
#: 1/2 a slot no poll wanted was lost to submits for good, and the capped benchmark
#: could not reach Q/2 jobs/s with one poll per job: at 2/3 submits catch up.
SUBMIT_SHARE = 2 / 3

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: cool-down, pace, line, [submit pace]. ARGV: interval (ms), submit interval (ms),
# "1" when the caller holds a booked turn (a poll back at its turn: nobody is ahead).
_ACQUIRE = _NOW + """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
local line = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[3] ~= '1' and line > now then return 0 end
if KEYS[4] then
    if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
    redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if line < now + tonumber(ARGV[1]) then
    redis.call('SET', KEYS[3], now + tonumber(ARGV[1]), 'PX', tonumber(ARGV[1]) + 1000)
end
return 1
"""

# KEYS: pace, line. ARGV: interval (ms). The request goes now: no other may follow it
# sooner than one interval, whenever its slot was taken.
_MARK_SENT = _NOW + """
local interval = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < interval then redis.call('SET', KEYS[1], '1', 'PX', interval) end
if tonumber(redis.call('GET', KEYS[2]) or '0') < now + interval then
    redis.call('SET', KEYS[2], now + interval, 'PX', interval + 1000)
end
return 1
"""

# KEYS: cool-down, pace, submit pace, line. Ms until a submit slot may be free.
_SUBMIT_WAIT = _NOW + """
local wait = 0
for i = 1, 3 do wait = math.max(wait, redis.call('PTTL', KEYS[i])) end
return math.max(wait, tonumber(redis.call('GET', KEYS[4]) or '0') - now)
"""

# KEYS: cool-down, pace key, line.
# ARGV: interval (ms), horizon (ms). Returns ms until the booked turn.
_BOOK = _NOW + """
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
        self._mark_sent = client.register_script(_MARK_SENT)
        self._submit_wait = client.register_script(_SUBMIT_WAIT)

    def interval_s(self, provider: str) -> float:
        """Seconds between two requests to ``provider``, from every worker together."""
        return PACING_MARGIN / getattr(self._settings, f"{provider}_max_rps")

    def try_acquire(self, provider: str, *, submit: bool, booked: bool = False) -> bool:
        """Take the provider's next request slot; False when it is not free yet.

        ``booked``: the caller comes back at a turn it booked (``wait_s``), so turns
        booked after it do not hold it back; otherwise anyone booked ahead goes first.
        """
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        keys = [COOLDOWN_KEY + provider, PACE_KEY + provider, TURN_KEY + provider]
        if submit:
            keys.append(SUBMIT_PACE_KEY + provider)
        submit_ms = math.ceil(interval_ms / SUBMIT_SHARE)
        return bool(self._acquire(keys=keys, args=[interval_ms, submit_ms,
                                                   "1" if booked else "0"]))

    def mark_sent(self, provider: str) -> None:
        """A request whose slot was taken earlier (a submit admission let through) goes
        now: the next one waits a full interval from here."""
        self._mark_sent(keys=[PACE_KEY + provider, TURN_KEY + provider],
                        args=[math.ceil(self.interval_s(provider) * 1000)])

    def submit_keys(self, provider: str) -> list[str]:
        """The keys a submit slot depends on: cool-down, pace, submit pace, the line."""
        return [COOLDOWN_KEY + provider, PACE_KEY + provider, SUBMIT_PACE_KEY + provider,
                TURN_KEY + provider]

    def submit_intervals_ms(self, provider: str) -> tuple[int, int]:
        """The pace and submit-pace marks a submit sets, in ms."""
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        return interval_ms, math.ceil(interval_ms / SUBMIT_SHARE)

    def submit_wait_s(self, provider: str) -> float:
        """Seconds until a submit slot may be free (0: try now). Reads, books nothing."""
        blocked_ms = int(self._submit_wait(keys=self.submit_keys(provider)))
        return round(max(blocked_ms, 0) / 1000, 3)

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
        turn = TURN_KEY + provider
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
