"""The ``system`` fixture: a deployment of this project on loopback, per test."""

from __future__ import annotations

import pytest

from tests.system import FAST, System


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
    }


@pytest.fixture
def system(system_env, tmp_path):
    deployment = System(system_env, tmp_path)
    yield deployment
    deployment.stop()
