"""One request budget per provider, shared by every worker process on every host.

Celery's ``rate_limit`` is per worker; this is not. Requests to a provider are limited
through Redis the way the provider limits them: a *sliding window* of the last sends
(``SENT_KEY``), at most ``n = max(1, floor(*_MAX_RPS))`` in any ``n / *_MAX_RPS`` seconds
times ``PACING_MARGIN``, and never two within half a turn of each other (``PACE_KEY``). A
fixed per-second window is not enough: the benchmark saw its burst (two requests at the
end of one second, two at the start of the next) reach the provider's sliding window as a
429. The window records when requests were *sent*, so one sent late (a task dispatch on
a loaded worker) does not push every later one back by as much, as pacing each request
from the last one did: at 2 req/s the capped benchmark's requests went out 0.59 s apart
(median) against 0.525 s turns.

- A 429 (or ``Retry-After``) puts the provider in a shared cool-down: every worker slows
  down at once.
- Every request takes its turn on one shared *line* (``TURN_KEY``: the next free turn, ms
  of Redis time, turns ``interval_s`` apart): a poll refused a request books the next turn
  and comes back then (``wait_s``), admission books the submit slots it takes on the same
  line and holds its next turn there while it waits (``tasks.admission``), and a poll
  asking fresh goes only when nobody is booked ahead of it. So a refused poll is refused
  about once, not again and again at every mark a submit took meanwhile (the benchmark
  counted nine poll executions per provider request before the line was shared).
- A poll refused even at its own turn (a request before it went late) books the next
  free turn again. It does not retry as soon as the marks expire: back "at its turn" it
  would go wherever the window had room, which under a backlog is the room of the turn
  booked next, whose poll was then refused and did the same; and, the line being booked
  solid, it was itself refused at nearly every retry (at a load of 3, one poll of the
  10,000-job backlog ran 195 times in 99 s).
- A poll scheduled while the line is busy is not left to come due, be refused and book
  then: it books its turn when it is scheduled (``appoint_s``). Due before the line's next
  free turn, it takes that turn; due later, it takes an *appointment* (``APPT_KEY``) at
  the first turn of the line's rhythm from then on, and the line's turns, fresh requests
  and admission keep clear of appointments. Under the 10,000-job backlog every provider
  poll had cost about 2.3 poll runs.
- Submits start new paid work; polls finish work already paid for. A poll booked on the
  line goes before any submit, and appointments keep polls their turns; a submit taken
  with ``try_acquire(submit=True)`` is also paced at ``SUBMIT_SHARE`` of the budget
  (admission is not: its held turns stay in the line's rhythm).
- A request at its own booked turn may go ``slack_ms`` (half the margin) into the window,
  so a send before it a few ms late does not refuse it and, through its retry, the next.
- Admission takes a submit's place in the window when it admits the job; the submit task
  moves it to when it really sends (``mark_sent``): the provider counts arrivals.

The checks and the marks happen in Lua scripts, atomically.
"""

from __future__ import annotations

import math
import uuid

import redis

from storage.jobs import KEY_PREFIX
from workers.settings import Settings

COOLDOWN_KEY = KEY_PREFIX + "cooldown:"  # + provider: set for the Retry-After time
PACE_KEY = KEY_PREFIX + "pace:"  # + provider: set for half a turn after each request
SUBMIT_PACE_KEY = KEY_PREFIX + "pace-submit:"  # + provider: set while submits must wait
TURN_KEY = KEY_PREFIX + "turn:"  # + provider: the next free turn on the shared line (ms)
SENT_KEY = KEY_PREFIX + "sent:"  # + provider: zset of the last sends (member -> ms)
APPT_KEY = KEY_PREFIX + "appt:"  # + provider: zset of polls' turns booked ahead (id -> ms)
#: Appointments are forgotten this long after their time (a late poll still finds its own).
APPT_KEEP_MS = 60_000
#: window = margin x n / max_rps: room for jitter between taking a slot and the request's
#: arrival. The capped benchmark (2 req/s, load average 5-9 on 2 cores) saw the tightest
#: span of three requests arrive 6 ms (at 1.05) and 26 ms (at 1.03) inside the margin,
#: 1.044 s and 1.004 s against the provider's 1 s window: 1.04 leaves 40 ms.
PACING_MARGIN = 1.04
#: The most of the budget submits taken with ``try_acquire(submit=True)`` may take (not
#: admission's, whose polls keep their turns by the line and appointments). At 1/2, then 2/3, the capped benchmark
#: lost a turn whenever two submits came in a row with no poll between (43 of 259 gaps).
SUBMIT_SHARE = 0.9

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


def window_wait_lua(sent: str, n: str, window: str) -> str:
    """Lua: ``local function window_wait(now)``, ms until the window ``sent`` (a key
    expression) takes one more request, given ``n`` and ``window`` (ms) expressions."""
    return f"""
local function window_wait(now)
  local nth = redis.call('ZREVRANGE', {sent}, tonumber({n}) - 1, tonumber({n}) - 1, 'WITHSCORES')
  if #nth == 0 then return 0 end
  return math.max(tonumber(nth[2]) + tonumber({window}) - now, 0)
end
local function window_add(member, at)
  redis.call('ZADD', {sent}, at, member)
  redis.call('ZREMRANGEBYRANK', {sent}, 0, -(tonumber({n}) + 1))
  redis.call('PEXPIRE', {sent}, tonumber({window}) + 60000)
end
"""


def clear_turn_lua(appts: str, interval: str) -> str:
    """Lua: ``local function clear_turn(turn)``, the first time from ``turn`` on that is at
    least ``interval`` (ms expression) from every appointment in the zset ``appts``."""
    return f"""
local function clear_turn(turn)
  for _ = 1, 64 do
    local hit = redis.call('ZRANGEBYSCORE', {appts}, '(' .. (turn - tonumber({interval})),
                           '(' .. (turn + tonumber({interval})), 'WITHSCORES', 'LIMIT', 0, 1)
    if #hit == 0 then return turn end
    turn = tonumber(hit[2]) + tonumber({interval})
  end
  return turn
end
"""


def turn_base_lua(cooldown: str, pace: str, line: str, interval: str) -> str:
    """Lua: ``local function turn_base(now)``, the first time a turn may be booked from:
    the line's next free turn, past the cool-down and the pace mark, and past the window's
    wait only where that is more than half a turn beyond the line (needs ``window_wait``).

    A send late by some ms (a task's dispatch on a loaded worker) holds the window that
    much past the line's turn two turns on; a turn booked from there leaves the line's
    rhythm, and the appointments set in it then cost it a whole turn. The request at that
    turn is checked against the window when it goes, as every request is.
    """
    return f"""
local function turn_base(now)
  local line = tonumber(redis.call('GET', {line}) or '0')
  local base = math.max(now + math.max(redis.call('PTTL', {cooldown}),
                                       redis.call('PTTL', {pace}), 0), line)
  local blocked = now + window_wait(now)
  if line <= now or blocked > base + tonumber({interval}) / 2 then
    base = math.max(base, blocked)
  end
  return base
end
"""


# KEYS: cool-down, pace, line, sent, appointments, [submit pace]. ARGV: gap (ms), submit
# interval (ms),
# "1" when the caller holds a booked turn (a poll back at its turn: nobody is ahead),
# line interval (ms), window n, window (ms), member, slack (ms: ``slack_ms``, for a request
# at its booked turn). A fresh request also keeps clear of the polls' appointments.
_ACQUIRE = _NOW + window_wait_lua("KEYS[4]", "ARGV[5]", "ARGV[6]") + clear_turn_lua(
    "KEYS[5]", "ARGV[4]") + """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
end
local line = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[3] ~= '1' and (line > now or clear_turn(now) > now) then return 0 end
if window_wait(now) > (ARGV[3] == '1' and tonumber(ARGV[8]) or 0) then return 0 end
if KEYS[6] then
    if redis.call('EXISTS', KEYS[6]) == 1 then return 0 end
    redis.call('SET', KEYS[6], '1', 'PX', ARGV[2])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
window_add(ARGV[7], now)
if line < now + tonumber(ARGV[4]) then
    redis.call('SET', KEYS[3], now + tonumber(ARGV[4]), 'PX', tonumber(ARGV[4]) + 1000)
end
return 1
"""

# KEYS: pace, sent. ARGV: gap (ms), window n, window (ms), member. The request whose place
# admission took goes now: its place in the window moves to now.
_MARK_SENT = _NOW + window_wait_lua("KEYS[2]", "ARGV[2]", "ARGV[3]") + """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
window_add(ARGV[4], now)
return 1
"""

# KEYS: cool-down, pace, submit pace, line, sent. ARGV: window n, window (ms).
# Ms until a submit slot may be free.
_SUBMIT_WAIT = _NOW + window_wait_lua("KEYS[5]", "ARGV[1]", "ARGV[2]") + """
local wait = window_wait(now)
for i = 1, 3 do wait = math.max(wait, redis.call('PTTL', KEYS[i])) end
return math.max(wait, tonumber(redis.call('GET', KEYS[4]) or '0') - now)
"""

# KEYS: cool-down, pace, line, sent, appointments.
# ARGV: interval (ms), horizon (ms), window n, window (ms). Returns ms until the booked turn
# (the next free one on the line, clear of appointments).
_BOOK = _NOW + window_wait_lua("KEYS[4]", "ARGV[3]", "ARGV[4]") + clear_turn_lua(
    "KEYS[5]", "ARGV[1]") + turn_base_lua("KEYS[1]", "KEYS[2]", "KEYS[3]", "ARGV[1]") + """
local turn = clear_turn(turn_base(now))
local interval = tonumber(ARGV[1])
if turn - now > tonumber(ARGV[2]) then return tonumber(ARGV[2]) end
redis.call('SET', KEYS[3], turn + interval, 'PX', turn + interval - now + 1000)
return turn - now
"""

# KEYS: cool-down, pace, line, sent, appointments. ARGV: interval (ms), horizon (ms), window
# n, window (ms), delay (ms), member. A poll due in ``delay`` while the line is busy: due
# before the line's next free turn, it books that turn now (as a refused poll would when
# due); due later, it books an appointment at the first turn of the line's rhythm from
# then on clear of other appointments, and the line's later turns keep clear of it.
# Returns ms until the turn, or -1: the line is free, the poll asks fresh when due.
_APPOINT = _NOW + window_wait_lua("KEYS[4]", "ARGV[3]", "ARGV[4]") + clear_turn_lua(
    "KEYS[5]", "ARGV[1]") + turn_base_lua("KEYS[1]", "KEYS[2]", "KEYS[3]", "ARGV[1]") + """
local line = tonumber(redis.call('GET', KEYS[3]) or '0')
if line <= now then return -1 end
local base, due = turn_base(now), now + tonumber(ARGV[5])
local interval, horizon = tonumber(ARGV[1]), tonumber(ARGV[2])
if due <= base then
  local turn = clear_turn(base)
  if turn - now > horizon then return -1 end
  redis.call('SET', KEYS[3], turn + interval, 'PX', turn + interval - now + 1000)
  return turn - now
end
local turn = clear_turn(base + math.ceil((due - base) / interval) * interval)
if turn - now > horizon then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - APPT_KEEP_MS)
redis.call('ZADD', KEYS[5], turn, ARGV[6])
redis.call('PEXPIRE', KEYS[5], horizon + APPT_KEEP_MS)
return turn - now
""".replace("APPT_KEEP_MS", str(APPT_KEEP_MS))


class ProviderBudget:
    """Shared request budgets of both providers."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._book = client.register_script(_BOOK)
        self._appoint = client.register_script(_APPOINT)
        self._mark_sent = client.register_script(_MARK_SENT)
        self._submit_wait = client.register_script(_SUBMIT_WAIT)

    def _rps(self, provider: str) -> float:
        return getattr(self._settings, f"{provider}_max_rps")

    def interval_s(self, provider: str) -> float:
        """Seconds between two turns on the line: the window's average spacing."""
        return PACING_MARGIN / self._rps(provider)

    def window(self, provider: str) -> tuple[int, int]:
        """(n, ms): at most n requests in any window of ms, as the provider counts them."""
        n = max(1, math.floor(self._rps(provider)))
        return n, math.ceil(n * self.interval_s(provider) * 1000)

    def slack_ms(self, provider: str) -> int:
        """How far into the window a request at its own booked turn may go: half the
        margin. Turns are booked ahead in the line's rhythm; a send before it a few ms late
        (dispatch on a loaded worker) would otherwise refuse it, and its retry, later
        still, the one two turns on (scenario 2 ran 2.2 poll tasks per provider poll)."""
        n, window_ms = self.window(provider)
        return math.floor(window_ms * (1 - 1 / PACING_MARGIN) / 2)

    def gap_ms(self, provider: str) -> int:
        """The least time between two requests: half a turn."""
        return max(1, math.ceil(self.interval_s(provider) * 500))

    def try_acquire(self, provider: str, *, submit: bool, booked: bool = False) -> bool:
        """Take the provider's next request slot; False when it is not free yet.

        ``booked``: the caller comes back at a turn it booked (``wait_s``), so turns
        booked after it do not hold it back; otherwise anyone booked ahead goes first.
        """
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        keys = [COOLDOWN_KEY + provider, PACE_KEY + provider, TURN_KEY + provider,
                SENT_KEY + provider, APPT_KEY + provider]
        if submit:
            keys.append(SUBMIT_PACE_KEY + provider)
        submit_ms = math.ceil(interval_ms / SUBMIT_SHARE)
        n, window_ms = self.window(provider)
        return bool(self._acquire(keys=keys, args=[
            self.gap_ms(provider), submit_ms, "1" if booked else "0", interval_ms, n,
            window_ms, uuid.uuid4().hex[:12], self.slack_ms(provider)]))

    def mark_sent(self, provider: str, member: str) -> None:
        """The request admission took a place for (``member``: its job id) goes now."""
        n, window_ms = self.window(provider)
        self._mark_sent(keys=[PACE_KEY + provider, SENT_KEY + provider],
                        args=[self.gap_ms(provider), n, window_ms, member])

    def submit_keys(self, provider: str) -> list[str]:
        """The keys a submit slot depends on: cool-down, pace, submit pace, line, sent,
        appointments."""
        return [COOLDOWN_KEY + provider, PACE_KEY + provider, SUBMIT_PACE_KEY + provider,
                TURN_KEY + provider, SENT_KEY + provider, APPT_KEY + provider]

    def submit_args(self, provider: str) -> list[int]:
        """What a submit slot sets: gap, submit interval, line interval, window n and ms."""
        interval_ms = math.ceil(self.interval_s(provider) * 1000)
        return [self.gap_ms(provider), math.ceil(interval_ms / SUBMIT_SHARE), interval_ms,
                *self.window(provider)]

    def submit_wait_s(self, provider: str) -> float:
        """Seconds until a submit slot may be free (0: try now). Reads, books nothing."""
        blocked_ms = int(self._submit_wait(keys=self.submit_keys(provider),
                                           args=list(self.window(provider))))
        return round(max(blocked_ms, 0) / 1000, 3)

    def wait_s(self, provider: str) -> float:
        """How long a refused poll waits before it asks again (at most ``max_countdown_s``).

        It books the next free turn: turns follow the cool-down and the window, one
        interval apart, so N refused polls come back spread over N intervals rather than
        all at once, each at a turn nobody else takes. A poll refused at its booked turn
        books again (the module's docstring says why it does not retry sooner).
        """
        horizon_ms = int(self._settings.max_countdown_s * 1000)
        wait_ms = self._book(keys=self._line_keys(provider), args=[
            math.ceil(self.interval_s(provider) * 1000), horizon_ms, *self.window(provider)])
        return round(max(int(wait_ms), 1) / 1000, 3)

    def appoint_s(self, provider: str, delay_s: float, member: str) -> float | None:
        """Book the turn of a poll due in ``delay_s`` while the line is busy; seconds until
        it (at least ``delay_s``), or None when the line is free (the poll asks fresh).

        The poll then comes at a turn of its own (``try_acquire(booked=True)``) instead
        of coming due, being refused because the line is busy, and booking a turn then:
        under a backlog that was one extra poll run for nearly every provider poll.
        """
        wait_ms = int(self._appoint(keys=self._line_keys(provider), args=[
            math.ceil(self.interval_s(provider) * 1000),
            int(self._settings.max_countdown_s * 1000), *self.window(provider),
            math.ceil(delay_s * 1000), member]))
        return None if wait_ms < 0 else round(max(wait_ms / 1000, delay_s), 3)

    @staticmethod
    def _line_keys(provider: str) -> list[str]:
        return [COOLDOWN_KEY + provider, PACE_KEY + provider, TURN_KEY + provider,
                SENT_KEY + provider, APPT_KEY + provider]

    def back_off(self, provider: str, retry_after_s: float | None) -> None:
        """Slow every worker down after a 429: no request to ``provider`` for a while."""
        seconds = retry_after_s if retry_after_s and retry_after_s > 0 else 1.0
        seconds = min(seconds, self._settings.max_countdown_s)
        self._redis.set(COOLDOWN_KEY + provider, "1", px=math.ceil(seconds * 1000))
