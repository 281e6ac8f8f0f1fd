"""``enhance get``, ``url``, ``jobs`` and ``cancel`` as a person runs them: subprocesses
against a real deployment."""

from __future__ import annotations

import json
import os
import socket
import threading
import types
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from storage.jobs import JobState
from tasks import producer
from tests.system import image_bytes
from tests.workers.test_cli import enhance
from workers import cli_jobs

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


def _relay(src: socket.socket, dst: socket.socket, limit_bytes: float) -> None:
    """Copy ``src`` to ``dst`` until ``limit_bytes`` went through, then drop both ends."""
    sent = 0
    with suppress(OSError):
        while sent < limit_bytes and (data := src.recv(65536)):
            data = data[:int(min(len(data), limit_bytes - sent))]
            dst.sendall(data)
            sent += len(data)
    for s in (src, dst):
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@contextmanager
def cut_after(endpoint_url: str, answer_bytes: int):
    """An http:// endpoint relaying to ``endpoint_url`` whose answers stop after
    ``answer_bytes`` (headers included): a store that drops the connection mid-download."""
    target = urlsplit(endpoint_url)
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with suppress(OSError):
            while True:
                client, _ = listener.accept()
                server = socket.create_connection((target.hostname, target.port))
                for args in ((client, server, float("inf")), (server, client, answer_bytes)):
                    threading.Thread(target=_relay, args=args, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_get_cut_off_mid_download_leaves_no_partial_file(system, sandbox, tmp_path):
    system.start_worker()
    job_id = system.enqueue(image_bytes(60, 40), "hitpaw", "general_2x")
    record = producer.wait(job_id, 60, runtime=system.runtime)
    assert record.state is JobState.SUCCEEDED, record.error
    system.runtime.objects.client.put_object(Bucket=record.output.bucket,
                                             Key=record.output.key, Body=os.urandom(1 << 20))
    folder = tmp_path / "downloads"
    folder.mkdir()
    target = folder / "out.jpg"
    target.write_bytes(b"an earlier download")

    with cut_after(system.env["S3_ENDPOINT_URL"], 300_000) as endpoint:
        cut = types.SimpleNamespace(env={**system.env, "S3_ENDPOINT_URL": endpoint})
        got = enhance(cut, "get", job_id, "-o", str(target))

    assert got.returncode == 4, got.stderr
    assert "Traceback" not in got.stderr
    assert target.read_bytes() == b"an earlier download"
    assert sorted(p.name for p in folder.iterdir()) == ["out.jpg"]
    fresh = folder / "fresh.jpg"
    with cut_after(system.env["S3_ENDPOINT_URL"], 300_000) as endpoint:
        cut = types.SimpleNamespace(env={**system.env, "S3_ENDPOINT_URL": endpoint})
        assert enhance(cut, "get", job_id, "-o", str(fresh)).returncode == 4
    assert not fresh.exists()
    assert enhance(system, "get", job_id, "-o", str(fresh)).returncode == 0
    assert fresh.stat().st_size == 1 << 20
    nowhere = folder / "missing" / "out.jpg"
    unwritable = enhance(system, "get", job_id, "-o", str(nowhere))
    assert unwritable.returncode == 1
    assert unwritable.stderr == f"Error: cannot write {nowhere}: No such file or directory\n"


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


def test_jobs_refuses_a_label_key_given_twice():
    """A job has one value per key: --label k=1 --label k=2 could match nothing, and used to
    keep k=2 silently."""
    twice = CliRunner().invoke(cli_jobs.jobs, ["--label", "k=1", "--label", "k=2"])
    assert twice.exit_code == 2
    assert "Invalid value for --label: label k given twice" in twice.output
    help_text = " ".join(CliRunner().invoke(cli_jobs.jobs, ["--help"]).output.split())
    assert "all must match; each KEY once" in help_text
