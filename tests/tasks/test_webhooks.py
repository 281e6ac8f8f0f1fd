"""Webhooks end to end: a real worker delivers to a loopback receiver, which verifies them."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest

from storage.notifications import WebhookOutcome
from tasks.producer import cancel, verify_webhook
from tests.receiver import Receiver
from tests.system import image_bytes
from workers.cli import main
from workers.constants import NOTIFY_QUEUE
from workers.metrics import JobCollector

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"current-secret-of-32-bytes-long!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"previous-secret-32-bytes-long!!!").decode()
URL_TOKEN = "tok-9f8e7d6c5b4a"  # a receiver's own secret in its URL: never logged or recorded


@pytest.fixture
def extra_env() -> dict[str, str]:
    return {}


@pytest.fixture
def system_env(system_env, extra_env):
    return {**system_env, "WEBHOOK_SECRET": f"{SECRET} {OLD_SECRET}",
            "WEBHOOK_RETRY_BASE_S": "0.3", "WEBHOOK_TIMEOUT_S": "1",
            "NOTIFY_LOST_AFTER_S": "2", **extra_env}


@pytest.fixture
def receiver():
    server = Receiver(slow_s=2.5)
    yield server
    server.close()


def settled(records) -> bool:
    notify = records[0].notify
    return records[0].state.final and notify.webhook_outcome is not None


def test_a_delivery_verifies_and_carries_the_job_and_an_output_url(system, receiver):
    system.start_worker()
    job_id = system.enqueue(image_bytes(64, 48), "hitpaw", "general_2x",
                            webhook=receiver.url(f"/hooks?token={URL_TOKEN}"))

    [record] = system.wait([job_id], until=settled)
    [delivery] = receiver.wait_for(1)

    event = verify_webhook(delivery.body, delivery.headers, SECRET)
    assert event["type"] == "job.succeeded"
    assert event["data"]["id"] == job_id and event["data"]["state"] == "succeeded"
    assert "result_url" not in event["data"] and "notify" not in event["data"]
    stored = requests.get(event["data"]["output_url"], timeout=10)
    assert stored.status_code == 200 and len(stored.content) == record.output.size_bytes
    assert delivery.headers["webhook-id"] == f"evt_{job_id}_succeeded"
    assert delivery.headers["content-type"] == "application/json"
    assert record.notify.webhook_outcome is WebhookOutcome.DELIVERED
    [attempt] = record.notify.attempts
    assert (attempt.attempt, attempt.status, attempt.outcome) == (1, 200, "delivered")
    assert system.runtime.redis.zscore("eq:notify", job_id) is None  # owed nothing more


def test_rotation_signs_with_both_secrets(system, receiver):
    system.start_worker()
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url())

    system.wait([job_id], until=settled)
    [delivery] = receiver.wait_for(1)

    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert verify_webhook(delivery.body, delivery.headers, OLD_SECRET)["data"]["id"] == job_id
    assert verify_webhook(delivery.body, delivery.headers, [SECRET])["data"]["id"] == job_id


def test_retried_through_500_429_and_a_timeout_with_one_id(system, receiver):
    receiver.script = [500, 429, "timeout", 200]
    system.start_worker()
    job_id = system.enqueue(image_bytes(32, 32), "picwish",
                            webhook=receiver.url(f"/hooks?token={URL_TOKEN}"))

    [record] = system.wait([job_id], until=settled)
    deliveries = receiver.wait_for(4)

    assert len(deliveries) == 4
    assert {d.headers["webhook-id"] for d in deliveries} == {f"evt_{job_id}_succeeded"}
    for delivery in deliveries:  # each attempt is signed afresh
        assert verify_webhook(delivery.body, delivery.headers, SECRET)["data"]["id"] == job_id
    attempts = record.notify.attempts
    assert [(a.attempt, a.status, a.outcome.value) for a in attempts] == [
        (1, 500, "retrying"), (2, 429, "retrying"), (3, None, "retrying"),
        (4, 200, "delivered")]
    assert attempts[2].error == "provider_timeout: ProviderTimeout"
    assert record.notify.webhook_outcome is WebhookOutcome.DELIVERED
    shown = CliRunner().invoke(main, ["status", job_id]).output.splitlines()
    assert shown[-5:] == [
        "  webhook: 127.0.0.1 (job.cancelled, job.failed, job.succeeded): delivered, "
        "4 attempt(s)",
        *[f"    #{a.attempt} {a.at.isoformat(timespec='seconds')} {a.outcome.value}: {what}"
          for a, what in zip(attempts, ["HTTP 500", "HTTP 429",
                                        "provider_timeout: ProviderTimeout", "HTTP 200"],
                             strict=True)]]
    shown_json = json.loads(CliRunner().invoke(main, ["status", job_id, "--json"]).output)
    assert shown_json["notify"]["webhook_host"] == "127.0.0.1"
    assert shown_json["notify"]["webhook_attempts"] == 4
    stats = json.loads(CliRunner().invoke(main, ["stats", "--json"]).output)["notify"]
    assert stats == {"owed": 0, "delivered": 1, "retrying": 3, "gave_up": 0}
    registry = CollectorRegistry()
    registry.register(JobCollector(system.runtime))
    scraped = generate_latest(registry).decode()
    assert 'enhance_webhook_attempts_total{outcome="retrying"} 3.0' in scraped
    assert "enhance_notifications_owed 0.0" in scraped
    logs = system.logs("worker")
    assert f"webhook evt_{job_id}_succeeded to 127.0.0.1 attempt 4: delivered" in logs
    for secret in (SECRET, OLD_SECRET, SECRET[6:], URL_TOKEN):
        assert secret not in logs
        assert secret not in record.notify.model_dump_json(exclude={"webhook"})
        assert secret not in json.dumps(shown_json) + "\n".join(shown)


def test_a_400_is_not_retried(system, receiver):
    receiver.script = [400]
    system.start_worker()
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url())

    [record] = system.wait([job_id], until=settled)

    assert record.notify.webhook_outcome is WebhookOutcome.GAVE_UP
    assert [(a.status, a.outcome.value) for a in record.notify.attempts] == [(400, "gave_up")]
    assert system.runtime.redis.zscore("eq:notify", job_id) is None  # nothing will resend it
    assert len(receiver.deliveries) == 1


def test_only_the_events_asked_for_are_sent(system, receiver):
    system.start_worker()
    failing = system.enqueue(image_bytes(32, 32), "hitpaw", "no_such_model",
                             webhook=receiver.url("/failed"), webhook_events=["failed"])
    quiet = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url("/quiet"),
                           webhook_events=["job.failed"])

    records = system.wait([failing, quiet], until=lambda rs: settled(rs)
                          and rs[1].state.final)
    [delivery] = receiver.wait_for(1)

    event = verify_webhook(delivery.body, delivery.headers, SECRET)
    assert (delivery.path, event["type"]) == ("/failed", "job.failed")
    assert event["data"]["error"]["code"] == "invalid_input"
    assert event["data"]["output_url"] is None
    assert records[1].state.value == "succeeded" and records[1].notify.attempts == []
    assert system.runtime.redis.zscore("eq:notify", quiet) is None


def test_a_lost_notify_message_is_sent_again_by_the_sweep(system, receiver):
    worker_queues = "enhance.admit,enhance.submit,enhance.poll,enhance.store"
    system.start_worker(queues=worker_queues)  # nobody takes enhance.notify yet
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url())
    system.wait([job_id])
    assert system.runtime.redis.zscore("eq:notify", job_id) is not None  # with the end
    sent = system.wait([job_id], until=lambda _: system.runtime.redis.llen(NOTIFY_QUEUE) == 1)
    assert sent and system.runtime.redis.llen(NOTIFY_QUEUE) == 1  # the hook sent it (after)
    system.runtime.redis.delete(NOTIFY_QUEUE)  # the message is lost, as with a dead worker

    system.start_worker(queues=f"{NOTIFY_QUEUE},enhance.maintenance")
    system.start_beat()
    [record] = system.wait([job_id], until=settled)

    [delivery] = receiver.wait_for(1)
    assert delivery.headers["webhook-id"] == f"evt_{job_id}_succeeded"
    assert record.notify.webhook_outcome is WebhookOutcome.DELIVERED
    assert record.notify.token is not None  # the sweep's run, not the lost one
    assert "notification re-sent" in system.logs("beat") + system.logs("worker")


@pytest.mark.parametrize("extra_env", [{"WEBHOOK_RETRY_BASE_S": "6"}])  # > MAX_COUNTDOWN_S
def test_a_retry_further_away_than_a_countdown_is_sent_by_the_sweep(system, receiver):
    receiver.script = [503]
    system.start_worker()
    system.start_beat()
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url())

    [record] = system.wait([job_id], until=settled, timeout_s=90)

    assert [(a.status, a.outcome.value) for a in record.notify.attempts] == [
        (503, "retrying"), (200, "delivered")]
    logs = system.logs("worker")
    assert "attempt 1: retrying: HTTP 503, next in 6.0 s" in logs
    assert f"job {job_id}: notification re-sent" in logs  # by the sweep, not a countdown


@pytest.mark.parametrize("extra_env", [{"WEBHOOK_RETRY_WINDOW_S": "0.1"}])
def test_retries_stop_at_the_end_of_the_window(system, receiver):
    receiver.script = [500]
    system.start_worker()
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url())

    [record] = system.wait([job_id], until=settled)

    [attempt] = record.notify.attempts
    assert (attempt.status, attempt.outcome.value) == (500, "gave_up")
    assert attempt.error == "HTTP 500; retry window passed"
    assert system.runtime.redis.zscore("eq:notify", job_id) is None


def test_a_cancel_sends_job_cancelled_from_the_producers_process(system, receiver):
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook=receiver.url(),
                            webhook_events=["cancelled"])  # no worker yet: it stays queued

    assert cancel(job_id, runtime=system.runtime).cancelled
    system.start_worker()  # takes the enhance.notify message the cancel sent
    [record] = system.wait([job_id], until=settled)

    [delivery] = receiver.wait_for(1)
    event = verify_webhook(delivery.body, delivery.headers, SECRET)
    assert (event["type"], event["data"]["state"]) == ("job.cancelled", "cancelled")
    assert delivery.headers["webhook-id"] == f"evt_{job_id}_cancelled"
    assert record.notify.webhook_outcome is WebhookOutcome.DELIVERED


def test_a_host_that_does_not_resolve_is_retried(system):
    system.start_worker()
    job_id = system.enqueue(image_bytes(32, 32), "picwish", webhook="http://hooks.invalid/h")

    [record] = system.wait([job_id], until=lambda rs: rs[0].notify.webhook_attempts >= 2)

    assert [a.outcome.value for a in record.notify.attempts[:2]] == ["retrying", "retrying"]
    assert "hooks.invalid does not resolve" in record.notify.attempts[0].error
