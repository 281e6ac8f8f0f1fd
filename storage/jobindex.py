"""Listing jobs: sorted-set indexes by creation time, and one page of a filtered list.

Keys (under the job store's prefix), each a sorted set of job ids scored by the job's
``created_at`` (seconds since the epoch):

- ``idx:all``: every job;
- ``idx:state:<state>``: the jobs in that state now (moved in the same ``MULTI`` as the
  record at every transition);
- ``idx:provider:<name>``, ``idx:tenant:<name>``, ``idx:label:<key>=<value>``: written
  once, when the job is created.

A page (``page``) is one Lua script: it takes the smallest of the indexes the filters
name, walks it newest first from the cursor, keeps the ids that are in every other
filter's index (one ``ZSCORE`` each) and created at or after ``since``, and stops at
``limit`` ids or after ``scan_budget`` candidates; then one ``MGET`` reads the records.
Cost per page: O(log N + scanned x filters) in Redis, never a ``KEYS``/``SCAN``. A
selective filter (a label, a tenant) is cheap; a combination of two broad filters whose
intersection is small may scan its budget and return a short page with a cursor to go on.

Records of final jobs expire (``FINAL_RECORD_TTL_S``) while their index entries stay: a
page drops the ids whose record is gone from the indexes it read, and every write into an
index first trims the entries created more than ``RETENTION_S`` ago (a job's record is
gone by then: at most 30 days queued, then 30 days kept once final), one
``ZREMRANGEBYSCORE`` each, so no index outgrows what can still be listed.

The query is written once, as a generator of Redis calls (``page``), and driven by the
synchronous client (``run``) or by ``redis.asyncio`` (``arun``).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from providers.errors import InvalidInput

ALL = "idx:all"
RETENTION_S = 61 * 24 * 3600  # index entries older than this name records long expired
MAX_LIMIT = 1000  # jobs in one page
SCAN_BUDGET = 5000  # candidates one page may look at before it returns a cursor

# KEYS: the filters' indexes. ARGV: max score ("+inf" or a number), the cursor's job id
# ("" for none), min score ("-inf" or a number), limit, scan budget.
# Returns {ids..., "", next max score, next cursor id}: no cursor id when the walk ended.
_PAGE = """
local drive, size = nil, nil
for _, key in ipairs(KEYS) do
  local n = redis.call('ZCARD', key)
  if drive == nil or n < size then drive, size = key, n end
end
local max, cid, min = ARGV[1], ARGV[2], ARGV[3]
local limit, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local cmax = tonumber(max)
local out, scanned, offset = {}, 0, 0
local last_score, last_id = '', ''
while #out < limit and scanned < budget do
  local batch = redis.call('ZREVRANGEBYSCORE', drive, max, min, 'WITHSCORES', 'LIMIT', offset, 200)
  if #batch == 0 then
    table.insert(out, '') table.insert(out, '') table.insert(out, '')
    return out
  end
  offset = offset + #batch / 2
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    if not (cid ~= '' and tonumber(score) == cmax and id >= cid) then
      scanned = scanned + 1
      local keep = true
      for _, key in ipairs(KEYS) do
        if key ~= drive and not redis.call('ZSCORE', key, id) then keep = false break end
      end
      if keep then table.insert(out, id) end
      last_score, last_id = score, id
      if #out >= limit or scanned >= budget then break end
    end
  end
end
table.insert(out, '') table.insert(out, last_score) table.insert(out, last_id)
return out
"""

Call = Callable[[Any], Any]  # one Redis call on a client, sync or asyncio


@dataclass(frozen=True)
class JobFilter:
    """What ``list_jobs`` keeps: every given field must match."""

    state: str | None = None
    provider: str | None = None
    tenant: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    since: datetime | None = None

    def index_keys(self, prefix: str) -> list[str]:
        """The indexes to intersect (``idx:all`` alone when nothing is filtered)."""
        keys = [prefix + f"idx:{kind}:{value}" for kind, value in
                (("state", self.state), ("provider", self.provider), ("tenant", self.tenant))
                if value is not None]
        keys += [prefix + label_index(k, v) for k, v in sorted(self.labels.items())]
        return keys or [prefix + ALL]


@dataclass(frozen=True)
class Page:
    """One page of jobs, newest first, and the cursor of the next (None: no more)."""

    job_ids: list[str]
    cursor: str | None


def label_index(key: str, value: str) -> str:
    return f"idx:label:{key}={value}"


def entry_keys(record: Any) -> list[str]:
    """The indexes a new job is entered in (its state's is moved by ``move_state``)."""
    keys = [ALL, f"idx:provider:{record.provider}", f"idx:tenant:{record.tenant}"]
    return keys + [label_index(k, v) for k, v in sorted(record.labels.items())]


def add(pipe: Any, prefix: str, record: Any) -> None:
    """Enter a new job in its indexes (inside the pipeline that writes its record)."""
    for key in entry_keys(record):
        _insert(pipe, prefix + key, record)


def move_state(pipe: Any, prefix: str, record: Any, previous_state: str | None) -> None:
    """Move a job to its new state's index (inside the pipeline that writes its record)."""
    if previous_state is not None:
        pipe.zrem(prefix + f"idx:state:{previous_state}", record.id)
    _insert(pipe, prefix + f"idx:state:{record.state.value}", record)


def _insert(pipe: Any, key: str, record: Any) -> None:
    score = record.created_at.timestamp()
    pipe.zremrangebyscore(key, "-inf", f"({score - RETENTION_S!r}")
    pipe.zadd(key, {record.id: score})


def encode_cursor(score: str, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score}|{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(max score, job id) of a cursor; ``InvalidInput`` for anything ``page`` did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, job_id = text.split("|", 1)
        finite = math.isfinite(float(score))  # Redis refuses nan; inf would restart the walk
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(f"cursor {cursor[:80]!r} is not one list_jobs returned") from None
    if not finite or not job_id.isalnum():
        raise InvalidInput(f"cursor {cursor[:80]!r} is not one list_jobs returned")
    return score, job_id


def page(prefix: str, flt: JobFilter, cursor: str | None, limit: int,
         scan_budget: int = SCAN_BUDGET) -> Generator[Call, Any, tuple[Page, list[bytes | None]]]:
    """The query: yields Redis calls, returns the page and its records' raw JSON.

    Ids whose record expired are dropped from the page and from the indexes read.
    """
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be 1-{MAX_LIMIT}, not {limit!r}")
    max_score, cursor_id = decode_cursor(cursor) if cursor else ("+inf", "")
    min_score = repr(flt.since.timestamp()) if flt.since else "-inf"
    keys = flt.index_keys(prefix)
    answer = yield lambda c: c.eval(_PAGE, len(keys), *keys, max_score, cursor_id, min_score,
                                    limit, scan_budget)
    answer = [a.decode() if isinstance(a, bytes) else a for a in answer]
    ids, last_score, last_id = answer[:-3], answer[-2], answer[-1]
    raws = (yield lambda c: c.mget([f"{prefix}job:{i}" for i in ids])) if ids else []
    gone = [job_id for job_id, raw in zip(ids, raws, strict=True) if raw is None]
    if gone:
        yield lambda c: c.eval(_FORGET, len(keys) + 1, *keys, prefix + ALL, *gone)
    next_cursor = encode_cursor(last_score, last_id) if last_id else None
    kept = [(i, r) for i, r in zip(ids, raws, strict=True) if r is not None]
    return Page([i for i, _ in kept], next_cursor), [r for _, r in kept]


# KEYS: indexes. ARGV: job ids whose record is gone.
_FORGET = """
for _, key in ipairs(KEYS) do redis.call('ZREM', key, unpack(ARGV)) end
return 1
"""


def run(query: Generator[Call, Any, Any], client: Any) -> Any:
    """Drive ``query`` with a synchronous Redis client."""
    result = None
    try:
        while True:
            result = query.send(result)(client)
    except StopIteration as stop:
        return stop.value


async def arun(query: Generator[Call, Any, Any], client: Any) -> Any:
    """Drive ``query`` with a ``redis.asyncio`` client."""
    result = None
    try:
        while True:
            result = await query.send(result)(client)
    except StopIteration as stop:
        return stop.value
