"""The producer API against the real stack: labels, listing, waiting, URLs, batches.

Cancellation has its own file (test_cancel.py); the asyncio twins too (test_producer_async.py).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests

from storage.jobs import JobState
from tasks import producer
from tasks.producer import (
    EnhanceError,
    IdempotencyConflict,
    InvalidInput,
    ResultNotReady,
    UnknownJob,
    WaitTimeout,
)
from tests.system import ROOT, image_bytes

pytestmark = pytest.mark.integration


def test_every_exception_a_view_meets_has_its_http_status():
    assert InvalidInput("x").status_code == 422
    assert IdempotencyConflict("x").status_code == 409
    assert UnknownJob("x").status_code == 404
    assert ResultNotReady("x").status_code == 409
    assert WaitTimeout("x").status_code == 504
    assert producer.InsufficientCredits("x").status_code == 402
    assert producer.BudgetExhausted("x").status_code == 402
    assert producer.StorageUnavailable("x").status_code == 503
    assert EnhanceError("x").status_code == 500
    # what a provider answered stays its own field
    assert InvalidInput("x", http_status=400).status_code == 422
    # a failed job's error.code maps the same way, from the one module a backend imports
    assert producer.error_for_code("deadline_exceeded").status_code == 504
    assert producer.error_for_code("unknown_job") is UnknownJob


@pytest.mark.parametrize("labels", [
    {"User": "42"}, {"user": ""}, {"user": "a b"}, {"user": 42}, {"1user": "x"},
    {f"k{i}": "v" for i in range(9)}, {"user": "x" * 65}, {"k" * 33: "v"}, ["user=42"],
    {"user": "42\n"}, {"user\n": "42"},  # a regex's $ matches before a final newline
])
def test_labels_outside_the_rules_are_invalid_input(system, labels):
    with pytest.raises(InvalidInput):
        system.enqueue(image_bytes(8, 8), "picwish", labels=labels)
    assert producer.list_jobs(runtime=system.runtime).jobs == []


def test_a_tenant_with_a_trailing_newline_is_invalid_input(system):
    with pytest.raises(InvalidInput):
        system.enqueue(image_bytes(8, 8), "picwish", tenant="acme\n")
    with pytest.raises(InvalidInput):
        producer.list_jobs(tenant="acme\n", runtime=system.runtime)


def test_labels_are_kept_listed_and_written_into_the_result_metadata(system, sandbox):
    system.start_worker()
    job_id = system.enqueue(image_bytes(40, 30), "hitpaw", "general_2x",
                            labels={"user": "42", "order": "A17"})

    record = producer.wait(job_id, 60, runtime=system.runtime)

    assert record.state is JobState.SUCCEEDED, record.error
    assert record.labels == {"user": "42", "order": "A17"}
    head = system.runtime.objects.client.head_object(Bucket=record.output.bucket,
                                                     Key=record.output.key)
    assert head["Metadata"]["label-user"] == "42"
    assert head["Metadata"]["label-order"] == "A17"
    listed = producer.list_jobs(label="user=42", runtime=system.runtime)
    assert [r.id for r in listed.jobs] == [job_id]


def test_output_url_is_a_presigned_get_with_content_type_and_disposition(system, sandbox):
    system.start_worker()
    job_id = system.enqueue(image_bytes(40, 30), "hitpaw", "general_2x",
                            filename="Holiday photo.jpg")
    record = producer.wait(job_id, 60, runtime=system.runtime)
    assert record.state is JobState.SUCCEEDED, record.error

    url = producer.output_url(job_id, expires_in=120, runtime=system.runtime)
    answer = requests.get(url, timeout=10)

    assert answer.status_code == 200
    stored = system.runtime.objects.client.get_object(Bucket=record.output.bucket,
                                                      Key=record.output.key)["Body"].read()
    assert answer.content == stored
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.headers["Content-Disposition"] == 'inline; filename="Holiday_photo-enhanced.jpg"'
    query = parse_qs(urlsplit(url).query)  # SigV4 names the lifetime, SigV2 its end
    assert query.get("X-Amz-Expires") == ["120"] or \
        0 < int(query["Expires"][0]) - time.time() <= 120
    download = producer.output_url(job_id, download=True, runtime=system.runtime)
    assert requests.get(download, timeout=10).headers["Content-Disposition"].startswith(
        "attachment;")


def test_output_url_of_a_job_without_a_result_or_with_a_bad_lifetime_is_refused(system):
    job_id = system.enqueue(image_bytes(8, 8), "picwish")  # no worker: stays queued
    with pytest.raises(ResultNotReady):
        producer.output_url(job_id, runtime=system.runtime)
    with pytest.raises(UnknownJob):
        producer.output_url("feedface", runtime=system.runtime)


def test_list_jobs_pages_newest_first_and_filters(system):
    ids = [system.enqueue(image_bytes(8 + i, 8), "picwish" if i % 2 else "hitpaw",
                          tenant="acme" if i < 4 else "beta", labels={"batch": f"b{i % 3}"})
           for i in range(7)]
    rt = system.runtime

    pages, cursor = [], None
    while True:
        page = producer.list_jobs(limit=3, cursor=cursor, runtime=rt)
        pages.append([r.id for r in page.jobs])
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [job_id for page in pages for job_id in page] == ids[::-1]
    assert [len(p) for p in pages[:2]] == [3, 3]

    def listed(**filters):
        return [r.id for r in producer.list_jobs(runtime=rt, **filters).jobs]

    assert listed(provider="picwish") == [ids[5], ids[3], ids[1]]
    assert listed(tenant="acme", provider="hitpaw") == [ids[2], ids[0]]
    assert listed(label={"batch": "b1"}) == [ids[4], ids[1]]
    assert listed(label="batch=b1", tenant="beta") == [ids[4]]
    assert listed(state="queued") == ids[::-1]
    assert listed(since=datetime.now(UTC) + timedelta(seconds=5)) == []
    producer.cancel(ids[3], runtime=rt)
    assert listed(state="cancelled") == [ids[3]]
    assert ids[3] not in listed(state="queued")
    for bad in ({"state": "done"}, {"provider": "x"}, {"limit": 0}, {"cursor": "garbage"},
                {"since": datetime(2026, 1, 1)}, {"label": "batch"}):
        with pytest.raises(InvalidInput):
            producer.list_jobs(runtime=rt, **bad)


def test_list_jobs_drops_jobs_whose_record_expired(system, redis_client):
    ids = [system.enqueue(image_bytes(8 + i, 8), "picwish") for i in range(3)]
    redis_client.delete(f"eq:job:{ids[1]}")

    assert [r.id for r in producer.list_jobs(runtime=system.runtime).jobs] == [ids[2], ids[0]]
    assert redis_client.zscore("eq:idx:all", ids[1]) is None


class CountingRedis:
    """Counts the commands a Redis client sends (each pipeline counts once: a round trip)."""

    def __init__(self, client: redis.Redis, monkeypatch) -> None:
        self.calls: list[str] = []
        pool = client.connection_pool
        original = pool.get_connection

        def get_connection(*args, **kwargs):
            conn = original(*args, **kwargs)
            if not getattr(conn, "_eq_counted", False):
                send = conn.send_packed_command

                def counted(command, check_health=True):
                    self.calls.append("send")
                    return send(command, check_health)

                conn.send_packed_command = counted
                conn._eq_counted = True
            return conn

        monkeypatch.setattr(pool, "get_connection", get_connection)


def test_wait_blocks_on_announcements_and_reads_only_on_a_change(system, monkeypatch):
    rt = system.runtime
    job_id = system.enqueue(image_bytes(8, 8), "picwish")  # no worker: it stays queued
    reads = []
    original = rt.jobs.get_many
    monkeypatch.setattr(rt.jobs, "get_many", lambda ids: reads.append(ids) or original(ids))

    with pytest.raises(WaitTimeout):
        producer.wait(job_id, 1.0, runtime=rt)
    assert len(reads) == 1  # read once, then blocked on the announcements: no polling

    reads.clear()

    def read_then_cancel(ids):  # the job changes right after the waiter's first read
        found = original(ids)
        if not reads:
            producer.cancel(job_id, runtime=rt)
        reads.append(ids)
        return found

    monkeypatch.setattr(rt.jobs, "get_many", read_then_cancel)
    record = producer.wait(job_id, 30, runtime=rt)
    assert record.state is JobState.CANCELLED
    assert len(reads) == 2  # the first read, and one after the cancel was announced
    with pytest.raises(UnknownJob):
        producer.wait("feedface", 1, runtime=rt)


@pytest.mark.parametrize("reuse", [False, True])
def test_enqueue_many_takes_the_same_round_trips_for_two_jobs_or_forty(system, monkeypatch,
                                                                       reuse):
    rt = system.runtime
    counter = CountingRedis(rt.redis, monkeypatch)
    producer.enqueue_many([{"source": image_bytes(5, 5), "provider": "hitpaw"}],
                          reuse=reuse, runtime=rt)  # scripts loaded, admission chain started
    counter.calls.clear()
    producer.enqueue(image_bytes(6, 6), "hitpaw", reuse=reuse, runtime=rt)
    single = len(counter.calls)
    counter.calls.clear()
    producer.enqueue_many([{"source": image_bytes(7, 7 + i), "provider": "hitpaw"}
                           for i in range(2)], reuse=reuse, runtime=rt)
    two = len(counter.calls)
    counter.calls.clear()
    ids = producer.enqueue_many(
        [{"source": image_bytes(10 + i, 10), "provider": ("hitpaw", "picwish")[i % 2],
          "labels": {"n": str(i)}} for i in range(40)], reuse=reuse, tenant="acme", runtime=rt)

    # records; reuse claims; queues and each provider's wake-up: the count the README states
    assert len(counter.calls) == two == single == (3 if reuse else 2)
    stated = re.search(r"take (\d) round trips with reuse, (\d) without", (ROOT / "README.md").read_text())
    assert stated and stated.groups() == ("3", "2")
    records = rt.jobs.get_many(ids)
    assert [r.labels["n"] for r in records] == [str(i) for i in range(40)]
    assert {r.tenant for r in records} == {"acme"}
    assert producer.list_jobs(tenant="acme", limit=100, runtime=rt).jobs[0].id == ids[-1]


def test_enqueue_many_queues_nothing_when_one_request_is_bad(system, s3_client):
    bucket = system.settings.s3_bucket
    with pytest.raises(InvalidInput, match="request 1"):
        producer.enqueue_many([{"source": image_bytes(8, 8), "provider": "hitpaw"},
                               {"source": image_bytes(8, 8), "provider": "hitpaw",
                                "labels": {"BAD": "x"}}], runtime=system.runtime)
    assert producer.list_jobs(runtime=system.runtime).jobs == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_enqueue_many_honours_idempotency_keys_within_and_across_batches(system):
    rt = system.runtime
    photo = image_bytes(9, 9)
    first = producer.enqueue(photo, "picwish", idempotency_key="k1", runtime=rt)
    ids = producer.enqueue_many([
        {"source": photo, "provider": "picwish", "idempotency_key": "k1"},
        {"source": image_bytes(7, 7), "provider": "picwish", "idempotency_key": "k2"},
        {"source": image_bytes(7, 7), "provider": "picwish", "idempotency_key": "k2"},
    ], runtime=rt)
    assert ids[0] == first and ids[1] == ids[2] != first
    with pytest.raises(IdempotencyConflict):
        producer.enqueue_many([{"source": image_bytes(5, 5), "provider": "picwish",
                                "idempotency_key": "k1"}], runtime=rt)
