"""The sandbox's HitPaw API follows hitpaw-photo-enhancer.md, over real HTTP."""

from __future__ import annotations

import io
import struct
import time
import zlib

import pytest
import requests
from PIL import Image

from providers.sandbox.catalog import HITPAW_MODELS
from providers.sandbox.samples import EXIF_MAKE, SAMPLE_CAMERA

TIMEOUT_S = 10
TERMINAL = ("COMPLETED", "ERROR")


def submit(sb, key: str | None = None, **fields) -> requests.Response:
    body = {
        "model_name": "general_2x",
        "img_url": sb.sample_url("portrait.jpg"),
        "extension": ".jpg",
    } | fields
    headers = {"Apikey": sb.hitpaw_key if key is None else key}
    return requests.post(
        f"{sb.base_url}/api/photo-enhancer", json=body, headers=headers, timeout=TIMEOUT_S
    )


def status(sb, job_id: str) -> requests.Response:
    return requests.post(
        f"{sb.base_url}/api/task-status",
        json={"job_id": job_id},
        headers={"Apikey": sb.hitpaw_key},
        timeout=TIMEOUT_S,
    )


def run(sb, **fields) -> tuple[dict, list[str]]:
    """Submit and poll until terminal; return the last data and every status seen."""
    resp = submit(sb, **fields)
    assert resp.status_code == 200, resp.text
    job_id = resp.json()["data"]["job_id"]
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        data = status(sb, job_id).json()["data"]
        seen.append(data["status"])
        if data["status"] in TERMINAL:
            return data, seen
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never finished: {seen[-5:]}")


def result_image(data: dict) -> Image.Image:
    resp = requests.get(data["res_url"], timeout=TIMEOUT_S)
    assert resp.status_code == 200
    img = Image.open(io.BytesIO(resp.content))
    img.load()
    return img


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds no pixels (header checks only)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


@pytest.mark.parametrize("model", sorted(HITPAW_MODELS))
def test_every_model_scales_the_real_result_by_its_suffix(sandbox, model):
    data, _ = run(sandbox, model_name=model)
    img = result_image(data)
    scale = int(model.rsplit("_", 1)[1][0])
    assert img.size == (256 * scale, 256 * scale)
    assert img.format == "JPEG"
    assert data["original_url"] == sandbox.sample_url("portrait.jpg")


def test_submit_answers_the_documented_envelope_and_coins(sandbox):
    body = submit(sandbox).json()
    assert body["code"] == 200 and body["message"] == "OK"
    assert set(body["data"]) == {"job_id", "consume_coins"}
    assert body["data"]["consume_coins"] == 75  # the vendor's example figure for general_2x


@pytest.mark.parametrize(
    ("sample", "fmt"),
    [
        ("portrait.jpg", "JPEG"),
        ("product.png", "PNG"),
        ("landscape.webp", "WEBP"),
        ("scan.bmp", "BMP"),
    ],
)
def test_output_keeps_the_input_format(sandbox, sample, fmt):
    ext = "." + sample.rsplit(".", 1)[1]
    data, _ = run(sandbox, img_url=sandbox.sample_url(sample), extension=ext)
    img = result_image(data)
    assert img.format == fmt
    assert data["res_url"].endswith(ext)


@pytest.mark.parametrize(
    ("model", "dpi", "expected"),
    [
        ("face_2x", 300, (300, 300)),
        ("detail_denoise_1x", 150, (150, 150)),
        ("general_4x", None, (72, 72)),  # default: the original's DPI
        ("generative_2x", 300, (72, 72)),  # generative models ignore DPI
    ],
)
def test_dpi_metadata(sandbox, model, dpi, expected):
    fields = {"model_name": model} | ({"DPI": dpi} if dpi else {})
    data, _ = run(sandbox, **fields)
    assert tuple(round(v) for v in result_image(data).info["dpi"]) == expected


@pytest.mark.parametrize(("exif", "kept"), [(True, True), (False, False), (None, False)])
def test_exif_is_kept_only_when_asked(sandbox, exif, kept):
    fields = {} if exif is None else {"exif": exif}
    data, _ = run(sandbox, **fields)
    make = result_image(data).getexif().get(EXIF_MAKE)
    assert (make == SAMPLE_CAMERA[0]) is kept


def test_one_x_model_filters_without_resizing(sandbox):
    data, _ = run(sandbox, model_name="sharpen_denoise_1x")
    original = Image.open(
        io.BytesIO(requests.get(sandbox.sample_url("portrait.jpg"), timeout=TIMEOUT_S).content)
    ).convert("RGB")
    out = result_image(data).convert("RGB")
    assert out.size == original.size and out.tobytes() != original.tobytes()


def test_statuses_go_waiting_converting_completed(sandbox):
    sandbox.configure(processing_time_s=(0.5, 0.5), hitpaw_waiting_fraction=0.3)
    data, seen = run(sandbox)
    order = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert order == ["WAITING", "CONVERTING", "COMPLETED"]
    assert data["res_url"]


def test_in_progress_status_has_no_result(sandbox):
    sandbox.configure(processing_time_s=(5, 5))
    job_id = submit(sandbox).json()["data"]["job_id"]
    data = status(sandbox, job_id).json()["data"]
    assert data["status"] in ("WAITING", "CONVERTING") and data["res_url"] is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"model_name": "enhanced_v1"}, 110400005),  # the vendor sample's model: not in the table
        ({"extension": ".gif"}, 110400007),
        ({"extension": "jpg"}, 110400007),  # documented values carry the dot
        ({"img_url": "not a url"}, 100400001),
        ({"img_url": "ftp://example.com/a.jpg"}, 100400001),
        ({"img_url": "http://127.0.0.1:9/unreachable.jpg"}, 100400001),
        ({"model_name": None}, 100400002),
        ({"DPI": "300"}, 100400002),
        ({"exif": "yes"}, 100400002),
    ],
)
def test_documented_submit_errors(sandbox, fields, code):
    resp = submit(sandbox, **fields)
    assert resp.status_code == 400
    assert resp.json() == {"error_code": code, "message": resp.json()["message"]}


@pytest.mark.parametrize(
    ("model", "size", "code"),
    [
        ("general_2x", (8400, 8400), 110400009),  # 70.56 MP > 70 MP input
        ("general_2x", (20000, 20000), 110400009),  # far over: Pillow refuses to open it
        ("generative_1x", (5900, 5900), 110400009),  # 34.8 MP > 34 MP input
        ("general_4x", (5200, 5200), 110400010),  # 432.6 MP > 432 MP output
        ("generative_2x", (3000, 3000), 110400010),  # 36 MP > 34 MP output
    ],
)
def test_resolution_limits(sandbox, model, size, code):
    url = sandbox.add_sample("big.png", png_header(*size))
    resp = submit(sandbox, model_name=model, img_url=url, extension=".png")
    assert (resp.status_code, resp.json()["error_code"]) == (400, code)


def test_bad_key_and_unknown_job(sandbox):
    resp = submit(sandbox, key="wrong")
    assert (resp.status_code, resp.json()["error_code"]) == (400, 110400000)
    resp = status(sandbox, "no-such-job")
    assert (resp.status_code, resp.json()["error_code"]) == (400, 110400002)


def test_errors_as_http_200_envelope_when_configured(sandbox):
    sandbox.configure(rate_envelope_error=1.0)
    resp = submit(sandbox, model_name="enhanced_v1")
    assert resp.status_code == 200
    assert resp.json() == {"code": 110400005, "message": resp.json()["message"], "data": None}


def test_coins_run_out(sandbox):
    sandbox.configure(hitpaw_coins=160)
    assert submit(sandbox).status_code == 200  # 75
    assert submit(sandbox).status_code == 200  # 75, 10 left
    resp = submit(sandbox)
    assert (resp.status_code, resp.json()["error_code"]) == (402, 110402000)
    assert sandbox.config.hitpaw_coins == 10


def test_rejected_submit_costs_nothing(sandbox):
    sandbox.configure(hitpaw_coins=100)
    submit(sandbox, extension=".gif")
    assert sandbox.config.hitpaw_coins == 100


@pytest.mark.parametrize("fields", [{"img_url": "broken"}, {}])
def test_failed_jobs_end_in_error(sandbox, fields):
    if fields:
        fields = {"img_url": sandbox.sample_url("broken.jpg")}
    else:
        sandbox.configure(rate_job_failure=1.0)
    data, _ = run(sandbox, **fields)
    assert data["status"] == "ERROR" and data["res_url"] is None
