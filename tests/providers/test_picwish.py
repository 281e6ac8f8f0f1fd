"""PicWishClient: validation before money, every documented answer and state.

Answers the sandbox can't give come from the canned-answer server (real HTTP); the
contract tests run against the sandbox in test_contract_*.
"""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from providers import PicWishClient, PicWishRequest, get_provider_class
from providers.base import ImageInfo, Phase
from providers.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PermanentError,
    ProtocolError,
    ProviderUnavailable,
    RateLimited,
)
from providers.images import inspect_image
from providers.picwish_api import SYNC_READ_TIMEOUT_S
from tests.providers.conftest import image_bytes, png_header_only, poll_until_done

URL = "https://bucket.example/in/photo.jpg"
KEY = "picwish-test-key"
MB = 1024 * 1024


@pytest.fixture
def client():
    with PicWishClient(KEY, base_url="http://127.0.0.1:9") as client:
        yield client


def canned_client(canned) -> PicWishClient:
    return PicWishClient(KEY, base_url=canned.base_url, connect_timeout_s=1, read_timeout_s=2)


def info(width: int, height: int, fmt: str = "JPEG", size_bytes: int | None = None) -> ImageInfo:
    return ImageInfo(format=fmt, width=width, height=height, size_bytes=size_bytes)


# --- Models and registry -------------------------------------------------------------------


def test_models_and_class_attributes():
    models = PicWishClient.models()
    assert {name: (m.cost, m.category) for name, m in models.items()} == {
        "ultra_hd": (5, "ultra_hd"),
        "hd": (4, "hd"),
    }
    assert PicWishClient.default_model() == "ultra_hd"
    assert PicWishClient.max_url_chars == 512 and PicWishClient.accepts_upload
    assert PicWishClient.max_upload_bytes == 30 * MB


def test_registry():
    assert get_provider_class("picwish") is PicWishClient
    assert get_provider_class("hitpaw").name == "hitpaw"
    with pytest.raises(InvalidInput, match="unknown provider 'dall-e'"):
        get_provider_class("dall-e")


# --- build_request -------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "type_"), [("ultra_hd", 0), ("hd", 1), (None, 0)])
def test_models_map_to_type(client, model, type_):
    request = client.build_request(model, {}, image_url=URL)
    assert (request.type, request.sync, request.return_type) == (type_, 0, 1)
    assert request.image_url == URL and request.image_file is None


def sync_ready(client: PicWishClient) -> PicWishClient:
    """The same client with a read timeout that covers a ``sync=1`` call."""
    http = client._http
    key = http.session.headers["X-API-KEY"]
    return PicWishClient(key, base_url=http.base_url, connect_timeout_s=http.timeout_s[0],
                         read_timeout_s=SYNC_READ_TIMEOUT_S)


def test_every_parameter(client):
    request = sync_ready(client).build_request(
        "hd", {"sync": 1, "return_type": 2}, image_url=URL)
    assert request.multipart() == {
        "sync": (None, "1"),
        "type": (None, "1"),
        "return_type": (None, "2"),
        "image_url": (None, URL),
    }


def test_upload_is_inspected_and_named(client):
    data = image_bytes("PNG", (40, 30))
    request = client.build_request(None, {}, image_file=data)
    assert request.filename == "image.png" and request.image_url is None
    assert request.multipart()["image_file"] == ("image.png", data)
    assert "image_file" not in repr(request)  # the bytes never reach a log line


def test_upload_filename_option(client):
    data = image_bytes("JPEG")
    request = client.build_request(None, {"filename": "mine.jpg"}, image_file=data)
    assert request.filename == "mine.jpg"


@pytest.mark.parametrize(
    ("kwargs", "options", "message"),
    [
        ({}, {}, "exactly one of image_url and image_file"),
        ({"image_url": URL, "image_file": b"x"}, {}, "exactly one"),
        (
            {"image_url": "https://b.example/" + "a" * 495 + ".jpg"},
            {},
            "image_url is 517 characters; picwish accepts at most 512",
        ),
        ({"image_url": "https://b.example/x.gif"}, {}, "format gif is not accepted by picwish"),
        ({"image_url": URL, "image_info": info(10, 10, "TGA")}, {}, "format tga is not accepted"),
        ({"image_file": b"not an image"}, {}, "not a recognised image"),
        ({"image_file": image_bytes("GIF")}, {}, "format gif"),
        (
            {"image_file": png_header_only(4097, 100)},
            {},
            "image is 4097 x 100 px; picwish accepts at most 4096 x 4096",
        ),
        ({"image_url": URL, "image_info": info(100, 5000)}, {}, "100 x 5000 px"),
        (
            {"image_url": URL, "image_info": info(10, 10, size_bytes=31 * MB)},
            {},
            "image is 31.0 MB; picwish accepts at most 30 MB",
        ),
        ({"image_url": URL}, {"sync": 2}, "sync"),
        ({"image_url": URL}, {"return_type": 3}, "return_type"),
        ({"image_url": URL}, {"type": 1}, "does not take option.*type"),
    ],
)
def test_refused_before_money(client, kwargs, options, message):
    with pytest.raises(InvalidInput, match=message):
        client.build_request(None, options, **kwargs)


@pytest.mark.parametrize("read_timeout_s", [2, 30, SYNC_READ_TIMEOUT_S - 0.5])
def test_sync_refused_before_money_when_the_read_timeout_cannot_cover_it(canned, read_timeout_s):
    """A 30 s job plus its source download outlasts a 30 s read timeout: paid, then lost."""
    client = PicWishClient(KEY, base_url=canned.base_url, read_timeout_s=read_timeout_s)
    with pytest.raises(InvalidInput, match="HTTP_READ_TIMEOUT_S") as error:
        client.build_request(None, {"sync": 1}, image_url=URL)
    assert f"at least {SYNC_READ_TIMEOUT_S}" in str(error.value)
    assert client.build_request(None, {"sync": 0}, image_url=URL).sync == 0
    assert canned.received == []


def test_upload_over_30_mb_refused_naming_the_size(client):
    data = png_header_only(100, 100) + b"\0" * (30 * MB)
    with pytest.raises(InvalidInput, match=r"image is 30\.0 MB; picwish accepts at most 30 MB"):
        client.build_request(None, {}, image_file=data)


def test_limits_inclusive(client):
    client.build_request(None, {}, image_url="https://b/" + "a" * 498 + ".png")  # 512 chars
    client.build_request(None, {}, image_url=URL, image_info=info(4096, 4096, size_bytes=30 * MB))
    for ext in ("jpg", "jpeg", "bmp", "png", "webp", "tiff", "bitmap"):
        client.build_request(None, {}, image_url=f"https://b/x.{ext}")
    client.build_request(None, {}, image_url="https://b/no-extension")  # can't tell: allowed


def test_unknown_model(client):
    with pytest.raises(InvalidInput, match="no model 'x4'"):
        client.build_request("x4", {}, image_url=URL)


def test_request_model_guards_itself():
    with pytest.raises(ValueError, match="exactly one"):
        PicWishRequest()


# --- Answers over real HTTP (canned) -------------------------------------------------------


def test_submit_is_multipart_with_key(canned):
    canned.add(200, {"status": 200, "message": "success", "data": {"task_id": "t-1"}})
    client = canned_client(canned)
    data = image_bytes("PNG", (20, 10))
    submission = client.submit(client.build_request("hd", {}, image_file=data))
    assert (submission.job_id, submission.cost, submission.status) == ("t-1", 4, None)
    sent = canned.received[0]
    assert (sent.method, sent.path) == ("POST", "/api/tasks/visual/scale-pro")
    assert sent.headers["X-API-KEY"] == KEY
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="image_file"; filename="image.png"' in sent.body and data in sent.body
    assert b'name="type"\r\n\r\n1\r\n' in sent.body
    assert b'name="image_url"' not in sent.body


def test_url_submit_is_multipart_too(canned):
    canned.add(200, {"status": 200, "data": {"task_id": "t-2"}})
    client = canned_client(canned)
    assert client.submit(client.build_request(None, {}, image_url=URL)).cost == 5
    sent = canned.received[0]
    assert sent.headers["Content-Type"].startswith("multipart/form-data")
    assert f'name="image_url"\r\n\r\n{URL}\r\n'.encode() in sent.body


def done(**fields) -> dict:
    data = {
        "task_id": "t",
        "state": 1,
        "progress": 100,
        "image": "https://r.example/out.jpg",
        "return_type": 1,
        "type": 0,
        "image_width": 1024,
        "image_height": 768,
        "image_size_kb": 200,
        "out_format": "jpg",
        "created_at": 1_700_000_000,
        "completed_at": 1_700_000_010,
        "state_detail": "Complete",
    }
    return {"status": 200, "message": "success", "data": {**data, **fields}}


def test_sync_submit_carries_the_status(canned):
    canned.add(200, done())
    client = sync_ready(canned_client(canned))
    submission = client.submit(client.build_request(None, {"sync": 1}, image_url=URL))
    assert submission.job_id == "t" and submission.status.phase is Phase.COMPLETED


def test_completed_url_with_every_field(canned):
    canned.add(200, done())
    job = canned_client(canned).query("t/1 x")
    assert canned.received[0].path == "/api/tasks/visual/scale-pro/t%2F1%20x"
    assert (job.phase, job.result_url, job.result_bytes) == (
        Phase.COMPLETED,
        "https://r.example/out.jpg",
        None,
    )
    assert (job.width, job.height, job.size_bytes, job.out_format) == (1024, 768, 200 * 1024, "jpg")
    assert (job.cost, job.progress, job.raw_status) == (5, 100, "1")
    assert job.result_expires_at == datetime.fromtimestamp(1_700_000_010 + 3600, UTC)


def test_completed_base64(canned):
    payload = image_bytes("PNG", (8, 8))
    canned.add(200, done(image=base64.b64encode(payload).decode(), return_type=2, type=1))
    job = canned_client(canned).query("t")
    assert (job.result_bytes, job.result_url, job.cost) == (payload, None, 4)


def test_expiry_from_now_without_completed_at(canned):
    canned.add(200, done(completed_at=None))
    job = canned_client(canned).query("t")
    assert job.result_expires_at - datetime.now(UTC) <= timedelta(hours=1)
    assert job.result_expires_at - datetime.now(UTC) > timedelta(minutes=59)


@pytest.mark.parametrize(("state", "progress"), [(0, 0), (2, 5), (3, 10), (4, 55), (7, 60)])
def test_in_progress_states(canned, state, progress):
    canned.add(200, {"status": 200, "data": {"task_id": "t", "state": state, "progress": progress}})
    job = canned_client(canned).query("t")
    assert (job.phase, job.progress, job.result_url) == (Phase.IN_PROGRESS, progress, None)


@pytest.mark.parametrize(
    ("state", "code", "words"),
    [
        (-1, "provider_failed", "processing failed"),
        (-2, "provider_failed", "result upload failed"),
        (-3, "invalid_input", "could not download the source URL"),
        (-5, "invalid_input", "image too large"),
        (-7, "invalid_input", "invalid image"),
        (-8, "provider_failed", "processing timed out"),
        (-12, "provider_failed", "task failed"),
    ],
)
def test_failed_states(canned, state, code, words):
    body = {"status": 200, "data": {"task_id": "t", "state": state, "state_detail": "detail!"}}
    canned.add(200, body)
    job = canned_client(canned).query("t")
    assert (job.phase, job.error_code) == (Phase.FAILED, code)
    assert words in job.error_message and "detail!" in job.error_message


@pytest.mark.parametrize(
    "body",
    [
        {"status": 200, "data": {"task_id": "t"}},
        {"status": 200, "data": {"task_id": "t", "state": "done"}},
        {"status": 200, "data": {"task_id": "t", "state": None}},
        {"status": 200, "data": {"task_id": "t", "state": True}},
        {"status": 200, "data": {"task_id": "t", "state": 1}},  # done without image
        {"status": 200, "data": {"task_id": "t", "state": 1, "image": "%%", "return_type": 2}},
        {"status": 200},
        {"data": {"task_id": "t", "state": 1}},
        {"task_id": "t", "state": 1},
        "<html>oops</html>",
    ],
)
def test_no_documented_shape(canned, body):
    canned.add(200, body)
    with pytest.raises(ProtocolError) as error:
        canned_client(canned).query("t")
    assert error.value.body


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"progress": "NaN"}, "progress"),
        ({"progress": "50"}, "progress"),
        ({"image_width": 1024.5}, "image_width"),
        ({"image_width": "1024"}, "image_width"),
        ({"image_width": 10**9}, "image_width"),
        ({"image_height": True}, "image_height"),
        ({"image_size_kb": -1}, "image_size_kb"),
        ({"image_size_kb": 10**12}, "image_size_kb"),
        ({"completed_at": 1e20}, "completed_at"),
        ({"completed_at": -5}, "completed_at"),
        ({"type": [1]}, "type"),
        ({"return_type": {"a": 1}}, "return_type"),
        ({"image": 42}, "image"),
        ({"out_format": ["jpg"]}, "out_format"),
        ({"task_id": 7}, "task_id"),
    ],
)
def test_completed_answer_with_a_garbled_field_is_a_protocol_error(canned, fields, words):
    canned.add(200, done(**fields))
    with pytest.raises(ProtocolError, match=words) as error:
        canned_client(canned).query("t")
    assert error.value.body and error.value.http_status == 200


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["progress", "image_width", "image_size_kb", "completed_at"])
def test_non_finite_numbers_are_a_protocol_error(canned, field, literal):
    """Python's json module reads these literals as floats; int()/round() then blew up."""
    text = json.dumps(done()).replace(f'"{field}": ', f'"{field}": {literal}, "was": ', 1)
    canned.add(200, text)
    with pytest.raises(ProtocolError) as error:
        canned_client(canned).query("t")
    assert literal in error.value.body


@pytest.mark.parametrize("http_status", [201, 202, 203, 206, 299, 300, 302, 304, 307])
def test_success_comes_only_as_http_200(canned, http_status):
    canned.add(http_status, done() if http_status != 304 else "")
    with pytest.raises(ProtocolError, match=f"undocumented HTTP status {http_status}"):
        canned_client(canned).query("t")


def test_completed_at_in_milliseconds_and_a_progress_past_100(canned):
    canned.add(200, done(completed_at=1_700_000_010_000, progress=250.0, image_width=1024.0))
    job = canned_client(canned).query("t")
    assert job.result_expires_at == datetime.fromtimestamp(1_700_000_010 + 3600, UTC)
    assert (job.progress, job.width) == (100, 1024)


def test_the_answer_model_refuses_what_json_could_not_carry():
    from providers.picwish_api import PicWishTask

    for bad in ({"progress": float("nan")}, {"image_size_kb": float("inf")}):
        with pytest.raises(ValueError, match="finite"):
            PicWishTask.model_validate({"state": 0, **bad})


@pytest.mark.parametrize(
    ("http_status", "cls"),
    [(400, InvalidInput), (401, AuthFailed), (404, NotFound), (413, InvalidInput)]
    + [(429, RateLimited), (500, ProviderUnavailable), (502, ProviderUnavailable)]
    + [(409, PermanentError)],
)
def test_http_statuses(canned, http_status, cls):
    canned.add(http_status, {"status": http_status, "message": "vendor says no"})
    canned.add(200, {"status": http_status, "message": "vendor says no"})
    client = canned_client(canned)
    for _ in range(2):  # as an HTTP status, then as the body status of an HTTP 200
        with pytest.raises(cls) as error:
            client.query("t")
        assert type(error.value) is cls and "vendor says no" in str(error.value)


def test_429_retry_after(canned):
    canned.add(429, {"status": 429, "message": "qps"}, headers={"Retry-After": "2"})
    with pytest.raises(RateLimited) as error:
        canned_client(canned).query("t")
    assert error.value.retry_after_s == 2.0


def test_submit_without_task_id(canned):
    canned.add(200, {"status": 200, "data": {}})
    client = canned_client(canned)
    with pytest.raises(ProtocolError, match="task_id"):
        client.submit(client.build_request(None, {}, image_url=URL))


def test_empty_task_id_refused_without_a_request(canned):
    with pytest.raises(InvalidInput):
        canned_client(canned).query("")
    assert canned.received == []


def test_key_not_in_repr(client):
    assert KEY not in repr(client)


# --- Contract: the client against the sandbox over real HTTP -------------------------------

integration = pytest.mark.integration


def sandbox_client(sb, key: str | None = None) -> PicWishClient:
    key = sb.picwish_key if key is None else key
    return PicWishClient(key, base_url=sb.base_url, connect_timeout_s=2, read_timeout_s=15)


def download(url: str) -> bytes:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text[:200]
    return response.content


def source_kwargs(sb, upload: bool, sample: str = "portrait.jpg") -> dict:
    url = sb.sample_url(sample)
    return {"image_file": download(url)} if upload else {"image_url": url}


def check_result(job, data: bytes, source_size: tuple[int, int]) -> None:
    result = inspect_image(data)
    assert (result.width, result.height) == (job.width, job.height)
    assert result.width >= source_size[0] and result.height >= source_size[1]
    assert result.width * source_size[1] == result.height * source_size[0]  # same aspect


@integration
@pytest.mark.parametrize("model", ["ultra_hd", "hd"])
@pytest.mark.parametrize("upload", [False, True], ids=["url", "upload"])
@pytest.mark.parametrize("return_type", [1, 2])
def test_contract_async_to_a_result(sandbox, model, upload, return_type):
    client = sandbox_client(sandbox)
    kwargs = source_kwargs(sandbox, upload)
    request = client.build_request(model, {"return_type": return_type}, **kwargs)
    submission = client.submit(request)
    assert submission.cost == PicWishClient.models()[model].cost and submission.status is None
    job, seen = poll_until_done(client, submission.job_id)
    assert job.phase is Phase.COMPLETED, job
    assert set(seen) <= {"0", "2", "3", "4", "1"} and job.progress == 100
    assert job.result_expires_at > datetime.now(UTC) + timedelta(minutes=55)
    assert job.cost == submission.cost
    data = download(job.result_url) if return_type == 1 else job.result_bytes
    assert (job.result_url is None) == (return_type == 2)
    check_result(job, data, (256, 256))
    assert job.size_bytes and abs(job.size_bytes - len(data)) <= 1024
    assert sandbox.count(provider="picwish", kind="submit") == 1


@integration
@pytest.mark.parametrize("return_type", [1, 2])
def test_contract_sync(sandbox, return_type):
    client = sync_ready(sandbox_client(sandbox))
    options = {"sync": 1, "return_type": return_type}
    request = client.build_request("hd", options, **source_kwargs(sandbox, False, "product.png"))
    submission = client.submit(request)
    job = submission.status
    assert job is not None and job.phase is Phase.COMPLETED and job.job_id == submission.job_id
    data = download(job.result_url) if return_type == 1 else job.result_bytes
    check_result(job, data, (320, 240))


@integration
@pytest.mark.parametrize("sample", ["landscape.webp", "scan.bmp"])
def test_contract_other_formats(sandbox, sample):
    client = sandbox_client(sandbox)
    submission = client.submit(
        client.build_request(None, {}, **source_kwargs(sandbox, True, sample))
    )
    job, _ = poll_until_done(client, submission.job_id)
    assert job.phase is Phase.COMPLETED and job.out_format


@integration
@pytest.mark.parametrize(
    ("sample", "state", "code"),
    [("broken.jpg", "-7", "invalid_input"), ("big.png", "-5", "invalid_input")],
)
def test_contract_failed_states(sandbox, sample, state, code):
    sandbox.add_sample("big.png", png_header_only(5000, 100))
    client = sandbox_client(sandbox)
    submission = client.submit(client.build_request(None, {}, image_url=sandbox.sample_url(sample)))
    job, _ = poll_until_done(client, submission.job_id)
    assert (job.phase, job.raw_status, job.error_code) == (Phase.FAILED, state, code)


@integration
def test_contract_source_download_failure(sandbox):
    client = sandbox_client(sandbox)
    submission = client.submit(
        client.build_request(None, {}, image_url=sandbox.base_url + "/gone.jpg")
    )
    job, _ = poll_until_done(client, submission.job_id)
    assert (job.phase, job.raw_status, job.error_code) == (Phase.FAILED, "-3", "invalid_input")


@integration
def test_contract_injected_job_failure(sandbox):
    sandbox.configure(rate_job_failure=1.0)
    client = sandbox_client(sandbox)
    submission = client.submit(
        client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg"))
    )
    job, _ = poll_until_done(client, submission.job_id)
    assert job.phase is Phase.FAILED and int(job.raw_status) in (-1, -2, -8)
    assert job.error_code == "provider_failed" and job.error_message


@integration
def test_contract_bad_key(sandbox):
    client = sandbox_client(sandbox, key="wrong-key")
    with pytest.raises(AuthFailed) as error:
        client.query("anything")
    assert error.value.http_status == 401 and "wrong-key" not in str(error.value)


@integration
def test_contract_unknown_task(sandbox):
    with pytest.raises(NotFound):
        sandbox_client(sandbox).query("no-such-task")


@integration
def test_contract_qps_cap_answers_429_with_retry_after(sandbox):
    sandbox.configure(picwish_qps=1.0)
    client = sandbox_client(sandbox)
    with pytest.raises(RateLimited) as error:
        for _ in range(5):
            _query_ignoring_not_found(client)
    assert error.value.retry_after_s and error.value.retry_after_s >= 1


def _query_ignoring_not_found(client: PicWishClient) -> None:
    with contextlib.suppress(NotFound):
        client.query("no-such-task")


@integration
@pytest.mark.parametrize(
    ("fault", "cls"), [({"rate_429": 1.0}, RateLimited), ({"rate_5xx": 1.0}, ProviderUnavailable)]
)
def test_contract_transient_faults(sandbox, fault, cls):
    sandbox.configure(**fault)
    client = sandbox_client(sandbox)
    with pytest.raises(cls):
        client.submit(client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg")))


@integration
@pytest.mark.parametrize("kind", ["truncated", "flat", "html", "empty"])
def test_contract_malformed_answers(sandbox, kind):
    client = sandbox_client(sandbox)
    request = client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg"))
    sandbox.configure(rate_malformed=1.0, malformed_kinds=(kind,))
    with pytest.raises(ProtocolError):
        client.submit(request)


@integration
def test_contract_out_of_credits(sandbox):
    sandbox.configure(picwish_credits=4)
    client = sandbox_client(sandbox)
    with pytest.raises(InsufficientCredits):
        client.submit(
            client.build_request("ultra_hd", {}, image_url=sandbox.sample_url("portrait.jpg"))
        )
    client.submit(client.build_request("hd", {}, image_url=sandbox.sample_url("portrait.jpg")))


@integration
def test_contract_upload_too_large_for_the_vendor(sandbox):
    sandbox.configure(picwish_max_upload_bytes=1000)
    client = sandbox_client(sandbox)
    with pytest.raises(InvalidInput) as error:
        client.submit(client.build_request(None, {}, **source_kwargs(sandbox, True)))
    assert error.value.http_status == 413
