"""JobStore.watch: a person waiting on jobs blocks on their change announcements."""

from __future__ import annotations

import threading
import time

import redis

from storage.jobs import JobRecord, JobSource, JobState, JobStore, in_states
from tests.slowlink import late_subscribe


def new_job(store: JobStore) -> str:
    record, _ = store.create(JobRecord(provider="hitpaw", model="general_2x",
                                       source=JobSource(uri="https://example.com/a.jpg")))
    return record.id


def test_watch_yields_now_then_after_each_change(redis_client):
    store = JobStore(redis_client)
    job_id = new_job(store)

    def advance():
        for state in (JobState.SUBMITTED, JobState.PROCESSING):
            time.sleep(0.2)
            store.update(job_id, lambda r: True, lambda r, s=state: {"state": s})

    threading.Thread(target=advance).start()
    seen = []
    for [record] in store.watch([job_id], timeout_s=10):
        seen.append(record.state)
        if record.state is JobState.PROCESSING:
            break

    assert seen == [JobState.QUEUED, JobState.SUBMITTED, JobState.PROCESSING]


def test_watch_ends_at_its_timeout_when_nothing_changes(redis_client):
    store = JobStore(redis_client)
    job_id = new_job(store)
    started = time.monotonic()

    snapshots = list(store.watch([job_id], timeout_s=0.3))

    assert [[r.state for r in s] for s in snapshots] == [[JobState.QUEUED]]
    assert time.monotonic() - started >= 0.3


def test_a_refused_update_announces_nothing(redis_client):
    store = JobStore(redis_client)
    job_id = new_job(store)
    watcher = store.watch([job_id], timeout_s=0.3)
    next(watcher)
    store.update(job_id, in_states(JobState.STORING), lambda r: {"state": JobState.FAILED})
    assert list(watcher) == []


def test_a_change_right_after_the_first_read_is_seen_when_the_subscribe_lands_late(redis_url):
    """The first read comes after the subscription holds, not merely after it was sent: a
    change announced in between is not lost (the waiter would sleep to its timeout)."""
    with late_subscribe(redis_url) as slow_url:
        client = redis.Redis.from_url(slow_url)
        store = JobStore(client)
        job_id = new_job(store)
        seen = []
        for [record] in store.watch([job_id], timeout_s=3):
            seen.append(record.state)
            if record.state is not JobState.QUEUED:
                break
            store.update(job_id, lambda r: True, lambda r: {"state": JobState.SUBMITTED})
        client.close()

    assert seen == [JobState.QUEUED, JobState.SUBMITTED]
