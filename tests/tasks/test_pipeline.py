"""End to end: a real worker process, real Redis, S3 over HTTP, the sandbox over HTTP."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.system import image_bytes

pytestmark = pytest.mark.integration


def stored_image(system, record):
    body = system.runtime.objects.client.get_object(Bucket=record.output.bucket,
                                                    Key=record.output.key)
    data = body["Body"].read()
    return Image.open(io.BytesIO(data)), body


def test_hitpaw_job_lands_in_the_bucket_with_dimensions_and_metadata(system, sandbox):
    system.start_worker()
    job_id = system.enqueue(image_bytes(64, 48), "hitpaw", "general_2x")

    [record] = system.wait([job_id])

    assert record.state.value == "succeeded", record.error
    image, obj = stored_image(system, record)
    assert image.size == (128, 96)
    assert image.format == "JPEG"
    assert obj["ContentType"] == "image/jpeg"
    assert obj["Metadata"]["job-id"] == job_id
    assert obj["Metadata"]["provider"] == "hitpaw"
    assert obj["Metadata"]["model"] == "general_2x"
    assert obj["Metadata"]["source"].startswith("s3://")
    assert record.output.key == f"{system.settings.s3_prefix}{job_id}.jpg"
    assert record.cost and record.cost > 0
    assert sandbox.count(provider="hitpaw", kind="submit") == 1
    states = list(record.transitions)
    assert states[:2] == ["queued", "submitted"] and states[-2:] == ["storing", "succeeded"]


@pytest.mark.parametrize(("model", "options", "scale"), [
    ("ultra_hd", {}, None),
    ("hd", {"return_type": 2}, None),
])
def test_picwish_job_from_a_url_source_lands_in_the_bucket(system, sandbox, model, options, scale):
    system.start_worker()
    job_id = system.enqueue(sandbox.sample_url("product.png"), "picwish", model, options=options)

    [record] = system.wait([job_id])

    assert record.state.value == "succeeded", record.error
    image, obj = stored_image(system, record)
    assert (image.width, image.height) == (record.result_width, record.result_height)
    assert image.width > 320 and image.height > 240
    assert obj["Metadata"]["provider"] == "picwish"
    assert record.result_inline is (options.get("return_type") == 2)
    assert sandbox.count(provider="picwish", kind="submit") == 1


def test_idempotency_key_returns_the_same_job_and_pays_once(system, sandbox):
    system.start_worker()
    first = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x", idempotency_key="order-7")
    second = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x", idempotency_key="order-7")

    assert first == second
    [record] = system.wait([first])
    assert record.state.value == "succeeded"
    assert sandbox.count(provider="hitpaw", kind="submit") == 1


def test_duplicate_submit_and_poll_deliveries_do_not_pay_twice_or_fork(system, sandbox):
    from tasks.definitions import DISPATCH

    system.start_worker()
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    for _ in range(3):  # as if the broker delivered the submit again
        DISPATCH.submit(job_id)
    running = system.wait([job_id], until=lambda rs: rs[0].poll_token is not None)[0]
    for _ in range(3):  # duplicates of the live poll: only one may act
        DISPATCH.poll(job_id, running.poll_token, 0)

    [record] = system.wait([job_id])

    assert record.state.value == "succeeded"
    assert sandbox.count(provider="hitpaw", kind="submit") == 1
    queries = sandbox.count(provider="hitpaw", kind="query")
    assert record.poll_count == queries, "every provider query is a counted poll of one chain"


def result_keys(system, job_id):
    listing = system.runtime.objects.client.list_objects_v2(
        Bucket=system.settings.s3_bucket, Prefix=f"{system.settings.s3_prefix}{job_id}")
    return [obj["Key"] for obj in listing.get("Contents", [])]


BAD_INPUTS = {
    "unknown model": ("hitpaw", "enhanced_v1", lambda: image_bytes(40, 40), "invalid_input"),
    "unsupported format": ("hitpaw", "general_2x", lambda: image_bytes(40, 40, "GIF"),
                           "invalid_input"),
    "input over PicWish 4096 px": ("picwish", "ultra_hd", lambda: image_bytes(4100, 8, "PNG"),
                                   "invalid_input"),
    "output over generative 34 MP": ("hitpaw", "generative_4x",
                                     lambda: image_bytes(3000, 3000, "PNG"), "invalid_input"),
}


@pytest.mark.parametrize("case", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_fails_the_job_before_paying(system, sandbox, case):
    provider, model, make_source, code = case
    system.start_worker()
    job_id = system.enqueue(make_source(), provider, model)

    [record] = system.wait([job_id])

    assert record.state.value == "failed"
    assert record.error.code == code
    assert record.error.message
    assert sandbox.count(kind="submit") == 0, "nothing may be sent to the provider"
    assert result_keys(system, job_id) == []


def test_unreachable_source_url_fails_with_a_clear_error(system, sandbox):
    system.start_worker()
    job_id = system.enqueue("http://127.0.0.1:9/missing.jpg", "hitpaw", "general_2x")

    [record] = system.wait([job_id])

    assert record.state.value == "failed"
    assert record.error.code in ("invalid_input", "provider_failed")
    assert result_keys(system, job_id) == []


def test_bad_api_key_fails_with_auth_failed(system, sandbox):
    system.start_worker(HITPAW_API_KEY="not-the-key")
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")

    [record] = system.wait([job_id])

    assert (record.state.value, record.error.code) == ("failed", "auth_failed")
    assert "not-the-key" not in system.logs("worker")


def test_no_credits_left_pauses_admission_and_the_job_waits_until_resumed(system, sandbox):
    from tasks import admission, spend

    sandbox.configure(picwish_credits=0)
    system.start_worker()
    job_id = system.enqueue(image_bytes(40, 40), "picwish", "hd")
    system.wait([job_id], timeout_s=30,
                until=lambda rs: spend.paused(system.runtime, "picwish") is not None)
    rt = system.runtime

    record = system.job(job_id)
    assert (record.state.value, record.error, record.submit_started_at) == ("queued", None, None)
    assert admission.waiting(rt, "picwish")["interactive"] == 1, "back in the queue"
    assert "OUT OF CREDIT" in system.logs("worker")
    assert rt.stats.read()["out_of_credit:picwish"] == 1
    assert sandbox.count(kind="submit", status=200) == 0

    sandbox.configure(picwish_credits=100)
    assert admission.resume(rt, "picwish")
    [record] = system.wait([job_id])
    assert record.state.value == "succeeded", record.error
    assert spend.paused(rt, "picwish") is None


def test_enhance_pause_holds_admission_until_enhance_resume(system, sandbox):
    from click.testing import CliRunner
    from prometheus_client import CollectorRegistry, generate_latest

    from workers.cli import main
    from workers.metrics import JobCollector

    paused = CliRunner().invoke(main, ["pause", "picwish", "--reason", "vendor incident"])
    assert paused.exit_code == 0 and "picwish: admission held" in paused.output, paused.output
    system.start_worker()
    held = system.enqueue(image_bytes(40, 40), "picwish", "hd")
    other = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    system.wait([other])  # admission of both was woken at their enqueue, long before

    assert system.job(held).state.value == "queued"
    assert sandbox.count(provider="picwish", kind="submit") == 0
    registry = CollectorRegistry()
    registry.register(JobCollector(system.runtime))
    scraped = generate_latest(registry).decode()
    assert 'enhance_admission_held{provider="picwish"} 1.0' in scraped
    assert 'enhance_admission_held{provider="hitpaw"} 0.0' in scraped

    resumed = CliRunner().invoke(main, ["resume", "picwish"])
    assert resumed.output == "picwish: admission resumed\n"
    [record] = system.wait([held])
    assert record.state.value == "succeeded", record.error


def test_result_that_expires_before_it_is_stored_fails_result_expired(system, sandbox):
    sandbox.configure(result_ttl_s=0.5)
    system.start_worker(queues="enhance.admit,enhance.submit,enhance.poll")  # no store queue
    job_id = system.enqueue(image_bytes(40, 40), "hitpaw", "general_2x")
    system.wait([job_id], until=lambda rs: rs[0].state.value == "storing")

    system.start_worker(queues="enhance.store",  # arrives after the URL stopped working
                        HITPAW_RESULT_TTL_S="3600")
    [record] = system.wait([job_id])

    assert (record.state.value, record.error.code) == ("failed", "result_expired")
    assert result_keys(system, job_id) == []


def test_429s_slow_jobs_down_but_never_fail_or_resubmit_them(system, sandbox):
    sandbox.configure(rate_429=0.5, retry_after_s=1, seed=7)
    system.start_worker(concurrency=2)
    ids = [system.enqueue(image_bytes(40, 40), provider, None)
           for provider in ("hitpaw", "picwish") for _ in range(4)]

    records = system.wait(ids, timeout_s=120)

    assert [r.state.value for r in records] == ["succeeded"] * len(ids), \
        [r.error for r in records]
    refused = sandbox.count(status=429)
    assert refused > 0, "the fault was injected"
    assert system.runtime.stats.read().get("rate_limited:hitpaw", 0) + \
        system.runtime.stats.read().get("rate_limited:picwish", 0) == refused
    for record in records:  # one accepted (paid) submit per job
        assert sandbox.count(kind="submit", status=200, job_id=record.provider_job_id) == 1


def test_s3_sources_and_over_long_urls_reach_the_provider_in_a_form_it_takes(
        system, sandbox, s3_client):
    key = "uploads/customer-photo.png"
    s3_client.put_object(Bucket=system.settings.s3_bucket, Key=key,
                         Body=image_bytes(30, 20, "PNG"), ContentType="image/png")
    long_url = sandbox.sample_url("portrait.jpg") + "?pad=" + "x" * 600  # over PicWish's 512
    system.start_worker()

    ids = [system.enqueue(f"s3://{system.settings.s3_bucket}/{key}", "hitpaw", "general_2x"),
           system.enqueue(f"s3://{system.settings.s3_bucket}/{key}", "picwish", "hd"),
           system.enqueue(long_url, "picwish", "hd")]
    records = system.wait(ids)

    assert [r.state.value for r in records] == ["succeeded"] * 3, [r.error for r in records]
    assert (records[0].output.width, records[0].output.height) == (60, 40)
    assert records[2].output.content_type == "image/jpeg"
