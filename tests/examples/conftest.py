"""The examples run against the real stack: a worker, Redis, S3 over HTTP, the sandbox.

Deliveries come from a real worker to a loopback receiver (``tests.receiver``); the test
hands the bytes and headers it got, unchanged, to the example's own receiver endpoint.
"""

from __future__ import annotations

import base64

import pytest

from tests.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"example-receiver-secret-32bytes!").decode()


@pytest.fixture
def system_env(system_env):
    return {**system_env, "WEBHOOK_SECRET": SECRET}


@pytest.fixture
def receiver(monkeypatch):
    server = Receiver()
    monkeypatch.setenv("ENHANCE_WEBHOOK_URL", server.url())
    yield server
    server.close()
