"""Webhook and on_done checks that need no worker: enqueue's refusals, signatures, settings."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import signature
from pydantic import ValidationError

from providers.errors import InvalidInput
from tasks.notify import callback_spec, event_types, prepare
from tasks.webhooks import WebhookNotConfigured, WebhookVerificationFailed, sign, verify_webhook
from workers.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
OTHER = "whsec_" + base64.b64encode(b"o" * 24).decode()
BODY = b'{"type":"job.succeeded","timestamp":"2026-11-30T10:00:00+00:00","data":{"id":"j1"}}'


class FakeRuntime:
    """Only what ``prepare`` reads: settings and the URL guard."""

    def __init__(self, **settings) -> None:
        from providers.urlguard import UrlGuard, UrlPolicy

        self.settings = Settings(**settings)
        self.guard = UrlGuard(UrlPolicy.from_settings(self.settings))


def headers(secrets=(SECRET,), at=None, body=BODY):
    return sign(list(secrets), "evt_j1_succeeded", at or datetime.now(UTC), body)


def test_verify_returns_the_event():
    assert verify_webhook(BODY, headers(), SECRET)["data"] == {"id": "j1"}


def test_verify_takes_header_names_in_any_case_and_either_rotating_secret():
    sent = {k.title(): v for k, v in headers((SECRET, OTHER)).items()}
    assert verify_webhook(BODY, sent, OTHER)["type"] == "job.succeeded"
    assert verify_webhook(BODY, sent, f"{SECRET} {OTHER}")["type"] == "job.succeeded"


@pytest.mark.parametrize("tamper", [
    lambda h, b: (h, b.replace(b"j1", b"j2")),  # body changed
    lambda h, b: ({**h, "webhook-id": "evt_other"}, b),  # id changed
    lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
    lambda h, b: ({**h, "webhook-signature": "v1"}, b),  # malformed
    lambda h, b: ({**h, "webhook-signature": "v1,!!!notbase64"}, b),
    lambda h, b: (headers(at=datetime.now(UTC) - timedelta(minutes=6)), b),  # replayed late
])
def test_verify_refuses_what_was_not_signed_now_with_the_secret(tamper):
    sent, body = tamper(headers(), BODY)
    with pytest.raises(WebhookVerificationFailed) as caught:
        verify_webhook(body, sent, SECRET)
    assert caught.value.code == "webhook_invalid"
    assert isinstance(caught.value, InvalidInput)  # a view answers it 400


def test_verify_refuses_another_secret():
    with pytest.raises(WebhookVerificationFailed):
        verify_webhook(BODY, headers((OTHER,)), SECRET)


def test_the_signature_is_standard_webhooks_hmac_of_id_timestamp_body():
    import hashlib
    import hmac

    at = datetime.fromtimestamp(int(time.time()), UTC)
    sent = headers(at=at)
    expected = hmac.new(b"k" * 24, f"evt_j1_succeeded.{int(at.timestamp())}.".encode() + BODY,
                        hashlib.sha256).digest()
    assert sent["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
    assert sent["webhook-timestamp"] == str(int(at.timestamp()))


@pytest.mark.parametrize("value", ["plain-hunter2", "whsec_", "whsec_!!!!",
                                   f"{SECRET} {OTHER} {SECRET}",
                                   "whsec_" + base64.b64encode(b"short").decode()])
def test_webhook_secret_must_be_one_or_two_whsec_secrets_and_is_never_echoed(value):
    with pytest.raises(ValidationError) as caught:
        Settings(webhook_secret=value)
    shown = value.removeprefix("whsec_")
    assert not shown or shown not in str(caught.value)


def test_webhook_secret_keeps_two_while_rotating():
    settings = Settings(webhook_secret=f"  {SECRET}   {OTHER} ")
    assert settings.webhook_secret.get_secret_value() == f"{SECRET} {OTHER}"
    assert SECRET not in repr(settings)


def test_a_webhook_without_a_secret_fails_at_enqueue():
    with pytest.raises(WebhookNotConfigured):
        prepare(FakeRuntime(), "https://backend.example/hooks")


@pytest.mark.parametrize("url", ["http://10.0.0.7/hooks", "http://169.254.169.254/latest",
                                 "ftp://backend.example/hooks", "http://localhost:8000/h"])
def test_webhook_urls_go_through_the_url_guard(url):
    with pytest.raises(InvalidInput, match="URL refused"):
        prepare(FakeRuntime(webhook_secret=SECRET), url)


def test_an_allowlisted_private_webhook_is_accepted():
    notify = prepare(FakeRuntime(webhook_secret=SECRET, url_allowlist="10.0.0.0/8"),
                     "http://10.0.0.7/hooks", ["completed"])
    assert notify.webhook_events == ["job.cancelled", "job.failed", "job.succeeded"]


def test_event_names():
    assert event_types(["succeeded", "job.failed"]) == ["job.failed", "job.succeeded"]
    assert event_types(None) == event_types("completed")
    with pytest.raises(InvalidInput, match="unknown webhook event"):
        event_types(["started"])
    with pytest.raises(InvalidInput):
        event_types([])


def test_on_done_takes_a_name_or_a_signature_and_the_callers_queue():
    assert callback_spec("myapp.tasks.thumb", None)["options"] == {"queue": "celery"}
    assert callback_spec("myapp.tasks.thumb", "thumbs")["options"] == {"queue": "thumbs"}
    spec = callback_spec(signature("myapp.tasks.thumb", args=(1,), kwargs={"size": 64},
                                   queue="mine"), None)
    assert (spec["task"], spec["args"], spec["kwargs"], spec["options"]["queue"]) == (
        "myapp.tasks.thumb", [1], {"size": 64}, "mine")


@pytest.mark.parametrize(("on_done", "queue"), [
    ("myapp.tasks.thumb", "enhance.submit"),  # our own queue: our workers cannot run it
    ("not a task name", None),
    ("myapp.tasks.thumb\n", None),  # matched whole: $ alone lets a final newline through
    (42, None),
    (signature("myapp.tasks.thumb", args=(object(),)), None),  # not JSON
])
def test_on_done_refusals(on_done, queue):
    with pytest.raises(InvalidInput):
        callback_spec(on_done, queue)


def test_options_without_their_target_are_refused():
    with pytest.raises(InvalidInput):
        prepare(FakeRuntime(), webhook_events=["failed"])
    with pytest.raises(InvalidInput):
        prepare(FakeRuntime(), on_done_queue="thumbs")
    assert prepare(FakeRuntime()) is None
