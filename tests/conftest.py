"""Factory fixtures for the real parts the tests run against.

- ``redis_url``: the Redis at ``$REDIS_URL`` (or 127.0.0.1:6379) when one answers, using a
  database of its own that is flushed before each test; otherwise a private
  ``redis-server`` started for the session.
- ``s3_endpoint`` / ``s3_bucket``: moto's S3 server over HTTP on loopback, and a fresh
  bucket per test.
- ``sandbox``: the provider sandbox over HTTP on loopback, fast by default.
- ``system``: all of the above as one deployment, with real worker and beat processes
  (``tests/system.py``).
"""

from __future__ import annotations

import os
import uuid
from contextlib import ExitStack

import boto3
import pytest
import redis
from botocore.config import Config

from tests.system import FAST, System
from workers.embedded import embedded_redis, embedded_s3, redis_answers

# A database of its own on a shared server, flushed per test (two test runs at once on
# one server need different ones: set EQ_TEST_REDIS_DB).
TEST_REDIS_DB = int(os.environ.get("EQ_TEST_REDIS_DB", "13"))


@pytest.fixture(scope="session")
def _redis_server_url():
    configured = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(configured):
        base = configured.rsplit("/", 1)[0] if configured.count("/") > 2 else configured
        yield f"{base}/{TEST_REDIS_DB}"
        return
    with embedded_redis() as url:
        yield url


@pytest.fixture
def redis_url(_redis_server_url):
    client = redis.Redis.from_url(_redis_server_url)
    client.flushdb()
    client.close()
    return _redis_server_url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint():
    with ExitStack() as stack:
        yield stack.enter_context(embedded_s3())


def make_s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


@pytest.fixture
def s3_client(s3_endpoint):
    return make_s3_client(s3_endpoint)


@pytest.fixture
def s3_bucket(s3_client):
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def sandbox():
    """A fast provider sandbox: jobs take 50-200 ms; no QPS cap unless a test sets one."""
    from providers.sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(processing_time_s=(0.05, 0.2), picwish_qps=None)) as server:
        yield server


@pytest.fixture
def system_env(redis_url, s3_endpoint, s3_bucket, sandbox):
    return {
        **FAST,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "S3_ENDPOINT_URL": s3_endpoint,
        "S3_BUCKET": s3_bucket,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "HITPAW_API_KEY": sandbox.hitpaw_key,
        "HITPAW_BASE_URL": sandbox.base_url,
        "PICWISH_API_KEY": sandbox.picwish_key,
        "PICWISH_BASE_URL": sandbox.base_url,
        # The sandbox and the S3 server listen on loopback: open exactly that address.
        "URL_ALLOWLIST": "127.0.0.1",
    }


@pytest.fixture
def system(system_env, tmp_path):
    deployment = System(system_env, tmp_path)
    yield deployment
    deployment.stop()
