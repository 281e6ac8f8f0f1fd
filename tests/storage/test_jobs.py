"""JobStore against a real Redis: compare-and-set, idempotency, counts, due set, TTL."""

from __future__ import annotations

import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis

from storage.jobs import (
    FINAL_RECORD_TTL_S,
    KEY_PREFIX,
    JobRecord,
    JobSource,
    JobState,
    JobStore,
    UnknownJob,
    in_states,
    seconds_from_now,
    utcnow,
)

RACERS = 16


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def new_record(provider: str = "picwish", **fields) -> JobRecord:
    return JobRecord(
        provider=provider, model="enhance", source=JobSource(uri="https://example.com/a.jpg"),
        **fields,
    )


def race(count: int, action):
    """Run ``action(i)`` in ``count`` threads released together; return the results."""
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        return action(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def slow_change(fields):
    """A change that takes a moment, so racing writers overlap between WATCH and EXEC."""

    def change(_record):
        time.sleep(0.005)
        return fields

    return change


def submit_in_subprocess(redis_url, job_id, barrier, results, name):
    store = JobStore(redis.Redis.from_url(redis_url))
    barrier.wait()
    won = store.update(
        job_id, in_states(JobState.QUEUED),
        slow_change({"state": JobState.SUBMITTED, "provider_job_id": name}),
    )
    results.put((name, won is not None))


# --- create / get --------------------------------------------------------------------


def test_create_then_get_returns_the_record(store):
    record, created = store.create(new_record(options={"scale": 2}))
    assert created
    got = store.get(record.id)
    assert got == record
    assert got.state is JobState.QUEUED
    assert set(got.transitions) == {"queued"}


def test_get_of_a_missing_id_raises_unknown_job(store):
    with pytest.raises(UnknownJob, match="nope") as caught:
        store.get("nope")
    assert caught.value.code == "unknown_job"
    assert not caught.value.retryable


def test_update_of_a_missing_id_raises_unknown_job_and_writes_nothing(store, redis_client):
    with pytest.raises(UnknownJob):
        store.update("nope", lambda r: True, lambda r: {"state": JobState.SUBMITTED})
    assert redis_client.keys("*") == []


def test_get_many_skips_missing_ids_and_keeps_order(store):
    a, _ = store.create(new_record())
    b, _ = store.create(new_record())
    assert [r.id for r in store.get_many([b.id, "missing", a.id])] == [b.id, a.id]


def test_create_with_a_used_idempotency_key_returns_the_first_job(store):
    first, created = store.create(new_record(idempotency_key="k1"))
    again, created_again = store.create(new_record(idempotency_key="k1"))
    assert created and not created_again
    assert again.id == first.id
    assert store.job_for_key("picwish", "k1") == first.id
    assert store.counts()["queued"] == 1


def test_idempotency_keys_are_per_provider(store):
    a, _ = store.create(new_record("picwish", idempotency_key="same"))
    b, created = store.create(new_record("hitpaw", idempotency_key="same"))
    assert created and a.id != b.id
    assert store.job_for_key("hitpaw", "same") == b.id
    assert store.job_for_key("hitpaw", "other") is None


def test_idempotent_create_under_a_race_makes_one_job(store, redis_client):
    results = race(RACERS, lambda i: store.create(new_record(idempotency_key="dup")))
    assert sum(created for _, created in results) == 1
    assert len({record.id for record, _ in results}) == 1
    assert len(redis_client.keys(KEY_PREFIX + "job:*")) == 1
    assert store.counts()["queued"] == 1
    assert store.counts()["picwish:queued"] == 1


# --- update: compare-and-set ---------------------------------------------------------


def test_update_applies_the_change_and_records_the_transition(store):
    record, _ = store.create(new_record())
    updated = store.update(
        record.id, in_states(JobState.QUEUED),
        lambda r: {"state": JobState.SUBMITTED, "provider_job_id": "p-1"},
    )
    assert updated.state is JobState.SUBMITTED
    assert updated.provider_job_id == "p-1"
    assert set(updated.transitions) == {"queued", "submitted"}
    assert updated.updated_at >= record.updated_at
    assert store.get(record.id) == updated


def test_change_without_a_state_keeps_transitions(store):
    record, _ = store.create(new_record())
    updated = store.update(record.id, lambda r: True, lambda r: {"poll_count": r.poll_count + 1})
    assert updated.poll_count == 1
    assert updated.transitions == store.get(record.id).transitions
    assert set(updated.transitions) == {"queued"}


def test_guard_refusal_returns_none_and_writes_nothing(store, redis_client):
    record, _ = store.create(new_record(next_check_at=seconds_from_now(60)))
    before = {key: redis_client.dump(key) for key in redis_client.keys("*")}
    changed = []
    result = store.update(
        record.id, in_states(JobState.PROCESSING),
        lambda r: changed.append(r) or {"state": JobState.FAILED},
    )
    assert result is None
    assert changed == []  # the change is not even computed
    assert {key: redis_client.dump(key) for key in redis_client.keys("*")} == before


def test_the_guard_sees_the_current_record(store):
    record, _ = store.create(new_record())
    store.update(record.id, lambda r: True, lambda r: {"poll_token": "t2"})
    stale = store.update(record.id, lambda r: r.poll_token == "t1", lambda r: {"poll_count": 9})
    fresh = store.update(record.id, lambda r: r.poll_token == "t2", lambda r: {"poll_count": 1})
    assert stale is None
    assert fresh.poll_count == 1


def test_a_version_another_process_replaced_is_decided_again_on_the_current_one(
        store, redis_client):
    """This store remembers the version it read; another store's write makes it stale.
    A guard that would refuse the stale version, and one that would accept it, both
    decide on the current record."""
    record, _ = store.create(new_record())
    store.get(record.id)  # remembered: queued
    other = JobStore(redis_client)
    move(other, record.id, JobState.QUEUED, JobState.SUBMITTED)

    assert store.update(record.id, in_states(JobState.QUEUED),
                        lambda r: {"state": JobState.FAILED}) is None
    moved = store.update(record.id, in_states(JobState.SUBMITTED),
                         lambda r: {"state": JobState.PROCESSING})
    assert moved is not None and moved.state is JobState.PROCESSING
    assert other.update(record.id, in_states(JobState.QUEUED),  # other's version is stale too
                        lambda r: {"state": JobState.FAILED}) is None
    assert store.get(record.id).state is JobState.PROCESSING
    counts = store.counts()
    assert (counts["queued"], counts["submitted"], counts["processing"]) == (0, 0, 1)


def test_an_update_after_a_read_is_one_round_trip(redis_url):
    client = redis.Redis.from_url(redis_url)
    sent = []
    execute = client.execute_command
    client.execute_command = lambda *args, **options: sent.append(args[0]) or execute(
        *args, **options)
    store = JobStore(client)
    record, _ = store.create(new_record())
    store.get(record.id)
    sent.clear()
    store.update(record.id, in_states(JobState.QUEUED), lambda r: {"state": JobState.SUBMITTED})
    store.update(record.id, in_states(JobState.SUBMITTED), lambda r: {"poll_count": 1})
    assert sent == ["EVALSHA", "EVALSHA"]
    client.close()


def test_a_record_that_expired_meanwhile_is_unknown(store, redis_client):
    record, _ = store.create(new_record())
    store.get(record.id)
    redis_client.delete(KEY_PREFIX + "job:" + record.id)
    with pytest.raises(UnknownJob):
        store.update(record.id, lambda r: True, lambda r: {"poll_count": 1})


def test_racing_threads_one_transition_exactly_one_wins(store):
    record, _ = store.create(new_record())
    results = race(RACERS, lambda i: store.update(
        record.id, in_states(JobState.QUEUED),
        slow_change({"state": JobState.SUBMITTED, "provider_job_id": f"thread-{i}"}),
    ))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get(record.id).provider_job_id == winners[0].provider_job_id
    counts = store.counts()
    assert (counts["queued"], counts["submitted"]) == (0, 1)
    assert store.in_flight("picwish") == 1


def test_racing_processes_one_transition_exactly_one_wins(store, redis_url):
    record, _ = store.create(new_record())
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=submit_in_subprocess,
                    args=(redis_url, record.id, barrier, results, f"proc-{i}"))
        for i in range(4)
    ]
    for proc in procs:
        proc.start()
    outcomes = dict(results.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=10)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    winners = [name for name, won in outcomes.items() if won]
    assert len(winners) == 1
    assert store.get(record.id).provider_job_id == winners[0]
    assert store.counts()["submitted"] == 1


def test_concurrent_updates_lose_nothing(store):
    record, _ = store.create(new_record())

    def bump(_i):
        def change(r):
            time.sleep(0.002)
            return {"poll_count": r.poll_count + 1}
        return store.update(record.id, lambda r: True, change)

    results = race(10, bump)
    assert all(r is not None for r in results)
    assert sorted(r.poll_count for r in results) == list(range(1, 11))
    assert store.get(record.id).poll_count == 10


# --- counts and in_flight ------------------------------------------------------------


def move(store: JobStore, job_id: str, src: JobState, dst: JobState) -> JobRecord:
    updated = store.update(job_id, in_states(src), lambda r: {"state": dst})
    assert updated is not None
    return updated


def test_counts_start_at_zero_for_every_state(store):
    assert store.counts() == {state.value: 0 for state in JobState}
    assert store.in_flight("picwish") == 0


def test_counts_and_in_flight_follow_transitions(store):
    job, _ = store.create(new_record("picwish"))
    store.create(new_record("picwish"))
    store.create(new_record("hitpaw"))
    counts = store.counts()
    assert (counts["queued"], counts["picwish:queued"], counts["hitpaw:queued"]) == (3, 2, 1)

    path = [JobState.QUEUED, JobState.SUBMITTED, JobState.PROCESSING, JobState.STORING,
            JobState.SUCCEEDED]
    in_flight = {JobState.SUBMITTED: 1, JobState.PROCESSING: 1}
    for src, dst in zip(path, path[1:], strict=False):
        move(store, job.id, src, dst)
        counts = store.counts()
        assert counts[dst.value] == 1 and counts[f"picwish:{dst.value}"] == 1
        assert counts[src.value] == (2 if src is JobState.QUEUED else 0)
        assert counts[f"picwish:{src.value}"] == (1 if src is JobState.QUEUED else 0)
        assert store.in_flight("picwish") == in_flight.get(dst, 0)
        assert store.in_flight("hitpaw") == 0
    assert sum(counts[state.value] for state in JobState) == 3


def test_updates_that_keep_the_state_leave_counts_alone(store):
    job, _ = store.create(new_record())
    move(store, job.id, JobState.QUEUED, JobState.SUBMITTED)
    before = store.counts()
    store.update(job.id, lambda r: True, lambda r: {"poll_count": 3, "progress": 40})
    store.update(job.id, lambda r: True, lambda r: {"state": JobState.SUBMITTED})
    assert store.counts() == before


# --- the due set and the final-record TTL --------------------------------------------


def test_overdue_lists_only_jobs_past_their_next_check(store):
    late, _ = store.create(new_record(next_check_at=utcnow() - timedelta(seconds=30)))
    later, _ = store.create(new_record(next_check_at=utcnow() - timedelta(seconds=10)))
    store.create(new_record(next_check_at=seconds_from_now(60)))
    store.create(new_record())  # no next check: never listed
    assert store.overdue(utcnow()) == [late.id, later.id]
    assert store.overdue(utcnow(), limit=1) == [late.id]
    assert store.overdue(utcnow() - timedelta(seconds=20)) == [late.id]


def test_a_new_next_check_moves_the_job_in_the_due_set(store):
    job, _ = store.create(new_record(next_check_at=utcnow() - timedelta(seconds=5)))
    store.update(job.id, lambda r: True, lambda r: {"next_check_at": seconds_from_now(60)})
    assert store.overdue(utcnow()) == []
    assert store.overdue(utcnow() + timedelta(seconds=61)) == [job.id]


def test_get_and_hold_pushes_the_due_time_later_only_while_the_job_is_due(store):
    job, _ = store.create(new_record(next_check_at=utcnow() - timedelta(seconds=5)))
    assert store.get_and_hold(job.id, 60) == job
    assert store.overdue(utcnow() + timedelta(seconds=59)) == []
    assert store.overdue(utcnow() + timedelta(seconds=61)) == [job.id]

    store.get_and_hold(job.id, 1)  # never earlier than it was
    assert store.overdue(utcnow() + timedelta(seconds=59)) == []

    unscheduled, _ = store.create(new_record())  # not in the due set: stays out
    store.get_and_hold(unscheduled.id, 60)
    assert store.overdue(utcnow() + timedelta(seconds=61)) == [job.id]
    with pytest.raises(UnknownJob):
        store.get_and_hold("nope", 60)
    assert store.overdue(utcnow() + timedelta(seconds=61)) == [job.id]


@pytest.mark.parametrize("final", [JobState.SUCCEEDED, JobState.FAILED])
def test_a_final_state_leaves_the_due_set_and_gets_a_ttl(store, redis_client, final):
    job, _ = store.create(new_record(next_check_at=utcnow() - timedelta(seconds=5)))
    key = KEY_PREFIX + "job:" + job.id
    assert redis_client.ttl(key) == -1  # a live job never expires
    assert store.overdue(utcnow()) == [job.id]

    store.update(job.id, lambda r: True,
                 lambda r: {"state": final, "next_check_at": utcnow() - timedelta(seconds=1)})
    assert store.overdue(utcnow() + timedelta(days=1)) == []
    assert FINAL_RECORD_TTL_S - 60 < redis_client.ttl(key) <= FINAL_RECORD_TTL_S
    assert store.get(job.id).state is final


def test_a_record_created_final_is_not_due_and_expires(store, redis_client):
    job, _ = store.create(new_record(state=JobState.FAILED, next_check_at=utcnow()))
    assert store.overdue(utcnow() + timedelta(days=1)) == []
    assert redis_client.ttl(KEY_PREFIX + "job:" + job.id) > 0


def test_keys_stay_under_the_prefix(redis_client):
    store = JobStore(redis_client, prefix="other:")
    job, _ = store.create(new_record(idempotency_key="k", next_check_at=utcnow()))
    assert all(key.startswith(b"other:") for key in redis_client.keys("*"))
    assert JobStore(redis_client).job_for_key("picwish", "k") is None
    assert store.job_for_key("picwish", "k") == job.id
