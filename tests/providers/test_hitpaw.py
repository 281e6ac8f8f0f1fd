"""HitPawClient: validation before money, every documented answer, and the sandbox contract.

Answers the sandbox can't give come from the canned-answer server (real HTTP); the
contract tests at the end run against the sandbox.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from PIL import Image

from providers import HitPawClient, HitPawRequest
from providers.base import ImageInfo, Phase
from providers.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PermanentError,
    ProtocolError,
    ProviderJobFailed,
    ProviderUnavailable,
    RateLimited,
)
from providers.hitpaw_api import HITPAW_ERRORS, MODELS
from providers.images import inspect_image
from providers.sandbox.samples import EXIF_MAKE, SAMPLE_CAMERA
from tests.providers.conftest import png_header_only, poll_until_done

URL = "https://bucket.example/in/photo.jpg"
KEY = "hitpaw-test-key"
ENHANCE_MODELS = [name for name, info in MODELS.items() if info.category == "enhance"]
GENERATIVE_MODELS = [name for name, info in MODELS.items() if info.category == "generative"]


@pytest.fixture
def client():
    with HitPawClient(KEY, base_url="http://127.0.0.1:9") as client:
        yield client


def info(width: int, height: int, fmt: str = "JPEG") -> ImageInfo:
    return ImageInfo(format=fmt, width=width, height=height)


# --- Models --------------------------------------------------------------------------------


def test_sixteen_models_with_scale_and_category():
    models = HitPawClient.models()
    assert len(models) == 16
    assert len(ENHANCE_MODELS) == 10 and len(GENERATIVE_MODELS) == 6
    for name, model in models.items():
        assert model.scale == int(name[-2])
        assert model.category == ("generative" if name.startswith("generative") else "enhance")
    assert HitPawClient.default_model() == "general_2x"
    assert HitPawClient.name == "hitpaw" and not HitPawClient.accepts_upload


# --- build_request -------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_builds(client, model):
    request = client.build_request(model, {}, image_url=URL)
    assert request.payload() == {
        "model_name": model,
        "img_url": URL,
        "extension": ".jpg",
        "exif": False,
    }


def test_default_model_used_when_none(client):
    assert client.build_request(None, {}, image_url=URL).model_name == "general_2x"


@pytest.mark.parametrize("model", ENHANCE_MODELS)
def test_dpi_and_exif_sent_with_documented_names(client, model):
    request = client.build_request(model, {"dpi": 300, "exif": True}, image_url=URL)
    assert request.payload()["DPI"] == 300 and request.payload()["exif"] is True
    assert "dpi" not in request.payload()


@pytest.mark.parametrize("model", GENERATIVE_MODELS)
def test_dpi_never_sent_for_generative(client, model):
    request = client.build_request(model, {"dpi": 300}, image_url=URL)
    assert "DPI" not in request.payload() and request.dpi is None
    assert (
        "DPI"
        not in HitPawRequest(model_name=model, img_url=URL, extension=".png", DPI=72).payload()
    )


@pytest.mark.parametrize(
    ("options", "image_url", "image_info", "extension"),
    [
        ({"extension": "PNG"}, URL, None, ".png"),
        ({"extension": ".webp"}, URL, info(10, 10), ".webp"),  # explicit wins
        ({}, URL, info(10, 10, "PNG"), ".png"),
        ({}, URL, info(10, 10, "MPO"), ".jpg"),
        ({}, URL, info(10, 10, "TIFF"), ".tiff"),
        ({}, "https://b.example/x.JFIF?sig=1.2", None, ".jfif"),
        ({}, "https://b.example/x.heif", None, ".heif"),
        ({}, "https://b.example/x.tga", None, ".tga"),
        ({}, "https://b.example/x.bmp", None, ".bmp"),
        ({}, "https://b.example/x.jpeg", None, ".jpeg"),
    ],
)
def test_extension_sources(client, options, image_url, image_info, extension):
    request = client.build_request("face_2x", options, image_url=image_url, image_info=image_info)
    assert request.extension == extension


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_url": URL, "image_file": b"x"}, "only as a URL.*image_file"),
        ({"image_file": b"x"}, "only as a URL.*image_file"),
        ({}, "needs image_url"),
        ({"image_url": "https://b.example/noext"}, "needs the image's extension"),
        ({"image_url": "https://b.example/x.gif"}, r"extension \.gif is not accepted"),
        ({"image_url": URL, "image_info": info(5, 5, "GIF")}, r"extension \.gif"),
        ({"image_url": "ftp://b.example/x.jpg"}, "img_url"),
    ],
)
def test_source_and_extension_refused(client, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        client.build_request("face_2x", {}, **kwargs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dpi": "300"}, "dpi"),
        ({"dpi": 0}, "dpi"),
        ({"dpi": True}, "dpi"),
        ({"exif": "yes"}, "exif"),
        ({"extension": ".psd"}, r"extension \.psd is not accepted"),
        ({"scale": 2}, "does not take option.*scale.*it takes: dpi, exif, extension"),
    ],
)
def test_bad_options_refused(client, options, message):
    with pytest.raises(InvalidInput, match=message):
        client.build_request("face_2x", options, image_url=URL)


def test_unknown_model_refused_naming_it(client):
    with pytest.raises(InvalidInput, match="no model 'enhanced_v1'"):
        client.build_request("enhanced_v1", {}, image_url=URL)


@pytest.mark.parametrize(
    ("model", "size", "message"),
    [
        (
            "face_2x",
            (10_000, 8_020),
            r"^input is 80\.2 MP \(10000 x 8020\); face_2x accepts at most 70 MP$",
        ),
        ("detail_denoise_1x", (7_001, 10_000), r"input is 70\.01 MP .*at most 70 MP"),
        (
            "general_4x",
            (6_000, 5_000),
            r"output would be 480\.0 MP \(24000 x 20000\); general_4x produces at most 432 MP",
        ),
        (
            "generative_1x",
            (7_000, 5_000),
            r"input is 35\.0 MP .*generative_1x accepts at most 34 MP",
        ),
        (
            "generative_2x",
            (4_000, 3_000),
            r"output would be 48\.0 MP \(8000 x 6000\); generative_2x produces at most 34 MP",
        ),
        ("generative_portrait_4x", (1_500, 1_500), r"output would be 36\.0 MP"),
    ],
)
def test_megapixel_limits(client, model, size, message):
    with pytest.raises(InvalidInput, match=message):
        client.build_request(model, {}, image_url=URL, image_info=info(*size))


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("face_2x", (10_000, 7_000)),  # exactly 70 MP in, 280 MP out
        ("general_4x", (5_196, 5_196)),  # 27 MP in, 432 MP out
        ("generative_1x", (6_800, 5_000)),  # exactly 34 MP
        ("generative_2x", (2_915, 2_915)),  # 8.5 MP in, 34 MP out
    ],
)
def test_limits_are_inclusive(client, model, size):
    client.build_request(model, {}, image_url=URL, image_info=info(*size))


def test_submit_refuses_foreign_request(client):
    with pytest.raises(TypeError):
        client.submit({"model_name": "face_2x"})


def test_key_not_in_repr(client):
    assert KEY not in repr(client)


# --- Answers over real HTTP (canned) -------------------------------------------------------


def canned_client(canned) -> HitPawClient:
    return HitPawClient(KEY, base_url=canned.base_url, connect_timeout_s=1, read_timeout_s=2)


def ok(data: dict) -> dict:
    return {"code": 200, "message": "OK", "data": data}


def test_submit_sends_documented_body_and_returns_job(canned):
    canned.add(200, ok({"job_id": "job-1", "consume_coins": 75}))
    client = canned_client(canned)
    request = client.build_request("face_2x", {"dpi": 300, "exif": True}, image_url=URL)
    submission = client.submit(request)
    assert (submission.provider, submission.job_id, submission.cost) == ("hitpaw", "job-1", 75)
    sent = canned.received[0]
    assert (sent.method, sent.path) == ("POST", "/api/photo-enhancer")
    assert sent.headers["Apikey"] == KEY
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == {
        "model_name": "face_2x",
        "img_url": URL,
        "extension": ".jpg",
        "exif": True,
        "DPI": 300,
    }


def test_submit_without_coins_keeps_the_job(canned):
    canned.add(200, ok({"job_id": "job-2"}))
    client = canned_client(canned)
    assert client.submit(client.build_request(None, {}, image_url=URL)).cost is None


@pytest.mark.parametrize(
    "body",
    [
        {"job_id": "job-1", "consume_coins": 75},  # the vendor sample's shape
        {"code": 200, "message": "OK"},
        {"code": 200, "data": {"consume_coins": 75}},
        {"code": 200, "data": {"job_id": ""}},
        [1, 2],
        "not json at all",
        "",
    ],
)
def test_submit_answer_of_no_documented_shape(canned, body):
    canned.add(200, body)
    client = canned_client(canned)
    with pytest.raises(ProtocolError) as error:
        client.submit(client.build_request(None, {}, image_url=URL))
    assert error.value.http_status == 200
    assert error.value.body == (json.dumps(body) if not isinstance(body, str) else body)


@pytest.mark.parametrize(
    ("coins", "words"),
    [("NaN", "consume_coins"), ("Infinity", "consume_coins"), ("1e999", "consume_coins"),
     ('"75"', "consume_coins"), ("-1", "consume_coins"), ("true", "consume_coins"),
     ("1e12", "consume_coins"), ("[75]", "consume_coins")],
)
def test_submit_answer_with_garbled_coins_is_refused_before_anything_records_it(
        canned, coins, words):
    """A NaN cost used to reach Redis after the job was submitted, and Redis refused it."""
    canned.add(200, '{"code": 200, "data": {"job_id": "job-1", "consume_coins": ' + coins + "}}")
    client = canned_client(canned)
    with pytest.raises(ProtocolError) as error:
        client.submit(client.build_request(None, {}, image_url=URL))
    assert error.value.http_status == 200 and coins in error.value.body
    if coins not in ("NaN", "Infinity", "1e999"):  # those are not JSON at all
        assert words in str(error.value)


@pytest.mark.parametrize(
    "data",
    [{"job_id": 123}, {"job_id": ["j"]}, {"job_id": "x" * 600}, {"job_id": None}],
)
def test_submit_answer_with_a_job_id_of_no_documented_shape(canned, data):
    canned.add(200, ok(data))
    client = canned_client(canned)
    with pytest.raises(ProtocolError, match="job_id"):
        client.submit(client.build_request(None, {}, image_url=URL))


@pytest.mark.parametrize(
    "data",
    [{"status": "COMPLETED", "res_url": 5}, {"status": ["COMPLETED"]},
     {"status": "CONVERTING" * 10}, {"status": None}],
)
def test_status_answer_of_wrong_types_is_a_protocol_error(canned, data):
    canned.add(200, ok(data))
    with pytest.raises(ProtocolError):
        canned_client(canned).query("j")


@pytest.mark.parametrize("http_status", [201, 202, 203, 206, 299, 300, 302, 304, 307])
def test_success_comes_only_as_http_200(canned, http_status):
    body = ok({"job_id": "job-1", "consume_coins": 75}) if http_status != 304 else ""
    canned.add(http_status, body)
    client = canned_client(canned)
    with pytest.raises(ProtocolError, match=f"undocumented HTTP status {http_status}"):
        client.submit(client.build_request(None, {}, image_url=URL))


@pytest.mark.parametrize("message", [{"deep": [1, 2]}, ["a"], True, None, ""])
def test_an_error_message_of_any_shape_reads_as_no_message(canned, message):
    canned.add(500, {"error_code": 100500001, "message": message})
    with pytest.raises(ProviderUnavailable, match="no message"):
        canned_client(canned).query("j")


DOCUMENTED = sorted(HITPAW_ERRORS.items())


@pytest.mark.parametrize(("code", "cls"), DOCUMENTED)
def test_every_error_code_as_http_error(canned, code, cls):
    http_status = code // 1000 % 1000
    canned.add(http_status, {"error_code": code, "message": "vendor says no"})
    client = canned_client(canned)
    with pytest.raises(cls) as error:
        client.submit(client.build_request(None, {}, image_url=URL))
    assert type(error.value) is cls
    assert (error.value.vendor_code, error.value.http_status) == (code, http_status)
    assert f"error_code {code}" in str(error.value) and "vendor says no" in str(error.value)


@pytest.mark.parametrize(("code", "cls"), DOCUMENTED)
def test_every_error_code_in_a_200_envelope(canned, code, cls):
    canned.add(200, {"code": code, "message": "vendor says no", "data": None})
    client = canned_client(canned)
    with pytest.raises(cls) as error:
        client.query("job-1")
    assert type(error.value) is cls and error.value.vendor_code == code


def test_expected_classes_for_documented_codes():
    expect = {
        AuthFailed: {110400000, 100401000, 100403001, 100403002, 100400000},
        RateLimited: {100429000},
        InsufficientCredits: {110402000, 110402001, 110402004},
        NotFound: {110400002},
        ProviderJobFailed: {110400003},
        InvalidInput: {100400001, 100400002, 100403000, 110400005}
        | {110400007, 110400008, 110400009, 110400010, 110400011},
        ProviderUnavailable: set(range(100500000, 100500008)),
    }
    assert {code: cls for cls, codes in expect.items() for code in codes} == HITPAW_ERRORS


def test_rate_limited_carries_retry_after(canned):
    canned.add(429, {"error_code": 100429000, "message": "Too many"}, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as error:
        canned_client(canned).query("job-1")
    assert error.value.retry_after_s == 7.0 and error.value.retryable


@pytest.mark.parametrize(
    ("http_status", "body", "cls"),
    [
        (429, {"error_code": 999, "message": "?"}, RateLimited),
        (503, {"error_code": 120500123, "message": "?"}, ProviderUnavailable),
        (418, {"error_code": 120418000, "message": "?"}, PermanentError),
        (502, "<html>bad gateway</html>", ProviderUnavailable),
        (500, "", ProviderUnavailable),
        (404, "", NotFound),
        (200, {"code": 120503001, "message": "?"}, ProviderUnavailable),  # status in the code
        (200, {"code": 429, "message": "?"}, RateLimited),  # a status-like envelope code
        (200, {"code": 12345, "message": "?"}, ProtocolError),  # no status to go by
        (200, {"code": "abc", "message": "?"}, ProtocolError),
        (400, {"code": 200, "data": {"job_id": "x"}}, InvalidInput),  # HTTP says failure
    ],
)
def test_unknown_codes_by_http_status(canned, http_status, body, cls):
    canned.add(http_status, body)
    with pytest.raises(cls) as error:
        canned_client(canned).query("job-1")
    assert type(error.value) is cls


@pytest.mark.parametrize(
    "status",
    ["CONVERTING", "WAITING", "PENDING", "INPUT_PREPARING", "CONVERT_COMPLETED"]
    + ["OUTPUT_SAVING", "OUTPUT_SAVED"],
)
def test_in_progress_statuses(canned, status):
    canned.add(200, ok({"job_id": "j", "status": status}))
    job = canned_client(canned).query("j")
    assert (job.phase, job.raw_status, job.result_url) == (Phase.IN_PROGRESS, status, None)
    sent = canned.received[0]
    assert (sent.path, json.loads(sent.body)) == ("/api/task-status", {"job_id": "j"})


@pytest.mark.parametrize(
    "status", ["ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW"]
)
def test_failed_statuses(canned, status):
    canned.add(200, ok({"job_id": "j", "status": status}))
    job = canned_client(canned).query("j")
    assert (job.phase, job.error_code) == (Phase.FAILED, "provider_failed")
    assert status in job.error_message


def test_completed_has_result_url_and_expiry(canned):
    canned.add(200, ok({"job_id": "j", "status": "COMPLETED", "res_url": "https://r/x.jpg"}))
    client = HitPawClient(KEY, base_url=canned.base_url, result_ttl_s=600)
    before = datetime.now(UTC)
    job = client.query("j")
    assert (job.phase, job.result_url) == (Phase.COMPLETED, "https://r/x.jpg")
    assert before + timedelta(seconds=600) <= job.result_expires_at
    assert job.result_expires_at <= datetime.now(UTC) + timedelta(seconds=600)


@pytest.mark.parametrize(
    "data",
    [
        {"job_id": "j", "status": "COMPLETED"},
        {"job_id": "j", "status": "COMPLETED", "res_url": ""},
        {"job_id": "j", "status": "SUCCESS", "res_url": "https://r/x.jpg"},
        {"job_id": "j", "status": "completed", "res_url": "https://r/x.jpg"},
        {"job_id": "j"},
        {"job_id": "j", "status": 1},
    ],
)
def test_unknown_or_incomplete_status_is_never_success(canned, data):
    canned.add(200, ok(data))
    with pytest.raises(ProtocolError):
        canned_client(canned).query("j")


def test_empty_job_id_refused_without_a_request(canned):
    with pytest.raises(InvalidInput):
        canned_client(canned).query("")
    assert canned.received == []


# --- Contract: the client against the sandbox over real HTTP -------------------------------

integration = pytest.mark.integration


def sandbox_client(sb, key: str | None = None) -> HitPawClient:
    key = sb.hitpaw_key if key is None else key
    return HitPawClient(key, base_url=sb.base_url, connect_timeout_s=2, read_timeout_s=10)


def fetch_image(url: str) -> tuple[ImageInfo, Image.Image]:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text[:200]
    image = Image.open(io.BytesIO(response.content))
    return inspect_image(response.content), image


def run_job(sb, model: str, sample: str = "portrait.jpg", **options):
    client = sandbox_client(sb)
    url = sb.sample_url(sample)
    source, _ = fetch_image(url)
    submission = client.submit(
        client.build_request(model, options, image_url=url, image_info=source)
    )
    assert submission.provider == "hitpaw" and submission.cost and submission.cost > 0
    job, seen = poll_until_done(client, submission.job_id)
    return source, job, seen


@integration
@pytest.mark.parametrize("model", list(MODELS))
def test_contract_every_model_to_a_downloaded_result(sandbox, model):
    source, job, seen = run_job(sandbox, model)
    assert job.phase is Phase.COMPLETED, job
    assert set(seen) <= {"WAITING", "CONVERTING", "COMPLETED"}
    assert job.result_expires_at > datetime.now(UTC)
    result, _ = fetch_image(job.result_url)
    scale = MODELS[model].scale
    assert (result.width, result.height) == (source.width * scale, source.height * scale)
    assert sandbox.count(provider="hitpaw", kind="submit") == 1  # a paid call is never repeated


@integration
@pytest.mark.parametrize("sample", ["portrait.jpg", "product.png", "landscape.webp", "scan.bmp"])
def test_contract_extension_from_the_url(sandbox, sample):
    client = sandbox_client(sandbox)
    submission = client.submit(client.build_request(None, {}, image_url=sandbox.sample_url(sample)))
    job, _ = poll_until_done(client, submission.job_id)
    result, _ = fetch_image(job.result_url)
    assert (
        result.format
        == inspect_image(requests.get(sandbox.sample_url(sample), timeout=10).content).format
    )


@integration
def test_contract_dpi_and_exif(sandbox):
    _, job, _ = run_job(sandbox, "face_2x", dpi=300, exif=True)
    _, image = fetch_image(job.result_url)
    assert round(image.info["dpi"][0]) == 300
    assert image.getexif().get(EXIF_MAKE) == SAMPLE_CAMERA[0]
    _, job, _ = run_job(sandbox, "face_2x")
    _, image = fetch_image(job.result_url)
    assert EXIF_MAKE not in image.getexif()


@integration
def test_contract_generative_ignores_dpi(sandbox):
    source, job, _ = run_job(sandbox, "generative_2x", dpi=300)
    result, _ = fetch_image(job.result_url)
    assert (result.width, result.height) == (source.width * 2, source.height * 2)


@integration
def test_contract_bad_key(sandbox):
    client = sandbox_client(sandbox, key="not-the-key")
    with pytest.raises(AuthFailed) as error:
        client.submit(client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg")))
    assert error.value.vendor_code == 110400000 and "not-the-key" not in str(error.value)


@integration
def test_contract_error_in_a_200_envelope(sandbox):
    sandbox.configure(rate_envelope_error=1.0)
    with pytest.raises(NotFound) as error:
        sandbox_client(sandbox).query("no-such-job")
    assert (error.value.vendor_code, error.value.http_status) == (110400002, 200)


@integration
def test_contract_unknown_job(sandbox):
    with pytest.raises(NotFound):
        sandbox_client(sandbox).query("no-such-job")


@integration
@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ({"rate_429": 1.0, "retry_after_s": 3}, RateLimited),
        ({"rate_5xx": 1.0}, ProviderUnavailable),
    ],
)
def test_contract_transient_faults(sandbox, fault, cls):
    sandbox.configure(**fault)
    client = sandbox_client(sandbox)
    with pytest.raises(cls) as error:
        client.submit(client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg")))
    assert error.value.retryable
    if cls is RateLimited:
        assert error.value.retry_after_s == 3.0


@integration
@pytest.mark.parametrize("kind", ["truncated", "flat", "html", "empty"])
def test_contract_malformed_answers(sandbox, kind):
    client = sandbox_client(sandbox)
    request = client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg"))
    sandbox.configure(rate_malformed=1.0, malformed_kinds=(kind,))
    with pytest.raises(ProtocolError) as error:
        client.submit(request)
    assert error.value.http_status == 200


@integration
def test_contract_out_of_coins(sandbox):
    sandbox.configure(hitpaw_coins=0)
    client = sandbox_client(sandbox)
    with pytest.raises(InsufficientCredits) as error:
        client.submit(client.build_request(None, {}, image_url=sandbox.sample_url("portrait.jpg")))
    assert error.value.http_status == 402


@integration
def test_contract_job_failure(sandbox):
    sandbox.configure(rate_job_failure=1.0)
    _, job, _ = run_job(sandbox, "general_2x")
    assert (job.phase, job.error_code, job.raw_status) == (Phase.FAILED, "provider_failed", "ERROR")


@integration
def test_contract_limits_checked_before_money_and_by_the_vendor(sandbox):
    url = sandbox.add_sample("big.png", png_header_only(10_000, 8_020))
    client = sandbox_client(sandbox)
    with pytest.raises(InvalidInput, match="input is 80.2 MP"):
        client.build_request("face_2x", {}, image_url=url, image_info=fetch_image(url)[0])
    assert sandbox.count(provider="hitpaw", kind="submit") == 0
    bypass = HitPawRequest(model_name="face_2x", img_url=url, extension=".png")
    with pytest.raises(InvalidInput) as error:
        client.submit(bypass)
    assert error.value.vendor_code == 110400009


@integration
@pytest.mark.parametrize(
    ("img_url", "extension", "code"),
    [("{sample}", ".gif", 110400007), ("http://127.0.0.1:9/gone.jpg", ".jpg", 100400001)],
)
def test_contract_vendor_side_validation(sandbox, img_url, extension, code):
    img_url = img_url.format(sample=sandbox.sample_url("portrait.jpg"))
    request = HitPawRequest(model_name="face_2x", img_url=img_url, extension=extension)
    with pytest.raises(InvalidInput) as error:
        sandbox_client(sandbox).submit(request)
    assert error.value.vendor_code == code
