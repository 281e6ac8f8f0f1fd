"""examples/django_view.py with Django's test client, against the real stack."""

from __future__ import annotations

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile

from tasks import producer
from tests.system import image_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def django_view():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(ROOT_URLCONF="examples.django_view", SECRET_KEY="tests-only",
                           ALLOWED_HOSTS=["testserver"], MIDDLEWARE=[])
        django.setup()
    from examples import django_view

    return django_view


@pytest.fixture
def client(system, receiver, django_view):
    from django.test import Client

    django_view.seen.clear()
    return Client()


def test_upload_202_webhook_verified_once_and_status_with_a_url(system, client, receiver,
                                                                django_view, monkeypatch):
    events = []
    monkeypatch.setattr(django_view, "on_event", events.append)
    system.start_worker()

    answer = client.post("/enhance", {
        "provider": "hitpaw", "model": "general_2x",
        "image": SimpleUploadedFile("cat.jpg", image_bytes(64, 48), "image/jpeg")})

    assert answer.status_code == 202, answer.content
    job_id = answer.json()["job_id"]
    [delivery] = receiver.wait_for(1)
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items()
               if k.startswith("webhook-")}
    for _ in range(2):  # delivered twice (at least once): handled once
        hook = client.post("/hooks/enhance", delivery.body, content_type="application/json",
                           **headers)
        assert hook.status_code == 204
    [event] = events
    assert (event["type"], event["data"]["id"]) == ("job.succeeded", job_id)
    status = client.get(f"/enhance/{job_id}").json()
    assert status["state"] == "succeeded"
    result = requests.get(status["output_url"], timeout=10)
    assert result.status_code == 200 and result.headers["Content-Type"] == "image/jpeg"


def test_user_errors_are_4xx(system, client):
    assert client.post("/enhance", {}).status_code == 422
    bad_url = client.post("/enhance", {"url": "http://10.1.2.3/a.jpg"})
    assert bad_url.status_code == 422 and bad_url.json()["error"] == "invalid_input"
    assert client.get("/enhance/0123456789abcdef0123456789abcdef").status_code == 404
    assert client.get("/enhance").status_code == 405
    unsigned = client.post("/hooks/enhance", b"{}", content_type="application/json")
    assert unsigned.status_code == 400 and unsigned.json()["error"] == "webhook_invalid"


def test_the_url_field_never_reads_a_file_of_the_server(system, client, tmp_path):
    """``enqueue`` takes a local path or an s3:// URI of our bucket as a source; a browser's
    ``url`` must be neither (the server's images, other users' results)."""
    secret = tmp_path / "private.jpg"
    secret.write_bytes(image_bytes(40, 30))

    for url in (str(secret), f"s3://{system.settings.s3_bucket}/enhanced/other-users.jpg"):
        answer = client.post("/enhance", {"url": url})
        assert answer.status_code == 422 and answer.json()["error"] == "invalid_input"
    assert producer.list_jobs(runtime=system.runtime).jobs == []
