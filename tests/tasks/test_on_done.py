"""on_done callbacks end to end: sent by our worker, run by a backend's own Celery app."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest
from celery import signature

from tests.system import ROOT, image_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def backend_worker(system, redis_url, tmp_path):
    """``celery -A tests.callback_app worker -Q thumbs``: another app, process and queue."""
    log = open(tmp_path / "backend-worker.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.callback_app", "worker", "-Q", "thumbs",
         "-P", "solo", "--without-gossip", "--without-mingle", "-n", "backend@test"],
        cwd=ROOT, env={**system.env, "CALLBACK_REDIS_URL": redis_url}, stdout=log,
        stderr=subprocess.STDOUT)
    yield proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def callbacks(redis_client, count: int) -> dict[str, dict]:
    got = [redis_client.blpop(["test:callbacks"], timeout=60) for _ in range(count)]
    assert all(got), "a callback did not run"
    return {call["job"]["id"]: call for call in (json.loads(item[1]) for item in got)}


def test_on_done_runs_on_the_callers_own_app_and_queue(system, backend_worker, redis_client):
    system.start_worker()
    by_signature = system.enqueue(
        image_bytes(32, 32), "picwish",
        on_done=signature("backend.make_thumbnail", kwargs={"size": 64}, queue="thumbs"))
    by_name = system.enqueue(image_bytes(32, 32), "hitpaw", "no_such_model",
                             on_done="backend.make_thumbnail", on_done_queue="thumbs")

    calls = callbacks(redis_client, 2)

    done = calls[by_signature]
    assert done["job"]["state"] == "succeeded" and done["size"] == 64
    assert done["job"]["output_url"].startswith("http")
    assert done["task_id"] == f"{by_signature}-on_done"  # stable: the caller can deduplicate
    assert done["queue"] == "thumbs"
    # what monitoring (task events, Flower) shows of the argument: not the presigned URL
    assert ast.literal_eval(done["argsrepr"]) == ({"id": by_signature, "state": "succeeded"},)
    failed = calls[by_name]
    assert failed["job"]["state"] == "failed" and failed["job"]["error"]["code"] == "invalid_input"
    assert "result_url" not in failed["job"] and "notify" not in failed["job"]
    records = system.wait([by_signature, by_name],
                          until=lambda rs: all(r.notify.on_done_sent_at for r in rs))
    assert all(r.notify.on_done_sent_at for r in records)
    assert system.runtime.redis.zcard("eq:notify") == 0
    assert "backend.make_thumbnail" not in system.logs("worker").replace(
        "on_done backend.make_thumbnail sent", "")  # our workers never ran it
