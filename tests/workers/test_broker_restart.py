"""A worker outlives a restart of its broker's Redis, and gives up loudly on a dead one.

Each test runs its own ``redis-server`` (``ops.faults.redisproc``): killing or restarting
the shared Redis would break every other test run on this machine.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from ops.faults.redisproc import RedisProcess
from tests.system import System, image_bytes
from workers.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLLING = ("submitted", "processing")


@pytest.fixture
def private_redis(tmp_path):
    # appendfsync always: this test is about the worker, not about the last second of AOF
    with RedisProcess(appendonly=True, appendfsync="always", work_dir=tmp_path) as server:
        yield server


@pytest.fixture
def private_system(system_env, private_redis, tmp_path):
    env = {**system_env, "REDIS_URL": private_redis.url, "CELERY_BROKER_URL": private_redis.url}
    deployment = System(env, tmp_path)
    yield deployment
    deployment.stop()


def _node_of(proc: subprocess.Popen) -> str:
    return next(arg for arg in proc.args if "@" in arg)


def _answers_ping(proc: subprocess.Popen) -> bool:
    with app.connection_for_write() as conn:  # a new connection: the pooled ones saw the crash
        return bool(app.control.ping(destination=[_node_of(proc)], timeout=2, connection=conn))


def test_a_worker_holding_countdown_polls_survives_a_redis_restart_from_its_aof(
        private_system, private_redis, sandbox):
    system = private_system
    sandbox.configure(processing_time_s=(5.0, 6.0))
    worker = system.start_worker(concurrency=2, HITPAW_POLL_INTERVAL_S="3",
                                 HITPAW_POLL_MAX_INTERVAL_S="3")
    system.start_beat()
    ids = [system.enqueue(image_bytes(48, 32), "hitpaw", "general_2x") for _ in range(6)]
    system.wait(ids, timeout_s=60, until=lambda rs: all(r.state.value in POLLING for r in rs))

    private_redis.kill()  # the worker holds the jobs' countdown polls, unacknowledged
    time.sleep(2)  # a few seconds down, as a crashed and restarted Redis would be
    private_redis.start()

    ids.append(system.enqueue(image_bytes(48, 32), "hitpaw", "general_2x"))  # producer too
    records = system.wait(ids, timeout_s=120)
    assert worker.poll() is None, system.logs("worker")[-3000:]
    assert "Unrecoverable error" not in system.logs("worker")
    assert _answers_ping(worker)
    assert [r.state.value for r in records] == ["succeeded"] * len(ids), \
        [r.error for r in records]
    assert sandbox.count(provider="hitpaw", kind="submit") == len(ids)


def test_a_worker_that_loses_its_broker_for_good_exits_non_zero(private_system, private_redis):
    worker = private_system.start_worker(BROKER_CONNECTION_MAX_RETRIES="1")

    private_redis.kill()  # and never back

    status = worker.wait(timeout=120)  # one retry 2 s later, then it gives up
    assert status != 0, private_system.logs("worker")[-3000:]
    assert "Unrecoverable error" in private_system.logs("worker")



def test_the_job_store_rides_through_a_redis_restart(private_redis):
    import threading

    from storage.jobs import JobRecord, JobSource
    from workers.runtime import Runtime
    from workers.settings import Settings

    rt = Runtime(Settings(redis_url=private_redis.url, celery_broker_url=private_redis.url))
    try:
        record, _ = rt.jobs.create(JobRecord(provider="hitpaw", model="general_2x",
                                             source=JobSource(uri="https://x/a.jpg")))
        private_redis.kill()
        threading.Timer(2.0, private_redis.start).start()  # back two seconds later

        updated = rt.jobs.update(record.id, lambda r: True, lambda r: {"progress": 7})

        assert updated is not None and rt.jobs.get(record.id).progress == 7
    finally:
        rt.close()
