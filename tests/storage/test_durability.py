"""Durable claims: a write confirmed on a replica (WAIT) or on disk (appendfsync always).

Each test runs private ``redis-server`` processes (``ops.faults.redisproc``), so no
test changes the configuration of a shared Redis.
"""

from __future__ import annotations

import time

import pytest

from ops.faults.redisproc import RedisProcess
from storage.durability import Durability, NotDurable
from storage.jobs import JobRecord, JobSource, JobStore
from workers.runtime import connect_redis
from workers.settings import Settings

pytestmark = pytest.mark.integration


def store_on(server: RedisProcess, mode: str, timeout_ms: int = 200) -> JobStore:
    settings = Settings(redis_url=server.url)
    durability = Durability(connect_redis(settings, single_connection=True), mode,
                            replicas=1, timeout_ms=timeout_ms)
    return JobStore(connect_redis(settings), durability=durability)


def claim(store: JobStore) -> str:
    record, _ = store.create(JobRecord(provider="hitpaw", model="general_2x",
                                       source=JobSource(uri="https://x/a.jpg")))
    store.update(record.id, lambda r: True, lambda r: {"progress": 1}, durable=True)
    return record.id


@pytest.fixture
def primary(tmp_path):
    with RedisProcess(appendonly=True, appendfsync="everysec", work_dir=tmp_path) as server:
        yield server


def test_wait_without_a_replica_refuses_to_confirm_the_claim(primary):
    store = store_on(primary, "wait", timeout_ms=20)
    with pytest.raises(NotDurable, match="0 of 1 replicas"):
        claim(store)


def test_wait_confirms_once_a_replica_has_the_claim(primary, tmp_path):
    with RedisProcess(appendonly=False, replica_of=("127.0.0.1", primary.port),
                      work_dir=tmp_path) as replica:
        client = replica.client()
        for _ in range(200):  # until the replica finished its first sync
            if client.info("replication").get("master_link_status") == "up":
                break
            time.sleep(0.05)
        job_id = claim(store_on(primary, "wait", timeout_ms=2000))
        assert client.exists(f"eq:job:{job_id}")


def test_fsync_refuses_a_job_store_on_everysec(primary):
    with pytest.raises(NotDurable, match="appendfsync everysec"):
        claim(store_on(primary, "fsync"))


def test_fsync_accepts_a_job_store_on_appendfsync_always(tmp_path):
    with RedisProcess(appendonly=True, appendfsync="always", work_dir=tmp_path) as server:
        store = store_on(server, "fsync")
        job_id = claim(store)
        assert store.get(job_id).progress == 1


def test_a_claim_survives_sigkill_with_appendfsync_always(tmp_path):
    with RedisProcess(appendonly=True, appendfsync="always", work_dir=tmp_path) as server:
        job_id = claim(store_on(server, "fsync"))
        server.restart()  # SIGKILL, then back from the AOF
        assert store_on(server, "none").get(job_id).progress == 1


def test_a_new_record_waits_for_its_replica_before_its_id_is_handed_out(primary, tmp_path):
    with RedisProcess(appendonly=False, replica_of=("127.0.0.1", primary.port),
                      work_dir=tmp_path) as replica:
        client = replica.client()
        for _ in range(200):
            if client.info("replication").get("master_link_status") == "up":
                break
            time.sleep(0.05)
        record, created = store_on(primary, "wait", timeout_ms=2000).create(
            JobRecord(provider="hitpaw", model="general_2x",
                      source=JobSource(uri="https://x/a.jpg")), durable=True)
        assert created and client.exists(f"eq:job:{record.id}")


def test_a_new_record_no_replica_confirms_is_taken_back(primary):
    store = store_on(primary, "wait", timeout_ms=20)
    record = JobRecord(provider="hitpaw", model="general_2x",
                       source=JobSource(uri="https://x/a.jpg"), idempotency_key="k")
    with pytest.raises(NotDurable):
        store.create(record, durable=True)
    assert store.get_many([record.id]) == [] and store.job_for_key("hitpaw", "k") is None
