"""The job store: one pydantic record per job in Redis, changed only by compare-and-set.

Keys (all under ``KEY_PREFIX``):

- ``job:<id>``: the record as JSON.
- ``idem:<provider>:<key>``: the job id an idempotency key maps to.
- ``due``: sorted set of non-final job ids, scored by when their next step is overdue;
  the reconcile task reads it to re-drive anything a lost message left behind.
- ``counts``: hash of state -> number of jobs in that state now.
- ``events:<id>``: a pub/sub channel that announces each change of a job's record, so a
  person waiting on a job (``enhance submit --wait``) blocks on it instead of polling.
- ``notify``: sorted set of final job ids whose webhook or ``on_done`` callback is still
  owed (``storage.notifications``), scored by when their next notify run was to start;
  written atomically with the final transition, so no crash can lose one.
- ``idx:*``: sorted sets of job ids by creation time, per state, provider, tenant and
  label, that ``list_jobs`` pages through (``storage.jobindex``).

Every change goes through ``JobStore.update(job_id, guard, change)``: the guard decides on
the record as it was read, and one Lua script makes the write (the record, and the due
set, counts, indexes and announcement with it) only if the stored record is still, byte
for byte, the one the guard saw; otherwise it answers with the record as it is now and the
guard decides again. Two deliveries of the same task can therefore never both act. The
store remembers the last version of each job this process read or wrote, so a step that
has just read a job changes it in one round trip (a version another process changed
meanwhile costs one more, like any lost compare-and-set).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis
from pydantic import BaseModel, Field

from providers.base import ImageInfo
from providers.errors import EnhanceError, InvalidInput, NotFound
from storage import jobindex
from storage.durability import Durability, NotDurable
from storage.notifications import Notification

KEY_PREFIX = "eq:"  # every key this store writes starts with it
FINAL_RECORD_TTL_S = 30 * 24 * 3600  # a finished job's record is kept this long
_CAS_ATTEMPTS = 20  # re-reads after a concurrent write before giving up
_SEEN_MAX = 4096  # versions of jobs remembered per store (a miss only costs a read)

# Compare-and-set. KEYS[1]: the record; KEYS[2..]: the key of each command that follows.
# ARGV[1]: the record expected now; then per command: its name, how many arguments, them.
# Answers {1}: written; {0, record}: the record is not the one expected, here it is;
# {-1}: there is no record.
_CAS = """
local now = redis.call('GET', KEYS[1])
if not now then return {-1} end
if now ~= ARGV[1] then return {0, now} end
local i, k = 2, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  redis.call(ARGV[i], KEYS[k], unpack(ARGV, i + 2, i + 1 + n))
  i, k = i + 2 + n, k + 1
end
return {1}
"""


class JobState(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    STORING = "storing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by the producer (``tasks.cancel``); any cost stays recorded

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


DEFAULT_TENANT = "default"


class Priority(StrEnum):
    """Admission lanes: interactive goes first, batch keeps a guaranteed share."""

    INTERACTIVE = "interactive"
    BATCH = "batch"


class JobSource(BaseModel):
    """Where the input image is: an http(s) URL or an ``s3://`` object."""

    uri: str
    filename: str | None = None
    content_type: str | None = None
    image: ImageInfo | None = None  # known when the producer had the bytes at hand
    sha256: str | None = None  # of the bytes, when the producer had them: idempotency, reuse


class JobOutput(BaseModel):
    """Where the stored result is."""

    uri: str
    bucket: str
    key: str
    size_bytes: int
    content_type: str
    width: int | None = None
    height: int | None = None


class JobError(BaseModel):
    code: str
    message: str
    vendor_code: int | str | None = None

    @classmethod
    def from_exception(cls, exc: EnhanceError) -> JobError:
        return cls(code=exc.code, message=exc.message, vendor_code=exc.vendor_code)


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobRecord(BaseModel):
    """Everything known about one job. ``transitions`` holds when each state was entered."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    provider: str
    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    source: JobSource
    idempotency_key: str | None = None
    request_digest: str | None = None  # what the idempotency key promised (set by create)
    tenant: str = DEFAULT_TENANT  # whose job: admission serves tenants in turn; reuse
    # never crosses tenants unless told
    priority: Priority = Priority.INTERACTIVE  # admission lane
    labels: dict[str, str] = Field(default_factory=dict)  # the producer's (``check_labels``)
    state: JobState = JobState.QUEUED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    transitions: dict[str, datetime] = Field(default_factory=dict)
    next_check_at: datetime | None = None  # when the next step is overdue
    deadline_at: datetime | None = None  # queued: admitted by then; later: provider done by then
    submit_started_at: datetime | None = None  # set before the paid call is made
    provider_job_id: str | None = None
    poll_count: int = 0
    first_look_late_s: float = 0.0  # how long after it was due the first poll ran
    poll_token: str | None = None  # the one scheduled poll allowed to act next
    progress: int | None = None
    cost: float | None = None
    result_url: str | None = Field(default=None, repr=False)
    result_inline: bool = False  # PicWish return_type=2: the bytes come with the status
    result_expires_at: datetime | None = None
    result_width: int | None = None
    result_height: int | None = None
    result_size_bytes: int | None = None
    store_attempts: int = 0  # store claims taken over from a worker lost mid-store
    lease_token: str | None = None  # the step (store) running now holds this lease...
    lease_expires_at: datetime | None = None  # ...until then, unless it renews it
    poll_protocol_errors: int = 0  # garbled poll answers in a row
    output: JobOutput | None = None
    error: JobError | None = None
    fingerprint: str | None = None  # input + provider + model + output options; None: no reuse
    follows: str | None = None  # the in-flight job whose result this one waits for
    leaders_failed: int = 0  # how many jobs this one followed that then failed
    reused_from: str | None = None  # the job whose result was copied instead of paying
    notify: Notification | None = None  # webhook / on_done callback (tasks.notify); None: none

    @property
    def output_uri(self) -> str | None:
        return self.output.uri if self.output else None

    def request_fingerprint(self) -> str:
        """SHA-256 of what was asked for: source (its bytes' hash, else its URI), model,
        options and tenant. Two requests under one idempotency key must agree on it."""
        request = {"source": self.source.sha256 or self.source.uri, "model": self.model,
                   "options": self.options, "tenant": getattr(self, "tenant", None)}
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def duration_s(self) -> float:
        """Seconds from creation to the last update; for a final job, to when it ended
        (its notification's bookkeeping later does not count)."""
        ended = self.transitions.get(self.state.value) if self.state.final else None
        return ((ended or self.updated_at) - self.created_at).total_seconds()


Guard = Callable[[JobRecord], bool]
Change = Callable[[JobRecord], dict[str, Any]]


class UnknownJob(NotFound):
    """No job with this id is in the job store."""

    code = "unknown_job"


class ConcurrentWriters(RuntimeError):
    """A compare-and-set kept losing to other writers; trying again later is fine."""


class IdempotencyConflict(InvalidInput):
    """An idempotency key was used again with a different request (source, model, options)."""

    code = "idempotency_conflict"
    status_code = 409


def _due_early(record: JobRecord) -> bool:
    """Whether ``create_many``'s ``handoff_s`` makes ``record`` due early: it has an
    idempotency key (a retry gets it back, so a stranded one must run) and a due time."""
    return bool(record.idempotency_key and record.next_check_at)


class JobStore:
    """Job records in Redis. Safe to share between threads; one per process is enough."""

    def __init__(self, client: redis.Redis, prefix: str = KEY_PREFIX,
                 durability: Durability | None = None) -> None:
        self._redis = client
        self._prefix = prefix
        self._durability = durability
        self._cas = client.register_script(_CAS)
        self._seen: dict[str, bytes] = {}  # job id -> the last version read or written here

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def create(self, record: JobRecord, durable: bool = False) -> tuple[JobRecord, bool]:
        """Store a new record; with an idempotency key already used, return that job.

        Args:
            record: the new job.
            durable: confirm the new record durable (``storage.durability``) before
                returning: an id handed out must survive a failover. When it cannot be
                confirmed the record is taken back and ``NotDurable`` raised.

        Returns:
            The stored record and whether it was created now (False: an existing job).

        Raises:
            IdempotencyConflict: the key was first used for a different request.
            NotDurable: ``durable`` and the write could not be confirmed.
        """
        return self.create_many([record], durable=durable)[0]

    def create_many(self, records: list[JobRecord], durable: bool = False,
                    handoff_s: float | None = None) -> list[tuple[JobRecord, bool]]:
        """``create`` for a batch, in one ``MULTI`` (plus a ``WATCH``/``MGET`` when some
        carry an idempotency key); returns ``(stored record, created now)`` per record.

        With ``durable``, one confirmation covers the batch; when it fails every record
        the batch created is taken back and ``NotDurable`` raised.

        With ``handoff_s``, new records with an idempotency key are due that soon instead
        of at their own ``next_check_at`` until ``handed_off`` puts them back: such a job
        recorded but never handed on (the producer or Redis failed in between) is then
        found overdue and re-driven, since a retry with its key gets it back, not a new
        job. One without a key is left for its deadline: its caller saw the error, and a
        retry records a second job that must be the only one paid for.

        Raises:
            IdempotencyConflict: a key was first used for a different request; nothing of
                the batch is stored.
            NotDurable: ``durable`` and the writes could not be confirmed.
        """
        for record in records:
            record.request_digest = record.request_fingerprint()
            record.transitions.setdefault(record.state.value, record.created_at)
        idem = {r.id: self._key("idem", r.provider, r.idempotency_key)
                for r in records if r.idempotency_key}
        durability = self._durability if durable else None
        client = durability.client if durability else self._redis
        with client.pipeline() as pipe:
            while True:
                try:
                    results = self._create_batch(pipe, records, idem, handoff_s)
                    break
                except redis.WatchError:
                    continue
        created = [record for record, new in results if new]
        if durability is not None and created:
            try:
                durability.confirm()
            except NotDurable:
                self._take_back(created, idem)
                raise
        return results

    def _take_back(self, records: list[JobRecord], idem: dict[str, str]) -> None:
        """Remove new records whose write was not confirmed durable: their ids were never
        handed out, and a retry with the same idempotency key starts anew."""
        with self._redis.pipeline() as pipe:
            for record in records:
                pipe.delete(self._key("job", record.id))
                pipe.zrem(self._key("due"), record.id)
                for index in [*jobindex.entry_keys(record), f"idx:state:{record.state.value}"]:
                    pipe.zrem(self._prefix + index, record.id)
                for field in (record.state.value, f"{record.provider}:{record.state.value}"):
                    pipe.hincrby(self._key("counts"), field, -1)
            pipe.execute()
        for record in records:
            key = idem.get(record.id)
            if key and self._redis.get(key) == record.id.encode():
                self._redis.delete(key)

    def _create_batch(self, pipe: Any, records: list[JobRecord], idem: dict[str, str],
                      handoff_s: float | None = None) -> list[tuple[JobRecord, bool]]:
        first: dict[str, str] = {}  # idempotency key -> the job it names
        if idem:
            keys = sorted(set(idem.values()))
            pipe.watch(*keys)
            first = {k: v.decode() for k, v in zip(keys, pipe.mget(keys), strict=True) if v}
        results: list[tuple[JobRecord, bool]] = []
        new: list[JobRecord] = []
        for record in records:
            key = idem.get(record.id)
            if key in first:
                earlier = next((r for r in new if r.id == first[key]), None)
                if earlier is not None and earlier.request_digest != record.request_digest:
                    raise IdempotencyConflict(f"idempotency key {record.idempotency_key!r} is "
                                              "used twice in the batch for different requests",
                                              record.provider)
                results.append((earlier or self._same_request(first[key], record), False))
                continue
            if key:
                first[key] = record.id
            new.append(record)
            results.append((record, True))
        pipe.multi()
        handoff_at = None if handoff_s is None else utcnow().timestamp() + handoff_s
        for record in new:
            if record.id in idem:
                pipe.set(idem[record.id], record.id, ex=FINAL_RECORD_TTL_S)
            self._write(pipe, record, previous=None)
            if handoff_at is not None and _due_early(record):
                pipe.zadd(self._key("due"),
                          {record.id: min(handoff_at, record.next_check_at.timestamp())})
        pipe.execute()
        return results

    def handed_off(self, pipe: Any, records: list[JobRecord]) -> None:
        """Into ``pipe``: each record ``create_many``'s ``handoff_s`` made due early is due
        at its own ``next_check_at`` again, now that it was handed on; a job gone meanwhile
        stays gone."""
        for record in records:
            if _due_early(record):
                pipe.zadd(self._key("due"), {record.id: record.next_check_at.timestamp()},
                          xx=True)

    def _same_request(self, job_id: str, record: JobRecord) -> JobRecord:
        first = self.get(job_id)
        if first.request_digest and first.request_digest != record.request_digest:
            raise IdempotencyConflict(
                f"idempotency key {record.idempotency_key!r} was already used for job "
                f"{job_id} with a different request (source, model or options); use a new "
                "key for a new request", record.provider)
        return first

    def job_for_key(self, provider: str, idempotency_key: str) -> str | None:
        """The id of the job an idempotency key was first used for, if any."""
        job_id = self._redis.get(self._key("idem", provider, idempotency_key))
        return job_id.decode() if job_id else None

    def get(self, job_id: str) -> JobRecord:
        """The record of ``job_id``; raises ``UnknownJob`` when there is none."""
        return self._loaded(job_id, self._redis.get(self.record_key(job_id)))

    def get_and_hold(self, job_id: str, hold_s: float) -> JobRecord:
        """``get``, and in the same round trip push the job's due time to ``hold_s`` from
        now (never earlier than it was, and only while it is due at all).

        A step that has started holds its job this way for its own longest run, so a
        step scheduled for later can be taken for lost soon after it was due (its worker
        died holding the message) without re-driving one that is still running. The hold
        lives in the due set only; the step's next write replaces it.
        """
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(self.record_key(job_id))
            pipe.zadd(self._key("due"), {job_id: utcnow().timestamp() + hold_s}, xx=True,
                      gt=True)
            raw, _ = pipe.execute()
        return self._loaded(job_id, raw)

    def _loaded(self, job_id: str, raw: bytes | None) -> JobRecord:
        """The record read as ``raw``, remembered for a one-round-trip update."""
        if raw is not None:
            self._remember(job_id, raw)
        return parse_record(job_id, raw)

    def _remember(self, job_id: str, raw: bytes) -> None:
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()  # cheap and safe: a forgotten version only costs a read
        self._seen[job_id] = raw

    def record_key(self, job_id: str) -> str:
        """The key of a job's record (readers with their own client: ``redis.asyncio``)."""
        return self._key("job", job_id)

    def events_channel(self, job_id: str) -> str:
        """The pub/sub channel announcing each change of the job's record."""
        return self._key("events", job_id)

    def update(self, job_id: str, guard: Guard, change: Change,
               durable: bool = False) -> JobRecord | None:
        """Apply ``change`` if ``guard`` holds on the current record, atomically.

        Args:
            job_id: the job to change.
            guard: decides, on the record as it is now, whether the change may happen.
            change: returns the fields to set (``state`` among them for a transition).
            durable: confirm the write durable (``storage.durability``) before returning;
                raises ``NotDurable`` when it cannot be, the write done but unconfirmed.

        Returns:
            The new record, or None when the guard refused (someone else acted first).
        """
        durability = self._durability if durable else None
        updated = self._update(durability.client if durability else self._redis,
                               job_id, guard, change)
        if updated is not None and durability is not None:
            durability.confirm()
        return updated

    def _update(self, client: redis.Redis, job_id: str, guard: Guard,
                change: Change) -> JobRecord | None:
        raw = self._seen.get(job_id)
        verified = raw is None  # a remembered version may be stale: only a read is current
        if raw is None:
            raw = self._read(client, job_id)
        for _ in range(_CAS_ATTEMPTS):
            current = JobRecord.model_validate_json(raw)
            if not guard(current):
                fresh = raw if verified else self._read(client, job_id)
                if fresh == raw:  # refused on the record as stored
                    self._remember(job_id, raw)
                    return None
                raw, verified = fresh, True
                continue
            updated = self._apply(current, change(current))
            answer = self._compare_and_set(client, raw, updated, current)
            if answer is None:
                return updated
            raw, verified = answer, True  # lost to another writer: decide again
        raise ConcurrentWriters(f"job {job_id}: too many concurrent writers")

    def _read(self, client: redis.Redis, job_id: str) -> bytes:
        raw = client.get(self._key("job", job_id))
        if raw is None:
            self._seen.pop(job_id, None)
            raise UnknownJob(f"no job {job_id!r} in the job store")
        return raw

    def _compare_and_set(self, client: redis.Redis, expected: bytes, updated: JobRecord,
                         current: JobRecord) -> bytes | None:
        """Write ``updated`` if the record stored is ``expected``; None when written, else
        the record stored now."""
        commands = _Commands()
        new = self._write(commands, updated, previous=current).encode()
        answer = self._cas(keys=[self._key("job", updated.id), *commands.keys],
                           args=[expected, *commands.args], client=client)
        if answer[0] == -1:
            self._seen.pop(updated.id, None)
            raise UnknownJob(f"no job {updated.id!r} in the job store")
        if answer[0] == 1 or answer[1] == new:  # or a retry, after a lost reply, found it done
            self._remember(updated.id, new)
            return None
        return answer[1]

    @staticmethod
    def _apply(current: JobRecord, fields: dict[str, Any]) -> JobRecord:
        """The record with ``fields`` set. ``current`` was parsed for this change alone,
        so the copy may share what neither changes (a deep copy cost more than the parse)."""
        now = utcnow()
        updated = current.model_copy(update={**fields, "updated_at": now})
        if updated.state != current.state:
            updated.transitions = {**current.transitions, updated.state.value: now}
        return updated

    def _write(self, pipe: Any, record: JobRecord, previous: JobRecord | None) -> str:
        """Everything one write of ``record`` changes, into ``pipe`` (a pipeline in
        ``MULTI``, or the ``_Commands`` of a compare-and-set); returns the record's JSON."""
        key = self._key("job", record.id)
        raw = record.model_dump_json()
        pipe.set(key, raw)
        pipe.publish(self.events_channel(record.id), record.state.value)
        if record.state.final:
            pipe.expire(key, FINAL_RECORD_TTL_S)
            pipe.zrem(self._key("due"), record.id)
            if record.notify is not None:  # nothing more per transition for other jobs
                self._owe_notification(pipe, record)
        elif record.next_check_at is not None:
            pipe.zadd(self._key("due"), {record.id: record.next_check_at.timestamp()})
        if previous is None or previous.state != record.state:
            if previous is None:
                jobindex.add(pipe, self._prefix, record)
            jobindex.move_state(pipe, self._prefix, record, previous and previous.state.value)
            counts = self._key("counts")
            for field in (record.state.value, f"{record.provider}:{record.state.value}"):
                pipe.hincrby(counts, field, 1)
            if previous is not None:
                for field in (previous.state.value, f"{previous.provider}:{previous.state.value}"):
                    pipe.hincrby(counts, field, -1)
        return raw

    def _owe_notification(self, pipe: Any, record: JobRecord) -> None:
        notify = record.notify
        if notify.pending(record.state.value):
            expected_at = notify.expected_at or record.updated_at
            pipe.zadd(self._key("notify"), {record.id: expected_at.timestamp()})
        else:
            pipe.zrem(self._key("notify"), record.id)

    def notifications_overdue(self, before: datetime, limit: int = 500) -> list[str]:
        """Ids of final jobs whose notify run was to start before ``before`` and is owed still."""
        ids = self._redis.zrangebyscore(self._key("notify"), "-inf", before.timestamp(), 0, limit)
        return [job_id.decode() for job_id in ids]

    def notifications_owed(self) -> int:
        """How many ended jobs still owe a webhook or ``on_done`` callback."""
        return self._redis.zcard(self._key("notify"))

    def forget_notification(self, job_id: str) -> None:
        """Take ``job_id`` off the notify set (its record is gone or cannot be read)."""
        self._redis.zrem(self._key("notify"), job_id)

    def watch(self, job_ids: Iterable[str], timeout_s: float) -> Iterator[list[JobRecord]]:
        """Yield the jobs' records now, then again after each change, until ``timeout_s``.

        Blocks on the jobs' change announcements between yields; the caller stops
        iterating when it has seen enough.
        """
        job_ids = list(job_ids)
        deadline = time.monotonic() + timeout_s
        channels = {self.events_channel(job_id) for job_id in job_ids}
        with self._redis.pubsub() as pubsub:
            pubsub.subscribe(*channels)
            # Read only once the server has confirmed every subscription: SUBSCRIBE is sent
            # without waiting, and a change made between our read and the subscription
            # taking hold would never be announced to us.
            confirmed = 0
            while confirmed < len(channels) and (left_s := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=left_s)
                confirmed += message is not None and message["type"] == "subscribe"
            yield self.get_many(job_ids)
            while (left_s := deadline - time.monotonic()) > 0:
                message = pubsub.get_message(timeout=left_s)
                if message is not None and message["type"] == "message":
                    yield self.get_many(job_ids)

    def overdue(self, now: datetime, limit: int = 500) -> list[str]:
        """Ids of non-final jobs whose next step should have happened before ``now``."""
        ids = self._redis.zrangebyscore(self._key("due"), "-inf", now.timestamp(), 0, limit)
        return [job_id.decode() for job_id in ids]

    def forget_due(self, job_id: str) -> None:
        """Take ``job_id`` off the due set (an entry reconcile cannot act on)."""
        self._redis.zrem(self._key("due"), job_id)

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state now, overall and as ``provider:state``."""
        raw = self._redis.hgetall(self._key("counts"))
        counts = {state.value: 0 for state in JobState}
        counts.update({k.decode(): int(v) for k, v in raw.items()})
        return counts

    def in_flight(self, provider: str) -> int:
        """Jobs the provider is working on now (submitted or processing)."""
        fields = [f"{provider}:{s.value}" for s in (JobState.SUBMITTED, JobState.PROCESSING)]
        return sum(int(v or 0) for v in self._redis.hmget(self._key("counts"), fields))

    def list_page(self, flt: jobindex.JobFilter, cursor: str | None = None,
                  limit: int = 50) -> tuple[list[JobRecord], str | None]:
        """One page of jobs matching ``flt``, newest first, and the next page's cursor.

        Raises:
            InvalidInput: ``limit`` out of range, or a cursor this store did not hand out.
        """
        page, raws = jobindex.run(jobindex.page(self._prefix, flt, cursor, limit), self._redis)
        return [JobRecord.model_validate_json(raw) for raw in raws], page.cursor

    @property
    def prefix(self) -> str:
        return self._prefix

    def get_many(self, job_ids: Iterable[str]) -> list[JobRecord]:
        """The records of the ids that exist, in order."""
        job_ids = list(job_ids)
        raws = self._redis.mget([self._key("job", job_id) for job_id in job_ids])
        for job_id, raw in zip(job_ids, raws, strict=True):
            if raw is not None:
                self._remember(job_id, raw)
        return [JobRecord.model_validate_json(raw) for raw in raws if raw]


class _Commands:
    """The commands of one write, kept for the compare-and-set script to run: the part of
    a redis-py pipeline that ``JobStore._write`` and ``storage.jobindex`` use."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []

    def _add(self, command: str, key: str, *args: Any) -> None:
        self.keys.append(key)
        self.args += [command, len(args), *args]

    def set(self, key: str, value: str) -> None:
        self._add("SET", key, value)

    def publish(self, channel: str, message: str) -> None:
        self._add("PUBLISH", channel, message)

    def expire(self, key: str, seconds: int) -> None:
        self._add("EXPIRE", key, seconds)

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        self._add("ZADD", key, *(x for member, score in mapping.items() for x in (score, member)))

    def zrem(self, key: str, *members: str) -> None:
        self._add("ZREM", key, *members)

    def zremrangebyscore(self, key: str, low: float | str, high: float | str) -> None:
        self._add("ZREMRANGEBYSCORE", key, low, high)

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self._add("HINCRBY", key, field, amount)


def parse_record(job_id: str, raw: bytes | str | None) -> JobRecord:
    """A record read from Redis; ``UnknownJob`` when there was none."""
    if raw is None:
        raise UnknownJob(f"no job {job_id!r} in the job store")
    return JobRecord.model_validate_json(raw)


def in_states(*states: JobState) -> Guard:
    """A guard: the job is in one of ``states``."""
    return lambda record: record.state in states


def seconds_from_now(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
