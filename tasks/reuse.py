"""Never paying twice for the same image: fingerprints, reuse of successes, single flight.

A job's fingerprint is the SHA-256 of a canonical JSON of what decides its output: the
input (the SHA-256 of its bytes when the producer had them; an ``s3://`` object's ETag and
size; a URL itself only with ``reuse="url"``), the provider, the model, and the options
that change the image (``Provider.output_options``). Jobs with one fingerprint in one
scope (their tenant, or everyone with ``REUSE_SCOPE=global``) share one paid call:

- **Reuse of a success.** A new job whose fingerprint matches a job that succeeded, and
  whose object still exists, succeeds at once: it gets its own server-side copy of that
  object, cost 0 and ``reused_from``; the provider is never called.
- **Single flight.** While one job with the fingerprint (the leader) is in flight, a new
  one follows it instead of being admitted. When the leader succeeds, every follower gets
  its own copy the same way (task ``enhance.reuse``, one per follower).
- **When the leader fails** with ``invalid_input``, the input itself is at fault: every
  follower fails with the same error, at no cost. With any other error (the provider
  failed the job, the deadline passed, the outcome is unknown, storage failed...) the
  first follower is promoted to leader and admitted; the others follow it. A flight
  outlives at most ``REUSE_FOLLOWER_RETRIES`` failed leaders; after that its followers
  fail with the last leader's error, so an image the provider keeps failing is not paid
  for again and again. A job enqueued later starts a new flight.

Keys (under ``KEY_PREFIX``; ``<scope>`` is ``tenant:<name>`` or ``global``):

- ``reuse:flight:<scope>:<fp>``: hash of the leader's job id (``leader``) and how many
  leaders of this flight failed (``failures``), while it is in flight;
- ``reuse:followers:<scope>:<fp>``: the ids of the jobs following it;
- ``reuse:done:<scope>:<fp>``: the id of the last job that paid for this result.

Claiming a fingerprint and ending a flight are each one Lua script, so a follower either
joins before the leader's end is recorded (and is settled with the others) or sees that
end. A flight ends from the one hook every final transition runs (``events.on_final``);
what a lost message leaves behind is caught by the follower itself: reconcile re-drives
a follower every ``REUSE_FOLLOWER_CHECK_S``, and it ends its leader's flight if that
leader is final, or settles itself by the job it followed if it is in no flight any more.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import PurePosixPath
from typing import Any, Literal, Protocol

from providers import get_provider_class
from providers.base import ImageInfo
from providers.errors import EnhanceError, InvalidInput, TransientError, error_for_code
from storage.errors import StorageFailed, StorageUnavailable
from storage.jobs import (
    FINAL_RECORD_TTL_S,
    KEY_PREFIX,
    JobOutput,
    JobRecord,
    JobSource,
    JobState,
    UnknownJob,
    in_states,
    seconds_from_now,
)
from tasks import admission
from tasks.jobsteps import fail_job, finish
from tasks.store import object_metadata
from workers.runtime import Runtime

log = logging.getLogger("enhance.reuse")

ReuseMode = bool | Literal["url"]
FINGERPRINT_VERSION = 1  # part of every fingerprint: bump it when the recipe changes
SHARED_FAILURES = frozenset({InvalidInput.code})  # a leader failing so fails its followers
_CLAIM_ATTEMPTS = 5  # claims in a row that may find a success whose object is gone

# KEYS: flight, followers, done. ARGV: job id, ttl_s.
# Returns {"done", id} | {"follow", leader id} | {"lead", job id}.
_CLAIM = """
local done = redis.call('GET', KEYS[3])
if done then return {'done', done} end
local leader = redis.call('HGET', KEYS[1], 'leader')
if leader and leader ~= ARGV[1] then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return {'follow', leader}
end
redis.call('HSET', KEYS[1], 'leader', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'lead', ARGV[1]}
"""

# KEYS: flight, followers, done. ARGV: leader id, outcome (ok | shared | retry | handover),
# retries, ttl_s. Ends the flight of a leader that ended, once (fenced on the leader's id):
# returns {action, job ids...}: {"copy", ...} its result, {"fail", ...} alike, {"lead", id}
# the one follower promoted in its place (the others stay listed; "handover" when the
# leader was cancelled: that counts as no failure), or {"none"}.
_FINISH = """
if ARGV[2] == 'ok' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4]) end
if redis.call('HGET', KEYS[1], 'leader') ~= ARGV[1] then return {'none'} end
if ARGV[2] == 'handover' or (ARGV[2] == 'retry'
    and redis.call('HINCRBY', KEYS[1], 'failures', 1) <= tonumber(ARGV[3])) then
  local promoted = redis.call('LPOP', KEYS[2])
  if promoted then
    redis.call('HSET', KEYS[1], 'leader', promoted)
    if ARGV[2] == 'handover' then return {'handover', promoted} end
    return {'lead', promoted}
  end
end
local followers = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2])
local action = 'fail'
if ARGV[2] == 'ok' then action = 'copy' end
table.insert(followers, 1, action)
return followers
"""

# KEYS: flight, followers. ARGV: job id. Where a job stands: {leader or "", listed 0/1}.
_WHERE = """
local leader = redis.call('HGET', KEYS[1], 'leader') or ''
local listed = redis.call('LPOS', KEYS[2], ARGV[1])
if listed then return {leader, 1} end
return {leader, 0}
"""

# KEYS: done. ARGV: job id. Forgets a success whose object is gone (unless replaced).
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""


class Dispatcher(Protocol):
    """What reuse sends: a follower's settlement, and the admission of a new leader."""

    def reuse(self, job_id: str, leader_id: str | None = None, action: str | None = None,
              countdown_s: float = 0) -> None: ...

    def admit(self, provider: str, token: str, countdown_s: float = 0) -> None: ...


# --- fingerprints --------------------------------------------------------------------


def check_mode(mode: object) -> ReuseMode:
    """``True``, ``False`` or ``"url"``; anything else is ``InvalidInput``."""
    if mode is True or mode is False or mode == "url":
        return mode  # type: ignore[return-value]
    raise InvalidInput(f"reuse must be True, False or 'url', not {mode!r}")


def fingerprint_of(provider: str, model: str, options: dict[str, Any],
                   input_id: dict[str, Any], image: ImageInfo | None = None) -> str:
    """The fingerprint of a request: SHA-256 hex of its canonical JSON.

    Args:
        provider: the provider's name.
        model: the model's name (the default model already filled in).
        options: the job's options; only those that change the image count.
        input_id: what identifies the input: ``{"sha256": ...}``,
            ``{"s3_etag": ..., "size": ...}`` or ``{"url": ...}``.
        image: the input's header facts, where known (fills in implied options).
    """
    output_options = get_provider_class(provider).output_options(options, image)
    document = {"v": FINGERPRINT_VERSION, "provider": provider, "model": model,
                "options": output_options, "input": input_id}
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def fingerprint_for(rt: Runtime, record: JobRecord, mode: ReuseMode) -> str | None:
    """The fingerprint of a job about to be enqueued; None when it takes no part in reuse."""
    if mode is False or rt.settings.reuse_scope == "off":
        return None
    input_id = _input_id(rt, record.source, mode)
    if input_id is None:
        return None
    return fingerprint_of(record.provider, record.model, record.options, input_id,
                          record.source.image)


def _input_id(rt: Runtime, source: JobSource, mode: ReuseMode) -> dict[str, Any] | None:
    if source.sha256:
        return {"sha256": source.sha256}
    if source.uri.startswith("s3://"):
        try:
            obj = rt.objects.head(source.uri)
        except (StorageFailed, StorageUnavailable) as exc:  # the worker will say it clearly
            log.info("no reuse for %s: %s", source.uri, exc.message)
            return None
        return {"s3_etag": obj.etag, "size": obj.size_bytes} if obj.etag else None
    if mode == "url":
        return {"url": source.uri}
    return None


# --- claiming a fingerprint ----------------------------------------------------------


def _keys(rt: Runtime, record: JobRecord) -> list[str] | None:
    scope = rt.settings.reuse_scope
    if record.fingerprint is None or scope == "off":
        return None
    where = "global" if scope == "global" else "tenant:" + record.tenant
    return [f"{KEY_PREFIX}reuse:{kind}:{where}:{record.fingerprint}"
            for kind in ("flight", "followers", "done")]


def place(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> bool:
    """Settle a queued job by its fingerprint before it is admitted.

    Returns:
        True when the job must be admitted (it leads, or takes no part in reuse); False
        when it succeeded from an earlier job's result or follows a job in flight.
    """
    keys = _keys(rt, record)
    if keys is None:
        return True
    for _ in range(_CLAIM_ATTEMPTS):
        kind, other = (v.decode() for v in rt.redis.eval(
            _CLAIM, 3, *keys, record.id, FINAL_RECORD_TTL_S))
        if kind == "lead":
            return True
        if kind == "follow":
            _follow(rt, dispatch, record, other)
            return False
        if _reuse_success(rt, dispatch, record, other):
            return False
        rt.redis.eval(_FORGET, 1, keys[2], other)
    return True


def place_many(rt: Runtime, dispatch: Dispatcher, records: list[JobRecord]) -> list[JobRecord]:
    """``place`` for a batch: every claim in one pipeline; returns the jobs to admit, in order.

    The claims run in order, so a batch holding one image twice pays for it once.
    """
    keys = [_keys(rt, record) for record in records]
    with rt.redis.pipeline(transaction=False) as pipe:
        for record, record_keys in zip(records, keys, strict=True):
            if record_keys is not None:
                pipe.eval(_CLAIM, 3, *record_keys, record.id, FINAL_RECORD_TTL_S)
        answers = iter(pipe.execute())
    to_admit = []
    for record, record_keys in zip(records, keys, strict=True):
        if record_keys is None or _settle_claim(rt, dispatch, record, next(answers)):
            to_admit.append(record)
    return to_admit


def _settle_claim(rt: Runtime, dispatch: Dispatcher, record: JobRecord, answer: list) -> bool:
    """Act on one ``_CLAIM`` answer of ``place_many``; True when the job must be admitted."""
    kind, other = (v.decode() for v in answer)
    if kind == "follow":
        _follow(rt, dispatch, record, other)
        return False
    if kind == "done":
        if _reuse_success(rt, dispatch, record, other):
            return False
        rt.redis.eval(_FORGET, 1, _keys(rt, record)[2], other)
        return place(rt, dispatch, record)
    return True


def _reuse_success(rt: Runtime, dispatch: Dispatcher, record: JobRecord, done_id: str) -> bool:
    """Copy a succeeded job's result for ``record``; False when there is none to copy."""
    source = _get(rt, done_id)
    if source is None or source.state is not JobState.SUCCEEDED:
        return False
    try:
        return _copy_result(rt, record, source)
    except TransientError as exc:  # S3 hiccup at enqueue: a worker copies it, with retries
        log.info("job %s: copy from %s deferred: %s", record.id, done_id, exc.message)
        _follow(rt, dispatch, record, done_id)
        return True


def _follow(rt: Runtime, dispatch: Dispatcher, record: JobRecord, leader_id: str) -> None:
    check_s = rt.settings.reuse_follower_check_s
    following = rt.jobs.update(
        record.id, lambda r: r.state is JobState.QUEUED and r.follows is None,
        lambda r: {"follows": leader_id, "next_check_at": seconds_from_now(check_s)})
    if following is None:
        return
    log.info("job %s: follows job %s (same fingerprint)", record.id, leader_id)
    leader = _get(rt, leader_id)
    if leader is None or leader.state.final:  # it ended before we were listed: settle now
        dispatch.reuse(record.id)


def _get(rt: Runtime, job_id: str) -> JobRecord | None:
    try:
        return rt.jobs.get(job_id)
    except UnknownJob:
        return None


# --- copying a result ----------------------------------------------------------------


def _copy_result(rt: Runtime, record: JobRecord, source: JobRecord) -> bool:
    """Give ``record`` its own copy of ``source``'s object and succeed it at cost 0.

    Returns False (nothing written) when ``source``'s object no longer exists.
    """
    assert source.output is not None
    extension = PurePosixPath(source.output.key).suffix or ".img"
    key = rt.objects.result_key(record.id, extension)
    metadata = {**object_metadata(record), "reused-from": source.id}
    try:
        stored = rt.objects.copy(source.output.uri, key, metadata=metadata,
                                 size_bytes=source.output.size_bytes,
                                 content_type=source.output.content_type)
    except StorageFailed as exc:
        if exc.http_status in (404, 412):  # deleted, or replaced under us
            log.info("job %s: result of %s is gone, not reusing it", record.id, source.id)
            return False
        raise
    output = JobOutput(uri=stored.uri, bucket=stored.bucket, key=stored.key,
                       size_bytes=stored.size_bytes, content_type=source.output.content_type,
                       width=source.output.width, height=source.output.height)
    done = finish(rt, record.id, in_states(JobState.QUEUED),
                  {"state": JobState.SUCCEEDED, "output": output, "reused_from": source.id,
                   "cost": 0, "follows": None, "progress": 100,
                   "result_width": output.width, "result_height": output.height})
    if done is not None:
        rt.stats.incr(f"reused:{done.provider}")
        rt.stats.incr(f"saved:{done.provider}", float(source.cost or 0))
    return True


# --- the end of a flight -------------------------------------------------------------


def _outcome(record: JobRecord) -> str:
    if record.state is JobState.SUCCEEDED:
        return "ok"
    if record.state is JobState.CANCELLED:  # its owner changed their mind, not the image
        return "handover"
    return "shared" if record.error and record.error.code in SHARED_FAILURES else "retry"


def job_ended(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> None:
    """Called once a job is final: a leader's end settles everyone following it; a
    follower cancelled leaves its flight (handing over if it had just been promoted)."""
    if record.follows is not None and record.state is JobState.CANCELLED:
        _leave_flight(rt, dispatch, record)
    if record.reused_from is not None or record.follows is not None:
        return  # not a job that paid: it leads nothing
    _end_flight(rt, dispatch, record, record.id, _outcome(record))


def _leave_flight(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> None:
    keys = _keys(rt, record)
    if keys is None:
        return
    rt.redis.lrem(keys[1], 0, record.id)
    _end_flight(rt, dispatch, record, record.id, "handover")  # a no-op unless it leads


def _end_flight(rt: Runtime, dispatch: Dispatcher, record: JobRecord, leader_id: str,
                outcome: str) -> None:
    keys = _keys(rt, record)
    if keys is None:
        return
    action, *followers = (v.decode() for v in rt.redis.eval(
        _FINISH, 3, *keys, leader_id, outcome, rt.settings.reuse_follower_retries,
        FINAL_RECORD_TTL_S))
    for job_id in followers:
        dispatch.reuse(job_id, leader_id, action)
    if followers:
        log.info("job %s ended (%s): %s for %d follower(s)", leader_id, outcome, action,
                 len(followers))


def settle_follower(rt: Runtime, dispatch: Dispatcher, job_id: str,
                    leader_id: str | None = None, action: str | None = None) -> None:
    """Settle a follower as its flight ended (``action``), or look where it stands."""
    record = rt.jobs.get(job_id)
    if record.state is not JobState.QUEUED or record.follows is None:
        return
    if action in ("lead", "handover"):
        _lead(rt, dispatch, record, leader_failed=action == "lead")
        return
    leader = _get(rt, leader_id) if leader_id else None
    if action == "copy" and leader is not None and leader.state is JobState.SUCCEEDED:
        if not _copy_result(rt, record, leader):
            _release(rt, dispatch, record, failed=False)
    elif action == "fail" and leader is not None:
        fail_job(rt, record.id, _leader_error(record, leader))
    else:
        _look_around(rt, dispatch, record)


def _lead(rt: Runtime, dispatch: Dispatcher, record: JobRecord,
          leader_failed: bool = True) -> None:
    """Promoted after its leader failed (or was cancelled): stop following, get admitted."""
    promoted = rt.jobs.update(
        record.id, lambda r: r.state is JobState.QUEUED and r.follows is not None,
        lambda r: {"follows": None, "leaders_failed": r.leaders_failed + int(leader_failed),
                   "next_check_at": seconds_from_now(rt.settings.stale_after_s)})
    if promoted is not None:
        log.warning("job %s: job %s with the same input %s; this one is admitted in its "
                    "place", record.id, record.follows,
                    "failed" if leader_failed else "was cancelled")
        admit(rt, dispatch, promoted)


def _look_around(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> None:
    """No flight told this follower its fate (a lost message?): find out where it stands."""
    keys = _keys(rt, record)
    leader_id, listed = rt.redis.eval(_WHERE, 2, *keys[:2], record.id) if keys else (b"", 0)
    leader_id = leader_id.decode()
    if leader_id == record.id:  # promoted, but the word was lost
        _lead(rt, dispatch, record)
    elif listed:  # waiting in a flight: is its leader still in flight?
        leader = _get(rt, leader_id)
        if leader is None or leader.state.final:
            _end_flight(rt, dispatch, record, leader_id,
                        _outcome(leader) if leader else "retry")
        else:
            _check_later(rt, record)
    else:
        _orphan(rt, dispatch, record)


def _orphan(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> None:
    """In no flight any more: settle by the job it followed, or claim again."""
    leader = _get(rt, record.follows)
    if leader is not None and not leader.state.final:
        _check_later(rt, record)  # e.g. a copy deferred at enqueue, its source still running
    elif leader is not None and leader.state is JobState.SUCCEEDED:
        if not _copy_result(rt, record, leader):
            _release(rt, dispatch, record, failed=False)
    elif (leader is not None and _outcome(leader) == "shared") or \
            record.leaders_failed >= rt.settings.reuse_follower_retries:
        fail_job(rt, record.id, _leader_error(record, leader))
    else:
        _release(rt, dispatch, record, failed=True)


def _leader_error(record: JobRecord, leader: JobRecord | None) -> EnhanceError:
    if leader is None or leader.error is None:
        return EnhanceError(f"job {record.follows}, whose result this job waited for, is gone",
                            record.provider)
    err = leader.error
    message = f"{err.message} (job {leader.id}, with the same input, failed so)"
    return error_for_code(err.code)(message, record.provider, err.vendor_code)


def _check_later(rt: Runtime, record: JobRecord) -> None:
    check_s = rt.settings.reuse_follower_check_s
    rt.jobs.update(record.id,
                   lambda r: r.state is JobState.QUEUED and r.follows == record.follows,
                   lambda r: {"next_check_at": seconds_from_now(check_s)})


def _release(rt: Runtime, dispatch: Dispatcher, record: JobRecord, failed: bool) -> None:
    """Stop following; claim the fingerprint again and, as its new leader, get admitted."""
    released = rt.jobs.update(
        record.id, lambda r: r.state is JobState.QUEUED and r.follows == record.follows,
        lambda r: {"follows": None, "leaders_failed": r.leaders_failed + int(failed),
                   "next_check_at": seconds_from_now(rt.settings.stale_after_s)})
    if released is None:
        return
    if place(rt, dispatch, released):
        log.warning("job %s: job %s it followed ended without a result; admitted to pay "
                    "for it itself", record.id, record.follows)
        admit(rt, dispatch, released)


def admit(rt: Runtime, dispatch: Dispatcher, record: JobRecord) -> None:
    """Put a job that must be paid for in its provider's admission queue."""
    admission.push(rt, record)
    admission.wake(rt, record.provider, dispatch, revive_only=True)
