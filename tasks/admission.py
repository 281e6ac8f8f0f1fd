"""Admission: queued jobs wait in Redis, and one chain per provider lets them through.

``enqueue`` records a job and pushes it into its provider's admission queue; no Celery
task exists for it until admission sends its submit. The admission step (``admit``, run
by the ``enhance.admit`` task) is the one place that decides who goes next:

- it takes a job only while the provider is under its in-flight cap (admitted jobs hold
  a *slot* until they leave ``queued``/``submitted``/``processing``) and the tenant under
  its own cap (``TENANT_MAX_IN_FLIGHT``, ``TENANT_MAX_IN_FLIGHT_OVERRIDES``);
- lanes: ``interactive`` first, ``batch`` gets one admission in ``BATCH_SHARE_EVERY``
  whenever both wait; within a lane tenants take turns (round-robin), each in FIFO order;
- it takes the shared request budget's submit slot itself and sends ``enhance.submit``
  only then, so a submit task runs once per job and never waits on the budget;
- then it holds the next turn on the budget's line for its next submit and schedules
  itself with a countdown to that turn (polls refused meanwhile book the turns after it,
  so the run finds its turn free: about one run per submit, where waking for a slot a
  poll then booked cost the 10,000-job backlog 2.4 runs per admitted job), or, at a cap,
  waits for a wake-up (a job leaving the in-flight states wakes it), never sleeping,
  never spinning.

One chain per provider is live at a time: a hash ``chain`` holds its token, when its next
run is due, the turn it holds on the line and a lease (the key's TTL) that runs past that. ``wake`` (enqueue, a freed
slot, reconcile) starts a chain when none is live, brings a sleeping one forward by
replacing its token (the scheduled run then finds itself stale), or marks a running one
``woken`` so it does not go to sleep on a stale view.

Keys, under ``eq:adm:<provider>:``: ``q:<lane>:<tenant>`` (zset of waiting job ids by
arrival), ``lanes:<lane>`` (zset of tenants with waiting jobs, by turn), ``slots`` (zset of
admitted job ids by admission time), ``slots:<tenant>`` (set), ``sent`` (zset of admitted
jobs by admission time, until their submit claims them or they end: at most ADMIT_AHEAD), ``blocked`` (zset of tenants
over a spend cap, until when), ``pause`` (hash, out of credit), ``capped`` (provider over
its spend cap until the next UTC day), ``chain``, ``log`` (the last admissions, in order).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from storage.jobs import KEY_PREFIX, JobRecord, JobState, Priority
from tasks.budget import clear_turn_lua, turn_base_lua, window_wait_lua
from workers.runtime import Runtime

log = logging.getLogger("enhance.admission")

LANES = (Priority.INTERACTIVE.value, Priority.BATCH.value)
LOG_LENGTH = 2000  # admissions remembered in ``log`` (operators, tests)
SLOT_STATES = (JobState.QUEUED, JobState.SUBMITTED, JobState.PROCESSING)
FAR_MS = 10**15  # "never" for a wake that must not replace a live chain
#: A submit slot free within this many ms is booked at once and its submit sent with that
#: countdown: above ~20 req/s one run admits a batch instead of one job per pacing interval.
#: Below, a run waiting for the budget is scheduled half this before the next slot, books
#: it and sends its submit to arrive on it: each run's own dispatch delay does not add up.
BOOK_AHEAD_MS = 100
#: With ADMIT_AHEAD submits waiting for a worker, admission looks again this much later.
AHEAD_RECHECK_S = 0.5

# KEYS[1]: the provider's prefix; KEYS[2..7]: the budget's cool-down, pace, submit pace,
# line (the next free turn, ms of Redis time, shared with polls), window of sends and the
# polls' appointments (``tasks.budget``), which every slot taken here keeps clear of. ARGV: now (ms), provider cap, default tenant cap (0: none), "tenant
# cap ..." overrides, batch share (every N-th admission), gap (ms), submit interval (ms),
# how far ahead a slot may be booked (ms), line interval (ms), window n, window (ms), the
# most admitted jobs not yet claimed by their submit (``sent``, ADMIT_AHEAD), the turn the
# chain holds on the line (ms of Redis time, 0: none), how far ahead a turn may be held
# (ms), the window's slack for a held turn (ms, ``ProviderBudget.slack_ms``). The budget's submit slot is taken in the same step as the job, both or neither; a
# slot free within BOOK_AHEAD_MS is booked (the marks and the line move to its end, the job
# takes its place in the window) and the submit is sent with that countdown. A slot further
# away is held as the chain's turn on the line ('turn': the line moves past it, nothing
# else), like a refused poll's: polls refused meanwhile take the turns after it, so the run
# that comes back for it finds it free. Polls booked before it go first, and the polls'
# appointments keep them their turns: submits are not held to ``SUBMIT_SHARE`` here (its
# 0.578 s spacing against 0.52 s turns put each held turn off the line's rhythm, and the
# appointments, set in that rhythm, then cost up to a turn each: scenario 2 fell to 0.79
# of Q/2).
_ADMIT_ONE = """
local p, now = KEYS[1], tonumber(ARGV[1])
if redis.call('ZCARD', p .. 'slots') >= tonumber(ARGV[2]) then return {'cap'} end
if redis.call('ZCARD', p .. 'sent') >= tonumber(ARGV[12]) then return {'ahead'} end
local t = redis.call('TIME')
local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = tonumber(ARGV[13])
""" + window_wait_lua("KEYS[6]", "ARGV[10]", "ARGV[11]") + clear_turn_lua(
    "KEYS[7]", "ARGV[9]") + turn_base_lua("KEYS[2]", "KEYS[3]", "KEYS[5]", "ARGV[9]") + """
local function budget_wait()
  local wait = window_wait(rnow)
  if held > 0 then wait = wait - tonumber(ARGV[15]) end
  for i = 2, 3 do wait = math.max(wait, redis.call('PTTL', KEYS[i])) end
  if held > 0 then return math.max(wait, held - rnow) end
  wait = math.max(wait, tonumber(redis.call('GET', KEYS[5]) or '0') - rnow)
  return clear_turn(rnow + wait) - rnow
end
local caps, default_cap = {}, tonumber(ARGV[3])
for t, c in string.gmatch(ARGV[4], '(%S+) (%S+)') do caps[t] = tonumber(c) end
local turn = tonumber(redis.call('GET', p .. 'lanectr') or '0') + 1
local lanes = {'interactive', 'batch'}
if turn % tonumber(ARGV[5]) == 0 then lanes = {'batch', 'interactive'} end
local capped = false
for _, lane in ipairs(lanes) do
  local lk = p .. 'lanes:' .. lane
  for _, tenant in ipairs(redis.call('ZRANGE', lk, 0, -1)) do
    local q = p .. 'q:' .. lane .. ':' .. tenant
    local head = redis.call('ZRANGE', q, 0, 0)
    local cap = caps[tenant] or default_cap
    if #head == 0 then
      redis.call('ZREM', lk, tenant)
    elseif tonumber(redis.call('ZSCORE', p .. 'blocked', tenant) or '0') > now
        or (cap > 0 and redis.call('SCARD', p .. 'slots:' .. tenant) >= cap) then
      capped = true
    elseif budget_wait() > tonumber(ARGV[8]) then
      local wait = budget_wait()
      if held == 0 then wait = math.max(clear_turn(turn_base(rnow)) - rnow, 0) end
      if held > 0 or wait > tonumber(ARGV[14]) then return {'budget', wait} end
      local interval = tonumber(ARGV[9])
      redis.call('SET', KEYS[5], rnow + wait + interval, 'PX', wait + interval + 1000)
      return {'turn', wait, rnow + wait}
    else
      local job, wait = head[1], budget_wait()
      redis.call('SET', KEYS[3], '1', 'PX', wait + tonumber(ARGV[6]))
      redis.call('SET', KEYS[4], '1', 'PX', wait + tonumber(ARGV[7]))
      local after = rnow + wait + tonumber(ARGV[9])  -- a held turn moved it when held
      if held == 0 and tonumber(redis.call('GET', KEYS[5]) or '0') < after then
        redis.call('SET', KEYS[5], after, 'PX', wait + tonumber(ARGV[9]) + 1000)
      end
      window_add(job, rnow + wait)
      redis.call('ZREM', q, job)
      if redis.call('ZCARD', q) == 0 then redis.call('ZREM', lk, tenant)
      else redis.call('ZADD', lk, redis.call('INCR', p .. 'rr'), tenant) end
      redis.call('ZADD', p .. 'slots', now, job)
      redis.call('ZADD', p .. 'sent', now, job)
      redis.call('SADD', p .. 'slots:' .. tenant, job)
      redis.call('SET', p .. 'lanectr', turn)
      redis.call('RPUSH', p .. 'log', job .. ' ' .. tenant .. ' ' .. lane)
      redis.call('LTRIM', p .. 'log', -LOG_LENGTH, -1)
      return {'ok', job, tenant, lane, wait}
    end
  end
end
if capped then return {'tenant_cap'} end
return {'empty'}
""".replace("LOG_LENGTH", str(LOG_LENGTH))

# KEYS[1]: prefix. ARGV: job id, tenant, lane, "front" or "back".
# "front" puts a job taken back (and its tenant) first in line and frees its slot (and its
# place among the ADMIT_AHEAD sent).
_PUSH = """
local p, job, tenant, lane = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local q, lk = p .. 'q:' .. lane .. ':' .. tenant, p .. 'lanes:' .. lane
if ARGV[4] == 'front' then
  local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
  redis.call('ZADD', q, 'NX', (#first > 0) and (tonumber(first[2]) - 1) or 0, job)
  local ft = redis.call('ZRANGE', lk, 0, 0, 'WITHSCORES')
  redis.call('ZADD', lk, (#ft > 0) and (tonumber(ft[2]) - 1) or 0, tenant)
  redis.call('ZREM', p .. 'slots', job)
  redis.call('SREM', p .. 'slots:' .. tenant, job)
  redis.call('ZREM', p .. 'sent', job)
else
  redis.call('ZADD', q, 'NX', redis.call('INCR', p .. 'seq'), job)
  redis.call('ZADD', lk, 'NX', tonumber(redis.call('GET', p .. 'rr') or '0'), tenant)
end
return 1
"""

# KEYS[1]: chain. ARGV: new token, now (ms), lease (ms), "soon" (ms), "freed" (1: a job
# left flight). Returns the token to send a run with, or false when the live chain will do:
# a freed in-flight slot changes nothing for a chain that sleeps for the request budget.
_WAKE = """
local due = redis.call('HGET', KEYS[1], 'due')
if due and tonumber(due) <= tonumber(ARGV[2]) + tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'woken', 1)
  return false
end
if due and ARGV[5] == '1' and redis.call('HGET', KEYS[1], 'held') ~= 'cap' then
  return false
end
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'due', ARGV[2], 'woken', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return ARGV[1]
"""

# KEYS[1]: chain. ARGV: token. Drops the chain a wake claimed but could not send a run for,
# unless a newer token holds it; otherwise every wake within its lease would think it live.
_GIVE_UP = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1]: chain. ARGV: token, now (ms), lease (ms). The turn the chain holds on the line
# (0: none) when the token holds the chain, or the chain lapsed and this (late) run takes
# it over: no other run is live; -1 when a newer run replaced this one.
_BEGIN = """
local token = redis.call('HGET', KEYS[1], 'token')
if token and token ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'token', ARGV[1])
redis.call('HSET', KEYS[1], 'due', ARGV[2], 'woken', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tonumber(redis.call('HGET', KEYS[1], 'turn') or '0')
"""

# KEYS[1]: chain. ARGV: token, now (ms), delay (ms, -1: end the chain), lease (ms),
# delay when woken meanwhile (ms), what holds the chain ("cap": an in-flight cap, which a
# job leaving flight lifts; "": the budget or nothing), the turn held on the line (ms of
# Redis time, 0: none). Returns the delay to schedule, -1 to end, -2 if stale.
_RESCHEDULE = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -2 end
local delay = tonumber(ARGV[3])
if redis.call('HGET', KEYS[1], 'woken') == '1' then
  if delay < 0 or delay > tonumber(ARGV[5]) then delay = tonumber(ARGV[5]) end
end
if delay < 0 then redis.call('DEL', KEYS[1]) return -1 end
redis.call('HSET', KEYS[1], 'due', tonumber(ARGV[2]) + delay, 'woken', 0, 'held', ARGV[6],
           'turn', ARGV[7])
redis.call('PEXPIRE', KEYS[1], delay + tonumber(ARGV[4]))
return delay
"""


def script(rt: Runtime, source: str):
    """The Lua ``source`` registered once per Redis client (its SHA is computed once)."""
    scripts = rt.redis.__dict__.setdefault("_eq_scripts", {})
    if source not in scripts:
        scripts[source] = rt.redis.register_script(source)
    return scripts[source]


def prefix(provider: str) -> str:
    return f"{KEY_PREFIX}adm:{provider}:"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _default_dispatch():
    from tasks.definitions import DISPATCH  # the Celery app is only needed to send

    return DISPATCH


# --- the queue -----------------------------------------------------------------------


def push(rt: Runtime, record: JobRecord, *, front: bool = False) -> None:
    """Put a queued job in its provider's admission queue (at the front: taken back)."""
    script(rt, _PUSH)(
        keys=[prefix(record.provider)],
        args=[record.id, record.tenant, record.priority.value, "front" if front else "back"])


def push_many(rt: Runtime, records: list[JobRecord]) -> list[tuple[str, str]]:
    """Put new jobs at the back of their admission queues, in order, move their due time
    back to their deadline (``JobStore.handed_off``), and claim a chain for each of their
    providers that has none live (``wake`` with ``revive_only``), all in one round trip;
    returns ``(provider, token)`` of each run to send with ``send_run``.

    Plain EVALs: a pipeline of registered scripts asks ``SCRIPT EXISTS`` first, one more
    round trip.
    """
    providers = list(dict.fromkeys(record.provider for record in records))
    now_ms, lease_ms = _now_ms(), _lease_ms(rt)
    with rt.redis.pipeline(transaction=False) as pipe:
        for record in records:
            pipe.eval(_PUSH, 1, prefix(record.provider), record.id, record.tenant,
                      record.priority.value, "back")
        rt.jobs.handed_off(pipe, records)  # queued now: due at their deadlines again
        for provider in providers:
            pipe.eval(_WAKE, 1, prefix(provider) + "chain", _new_token(), now_ms, lease_ms,
                      FAR_MS)
        answers = pipe.execute()
    tokens = answers[len(answers) - len(providers):]
    return [(p, t.decode()) for p, t in zip(providers, tokens, strict=True) if t]


@dataclass(frozen=True)
class Admitted:
    """One admission decision: ``kind`` is ok, cap, tenant_cap, ahead, empty, turn (a turn
    on the line is held for the next submit) or budget (no slot now, none held anew)."""

    kind: str
    job_id: str | None = None
    tenant: str | None = None
    lane: str | None = None
    delay_ms: int = 0  # the booked submit slot (or the held turn) is this far ahead
    turn_ms: int = 0  # turn: when the held turn is, in ms of Redis time


def admit_one(rt: Runtime, provider: str, now_ms: int | None = None, *,
              held_ms: int = 0) -> Admitted:
    """Take the next job of ``provider`` in turn, its in-flight slot and the budget's
    submit slot, atomically; ``kind`` turn: no slot within ``BOOK_AHEAD_MS``, the next
    turn on the line is held for the chain (``turn_ms``); budget: the turn it comes at
    (``held_ms``) is not free yet, or none is free within ``max_countdown_s``."""
    s = rt.settings
    overrides = " ".join(f"{t} {c}" for t, c in s.tenant_caps().items())
    gap_ms, submit_ms, interval_ms, n, window_ms = rt.budget.submit_args(provider)
    answer = script(rt, _ADMIT_ONE)(
        keys=[prefix(provider), *rt.budget.submit_keys(provider)],
        args=[now_ms or _now_ms(), getattr(s, f"{provider}_max_in_flight"),
              s.tenant_max_in_flight or 0, overrides, s.batch_share_every,
              gap_ms, submit_ms, BOOK_AHEAD_MS, interval_ms, n, window_ms, s.admit_ahead,
              held_ms, int(s.max_countdown_s * 1000), rt.budget.slack_ms(provider)])
    kind, *rest = (part.decode() if isinstance(part, bytes) else part for part in answer)
    if kind in ("turn", "budget"):
        return Admitted(kind, delay_ms=rest[0], turn_ms=rest[1] if rest[1:] else 0)
    return Admitted(kind, *rest)


def release(rt: Runtime, record: JobRecord) -> bool:
    """Free the slot of a job that left the in-flight states; True if it held one."""
    p = prefix(record.provider)
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.zrem(p + "slots", record.id)
        pipe.srem(p + "slots:" + record.tenant, record.id)
        pipe.zrem(p + "sent", record.id)
        removed = pipe.execute()[0]
    return bool(removed)


def claimed(rt: Runtime, record: JobRecord) -> None:
    """A submit claimed its admitted job: it no longer counts against ``ADMIT_AHEAD``."""
    rt.redis.zrem(prefix(record.provider) + "sent", record.id)


def forget(rt: Runtime, record: JobRecord) -> None:
    """Take a job out of the waiting queues (it failed or was cancelled while waiting)."""
    rt.redis.zrem(_queue_key(record), record.id)


def _queue_key(record: JobRecord) -> str:
    return f"{prefix(record.provider)}q:{record.priority.value}:{record.tenant}"


def on_transition(rt: Runtime, record: JobRecord) -> None:
    """Called at every transition: a job leaving flight frees its slot and wakes admission.

    One round trip: forget (ended while it waited?), release and look at the backlog.
    """
    if record.state in SLOT_STATES:
        return
    p = prefix(record.provider)
    with rt.redis.pipeline(transaction=False) as pipe:
        if record.state in (JobState.FAILED, JobState.CANCELLED):
            pipe.zrem(_queue_key(record), record.id)  # as ``forget``
        pipe.zrem(p + "sent", record.id)  # ended before its submit claimed it
        pipe.zrem(p + "slots", record.id)
        pipe.srem(p + "slots:" + record.tenant, record.id)
        for lane in LANES:
            pipe.zcard(p + "lanes:" + lane)
        answers = pipe.execute()
    released, lanes = answers[-2 - len(LANES)], answers[-len(LANES):]
    if released and any(lanes):
        wake(rt, record.provider, freed=True)


def waiting(rt: Runtime, provider: str) -> dict[str, int]:
    """Jobs waiting for admission, per lane."""
    p = prefix(provider)
    counts = {}
    for lane in LANES:
        tenants = [t.decode() for t in rt.redis.zrange(p + "lanes:" + lane, 0, -1)]
        with rt.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.zcard(f"{p}q:{lane}:{tenant}")
            counts[lane] = sum(pipe.execute()) if tenants else 0
    return counts


def has_backlog(rt: Runtime, provider: str) -> bool:
    """True while jobs of ``provider`` wait for admission."""
    p = prefix(provider)
    with rt.redis.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.zcard(p + "lanes:" + lane)
        return any(pipe.execute())


def backlog_and_pause(rt: Runtime, provider: str) -> tuple[bool, bool]:
    """(jobs wait for admission, the provider is paused for lack of credit): one round trip."""
    p = prefix(provider)
    with rt.redis.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.zcard(p + "lanes:" + lane)
        pipe.exists(p + "pause")
        *lanes, paused = pipe.execute()
    return any(lanes), bool(paused)


def admitted_count(rt: Runtime, provider: str) -> int:
    """Jobs holding a slot: admitted and not yet out of the provider's hands."""
    return rt.redis.zcard(prefix(provider) + "slots")


def admission_log(rt: Runtime, provider: str) -> list[tuple[str, str, str]]:
    """The last admissions, oldest first, as (job id, tenant, lane)."""
    raw = rt.redis.lrange(prefix(provider) + "log", 0, -1)
    return [tuple(item.decode().split(" ")) for item in raw]


# --- the chain -----------------------------------------------------------------------


def _lease_ms(rt: Runtime) -> int:
    """How long past its due time (or a run's start) a chain is live: ``POLL_GRACE_S``.

    A run is a few Redis calls and one dispatch. A chain whose run died with its worker
    (the countdown lived in its memory) lapses this soon, and the next wake-up or
    reconcile starts a new one; while the key lived, every wake-up took the dead chain
    for live (a worker killed in the crash storm left queued jobs waiting ~50 s). A run
    merely late to start is replaced at worst once: the late one finds itself stale, and
    one job is never admitted twice (``admit_one`` is atomic).
    """
    return int(rt.settings.poll_grace_s * 1000)


def wake(rt: Runtime, provider: str, dispatch=None, *, revive_only: bool = False,
         freed: bool = False) -> bool:
    """Make sure admission of ``provider`` runs soon; True when a run was sent.

    ``revive_only`` (reconcile) starts a chain only when none is live: its lease lapsed.
    ``freed`` (a job left flight) wakes a live chain only if an in-flight cap holds it: a
    chain paced by the request budget would be replaced by a run that finds the same
    budget, and the run it replaced would still execute, stale (two tasks for nothing).
    """
    soon_ms = FAR_MS if revive_only else int(rt.budget.interval_s(provider) * 1000)
    token = script(rt, _WAKE)(
        keys=[prefix(provider) + "chain"],
        args=[_new_token(), _now_ms(), _lease_ms(rt), soon_ms, int(freed)])
    if not token:
        return False
    send_run(rt, provider, token.decode(), dispatch)
    return True


def send_run(rt: Runtime, provider: str, token: str, dispatch=None) -> None:
    """Send the admission run a chain just claimed waits for. If the broker does not take
    it, the chain is given up, so the next wake (or reconcile) starts one at once instead
    of taking it for live until its lease lapses."""
    try:
        (dispatch or _default_dispatch()).admit(provider, token, 0)
    except BaseException:
        script(rt, _GIVE_UP)(keys=[prefix(provider) + "chain"], args=[token])
        raise


def _new_token() -> str:
    return uuid.uuid4().hex[:16]


def _begin(rt: Runtime, provider: str, token: str) -> int:
    """-1: a newer run holds the chain; else the turn it holds on the line (0: none)."""
    return int(script(rt, _BEGIN)(
        keys=[prefix(provider) + "chain"], args=[token, _now_ms(), _lease_ms(rt)]))


@dataclass(frozen=True)
class Next:
    """When a chain runs again (``delay_s`` None: it ends), what holds it ("cap": an
    in-flight cap) and the turn it holds on the line (ms of Redis time, 0: none)."""

    delay_s: float | None
    held: str = ""
    turn_ms: int = 0


def _reschedule(rt: Runtime, dispatch, provider: str, token: str, nxt: Next) -> None:
    delay_ms = (-1 if nxt.delay_s is None
                else int(min(nxt.delay_s, rt.settings.max_countdown_s) * 1000))
    woken_ms = int(rt.budget.submit_wait_s(provider) * 1000)
    result = int(script(rt, _RESCHEDULE)(
        keys=[prefix(provider) + "chain"],
        args=[token, _now_ms(), delay_ms, _lease_ms(rt), woken_ms, nxt.held, nxt.turn_ms]))
    if result >= 0:
        dispatch.admit(provider, token, result / 1000)


def admit(rt: Runtime, dispatch, provider: str, token: str) -> int:
    """One admission run for ``provider``; returns how many submits it sent.

    A run whose token no longer holds the chain does nothing: a newer run replaced it.
    """
    turn_ms = _begin(rt, provider, token)
    if turn_ms < 0:
        log.debug("admission %s: stale run %s ignored", provider, token)
        return 0
    admitted: list[tuple[str, float]] = []
    nxt = Next(rt.settings.max_countdown_s)  # failed: try again later
    try:
        nxt = _admit_batch(rt, provider, turn_ms, admitted)
    finally:
        if admitted:
            dispatch.submit_many(admitted)
        _reschedule(rt, dispatch, provider, token, nxt)
    return len(admitted)


def _admit_batch(rt: Runtime, provider: str, turn_ms: int,
                 admitted: list[tuple[str, float]]) -> Next:
    """Admit what the provider can take now into ``admitted`` (``(job id, countdown)``,
    sent by the caller); return when to run again. ``turn_ms``: the turn on the line this
    run comes back for (0: none); the first submit takes it.
    """
    from tasks import spend  # pause and spend-cap markers

    limit, held_s = spend.admission_limit(rt, provider)
    if held_s is not None:
        return Next(held_s)
    while len(admitted) < limit:
        decision = admit_one(rt, provider, held_ms=turn_ms)
        if decision.kind != "ok":
            return _next_run(rt, provider, decision, turn_ms)
        admitted.append((decision.job_id, decision.delay_ms / 1000))
        turn_ms = 0
    return Next(0)


def _next_run(rt: Runtime, provider: str, decision: Admitted, turn_ms: int) -> Next:
    """When the chain runs again after ``decision`` (not ok), holding ``turn_ms``."""
    early_s = BOOK_AHEAD_MS / 2000  # a little before the slot: the run books it itself
    if decision.kind == "turn":  # come back for the turn just held
        return Next(max(decision.delay_ms / 1000 - early_s, 0.001), turn_ms=decision.turn_ms)
    if decision.kind == "budget" and turn_ms:  # the held turn (or the budget) is not free yet
        return Next(max(decision.delay_ms / 1000 - early_s, 0.001), turn_ms=turn_ms)
    if decision.kind == "budget":  # no turn free within the countdown ceiling
        return Next(_until_slot_s(rt, provider))
    if decision.kind == "empty":  # the chain ends until the next wake-up
        return Next(None)
    if decision.kind == "ahead":  # ADMIT_AHEAD submits wait for a worker: look again
        return Next(AHEAD_RECHECK_S)
    return Next(rt.settings.max_countdown_s, "cap")  # at a cap: a job leaving flight wakes us


def _until_slot_s(rt: Runtime, provider: str) -> float:
    """When to run again for the next submit slot: a little before it, so the run books
    it (``BOOK_AHEAD_MS``) and sends the submit with a countdown that ends on it, rather
    than every run's own dispatch delay adding up in the submit rate."""
    wait_s = rt.budget.submit_wait_s(provider)
    return max(wait_s - BOOK_AHEAD_MS / 2000, 0.001)


def resume(rt: Runtime, provider: str, dispatch=None) -> bool:
    """Lift an out-of-credit pause, today's spend-cap holds and the operator's hold
    (``enhance resume``, after a top-up, a raised cap or ``enhance pause``) and wake
    admission; True if anything was held.

    A cap still reached holds again at the next reservation.
    """
    from tasks import spend

    lifted = spend.unpause(rt, provider)
    lifted = spend.lift_cap_holds(rt, provider) or lifted
    lifted = spend.release(rt, provider) or lifted
    wake(rt, provider, dispatch)
    return lifted


def requeue(rt: Runtime, record: JobRecord, dispatch=None) -> None:
    """Give an admitted job back to the front of the queue (it was not sent) and wake."""
    push(rt, record, front=True)
    wake(rt, record.provider, dispatch)


# --- reconcile -------------------------------------------------------------------------


def sweep(rt: Runtime, providers: Iterable[str], dispatch=None) -> int:
    """Re-drive admission whose chain lapsed, and requeue admitted jobs whose submit was lost.

    A submit message is lost with the worker that had reserved it (SIGKILL, OOM): the
    broker gives it back only after ``VISIBILITY_TIMEOUT_S``. ``_resend_lost`` finds such
    jobs within ``SUBMIT_LOST_AFTER_S``; ``_sweep_slots`` is the backstop for the rest.
    """
    requeued = 0
    for provider in providers:
        requeued += _resend_lost(rt, provider, dispatch)
        requeued += _sweep_slots(rt, provider, dispatch)
        if has_backlog(rt, provider):
            wake(rt, provider, dispatch, revive_only=True)
    return requeued


def _resend_lost(rt: Runtime, provider: str, dispatch) -> int:
    """Requeue admitted jobs unclaimed ``SUBMIT_LOST_AFTER_S`` whose message left the queue.

    The submit queue is FIFO: while a job's message still waits in it, so does every
    message sent after it, so a job with at least as many jobs sent after it (in ``sent``,
    a lower bound) as the queue holds is no longer waiting there. Its message was taken by
    a worker: one that died with it, or a live one about to run it. Requeueing it costs at
    most a submit that finds the job claimed and does nothing: the claim decides who pays.
    Each job is read about once here; claimed and ended ones leave ``sent``.
    """
    key = prefix(provider) + "sent"
    old_ms = _now_ms() - int(rt.settings.submit_lost_after_s * 1000)
    entries = rt.redis.zrangebyscore(key, "-inf", old_ms, 0, 500)
    if not entries:
        return 0
    total = rt.redis.zcard(key)  # entries[i] has at least total - i - 1 sent after it
    records = {r.id: r for r in rt.jobs.get_many([e.decode() for e in entries])}
    waiting, lost = None, []
    for index, raw in enumerate(entries):
        job_id = raw.decode()
        record = records.get(job_id)
        if record is None or record.state is not JobState.QUEUED or record.submit_started_at:
            rt.redis.zrem(key, job_id)  # claimed or ended: its submit ran
            continue
        if waiting is None:
            waiting = (dispatch or _default_dispatch()).waiting_submits()
        if total - index - 1 >= waiting:  # else it may still wait there: look next time
            lost.append(record)
    for record in reversed(lost):  # each to the front: the oldest ends up first
        log.warning("job %s: admitted but its submit was lost (unclaimed after %.0f s and "
                    "out of the queue: its worker died?), queued again", record.id,
                    rt.settings.submit_lost_after_s)
        rt.redis.zrem(key, record.id)
        requeue(rt, record, dispatch)
    return len(lost)


def _sweep_slots(rt: Runtime, provider: str, dispatch) -> int:
    """The backstop: slots older than ``VISIBILITY_TIMEOUT_S + STALE_AFTER_S``.

    A job still queued and unclaimed then lost its submit message (by then the broker
    would have redelivered any message a dead worker held); a slot of a job no longer in
    flight leaked.
    """
    s = rt.settings
    key = prefix(provider) + "slots"
    old_ms = _now_ms() - int((s.visibility_timeout_s + s.stale_after_s) * 1000)
    ids = [i.decode() for i in rt.redis.zrangebyscore(key, "-inf", old_ms, 0, 500)]
    records = {r.id: r for r in rt.jobs.get_many(ids)}
    requeued = 0
    for job_id in ids:
        record = records.get(job_id)
        if record is None or record.state not in SLOT_STATES:
            rt.redis.zrem(key, job_id)
            if record is not None:
                release(rt, record)
        elif record.state is JobState.QUEUED and record.submit_started_at is None:
            log.warning("job %s: admitted but its submit was lost, queued again", job_id)
            requeue(rt, record, dispatch)
            requeued += 1
        else:  # in flight (or claimed): look again one period later
            rt.redis.zadd(key, {job_id: _now_ms()}, xx=True)
    return requeued
