"""examples/fastapi_app.py with FastAPI's TestClient, against the real stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
from fastapi.testclient import TestClient

from examples import fastapi_app
from tasks import producer
from tests.system import ROOT, image_bytes
from workers.embedded import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def client(system, receiver):
    fastapi_app.seen.clear()
    with TestClient(fastapi_app.app) as test_client:
        yield test_client


def test_upload_202_webhook_verified_once_and_status_with_a_url(system, client, receiver,
                                                                monkeypatch):
    events = []
    monkeypatch.setattr(fastapi_app, "on_event", events.append)
    system.start_worker()

    answer = client.post("/enhance", data={"provider": "hitpaw", "model": "general_2x"},
                         files={"image": ("cat.jpg", image_bytes(64, 48), "image/jpeg")})

    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["status_url"] == f"/enhance/{job_id}"
    [delivery] = receiver.wait_for(1)
    for _ in range(2):  # delivered twice (at least once): handled once
        hook = client.post("/hooks/enhance", content=delivery.body, headers=delivery.headers)
        assert hook.status_code == 204
    [event] = events
    assert (event["type"], event["data"]["id"]) == ("job.succeeded", job_id)
    status = client.get(f"/enhance/{job_id}").json()
    assert status["state"] == "succeeded" and status["error"] is None
    result = requests.get(status["output_url"], timeout=10)
    assert result.status_code == 200 and result.headers["Content-Type"] == "image/jpeg"
    assert result.content[:2] == b"\xff\xd8"


def test_a_url_source_and_a_failed_job(system, client, sandbox):
    system.start_worker()
    answer = client.post("/enhance", data={"url": sandbox.sample_url("product.png"),
                                           "provider": "hitpaw", "model": "no_such_model"})
    assert answer.status_code == 202
    job_id = answer.json()["job_id"]
    system.wait([job_id])

    status = client.get(f"/enhance/{job_id}").json()

    assert status["state"] == "failed" and status["output_url"] is None
    assert status["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(("form", "files", "status"), [
    ({}, None, 422),  # neither image nor url
    ({"url": "http://169.254.169.254/latest/meta-data"}, None, 422),  # the URL guard
    ({"url": "https://example.com/a.jpg", "provider": "nope"}, None, 422),
    ({}, {"image": ("x.jpg", b"not an image", "image/jpeg")}, 422),
])
def test_user_errors_are_4xx_with_the_error_code(client, form, files, status):
    answer = client.post("/enhance", data=form, files=files)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] in ("invalid_input", "unknown_provider")


def test_unknown_job_is_404(client):
    answer = client.get("/enhance/0123456789abcdef0123456789abcdef")
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_job"


def test_an_unsigned_or_tampered_webhook_is_400(system, client, receiver):
    system.start_worker()
    client.post("/enhance", files={"image": ("a.jpg", image_bytes(32, 32), "image/jpeg")})
    [delivery] = receiver.wait_for(1)

    tampered = client.post("/hooks/enhance", content=delivery.body.replace(b"succeeded", b"failed"),
                           headers=delivery.headers)
    unsigned = client.post("/hooks/enhance", content=delivery.body,
                           headers={"content-type": "application/json"})

    assert (tampered.status_code, unsigned.status_code) == (400, 400)
    assert tampered.json()["error"] == "webhook_invalid"
    assert fastapi_app.seen == {}


def test_the_documented_command_serves_the_app_on_loopback(system_env):
    """``uvicorn examples.fastapi_app:app`` (the module's docstring) runs from the project
    directory once the ``examples`` extra is installed, and listens on loopback only."""
    port = free_port()
    uvicorn = Path(sys.executable).with_name("uvicorn")
    server = subprocess.Popen([str(uvicorn), "examples.fastapi_app:app", "--port", str(port)],
                              cwd=ROOT, env={**os.environ, **system_env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        answer = None
        while answer is None and server.poll() is None:  # until it answers or exits
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/enhance/feedface", timeout=5)
            except requests.ConnectionError:
                time.sleep(0.05)
        assert answer is not None, server.stderr.read()
        assert answer.status_code == 404 and answer.json()["error"] == "unknown_job"
        listening = [c for c in psutil.Process(server.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert [c.laddr.ip for c in listening] == ["127.0.0.1"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_url_field_never_reads_a_file_of_the_server(system, client, tmp_path):
    """``enqueue`` takes a local path or an s3:// URI of our bucket as a source; a browser's
    ``url`` must be neither (the server's images, other users' results)."""
    secret = tmp_path / "private.jpg"
    secret.write_bytes(image_bytes(40, 30))

    for url in (str(secret), f"s3://{system.settings.s3_bucket}/enhanced/other-users.jpg"):
        answer = client.post("/enhance", data={"url": url})
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_input"
    assert producer.list_jobs(runtime=system.runtime).jobs == []
