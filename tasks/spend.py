"""What admission may spend: daily spend caps, and the pause when a provider is out of credit.

Spend caps (``HITPAW_DAILY_COIN_LIMIT``, ``PICWISH_DAILY_CREDIT_LIMIT``, and per tenant
``*_TENANT_DAILY_*_LIMITS``) count per UTC day in a Redis hash per provider and day. Before
each paid call, ``reserve`` adds the job's expected cost in one Lua script that first
checks every cap, so any number of processes racing cannot spend past a cap on expected
prices. After the call ``settle`` trues the reservation up to what the provider reported
(and learns the price); a call that was not charged is refunded.

Over a cap, ``SPEND_CAP_POLICY=wait`` holds the provider (or that tenant) back until the
next UTC day; ``fail`` fails the job ``budget_exhausted``.

Out of credit (HitPaw insufficient coins, PicWish insufficient credits): ``pause`` holds
the provider's admission for every worker until ``enhance resume PROVIDER``, or until a
probe (one submit every ``OUT_OF_CREDIT_PROBE_S``) is accepted.

An operator's hold (``enhance pause PROVIDER``: a vendor's incident, a billing question, a
drain before maintenance) holds admission the same way, with no probe and nothing that
lifts it but ``enhance resume PROVIDER``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from providers import get_provider_class
from storage.jobs import KEY_PREFIX, JobRecord
from tasks.admission import script
from workers.runtime import Runtime

log = logging.getLogger("enhance.spend")

PRICE_KEY = KEY_PREFIX + "spend:price"  # provider:model -> the last price reported
DAY_TTL_S = 3 * 24 * 3600  # a day's ledger is kept this long
NO_LIMIT = -1

# KEYS[1]: the day's ledger, KEYS[2]: the prices learnt. ARGV: price field, the amount
# when none was learnt, provider limit, tenant field, tenant limit, ttl.
# Returns {'ok' or the cap that refused ('provider', 'tenant'), the amount reserved}.
_RESERVE = """
local amount = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or ARGV[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if tonumber(ARGV[3]) >= 0 and total + amount > tonumber(ARGV[3]) then
  return {'provider', tostring(amount)}
end
local spent = tonumber(redis.call('HGET', KEYS[1], ARGV[4]) or '0')
if tonumber(ARGV[5]) >= 0 and spent + amount > tonumber(ARGV[5]) then
  return {'tenant', tostring(amount)}
end
redis.call('HINCRBYFLOAT', KEYS[1], 'total', amount)
redis.call('HINCRBYFLOAT', KEYS[1], ARGV[4], amount)
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {'ok', tostring(amount)}
"""


def utc_day(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%d")


def seconds_to_next_day(now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    return max((midnight - now).total_seconds(), 0.001)


def _ledger(provider: str, day: str) -> str:
    return f"{KEY_PREFIX}spend:{provider}:{day}"


def _adm(provider: str) -> str:
    return f"{KEY_PREFIX}adm:{provider}:"


@dataclass(frozen=True)
class Reservation:
    """Money set aside for one paid call; ``refused`` names the cap that said no."""

    provider: str
    tenant: str
    day: str
    amount: float
    refused: str | None = None


def expected_cost(rt: Runtime, provider: str, model: str) -> float:
    """What a job is expected to cost: the last price seen, the documented one, a setting."""
    learnt = rt.redis.hget(PRICE_KEY, f"{provider}:{model}")
    return float(learnt) if learnt is not None else _documented_cost(rt, provider, model)


def _documented_cost(rt: Runtime, provider: str, model: str) -> float:
    """The model's documented price, else ``HITPAW_EXPECTED_COINS`` (0 for PicWish)."""
    info = get_provider_class(provider).models().get(model)
    if info is not None and info.cost:
        return float(info.cost)
    return rt.settings.hitpaw_expected_coins if provider == "hitpaw" else 0.0


def reserve(rt: Runtime, record: JobRecord) -> Reservation:
    """Set the job's expected cost (``expected_cost``) aside under every cap, atomically,
    or say which refused; one round trip."""
    s, provider = rt.settings, record.provider
    day = utc_day()
    limit = s.daily_limit(provider)
    tenant_limit = s.tenant_daily_limits(provider).get(record.tenant)
    answer, amount = (part.decode() for part in script(rt, _RESERVE)(
        keys=[_ledger(provider, day), PRICE_KEY],
        args=[f"{provider}:{record.model}", _documented_cost(rt, provider, record.model),
              NO_LIMIT if limit is None else limit, "t:" + record.tenant,
              NO_LIMIT if tenant_limit is None else tenant_limit, DAY_TTL_S]))
    return Reservation(provider, record.tenant, day, float(amount),
                       refused=None if answer == "ok" else answer)


def _add(rt: Runtime, res: Reservation, delta: float) -> None:
    if not delta:
        return
    key = _ledger(res.provider, res.day)
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.hincrbyfloat(key, "total", delta)
        pipe.hincrbyfloat(key, "t:" + res.tenant, delta)
        pipe.execute()


def settle(rt: Runtime, res: Reservation, model: str, cost: float | None) -> None:
    """True the reservation up to the cost the provider reported, and learn the price."""
    if cost is None or float(cost) == res.amount:
        return  # nothing reported, or as expected: the reservation stands as it is
    _add(rt, res, float(cost) - res.amount)
    rt.redis.hset(PRICE_KEY, f"{res.provider}:{model}", float(cost))


def refund(rt: Runtime, res: Reservation) -> None:
    """Give back a reservation whose call was not charged."""
    _add(rt, res, -res.amount)


def spent_today(rt: Runtime, provider: str) -> dict[str, float]:
    """Today's spend with ``provider``: ``total`` and ``t:<tenant>`` fields."""
    raw = rt.redis.hgetall(_ledger(provider, utc_day()))
    return {k.decode(): round(float(v), 3) for k, v in raw.items()}


def hold_for_cap(rt: Runtime, res: Reservation) -> None:
    """Keep admission off the refusing cap (provider or tenant) until the next UTC day."""
    wait_ms = int(seconds_to_next_day() * 1000)
    if res.refused == "tenant":
        until_ms = int(time.time() * 1000) + wait_ms
        rt.redis.zadd(_adm(res.provider) + "blocked", {res.tenant: until_ms})
    else:
        rt.redis.set(_adm(res.provider) + "capped", "1", px=wait_ms)
    log.warning("%s: daily spend cap reached (%s%s); admission waits for the next UTC day",
                res.provider, res.refused, f" {res.tenant}" if res.refused == "tenant" else "")


# --- out of credit -----------------------------------------------------------------------


def pause(rt: Runtime, provider: str, reason: str) -> bool:
    """Stop admission of ``provider`` for every worker; True (and a loud log) the first time."""
    key = _adm(provider) + "pause"
    now = time.time()
    if not rt.redis.hsetnx(key, "since", now):
        return False
    rt.redis.hset(key, mapping={"reason": reason[:200],
                                "probe_at": now + rt.settings.out_of_credit_probe_s})
    rt.stats.incr(f"out_of_credit:{provider}")
    log.error("%s: OUT OF CREDIT (%s): admission paused for every worker; queued jobs wait. "
              "Top up, then run `enhance resume %s` (a probe submit tries every %.0f s)",
              provider, reason, provider, rt.settings.out_of_credit_probe_s)
    return True


def hold(rt: Runtime, provider: str, reason: str) -> bool:
    """The operator's hold: admission of ``provider`` stops for every worker until
    ``resume``; jobs already submitted carry on. True when it was not held already."""
    held = rt.redis.hsetnx(_adm(provider) + "held", "since", time.time())
    rt.redis.hset(_adm(provider) + "held", "reason", reason[:200])
    if held:
        log.warning("%s: admission held by the operator (%s); queued jobs wait until "
                    "`enhance resume %s`", provider, reason, provider)
    return bool(held)


def held(rt: Runtime, provider: str) -> dict[str, str] | None:
    """The operator's hold of ``provider`` (since, reason), or None."""
    return _fields(rt.redis.hgetall(_adm(provider) + "held"))


def _fields(raw: dict[bytes, bytes]) -> dict[str, str] | None:
    """A hash read from Redis, decoded; None for a missing one."""
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def release(rt: Runtime, provider: str) -> bool:
    """Lift the operator's hold; True when there was one."""
    return bool(rt.redis.delete(_adm(provider) + "held"))


def unpause(rt: Runtime, provider: str) -> bool:
    """Lift the pause; True when there was one."""
    if rt.redis.delete(_adm(provider) + "pause"):
        log.warning("%s: admission resumed", provider)
        return True
    return False


def lift_cap_holds(rt: Runtime, provider: str) -> bool:
    """Forget that a spend cap was reached today (the operator raised it); True if one was."""
    return bool(rt.redis.delete(_adm(provider) + "capped", _adm(provider) + "blocked"))


def paused(rt: Runtime, provider: str) -> dict[str, str] | None:
    """The pause of ``provider`` (since, reason, probe_at), or None."""
    return _fields(rt.redis.hgetall(_adm(provider) + "pause"))


def admission_limit(rt: Runtime, provider: str) -> tuple[int, float | None]:
    """How many submits admission may send now, or (0, seconds to look again).

    The operator's hold, the pause and a reached cap are read in one round trip: admission
    asks before every run.
    """
    with rt.redis.pipeline(transaction=False) as pipe:
        pipe.exists(_adm(provider) + "held")
        pipe.hgetall(_adm(provider) + "pause")
        pipe.pttl(_adm(provider) + "capped")
        is_held, raw_pause, capped_ms = pipe.execute()
    if is_held:  # ``resume`` wakes admission when lifted
        return 0, rt.settings.max_countdown_s
    pause_ = _fields(raw_pause)
    if pause_ is not None:
        now, probe_at = time.time(), float(pause_.get("probe_at", 0))
        if now < probe_at:
            return 0, probe_at - now
        rt.redis.hset(_adm(provider) + "pause", "probe_at",
                      now + rt.settings.out_of_credit_probe_s)
        log.warning("%s: out of credit since %s; probing with one submit", provider,
                    pause_.get("since"))
        return 1, None
    if capped_ms > 0:
        return 0, capped_ms / 1000
    return rt.settings.admission_batch_max, None
