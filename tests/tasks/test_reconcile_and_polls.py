"""Reconcile that cannot stop for good, garbled poll answers, idempotency conflicts and
staged inputs that go when their job ends: steps called directly on real Redis, S3, sandbox.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
import redis

from providers.errors import ProtocolError
from storage.jobs import IdempotencyConflict, JobRecord, JobSource, JobState, utcnow
from tasks import admission, jobsteps, pipeline
from tests.system import image_bytes
from tests.tasks.test_steps import budget_marks_cleared, force, submitted_job


def due_ids(rt):
    return [i.decode() for i in rt.redis.zrange("eq:due", 0, -1)]


# --- reconcile -------------------------------------------------------------------------


def test_a_due_entry_without_a_record_is_dropped_and_the_others_still_move(
        system, rt, dispatch, caplog):
    # Issue 9: one id in the due set with no record made every reconcile run crash.
    good = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    force(rt, good, next_check_at=utcnow() - timedelta(seconds=1))
    rt.redis.zadd("eq:due", {"ghost": 0})

    with caplog.at_level(logging.ERROR, logger="enhance.pipeline"):
        assert pipeline.reconcile(rt, dispatch) == 1

    assert dispatch.sent == [], "reconcile sends no submit"
    assert rt.jobs.get(good).next_check_at == rt.jobs.get(good).deadline_at, \
        "the good job moved: given back to admission"
    assert "ghost" not in due_ids(rt)
    assert "ghost" in caplog.text


def test_an_enqueued_job_is_due_at_its_deadline_once_admission_has_it(system, rt):
    job_id = system.enqueue(image_bytes(40, 40), "picwish", None)  # no worker: it waits

    record = rt.jobs.get(job_id)
    assert rt.redis.zscore("eq:due", job_id) == record.deadline_at.timestamp()
    assert admission.waiting(rt, "picwish")["interactive"] == 1


def queued_record(**fields) -> JobRecord:
    """A new PicWish job as ``enqueue`` builds it: due at its deadline, 2 days on."""
    deadline = utcnow() + timedelta(days=2)
    return JobRecord(provider="picwish", model="hd", deadline_at=deadline,
                     next_check_at=deadline, source=JobSource(uri="https://example.com/a.png"),
                     **fields)


def test_a_job_recorded_but_never_handed_to_admission_is_re_driven_not_left(
        system, rt, dispatch):
    # Redis (or the producer) failing between the record and the admission queue left the
    # job due only at its deadline (2 days), where reconcile failed it deadline_exceeded;
    # a retry with the same idempotency key got the same id and never queued it.
    record = queued_record(idempotency_key="order-7")
    [(stored, created)] = rt.jobs.create_many([record], handoff_s=0.0)  # ... then nothing
    assert created and admission.waiting(rt, "picwish")["interactive"] == 0
    assert rt.redis.zscore("eq:due", record.id) < record.deadline_at.timestamp()

    assert pipeline.reconcile(rt, dispatch) == 1

    assert admission.waiting(rt, "picwish")["interactive"] == 1, "given to admission"
    assert [kind for kind, *_ in dispatch.sent] == ["admit"]
    after = rt.jobs.get(record.id)
    assert after.state is JobState.QUEUED and after.error is None
    assert rt.redis.zscore("eq:due", record.id) == after.deadline_at.timestamp()


def test_a_job_without_a_key_never_handed_to_admission_is_not_run(system, rt, dispatch):
    """Its caller saw the enqueue fail: a retry records a second job, the one to pay for."""
    record = queued_record()
    rt.jobs.create_many([record], handoff_s=0.0)

    assert rt.redis.zscore("eq:due", record.id) == record.deadline_at.timestamp()
    assert pipeline.reconcile(rt, dispatch) == 0 and dispatch.sent == []


def test_a_record_that_no_longer_validates_is_dropped_and_logged(system, rt, dispatch, caplog):
    broken = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    good = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    for job_id in (broken, good):
        force(rt, job_id, next_check_at=utcnow() - timedelta(seconds=1))
    rt.redis.set(f"eq:job:{broken}", b'{"id": "%s", "state": "from-a-future-release"}' %
                 broken.encode())

    with caplog.at_level(logging.ERROR, logger="enhance.pipeline"):
        assert pipeline.reconcile(rt, dispatch) == 1

    assert dispatch.sent == [], "reconcile sends no submit"
    assert rt.jobs.get(good).next_check_at == rt.jobs.get(good).deadline_at, \
        "the good job moved: given back to admission"
    assert broken not in due_ids(rt) and good in due_ids(rt)
    assert broken in caplog.text


def test_fail_job_raising_inside_reconcile_drops_the_entry_and_carries_on(
        system, rt, dispatch, monkeypatch):
    doomed = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    good = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    lapsed = utcnow() - timedelta(seconds=rt.settings.step_lease_s + 1)  # the claim's lease
    force(rt, doomed, submit_started_at=lapsed, next_check_at=utcnow() - timedelta(seconds=2))
    force(rt, good, next_check_at=utcnow() - timedelta(seconds=1))

    def fail_job_breaks(*args):
        raise RuntimeError("redis said no")

    monkeypatch.setattr(pipeline, "fail_job", fail_job_breaks)
    assert pipeline.reconcile(rt, dispatch) == 1

    assert dispatch.sent == [], "reconcile sends no submit"
    assert rt.jobs.get(good).next_check_at == rt.jobs.get(good).deadline_at, \
        "the good job moved: given back to admission"
    assert doomed not in due_ids(rt)


def test_a_job_store_outage_keeps_every_entry_for_the_next_run(system, rt, dispatch,
                                                               monkeypatch):
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
    force(rt, job_id, next_check_at=utcnow() - timedelta(seconds=1))

    def redis_is_down(*args):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(rt.jobs, "get", redis_is_down)
    assert pipeline.reconcile(rt, dispatch) == 0
    monkeypatch.undo()

    assert job_id in due_ids(rt), "a Redis blip must not lose a job's due entry"
    assert pipeline.reconcile(rt, dispatch) == 1


# --- garbled poll answers --------------------------------------------------------------


def test_garbled_poll_answers_are_asked_again_a_bounded_number_of_times(
        system, rt, dispatch, sandbox):
    # Issue 9: one malformed poll answer ended a paid job protocol_error.
    record = submitted_job(system, rt, dispatch)
    sandbox.configure(rate_malformed=1.0, malformed_kinds=("html",))
    limit = rt.settings.poll_protocol_retries
    token = record.poll_token
    for attempt in range(1, limit + 1):
        budget_marks_cleared(rt)
        pipeline.poll_job(rt, dispatch, record.id, token)
        after = rt.jobs.get(record.id)
        assert (after.state, after.poll_protocol_errors) == (JobState.SUBMITTED, attempt)
        assert after.poll_token != token and dispatch.sent[-1][:3] == ("poll", record.id,
                                                                       after.poll_token)
        token = after.poll_token

    budget_marks_cleared(rt)
    with pytest.raises(ProtocolError):
        pipeline.poll_job(rt, dispatch, record.id, token)
    assert sandbox.count(kind="query") == limit + 1


def test_a_good_poll_answer_resets_the_garbled_count(system, rt, dispatch, sandbox):
    sandbox.configure(processing_time_s=(30, 30))
    record = submitted_job(system, rt, dispatch)
    sandbox.configure(rate_malformed=1.0, malformed_kinds=("html",))
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token)
    sandbox.configure(rate_malformed=0.0)
    budget_marks_cleared(rt)

    pipeline.poll_job(rt, dispatch, record.id, rt.jobs.get(record.id).poll_token)

    after = rt.jobs.get(record.id)
    assert (after.state, after.poll_protocol_errors) == (JobState.PROCESSING, 0)


def test_a_scheduled_poll_is_overdue_its_grace_after_it_was_due(system, rt, dispatch):
    # Issue 9: a poll was overdue connect + read timeouts + grace (40 s) after it was due,
    # so a worker killed holding countdowns left its jobs still for 40 s more. A poll not
    # started by then is lost: its grace alone.
    record = submitted_job(system, rt, dispatch)
    delay_s = dispatch.sent[0][3]

    overdue_in_s = (record.next_check_at - record.updated_at).total_seconds()

    assert overdue_in_s == pytest.approx(delay_s + rt.settings.poll_grace_s, abs=0.05)


def test_a_started_poll_holds_its_job_for_its_call_and_the_next_write_ends_the_hold(
        system, rt, dispatch, sandbox):
    sandbox.configure(processing_time_s=(30, 30))
    record = submitted_job(system, rt, dispatch)
    due = rt.jobs.prefix + "due"
    hold_s = pipeline.poll_lease_s(rt.settings)
    assert hold_s > rt.settings.http_connect_timeout_s + rt.settings.http_read_timeout_s

    before = utcnow().timestamp()
    held = rt.jobs.get_and_hold(record.id, hold_s)  # what a poll does as it starts
    assert held == record
    assert rt.redis.zscore(due, record.id) >= before + hold_s

    budget_marks_cleared(rt)
    pipeline.poll_job(rt, dispatch, record.id, record.poll_token)  # still processing

    after = rt.jobs.get(record.id)
    assert rt.redis.zscore(due, record.id) == pytest.approx(after.next_check_at.timestamp())
    assert after.next_check_at < utcnow() + timedelta(seconds=hold_s), \
        "the next poll's own (shorter) overdue time replaced the hold"


# --- idempotency keys ------------------------------------------------------------------


def test_an_idempotency_key_reused_for_another_request_is_refused(system, rt, sandbox):
    first = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x", idempotency_key="k1")
    assert system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x",
                          idempotency_key="k1") == first

    for source, model, options in [(image_bytes(41, 40), "general_2x", {}),
                                   (image_bytes(40, 40), "general_4x", {}),
                                   (image_bytes(40, 40), "general_2x", {"dpi": 300}),
                                   (sandbox.sample_url("portrait.jpg"), "general_2x", {})]:
        with pytest.raises(IdempotencyConflict) as caught:
            system.enqueue(source, "hitpaw", model, options=options, idempotency_key="k1")
        assert caught.value.code == "idempotency_conflict" and first in caught.value.message
    inputs = rt.objects.client.list_objects_v2(Bucket=rt.objects.bucket,
                                               Prefix=f"{rt.objects.prefix}inputs/")
    assert len(inputs.get("Contents", [])) == 1, "repeats and refusals keep no input copy"


def test_an_idempotency_key_reused_by_another_tenant_is_refused(system, sandbox):
    url = sandbox.sample_url("portrait.jpg")
    first = system.enqueue(url, "hitpaw", None, idempotency_key="k3", tenant="acme")
    assert system.enqueue(url, "hitpaw", None, idempotency_key="k3", tenant="acme") == first
    with pytest.raises(IdempotencyConflict):
        system.enqueue(url, "hitpaw", None, idempotency_key="k3", tenant="other")


def test_the_same_url_request_under_one_key_is_the_same_job(system, sandbox):
    url = sandbox.sample_url("portrait.jpg")
    first = system.enqueue(url, "hitpaw", None, idempotency_key="k2")
    assert system.enqueue(url, "hitpaw", None, idempotency_key="k2") == first


# --- staged inputs ---------------------------------------------------------------------


def input_exists(rt, record):
    return rt.objects.exists(record.source.uri)


def test_a_staged_input_is_deleted_when_its_job_fails(system, rt):
    record = system.job(system.enqueue(image_bytes(40, 40), "hitpaw", "no-such-model"))
    assert input_exists(rt, record)

    jobsteps.fail_job(rt, record.id, ValueError("boom"))

    assert not input_exists(rt, record)


def test_a_staged_input_is_deleted_when_its_job_succeeds(system, rt, sandbox):
    system.start_worker()
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    [record] = system.wait([job_id])

    assert record.state is JobState.SUCCEEDED
    deadline = time.monotonic() + 30  # deleted right after the final transition is written
    while input_exists(rt, record) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not input_exists(rt, record)


def test_a_producer_s3_source_is_never_deleted(system, rt, s3_client):
    key = "uploads/theirs.jpg"
    s3_client.put_object(Bucket=rt.objects.bucket, Key=key, Body=image_bytes(40, 40))
    record = system.job(system.enqueue(f"s3://{rt.objects.bucket}/{key}", "hitpaw", None))

    jobsteps.fail_job(rt, record.id, ValueError("boom"))

    assert rt.objects.exists(key)
