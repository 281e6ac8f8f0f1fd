"""RabbitMQ as the broker instead of Redis (Redis stays the job store)."""

from __future__ import annotations

import os
import socket

import pytest

from tests.system import image_bytes

pytestmark = pytest.mark.integration

AMQP_URL = os.environ.get("EQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not rabbitmq_answers(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_jobs_of_both_providers_run_over_rabbitmq(system_env, tmp_path, sandbox):
    from tests.system import System

    deployment = System({**system_env, "CELERY_BROKER_URL": AMQP_URL}, tmp_path)
    try:
        deployment.purge()  # a shared broker: start from empty queues
        deployment.start_worker()
        ids = [deployment.enqueue(image_bytes(50, 30), "hitpaw", "general_2x"),
               deployment.enqueue(image_bytes(50, 30), "picwish", "hd")]
        records = deployment.wait(ids, timeout_s=60)
    finally:
        deployment.stop()

    assert [r.state.value for r in records] == ["succeeded", "succeeded"], \
        [r.error for r in records]
    assert all(r.poll_count >= 1 for r in records), "polls went through countdowns on RabbitMQ"
    assert sandbox.count(kind="submit") == 2
