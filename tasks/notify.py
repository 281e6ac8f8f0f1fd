"""Telling the backend a job ended: Standard Webhooks deliveries and Celery ``on_done`` callbacks.

A job enqueued with ``webhook=`` and/or ``on_done=`` carries a ``Notification`` in its
record (``storage.notifications``). From there:

- **One place fires both.** ``job_ended`` is an ``events.on_final`` hook, so every final
  transition (succeeded, failed, cancelled; in a worker or in the producer's process) sends
  one ``enhance.notify`` task. The store wrote the job into its ``notify`` set in the same
  ``MULTI`` as the final state, so if the process dies before that task is sent, or the
  task is lost, ``sweep`` (beat, every ``RECONCILE_INTERVAL_S``) sends it again once it is
  ``NOTIFY_LOST_AFTER_S`` overdue. Each re-send carries a new token: an older run that
  turns up later finds it stale and does nothing.
- **on_done** is a Celery signature (or a task name) sent once, on the caller's own queue
  (its ``queue`` option; ``on_done_queue``; else ``celery``, Celery's default), with the job
  as ``job_payload`` builds it as its first argument and ``<job id>-on_done`` as its task
  id, at least once.
- **Webhooks** follow Standard Webhooks: a JSON body ``{"type": "job.succeeded",
  "timestamp": ..., "data": {job..., "output_url": ...}}``, headers ``webhook-id`` (stable per
  event: ``evt_<job id>_<state>``, the receiver's deduplication key), ``webhook-timestamp``
  and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of id.timestamp.body>``, one per
  ``WEBHOOK_SECRET`` while rotating). A 2xx is delivered. A timeout, a failed connection,
  408, 429 (honouring ``Retry-After``) or 5xx is retried with backoff (``WEBHOOK_RETRY_*``)
  for ``WEBHOOK_RETRY_WINDOW_S`` after the job ended, by countdown when the wait fits under
  ``MAX_COUNTDOWN_S``, else by the sweep once it is due: no worker ever sleeps. Anything
  else (other 4xx, a redirect, an address the guard refuses at delivery) is given up at
  once; a host that does not resolve is retried.
  Every attempt is recorded on the job (``enhance status`` shows them).

Signing, and ``verify_webhook`` for receivers, are in ``tasks.webhooks``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from providers.errors import EnhanceError, InvalidInput, TransientError
from providers.http import map_requests_errors, parse_retry_after
from providers.urlguard import HostNotFound
from storage.jobs import JobRecord, UnknownJob, utcnow
from storage.notifications import (
    EVENT_TYPES,
    MAX_ATTEMPTS_KEPT,
    Notification,
    WebhookAttempt,
    WebhookOutcome,
)
from tasks import events
from tasks.webhooks import WebhookNotConfigured, secrets_of, sign
from workers.constants import ALL_QUEUES, USER_AGENT
from workers.runtime import Runtime

log = logging.getLogger("enhance.notify")

#: ``on_done`` callbacks go here unless their signature or ``on_done_queue`` names a queue.
DEFAULT_ON_DONE_QUEUE = "celery"
#: ``webhook_events`` name meaning every final state (as Replicate's ``completed`` does).
ALL_EVENTS_ALIAS = "completed"
_TASK_NAME = re.compile(r"^[A-Za-z_][\w.:-]{0,199}$")
_SIGNATURE_KEYS = ("task", "args", "kwargs", "options", "subtask_type", "immutable")
#: Fields of the record a webhook or callback never carries: internal tokens, the provider's
#: own result URL, and the notification itself (its URL may hold the receiver's token).
INTERNAL_FIELDS = frozenset({"result_url", "poll_token", "lease_token", "lease_expires_at",
                             "request_digest", "notify"})

#: Sends ``enhance.notify(job_id, token)`` after ``countdown_s`` seconds.
Sender = Callable[[str, str | None, float], None]


# --- At enqueue --------------------------------------------------------------------------


def prepare(rt: Runtime, webhook: str | None = None,
            webhook_events: Iterable[str] | str | None = None,
            on_done: str | Mapping[str, Any] | None = None,
            on_done_queue: str | None = None) -> Notification | None:
    """The ``Notification`` a new job carries, checked; None when it asked for nothing.

    Raises:
        InvalidInput: the URL breaks the URL guard's rules that need no DNS lookup, an event
            name is unknown, ``on_done`` is neither a task name nor a JSON-serialisable
            Celery signature, or its queue is one of the project's own.
        WebhookNotConfigured: ``webhook`` is given and ``WEBHOOK_SECRET`` is not set.
    """
    if webhook_events is not None and webhook is None:
        raise InvalidInput("webhook_events needs a webhook")
    if on_done_queue is not None and on_done is None:
        raise InvalidInput("on_done_queue needs an on_done")
    if webhook is None and on_done is None:
        return None  # nothing per job, nothing per transition
    if webhook is not None:
        if rt.settings.webhook_secret is None:
            raise WebhookNotConfigured("a webhook was asked for but WEBHOOK_SECRET is not set; "
                                       "set it to a whsec_ secret shared with the receiver")
        rt.guard.check_static(webhook)  # resolved and checked again at every delivery
    return Notification(
        webhook=webhook, webhook_events=event_types(webhook_events) if webhook else [],
        on_done=callback_spec(on_done, on_done_queue) if on_done is not None else None)


def event_types(names: Iterable[str] | str | None) -> list[str]:
    """``webhook_events`` as event types; None or ``"completed"`` means every final state.

    Each name is an event type (``job.succeeded``, ``job.failed``, ``job.cancelled``), a final
    state (``succeeded``...) or ``completed``.
    """
    if names is None:
        return sorted(EVENT_TYPES.values())
    wanted: set[str] = set()
    for name in [names] if isinstance(names, str) else list(names):
        if name == ALL_EVENTS_ALIAS:
            wanted.update(EVENT_TYPES.values())
        elif name in EVENT_TYPES or name in EVENT_TYPES.values():
            wanted.add(EVENT_TYPES.get(name, name))
        else:
            raise InvalidInput(f"unknown webhook event {name!r}; use {ALL_EVENTS_ALIAS!r} or "
                               f"any of {', '.join(sorted(EVENT_TYPES.values()))}")
    if not wanted:
        raise InvalidInput("webhook_events is empty: leave it out to get every event")
    return sorted(wanted)


def callback_spec(on_done: str | Mapping[str, Any], queue: str | None) -> dict[str, Any]:
    """``on_done`` (a task name or a Celery signature) as the JSON dict kept in the record."""
    if isinstance(on_done, str):
        spec: dict[str, Any] = {"task": on_done, "args": [], "kwargs": {}, "options": {}}
    elif isinstance(on_done, Mapping) and isinstance(on_done.get("task"), str):
        try:  # a celery Signature is a dict: keep what is needed to send it again
            spec = json.loads(json.dumps({k: on_done[k] for k in _SIGNATURE_KEYS if k in on_done}))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"on_done's arguments must be JSON-serialisable: {exc}") from None
    else:
        raise InvalidInput("on_done must be a Celery task name or signature")
    if not _TASK_NAME.fullmatch(spec["task"]):
        raise InvalidInput(f"on_done: {spec['task']!r} is not a task name")
    options = {**(spec.get("options") or {}), **({"queue": queue} if queue else {})}
    options.setdefault("queue", DEFAULT_ON_DONE_QUEUE)
    if options["queue"] in ALL_QUEUES:
        raise InvalidInput(f"on_done: {options['queue']} is one of enhance-queue's own queues; "
                           "send the callback to a queue your own workers consume")
    spec["options"] = options
    return spec


# --- When a job ends ---------------------------------------------------------------------


def send(job_id: str, token: str | None, countdown_s: float = 0) -> None:
    """Send ``enhance.notify`` for ``job_id`` through the broker (by name: no task import)."""
    from workers.app import app

    app.send_task("enhance.notify", args=(job_id, token), countdown=countdown_s or None)


def job_ended(rt: Runtime, record: JobRecord) -> None:
    """The ``events.on_final`` hook: send the notify run a job that just ended is owed."""
    if record.notify is not None and record.notify.pending(record.state.value):
        send(record.id, record.notify.token, 0)


events.on_final(job_ended)


def run(rt: Runtime, sender: Sender, job_id: str, token: str | None) -> None:
    """The ``enhance.notify`` task: send the callback, then make one webhook attempt.

    Does nothing for a run whose token is stale (a re-send replaced it) or for a job that
    is owed nothing more. Broker or job-store trouble propagates: the job stays in the
    notify set and the sweep sends it again.
    """
    try:
        record = rt.jobs.get(job_id)
    except UnknownJob:
        log.warning("job %s: record gone, notification dropped", job_id)
        rt.jobs.forget_notification(job_id)
        return
    notify = record.notify
    if notify is None or notify.token != token or not notify.pending(record.state.value):
        return
    if notify.on_done is not None and notify.on_done_sent_at is None:
        record = _send_on_done(rt, record, token)
        if record is None:
            return
    if record.notify.webhook_owed(record.state.value):
        _attempt_webhook(rt, sender, record, token)


def _send_on_done(rt: Runtime, record: JobRecord, token: str | None) -> JobRecord | None:
    from workers.app import app

    spec = record.notify.on_done
    shown = {"id": record.id, "state": record.state.value}  # what task events and Flower
    # show of the argument: the record's URLs may carry signatures (output_url's does)
    app.signature(spec).apply_async(args=(job_payload(rt, record),),
                                    task_id=f"{record.id}-on_done",
                                    argsrepr=repr((shown, *(spec.get("args") or ()))))
    log.info("job %s: on_done %s sent to queue %s", record.id, spec["task"],
             spec["options"].get("queue"))
    return _change(rt, record.id, token, {"on_done_sent_at": utcnow()})


def _change(rt: Runtime, job_id: str, token: str | None,
            fields: dict[str, Any]) -> JobRecord | None:
    """Set ``fields`` of the job's notification if ``token`` still holds it."""
    return rt.jobs.update(
        job_id, lambda r: r.notify is not None and r.notify.token == token,
        lambda r: {"notify": r.notify.model_copy(update=fields)})


# --- Webhook deliveries ------------------------------------------------------------------


def webhook_id(record: JobRecord) -> str:
    """The delivery's ``webhook-id``: the same for every attempt of one event."""
    return f"evt_{record.id}_{record.state.value}"


def job_payload(rt: Runtime, record: JobRecord) -> dict[str, Any]:
    """The job as ``get_job`` returns it (JSON, internal fields left out) plus ``output_url``."""
    data = record.model_dump(mode="json", exclude=set(INTERNAL_FIELDS))
    data["output_url"] = output_url(rt, record)
    return data


def output_url(rt: Runtime, record: JobRecord) -> str | None:
    """``tasks.producer.output_url`` of the job (presigned HTTPS GET with Content-Type and
    Content-Disposition, ``S3_PRESIGN_TTL_S``); None unless it succeeded."""
    from tasks.producer import presign_result  # producer imports this module

    if record.output is None or record.state.value != "succeeded":
        return None
    return presign_result(rt, record, rt.settings.s3_presign_ttl_s, download=False)


def webhook_body(rt: Runtime, record: JobRecord) -> bytes:
    """The Standard Webhooks payload: ``type``, ``timestamp`` of the end, ``data``."""
    ended = record.transitions.get(record.state.value, record.updated_at)
    payload = {"type": EVENT_TYPES[record.state.value], "timestamp": ended.isoformat(),
               "data": job_payload(rt, record)}
    return json.dumps(payload, separators=(",", ":")).encode()


def _attempt_webhook(rt: Runtime, sender: Sender, record: JobRecord, token: str | None) -> None:
    settings = rt.settings
    busy_s = settings.http_connect_timeout_s + settings.webhook_timeout_s + 5
    record = _change(rt, record.id, token,  # the sweep leaves a run in its HTTP call alone
                     {"expected_at": utcnow() + timedelta(seconds=busy_s)})
    if record is None:
        return
    notify = record.notify
    number = notify.webhook_attempts + 1
    started = time.monotonic()
    answer = _post(rt, record, secrets_of(_secret(rt)))
    attempt = WebhookAttempt(attempt=number, at=utcnow(), status=answer.status,
                             error=answer.error, outcome=answer.outcome(),
                             duration_ms=int((time.monotonic() - started) * 1000))
    delay_s = _retry_delay_s(rt, record, attempt, answer.retry_after_s)
    if attempt.outcome is WebhookOutcome.RETRYING and delay_s is None:
        attempt.outcome = WebhookOutcome.GAVE_UP
        attempt.error = f"{attempt.error or f'HTTP {attempt.status}'}; retry window passed"
    settled = None if attempt.outcome is WebhookOutcome.RETRYING else attempt.outcome
    retry_at = utcnow() + timedelta(seconds=delay_s) if settled is None else None
    updated = _change(rt, record.id, token, {
        "webhook_attempts": number, "attempts": [*notify.attempts, attempt][-MAX_ATTEMPTS_KEPT:],
        "webhook_outcome": settled, "expected_at": retry_at})
    _log_attempt(record, notify.webhook, attempt, delay_s)
    rt.stats.incr(f"webhook:{attempt.outcome.value}")
    if updated is not None and settled is None and delay_s <= settings.max_countdown_s:
        sender(record.id, token, delay_s)  # longer waits: the sweep sends it when due


@dataclass(frozen=True)
class _Answer:
    """What one POST got: the receiver's status, or why there was none."""

    status: int | None = None
    error: str | None = None  # never the URL (it may carry a token), never a secret
    transient: bool = False  # no status: worth trying again (timeout, connection failed)
    retry_after_s: float | None = None

    def outcome(self) -> WebhookOutcome:
        if self.status is None:
            return WebhookOutcome.RETRYING if self.transient else WebhookOutcome.GAVE_UP
        if 200 <= self.status <= 299:
            return WebhookOutcome.DELIVERED
        if self.status in (408, 429) or 500 <= self.status <= 599:
            return WebhookOutcome.RETRYING
        return WebhookOutcome.GAVE_UP  # other 4xx, and redirects (never followed)


def _post(rt: Runtime, record: JobRecord, secrets: list[str]) -> _Answer:
    """One signed POST of the job's event to its webhook."""
    url = record.notify.webhook
    try:
        rt.guard.check(url)  # resolved now; the guarded session connects to what it checked
        body = webhook_body(rt, record)
        headers = {**sign(secrets, webhook_id(record), utcnow(), body),
                   "Content-Type": "application/json", "User-Agent": USER_AGENT}
        with map_requests_errors("webhook"):
            response = rt.http.post(url, data=body, headers=headers, allow_redirects=False,
                                    stream=True, timeout=(rt.settings.http_connect_timeout_s,
                                                          rt.settings.webhook_timeout_s))
            response.close()  # only the status matters; the body is never read
    except HostNotFound as exc:  # DNS may answer again later: retried
        return _Answer(error=exc.message, transient=True)
    except InvalidInput as exc:  # the guard's message names the host and the rule only
        return _Answer(error=exc.message)
    except EnhanceError as exc:
        return _Answer(error=f"{exc.code}: {type(exc).__name__}",
                       transient=isinstance(exc, TransientError))
    return _Answer(response.status_code,
                   retry_after_s=parse_retry_after(response.headers.get("Retry-After")))


def _secret(rt: Runtime) -> SecretStr:
    """The signing secret(s); unset in this worker is a deployment error, raised (the job
    stays owed and the sweep sends it again once the worker is fixed)."""
    if rt.settings.webhook_secret is None:
        raise WebhookNotConfigured("WEBHOOK_SECRET is not set in this worker")
    return rt.settings.webhook_secret


def _retry_delay_s(rt: Runtime, record: JobRecord, attempt: WebhookAttempt,
                   retry_after_s: float | None) -> float | None:
    """Seconds until the next attempt; None once that would be past the retry window."""
    s = rt.settings
    delay_s = min(s.webhook_retry_base_s * 4 ** min(attempt.attempt - 1, 20),
                  s.webhook_retry_max_interval_s)
    if retry_after_s is not None:
        delay_s = min(max(delay_s, retry_after_s), s.webhook_retry_max_interval_s)
    ended = record.transitions.get(record.state.value, record.updated_at)
    if attempt.at + timedelta(seconds=delay_s) > ended + timedelta(seconds=s.webhook_retry_window_s):
        return None
    return delay_s


def _log_attempt(record: JobRecord, url: str, attempt: WebhookAttempt,
                 delay_s: float | None) -> None:
    host = urlsplit(url).hostname
    what = f"HTTP {attempt.status}" if attempt.status is not None else attempt.error
    level = logging.WARNING if attempt.outcome is WebhookOutcome.GAVE_UP else logging.INFO
    then = f", next in {delay_s:.1f} s" if attempt.outcome is WebhookOutcome.RETRYING else ""
    log.log(level, "job %s: webhook %s to %s attempt %d: %s: %s%s", record.id,
            webhook_id(record), host, attempt.attempt, attempt.outcome.value, what, then,
            extra={"job": {"job_id": record.id, "webhook_attempt": attempt.attempt,
                           "webhook_status": attempt.status,
                           "webhook_outcome": attempt.outcome.value}})


# --- Re-sending what a lost worker left owed -------------------------------------------


def sweep(rt: Runtime, sender: Sender, limit: int = 500) -> int:
    """Re-send the notify runs that are ``NOTIFY_LOST_AFTER_S`` overdue; returns how many."""
    before = utcnow() - timedelta(seconds=rt.settings.notify_lost_after_s)
    sent = 0
    for job_id in rt.jobs.notifications_overdue(before, limit):
        try:
            sent += _resend(rt, sender, job_id, before)
        except (UnknownJob, ValidationError):
            log.warning("job %s: record gone or unreadable, notification dropped", job_id)
            rt.jobs.forget_notification(job_id)
        except Exception:  # noqa: BLE001 - one bad entry must not stop the others
            log.exception("job %s: notification could not be re-sent", job_id)
    return sent


def _resend(rt: Runtime, sender: Sender, job_id: str, before: datetime) -> int:
    token = uuid.uuid4().hex

    def overdue(r: JobRecord) -> bool:
        n = r.notify
        return n is not None and r.state.final and n.pending(r.state.value) and \
            (n.expected_at or r.updated_at) <= before

    record = rt.jobs.update(job_id, overdue, lambda r: {"notify": r.notify.model_copy(
        update={"token": token, "expected_at": utcnow()})})
    if record is None:
        current = rt.jobs.get(job_id)
        if current.notify is None or not current.notify.pending(current.state.value):
            rt.jobs.forget_notification(job_id)
        return 0
    log.info("job %s: notification re-sent (its run was lost or is due)", job_id)
    sender(job_id, token, 0)
    return 1


# --- What operators read (``enhance status``) -------------------------------------------


def status_json(record: JobRecord) -> dict[str, Any] | None:
    """The notification for ``enhance status --json``: the webhook's host, never its URL."""
    notify = record.notify
    if notify is None:
        return None
    data = notify.model_dump(mode="json", exclude={"webhook", "token", "on_done"})
    data["webhook_host"] = urlsplit(notify.webhook).hostname if notify.webhook else None
    data["on_done"] = notify.on_done and {"task": notify.on_done["task"],
                                          "queue": notify.on_done["options"].get("queue")}
    return data


def status_lines(record: JobRecord) -> list[str]:
    """The notification for ``enhance status``: one line per channel, one per attempt."""
    notify, lines = record.notify, []
    if notify is None:
        return lines
    if notify.webhook:
        outcome = notify.webhook_outcome or ("pending" if record.state.final else "when final")
        lines.append(f"  webhook: {urlsplit(notify.webhook).hostname} "
                     f"({', '.join(notify.webhook_events)}): {outcome}, "
                     f"{notify.webhook_attempts} attempt(s)")
        lines += [f"    #{a.attempt} {a.at.isoformat(timespec='seconds')} {a.outcome.value}: "
                  f"{f'HTTP {a.status}' if a.status is not None else a.error}"
                  for a in notify.attempts]
    if notify.on_done:
        sent = notify.on_done_sent_at
        when = f"sent {sent.isoformat(timespec='seconds')}" if sent else "not sent yet"
        lines.append(f"  on_done: {notify.on_done['task']} on queue "
                     f"{notify.on_done['options'].get('queue')}: {when}")
    return lines
