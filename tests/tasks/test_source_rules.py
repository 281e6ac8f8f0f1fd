"""Users' sources are hostile: the rules enqueue and the worker apply before any charge.

Real Redis, S3 (moto over HTTP) and the provider sandbox on loopback; DNS answers come
from a resolver hook (no lookup leaves the machine).
"""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest

from providers.errors import InvalidInput, ResolverUnavailable
from storage.jobs import JobRecord, JobSource, JobState
from tasks import pipeline, staging
from tasks.store import object_metadata
from tests.system import System, image_bytes


class Recorder:
    """A dispatcher that records what would run next."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def submit(self, job_id, countdown_s=0, waited=False):
        self.sent.append(("submit", job_id))

    def poll(self, job_id, token, countdown_s, waited=False):
        self.sent.append(("poll", job_id))

    def store(self, job_id, countdown_s=0):
        self.sent.append(("store", job_id))


def job_count(system) -> int:
    return sum(system.runtime.jobs.counts().values())


@pytest.mark.integration
def test_s3_source_outside_the_allowed_buckets_refused_at_enqueue(system, s3_client):
    other = f"payroll-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=other)
    s3_client.put_object(Bucket=other, Key="x.jpg", Body=image_bytes(32, 32))
    with pytest.raises(InvalidInput, match="bucket 'payroll-.*S3_SOURCE_BUCKETS") as caught:
        system.enqueue(f"s3://{other}/x.jpg", "hitpaw")
    assert caught.value.code == "invalid_input"
    assert job_count(system) == 0
    with pytest.raises(InvalidInput, match="S3_SOURCE_BUCKETS"):  # the storage layer too
        system.runtime.objects.presign_get(f"s3://{other}/x.jpg")


@pytest.mark.integration
def test_s3_source_in_s3_source_buckets_accepted(system_env, s3_client, tmp_path):
    extra = f"uploads-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=extra)
    s3_client.put_object(Bucket=extra, Key="photo.jpg", Body=image_bytes(32, 32))
    deployment = System({**system_env, "S3_SOURCE_BUCKETS": f"elsewhere, {extra}"}, tmp_path)
    try:
        job_id = deployment.enqueue(f"s3://{extra}/photo.jpg", "hitpaw")
        assert deployment.job(job_id).source.uri == f"s3://{extra}/photo.jpg"
    finally:
        deployment.stop()


@pytest.mark.integration
def test_a_missing_s3_source_is_refused_at_enqueue_before_any_provider_call(system, sandbox):
    uri = f"s3://{system.settings.s3_bucket}/uploads/not-there.jpg"
    with pytest.raises(InvalidInput, match=r"s3:// source .*not-there.jpg does not exist"):
        system.enqueue(uri, "hitpaw")
    assert job_count(system) == 0
    assert sandbox.requests() == []


@pytest.mark.integration
@pytest.mark.parametrize(("url", "rule"), [
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "metadata"),
    ("http://127.0.0.2:8080/a.jpg", "loopback"),
    ("http://[::ffff:10.0.0.1]/a.jpg", "IPv4-mapped"),
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme 'gopher' is not allowed"),
])
def test_hostile_url_refused_at_enqueue(system, url, rule):
    with pytest.raises(InvalidInput, match=rule):
        system.enqueue(url, "hitpaw")
    assert job_count(system) == 0


@pytest.mark.integration
def test_credentials_removed_from_url_sources_before_storing(system, sandbox):
    url = sandbox.sample_url("portrait.jpg").replace("http://", "http://alice:s3cr3t-pw@")
    job_id = system.enqueue(url, "hitpaw")
    record = system.job(job_id)
    assert "s3cr3t-pw" not in record.model_dump_json()
    assert "alice" not in record.source.uri
    assert "s3cr3t-pw" not in str(object_metadata(record))
    raw = system.runtime.redis.dump  # every key of the job store, as stored
    keys = system.runtime.redis.keys("*")
    assert keys and all(b"s3cr3t-pw" not in (raw(k) or b"") for k in keys)


@pytest.mark.integration
def test_worker_resolves_and_refuses_before_the_paid_call(system, sandbox):
    """A name that passes at enqueue but resolves to a private address when the worker checks."""
    resolved = {"photos.example": ["10.20.30.40"]}
    system.runtime.guard.resolver = lambda host, port: resolved[host]
    job_id = system.enqueue("http://photos.example/cat.jpg", "hitpaw")
    with pytest.raises(InvalidInput, match="photos.example means 10.20.30.40, a private"):
        pipeline.submit_job(system.runtime, Recorder(), job_id)
    assert sandbox.count(kind="submit") == 0
    assert system.job(job_id).state is JobState.QUEUED  # the task records the failure


@pytest.mark.integration
def test_a_resolver_that_cannot_answer_leaves_the_job_to_be_tried_again(system, sandbox):
    """A DNS timeout (EAI_AGAIN) is no verdict on the user's URL: the submit is retried."""
    def resolver(host, port):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    system.runtime.guard.resolver = resolver
    job_id = system.enqueue("http://photos.example/cat.jpg", "hitpaw")
    with pytest.raises(ResolverUnavailable):  # a TransientError: the task retries it
        pipeline.submit_job(system.runtime, Recorder(), job_id)
    record = system.job(job_id)
    assert record.state is JobState.QUEUED and record.submit_started_at is None
    assert record.error is None
    assert sandbox.count(kind="submit") == 0


@pytest.mark.integration
@pytest.mark.parametrize("uri", ["/etc/passwd", "file:///etc/passwd", "pending:", "../x.jpg"])
def test_worker_never_reads_a_local_path_from_a_job_record(system, sandbox, uri):
    record = JobRecord(provider="hitpaw", model="general_2x", source=JobSource(uri=uri))
    provider = system.runtime.provider("hitpaw")
    with pytest.raises(InvalidInput, match="never reads a local path"):
        staging.build_provider_request(system.runtime, provider, record)


@pytest.mark.integration
def test_presigned_source_url_for_a_provider_lives_minutes(system, sandbox):
    job_id = system.enqueue(image_bytes(64, 48), "hitpaw")
    provider = system.runtime.provider("hitpaw")
    before = time.time()
    request = staging.build_provider_request(system.runtime, provider, system.job(job_id))
    query = parse_qs(urlsplit(request.img_url).query)
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["900"]
    else:  # SigV2: an absolute time
        assert int(before) + 900 <= int(query["Expires"][0]) <= time.time() + 900 + 1


# --- Local files: read by the producer only, regular files only, capped before reading ---


@pytest.mark.integration
def test_local_regular_image_file_staged(system, tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(image_bytes(40, 30, "PNG"))
    job_id = system.enqueue(str(path), "picwish")
    assert system.job(job_id).source.uri.startswith(f"s3://{system.settings.s3_bucket}/")


@pytest.mark.integration
@pytest.mark.parametrize("make", ["fifo", "directory", "dev_zero", "proc", "symlink_to_proc",
                                  "socket", "missing", "nul_in_path"])
def test_local_path_that_is_not_a_regular_file_refused(system, tmp_path, make):
    path = tmp_path / "source.jpg"
    if make == "fifo":
        os.mkfifo(path)  # opening it without O_NONBLOCK would hang here
    elif make == "directory":
        path.mkdir()
    elif make == "dev_zero":
        path = "/dev/zero"
    elif make == "proc":
        path = "/proc/self/environ"
    elif make == "symlink_to_proc":
        path.symlink_to("/proc/self/environ")
    elif make == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    elif make == "nul_in_path":
        path = f"{tmp_path}/a\x00b.jpg"
    with pytest.raises(InvalidInput, match="not a regular file|not a readable file"):
        system.enqueue(str(path), "hitpaw")
    assert job_count(system) == 0


@pytest.mark.integration
def test_local_file_over_the_cap_refused_before_reading(system_env, tmp_path):
    deployment = System({**system_env, "LOCAL_SOURCE_MAX_BYTES": "1000"}, tmp_path)
    try:
        big = tmp_path / "big.png"
        big.write_bytes(image_bytes(300, 300, "PNG") + os.urandom(5000))
        with pytest.raises(InvalidInput, match=r"is \d+ bytes; at most 1000"):
            deployment.enqueue(str(big), "picwish")
        with pytest.raises(InvalidInput, match="over 1000 bytes"):
            deployment.enqueue(big.read_bytes(), "picwish")
        with open(big, "rb") as handle, pytest.raises(InvalidInput, match="over 1000 bytes"):
            deployment.enqueue(handle, "picwish")
    finally:
        deployment.stop()


# --- Images that are not what they claim: refused from the header, before any charge ----


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with almost no data (a bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024 * 1024)  # a megabyte of zeros in ~1 KB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.integration
def test_decompression_bomb_refused_from_its_header_before_any_charge(system, sandbox):
    bomb = png_claiming(50_000, 50_000)  # 2.5 gigapixels in a file of a few KB
    assert len(bomb) < 10_000
    with pytest.raises(InvalidInput, match="2500000000 pixels; at most 100000000"):
        system.enqueue(bomb, "picwish")
    assert job_count(system) == 0
    assert sandbox.requests() == []


@pytest.mark.integration
def test_image_format_outside_the_accepted_ones_refused(system):
    """Pillow reads many formats (PPM, EPS, ICO...); only the ones the vendors take pass."""
    ppm = b"P6\n4 4\n255\n" + b"\x80" * 48
    with pytest.raises(InvalidInput, match="format PPM is not accepted"):
        system.enqueue(ppm, "hitpaw")
    assert job_count(system) == 0


def test_signature_check_names_the_rule():
    from providers.base import ImageInfo
    from providers.images import check_source_image

    info = ImageInfo(format="PNG", width=10, height=10, size_bytes=100)
    with pytest.raises(InvalidInput, match="does not start like one"):
        check_source_image(info, b"GIF89a" + b"\0" * 20, 1000)
    check_source_image(info, b"\x89PNG\r\n\x1a\n" + b"\0" * 20, 1000)
    with pytest.raises(InvalidInput, match="MAX_SOURCE_PIXELS"):
        check_source_image(info, b"\x89PNG\r\n\x1a\n", 99)


@pytest.mark.integration
def test_long_url_source_fetched_by_the_worker_is_checked_too(system, sandbox):
    """PicWish takes URLs up to 512 characters: a longer one is downloaded, then checked."""
    url = sandbox.add_sample("bomb.png", png_claiming(40_000, 40_000)) + "?pad=" + "x" * 520
    job_id = system.enqueue(url, "picwish")
    with pytest.raises(InvalidInput, match="MAX_SOURCE_PIXELS"):
        staging.build_provider_request(system.runtime, system.runtime.provider("picwish"),
                                       system.job(job_id))
    assert sandbox.count(kind="submit") == 0


def test_object_metadata_never_carries_url_credentials_or_query():
    record = JobRecord(provider="hitpaw", model="general_2x", source=JobSource(
        uri="https://bob:hunter2@img.example/a.jpg?X-Amz-Signature=abc"))
    assert object_metadata(record)["source"] == "https://img.example/a.jpg"


# --- Result URLs from providers go through the same guard when the worker stores them ----


def storing_job(system, result_url: str) -> str:
    from datetime import timedelta

    from storage.jobs import utcnow

    job_id = system.enqueue(image_bytes(40, 40), "hitpaw")
    system.runtime.jobs.update(job_id, lambda r: True, lambda r: {
        "state": JobState.STORING, "provider_job_id": "hp-1", "result_url": result_url,
        "result_expires_at": utcnow() + timedelta(hours=1)})
    return job_id


def stored_results(system) -> list[str]:
    listing = system.runtime.objects.client.list_objects_v2(
        Bucket=system.settings.s3_bucket, Prefix=system.settings.s3_prefix)
    return [o["Key"] for o in listing.get("Contents", []) if "/inputs/" not in o["Key"]]


@pytest.mark.integration
@pytest.mark.parametrize(("url", "rule"), [
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/latest/", "IPv4-mapped"),
    ("http://10.0.0.8/result.jpg", "private"),
    ("file:///etc/passwd", "scheme"),
])
def test_result_url_into_a_forbidden_range_refused_before_connecting(system, url, rule):
    from tasks.store import store_result

    job_id = storing_job(system, url)
    with pytest.raises(InvalidInput, match=rule):
        store_result(system.runtime, job_id)
    assert stored_results(system) == []


@pytest.mark.integration
def test_result_url_redirecting_into_a_private_range_refused(system):
    from tasks.store import store_result
    from tests.providers.conftest import CannedServer

    with CannedServer() as result_host:
        result_host.add(302, "", headers={"Location": "http://192.168.0.1/r.jpg"})
        job_id = storing_job(system, result_host.base_url + "/r.jpg")
        with pytest.raises(InvalidInput, match="192.168.0.1, a private|192.168.0.1 is a private"):
            store_result(system.runtime, job_id)
        assert [r.path for r in result_host.received] == ["/r.jpg"]
    assert stored_results(system) == []
