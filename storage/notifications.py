"""What a job asked to be told when it ends, and what was done about it (the record's part).

A job enqueued with a ``webhook`` or an ``on_done`` callback carries a ``Notification`` in
its record. The job store (``storage.jobs``) keeps every final job whose notification is
still owed in the ``notify`` sorted set, in the same ``MULTI`` as the write that made it
final or changed its notification, scored by when a notify run was last expected to start:
a notification is never lost to a worker that dies right after the job ended, because
``tasks.notify.sweep`` re-sends whatever stayed there too long. Sending and retrying live
in ``tasks.notify``; this module only describes the state.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

#: Attempts kept on the record (the oldest are dropped; ``webhook_attempts`` keeps counting).
MAX_ATTEMPTS_KEPT = 50

#: The webhook event of each final state (Standard Webhooks' ``type``, "noun.verb" style).
EVENT_TYPES = {"succeeded": "job.succeeded", "failed": "job.failed",
               "cancelled": "job.cancelled"}


class WebhookOutcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx answer
    RETRYING = "retrying"  # timeout, connection failure, 408, 429 or 5xx: tried again later
    GAVE_UP = "gave_up"  # another answer (4xx, 3xx), a refused URL, or the retry window passed


class WebhookAttempt(BaseModel):
    """One delivery attempt, as ``enhance status`` shows it."""

    attempt: int  # 1, 2, ... for this event
    at: datetime
    outcome: WebhookOutcome
    status: int | None = None  # the receiver's HTTP status, when it answered
    error: str | None = None  # why it failed, without the URL (it may carry a token)
    duration_ms: int | None = None


class Notification(BaseModel):
    """The job's webhook and Celery callback, and how far their sending got."""

    webhook: str | None = Field(default=None, repr=False)  # the receiver's URL
    webhook_events: list[str] = Field(default_factory=list)  # EVENT_TYPES values
    on_done: dict[str, Any] | None = None  # a Celery signature as a dict (task, args, options)
    token: str | None = None  # the one notify run allowed to act (a re-drive changes it)
    expected_at: datetime | None = None  # when the next notify run is to start
    webhook_outcome: WebhookOutcome | None = None  # DELIVERED / GAVE_UP once settled
    webhook_attempts: int = 0
    attempts: list[WebhookAttempt] = Field(default_factory=list)
    on_done_sent_at: datetime | None = None

    def wants_webhook(self, state: str) -> bool:
        """The job's final ``state`` is an event the webhook subscribed to."""
        return bool(self.webhook) and EVENT_TYPES.get(state) in self.webhook_events

    def webhook_owed(self, state: str) -> bool:
        """A delivery for a job that ended in ``state`` is still to be made."""
        return self.wants_webhook(state) and self.webhook_outcome in (
            None, WebhookOutcome.RETRYING)

    def pending(self, state: str) -> bool:
        """Something is still owed for a job that ended in ``state``."""
        return self.webhook_owed(state) or (
            self.on_done is not None and self.on_done_sent_at is None)
