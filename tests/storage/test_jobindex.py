"""The job indexes against a real Redis: ties, the scan budget, states moved, trimming."""

from __future__ import annotations

from datetime import timedelta

import pytest

from providers.errors import InvalidInput
from storage.jobindex import RETENTION_S, JobFilter
from storage.jobs import JobRecord, JobSource, JobState, JobStore, utcnow


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client)


def new_record(**fields) -> JobRecord:
    return JobRecord(provider="picwish", model="enhance",
                     source=JobSource(uri="https://example.com/a.jpg"), **fields)


def all_pages(store: JobStore, flt: JobFilter, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        records, cursor = store.list_page(flt, cursor, limit)
        pages.append([r.id for r in records])
        if cursor is None:
            return pages


def test_jobs_created_at_the_same_instant_are_each_listed_once(store):
    now = utcnow()
    records = [store.create(new_record(created_at=now))[0] for _ in range(7)]

    pages = all_pages(store, JobFilter(), limit=2)

    listed = [job_id for page in pages for job_id in page]
    assert listed == sorted((r.id for r in records), reverse=True)  # ties: by id, descending


def test_a_page_stops_at_its_scan_budget_and_its_cursor_goes_on(store, redis_client):
    from storage import jobindex

    wanted = store.create(new_record(labels={"user": "1"}, tenant="acme"))[0]
    for _ in range(30):  # newer jobs of the same tenant, other label
        store.create(new_record(labels={"user": "2"}, tenant="acme"))
    flt = JobFilter(tenant="acme", labels={"user": "1"})
    # the label's index is the smaller one: it drives, one candidate, found at once
    page, _ = jobindex.run(jobindex.page(store.prefix, flt, None, 10), redis_client)
    assert page.job_ids == [wanted.id] and page.cursor is None
    # a filter whose driving index is the big one, with a small budget: short pages
    flt = JobFilter(tenant="acme", state="queued", labels={})
    page, _ = jobindex.run(jobindex.page(store.prefix, flt, None, 50, scan_budget=10),
                           redis_client)
    assert len(page.job_ids) == 10 and page.cursor is not None


def test_a_transition_moves_the_job_between_state_indexes(store):
    record = store.create(new_record())[0]
    store.update(record.id, lambda r: True, lambda r: {"state": JobState.CANCELLED})

    assert store.list_page(JobFilter(state="queued"))[0] == []
    assert [r.id for r in store.list_page(JobFilter(state="cancelled"))[0]] == [record.id]


def test_entries_past_the_retention_are_trimmed_when_the_index_is_written(store, redis_client):
    old = store.create(new_record(created_at=utcnow() - timedelta(seconds=RETENTION_S + 60),
                                  labels={"user": "1"}))[0]
    assert redis_client.zscore("eq:idx:all", old.id) is not None

    new = store.create(new_record(labels={"user": "1"}))[0]

    for key in ("eq:idx:all", "eq:idx:label:user=1", "eq:idx:tenant:default",
                "eq:idx:state:queued"):
        assert redis_client.zscore(key, old.id) is None, key
        assert redis_client.zscore(key, new.id) is not None, key


def test_a_cursor_not_made_by_a_page_is_invalid_input(store):
    from storage.jobindex import encode_cursor

    made_up = [encode_cursor(score, "ab12") for score in ("nan", "inf", "-inf", "1e999")]
    for cursor in ("x", "bm90IGEgY3Vyc29y", "MXxhLWI", *made_up):
        with pytest.raises(InvalidInput):
            store.list_page(JobFilter(), cursor)
