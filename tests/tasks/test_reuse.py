"""Never paying twice: real workers (concurrency 4) and beat, Redis, S3 and the sandbox."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from providers.errors import ProviderJobFailed
from tasks import events, pipeline
from tests.system import System, image_bytes

pytestmark = pytest.mark.integration

PHOTO = image_bytes(48, 32)


def body(system, record):
    out = record.output
    return system.runtime.objects.client.get_object(Bucket=out.bucket, Key=out.key)["Body"].read()


def delete_output(system, record):
    system.runtime.objects.delete(record.output.uri)


def paid(sandbox):
    return sandbox.count(kind="submit")


def start(system, **env):
    system.start_worker(concurrency=4, **env)
    system.start_beat(**env)


def enqueue(system, *args, **kwargs):
    """Enqueue with reuse on, the product's default (the test harness turns it off)."""
    kwargs.setdefault("reuse", True)
    return system.enqueue(*args, **kwargs)


def enqueue_at_once(system, count, *args, **kwargs):
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(enqueue, system, *args, **kwargs) for _ in range(count)]
        return [f.result() for f in futures]


def assert_reused(system, records, leader):
    """Every record but the leader succeeded from its result, each with its own object."""
    data = body(system, leader)
    for record in records:
        if record.id == leader.id:
            continue
        assert record.state.value == "succeeded", record.error
        assert (record.reused_from, record.cost) == (leader.id, 0)
        assert record.output.key == f"{system.settings.s3_prefix}{record.id}.jpg"
        assert body(system, record) == data


def test_100_concurrent_enqueues_of_one_image_make_exactly_one_paid_call(system, sandbox):
    sandbox.configure(processing_time_s=(2.0, 2.0))  # in flight while the others arrive
    start(system)

    ids = enqueue_at_once(system, 100, PHOTO, "hitpaw", "general_2x")
    records = system.wait(ids, timeout_s=120)

    assert paid(sandbox) == 1
    [leader] = [r for r in records if r.reused_from is None]
    assert leader.state.value == "succeeded" and leader.cost > 0
    assert_reused(system, records, leader)
    assert len({r.output.key for r in records}) == 100
    stats = system.runtime.stats.read()
    assert stats["reused:hitpaw"] == 99
    assert stats["saved:hitpaw"] == 99 * leader.cost
    delete_output(system, leader)
    assert body(system, records[-1] if records[-1].id != leader.id else records[0])


@pytest.mark.parametrize(("scope", "paid_calls"), [("tenant", 2), ("global", 1)])
def test_reuse_stays_within_a_tenant_unless_the_operator_widens_it(
        system_env, tmp_path, sandbox, scope, paid_calls):
    deployment = System({**system_env, "REUSE_SCOPE": scope}, tmp_path)
    try:
        sandbox.configure(processing_time_s=(1.0, 1.0))
        start(deployment)
        ids = [enqueue(deployment, PHOTO, "hitpaw", "general_2x", tenant=tenant)
               for tenant in ("acme", "globex", "acme", "globex")]
        records = deployment.wait(ids)
    finally:
        deployment.stop()

    assert [r.state.value for r in records] == ["succeeded"] * 4, [r.error for r in records]
    assert paid(sandbox) == paid_calls
    assert records[2].reused_from == records[0].id
    if scope == "tenant":
        assert records[3].reused_from == records[1].id and records[1].reused_from is None
    else:
        assert records[1].reused_from == records[3].reused_from == records[0].id


def test_a_success_is_reused_at_once_while_its_object_exists(system, sandbox):
    start(system)
    [first] = system.wait([enqueue(system, PHOTO, "hitpaw", "general_2x")])
    assert first.state.value == "succeeded"

    second = system.job(enqueue(system, PHOTO, "hitpaw", "general_2x"))
    assert second.state.value == "succeeded", "settled inside enqueue, no worker involved"
    assert_reused(system, [second], first)

    delete_output(system, first)
    assert body(system, second), "the copy is its own object"
    third_id = enqueue(system, PHOTO, "hitpaw", "general_2x")
    [third] = system.wait([third_id])

    assert (third.state.value, third.reused_from) == ("succeeded", None)
    assert third.cost > 0
    assert paid(sandbox) == 2
    fourth = system.job(enqueue(system, PHOTO, "hitpaw", "general_2x"))
    assert fourth.reused_from == third.id, "the new success is the one reused now"
    assert paid(sandbox) == 2


def test_opting_out_or_changing_an_output_option_pays(system, sandbox):
    start(system)
    [first] = system.wait([enqueue(system, PHOTO, "hitpaw", "general_2x")])
    others = [enqueue(system, PHOTO, "hitpaw", "general_2x", reuse=False),
              enqueue(system, PHOTO, "hitpaw", "general_2x", options={"exif": True}),
              enqueue(system, PHOTO, "hitpaw", "general_4x")]
    records = system.wait(others)

    assert [(r.state.value, r.reused_from) for r in records] == [("succeeded", None)] * 3
    assert records[0].fingerprint is None
    assert paid(sandbox) == 4
    assert first.fingerprint == system.job(
        enqueue(system, PHOTO, "hitpaw", "general_2x", options={"exif": False})).fingerprint


def test_s3_sources_reuse_by_etag_and_urls_only_when_asked(system, sandbox, s3_client):
    bucket = system.settings.s3_bucket
    for key in ("uploads/a.png", "uploads/copy-of-a.png"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=image_bytes(30, 20, "PNG"),
                             ContentType="image/png")
    url = sandbox.sample_url("portrait.jpg")
    start(system)

    s3_ids = [enqueue(system, f"s3://{bucket}/uploads/{name}", "hitpaw", "general_2x")
              for name in ("a.png", "copy-of-a.png")]
    s3_records = system.wait(s3_ids)
    url_ids = [enqueue(system, url, "hitpaw", "general_2x") for _ in range(2)]
    url_ids += [enqueue(system, url, "hitpaw", "general_2x", reuse="url") for _ in range(2)]
    url_records = system.wait(url_ids)

    assert s3_records[1].reused_from == s3_records[0].id, "same ETag: same image"
    assert [r.reused_from for r in url_records[:2]] == [None, None]
    assert url_records[3].reused_from == url_records[2].id
    assert paid(sandbox) == 1 + 2 + 1


def test_followers_of_an_invalid_input_leader_fail_alike_without_paying(system, sandbox):
    ids = enqueue_at_once(system, 5, PHOTO, "hitpaw", "enhanced_v1")  # not a HitPaw model
    waiting = [r for r in system.runtime.jobs.get_many(ids) if r.follows]
    assert len(waiting) == 4
    start(system)

    records = system.wait(ids)

    assert [(r.state.value, r.error.code) for r in records] == [("failed", "invalid_input")] * 5
    [leader] = [r for r in records if r.follows is None]
    for record in waiting:
        assert record.follows == leader.id
        assert leader.id in system.job(record.id).error.message
    assert paid(sandbox) == 0


def test_a_provider_failure_promotes_one_follower_and_the_rest_reuse_its_result(
        system, sandbox):
    sandbox.configure(rate_job_failure=1.0, processing_time_s=(0.8, 0.8))
    ids = enqueue_at_once(system, 5, PHOTO, "hitpaw", "general_2x")
    start(system)
    system.wait(ids, until=lambda rs: any(r.provider_job_id for r in rs))
    sandbox.configure(rate_job_failure=0.0)  # only the first leader's job fails

    records = system.wait(ids)

    failed = [r for r in records if r.state.value == "failed"]
    assert [r.error.code for r in failed] == ["provider_failed"]
    [promoted] = [r for r in records if r.state.value == "succeeded" and not r.reused_from]
    assert promoted.leaders_failed == 1 and promoted.cost > 0
    assert_reused(system, [r for r in records if r.id != failed[0].id], promoted)
    assert paid(sandbox) == 2


def test_followers_fail_once_their_leaders_failed_more_than_the_retries(system, sandbox):
    sandbox.configure(rate_job_failure=1.0)
    ids = enqueue_at_once(system, 5, PHOTO, "hitpaw", "general_2x")
    start(system)

    records = system.wait(ids)

    assert [(r.state.value, r.error.code) for r in records] == [("failed", "provider_failed")] * 5
    assert paid(sandbox) == 2, "the first leader and one promoted follower"


def test_a_follower_whose_leaders_end_went_unseen_is_caught_by_reconcile(
        system, sandbox, monkeypatch):
    leader_id = enqueue(system, PHOTO, "hitpaw", "general_2x")
    follower_id = enqueue(system, PHOTO, "hitpaw", "general_2x")
    assert system.job(follower_id).follows == leader_id
    monkeypatch.setattr(events, "_final_hooks", [])  # as if the worker died right after
    pipeline.fail_job(system.runtime, leader_id, ProviderJobFailed("lost", "hitpaw"))
    monkeypatch.undo()
    system.purge()  # the leader's submit task is gone with it

    start(system, REUSE_FOLLOWER_CHECK_S="1")
    system.runtime.jobs.update(follower_id, lambda r: True,  # its check is due now
                               lambda r: {"next_check_at": r.created_at})
    [record] = system.wait([follower_id])

    assert (record.state.value, record.reused_from, record.leaders_failed) == (
        "succeeded", None, 1)
    assert paid(sandbox) == 1


def test_status_shows_where_a_result_was_reused_from(system, sandbox):
    from workers.cli import main

    start(system)
    [first] = system.wait([enqueue(system, PHOTO, "hitpaw", "general_2x")])
    second = enqueue(system, PHOTO, "hitpaw", "general_2x")

    shown = CliRunner().invoke(main, ["status", second])
    stats = CliRunner().invoke(main, ["stats", "--json"])

    assert f"reused from: job {first.id} (cost 0" in shown.output
    assert '"reused": 1.0' in stats.output
