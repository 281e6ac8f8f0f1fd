"""A failed submit that does not prove "not taken" is never sent again by default.

The submit step runs against real Redis and S3; the provider is the real HitPaw client
speaking HTTP to a loopback server that answers as a vendor does after it created (and
charged) the job: 502, 504, a read timeout, 100500007 "operation timeout".
"""

from __future__ import annotations

import pytest

from providers import HitPawClient
from providers.errors import OutcomeUnknown, ProviderTimeout, ProviderUnavailable
from storage.jobs import JobState
from tasks import admission, pipeline
from tasks.budget import COOLDOWN_KEY
from tests.providers.conftest import CannedServer
from tests.system import image_bytes
from workers.metrics import collect_stats
from workers.runtime import Runtime

pytestmark = pytest.mark.integration


class RecordingDispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.sent.append((name, *args))


@pytest.fixture
def canned():
    with CannedServer() as server:
        yield server


def runtime_for(system, canned, policy: str) -> Runtime:
    settings = system.settings.model_copy(update={"unknown_submit_policy": policy})
    rt = Runtime(settings)
    rt._providers["hitpaw"] = HitPawClient(
        "key", base_url=canned.base_url, connect_timeout_s=1, read_timeout_s=1, deadline_s=2)
    return rt


UNKNOWN = [
    pytest.param(502, "<html>502 Bad Gateway</html>", {}, id="hitpaw-502"),
    pytest.param(504, "<html>504 Gateway Time-out</html>", {}, id="504"),
    pytest.param(500, {"error_code": 100500000, "message": "Internal error"}, {}, id="500"),
    pytest.param(200, {"code": 100500007, "message": "operation timeout"}, {},
                 id="operation-timeout"),
    pytest.param(200, {"code": 200, "data": {"job_id": "j"}}, {"delay_s": 1.5},
                 id="read-timeout"),
]


@pytest.mark.parametrize(("status", "body", "extra"), UNKNOWN)
def test_an_unknown_outcome_fails_the_job_and_keeps_the_claim(system, canned, status, body,
                                                               extra):
    rt = runtime_for(system, canned, "fail")
    try:
        job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
        canned.add(status, body, **extra)
        with pytest.raises(OutcomeUnknown, match="UNKNOWN_SUBMIT_POLICY=fail"):
            pipeline.submit_job(rt, RecordingDispatcher(), job_id)
        record = rt.jobs.get(job_id)
        assert record.state is JobState.QUEUED and record.submit_started_at is not None
        assert collect_stats(rt)["hitpaw"]["submit_outcome_unknown"] == 1
        assert len(canned.received) == 1
    finally:
        rt.close()


def test_resubmit_policy_releases_the_claim_and_retries(system, canned):
    rt = runtime_for(system, canned, "resubmit")
    try:
        job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
        canned.add(504, "<html>504 Gateway Time-out</html>")
        canned.add(200, {"code": 200, "data": {"job_id": "job-2", "consume_coins": 75}})
        dispatch = RecordingDispatcher()
        with pytest.raises(ProviderUnavailable):
            pipeline.submit_job(rt, dispatch, job_id)
        assert rt.jobs.get(job_id).submit_started_at is None
        pipeline.submit_job(rt, dispatch, job_id)  # the task's retry
        record = rt.jobs.get(job_id)
        assert (record.state, record.provider_job_id) == (JobState.SUBMITTED, "job-2")
        assert collect_stats(rt)["hitpaw"]["submit_outcome_unknown"] == 1
        assert len(canned.received) == 2
    finally:
        rt.close()


def test_a_refusal_releases_the_claim_without_counting_an_unknown(system, canned):
    rt = runtime_for(system, canned, "fail")
    try:
        job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
        canned.add(503, "<html>503 Service Unavailable</html>")
        with pytest.raises(ProviderUnavailable):
            pipeline.submit_job(rt, RecordingDispatcher(), job_id)
        assert rt.jobs.get(job_id).submit_started_at is None
        assert collect_stats(rt)["hitpaw"]["submit_outcome_unknown"] == 0
    finally:
        rt.close()


def test_a_429_gives_the_job_back_to_admission_not_to_a_blind_countdown(system, canned):
    rt = runtime_for(system, canned, "fail")
    try:
        job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
        assert admission.admit_one(rt, "hitpaw").job_id == job_id
        canned.add(429, {"error_code": 100429000, "message": "Too many requests"},
                   headers={"Retry-After": "2"})
        dispatch = RecordingDispatcher()

        pipeline.submit_job(rt, dispatch, job_id)  # no RateLimited for the task to re-send

        assert rt.jobs.get(job_id).submit_started_at is None
        assert collect_stats(rt)["hitpaw"]["submit_outcome_unknown"] == 0
        assert [s[0] for s in dispatch.sent] in ([], ["admit"]), "no submit re-sent"
        assert rt.redis.pttl(COOLDOWN_KEY + "hitpaw") > 1000, "every worker slows down"
        assert admission.admitted_count(rt, "hitpaw") == 0, "its slot is free"
        decision = admission.admit_one(rt, "hitpaw")
        assert decision.kind == "turn" and decision.delay_ms > 1000, \
            "its next slot comes after the cool-down"
        rt.redis.delete(*rt.budget.submit_keys("hitpaw"))
        assert admission.admit_one(rt, "hitpaw").job_id == job_id, "first in line again"
    finally:
        rt.close()


def test_the_timeout_error_is_the_cause(system, canned):
    rt = runtime_for(system, canned, "fail")
    try:
        job_id = system.enqueue(image_bytes(40, 40), "hitpaw", None)
        canned.add(200, {"code": 200, "data": {"job_id": "j"}}, delay_s=1.5)
        with pytest.raises(OutcomeUnknown) as caught:
            pipeline.submit_job(rt, RecordingDispatcher(), job_id)
        assert isinstance(caught.value.__cause__, ProviderTimeout)
    finally:
        rt.close()
