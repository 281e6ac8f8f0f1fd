"""``enhance get``, ``url``, ``jobs`` and ``cancel`` as a person runs them: subprocesses
against a real deployment."""

from __future__ import annotations

import json

import pytest
import requests

from storage.jobs import JobState
from tasks import producer
from tests.system import image_bytes
from tests.workers.test_cli import enhance

pytestmark = pytest.mark.integration


def test_get_and_url_hand_out_the_stored_result(system, sandbox, tmp_path):
    system.start_worker()
    job_id = system.enqueue(image_bytes(60, 40), "hitpaw", "general_2x", filename="cat.jpg")
    record = producer.wait(job_id, 60, runtime=system.runtime)
    assert record.state is JobState.SUCCEEDED, record.error
    stored = system.runtime.objects.client.get_object(Bucket=record.output.bucket,
                                                      Key=record.output.key)["Body"].read()

    target = tmp_path / "out.jpg"
    got = enhance(system, "get", job_id, "-o", str(target))
    assert got.returncode == 0, got.stderr
    assert target.read_bytes() == stored

    url = enhance(system, "url", job_id, "--expires", "60")
    assert url.returncode == 0, url.stderr
    answer = requests.get(url.stdout.strip(), timeout=10)
    assert answer.content == stored
    assert answer.headers["Content-Disposition"] == 'inline; filename="cat-enhanced.jpg"'


def test_get_and_url_of_a_job_without_a_result_say_so(system):
    job_id = system.enqueue(image_bytes(8, 8), "picwish")  # no worker: queued
    for command in ("get", "url"):
        done = enhance(system, command, job_id)
        assert done.returncode == 1
        assert "result_not_ready" in done.stderr and "queued" in done.stderr
    unknown = enhance(system, "url", "feedface")
    assert unknown.returncode == 1 and "unknown_job" in unknown.stderr


def test_jobs_lists_with_filters_and_cancel_answers_by_state(system):
    mine = system.enqueue(image_bytes(8, 8), "picwish", labels={"user": "42"})
    other = system.enqueue(image_bytes(9, 9), "hitpaw", tenant="acme")

    listed = enhance(system, "jobs", "--label", "user=42", "--json")
    assert listed.returncode == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert [j["job_id"] for j in body["jobs"]] == [mine] and body["next_cursor"] is None
    assert body["jobs"][0]["labels"] == {"user": "42"}
    text = enhance(system, "jobs", "--tenant", "acme", "--since", "1h")
    assert text.returncode == 0 and other in text.stdout and mine not in text.stdout
    first = enhance(system, "jobs", "--limit", "1", "--json")
    page = json.loads(first.stdout)
    rest = json.loads(enhance(system, "jobs", "--cursor", page["next_cursor"], "--json").stdout)
    assert [j["job_id"] for j in page["jobs"] + rest["jobs"]] == [other, mine]

    cancelled = enhance(system, "cancel", mine, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancelled"] is True
    again = enhance(system, "cancel", mine)
    assert again.returncode == 0 and "already ended cancelled" in again.stdout
    by_state = json.loads(enhance(system, "jobs", "--state", "cancelled", "--json").stdout)
    assert [j["job_id"] for j in by_state["jobs"]] == [mine]
    bad = enhance(system, "jobs", "--label", "user")
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr
