"""The sandbox's PicWish API follows picwish-scale-pro.md and its reader's notes, over HTTP."""

from __future__ import annotations

import base64
import io
import time

import pytest
import requests
from PIL import Image

TIMEOUT_S = 10
QUERY_FIELDS = {
    "task_id", "created_at", "processed_at", "completed_at", "image", "return_type", "type",
    "progress", "state", "image_width", "image_height", "image_size_kb", "out_format",
    "state_detail", "download_time", "time_elapsed",
}
PATH = "/api/tasks/visual/scale-pro"


def submit(sb, key: str | None = None, files=None, **form) -> requests.Response:
    if not files and "image_url" not in form:
        form["image_url"] = sb.sample_url("product.png")
    headers = {"X-API-KEY": sb.picwish_key if key is None else key}
    return requests.post(sb.base_url + PATH, data=form, files=files, headers=headers,
                         timeout=TIMEOUT_S)


def query(sb, task_id: str) -> requests.Response:
    return requests.get(f"{sb.base_url}{PATH}/{task_id}", headers={"X-API-KEY": sb.picwish_key},
                        timeout=TIMEOUT_S)


def run(sb, **kwargs) -> tuple[dict, list[dict]]:
    """Submit and poll until the state is final; return the last data and every data seen."""
    resp = submit(sb, **kwargs)
    assert resp.status_code == 200, resp.text
    task_id = resp.json()["data"]["task_id"]
    seen: list[dict] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        body = query(sb, task_id).json()
        assert body["status"] == 200 and body["message"] == "success"
        seen.append(body["data"])
        if body["data"]["state"] == 1 or body["data"]["state"] < 0:
            return body["data"], seen
        time.sleep(0.01)
    raise AssertionError(f"task {task_id} never finished")


def image_bytes(size=(64, 48), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


def fetch_result(data: dict) -> Image.Image:
    resp = requests.get(data["image"], timeout=TIMEOUT_S)
    assert resp.status_code == 200
    img = Image.open(io.BytesIO(resp.content))
    img.load()
    return img


def test_states_go_queued_preparing_waiting_processing_done(sandbox):
    sandbox.configure(processing_time_s=(0.8, 0.8))
    data, seen = run(sandbox)
    states = [d["state"] for d in seen]
    order = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert order == [0, 2, 3, 4, 1]
    progress = [d["progress"] for d in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len({d["progress"] for d in seen if d["state"] == 4}) > 3  # it really rises
    assert set(data) == QUERY_FIELDS and all(data[f] is not None for f in QUERY_FIELDS)
    assert data["created_at"] <= data["processed_at"] <= data["completed_at"]
    assert [d["image"] for d in seen[:-1]] == [None] * (len(seen) - 1)


@pytest.mark.parametrize(("task_type", "scale"), [(0, 4), (1, 2)])
def test_type_scales(sandbox, task_type, scale):
    data, _ = run(sandbox, type=task_type)
    img = fetch_result(data)
    assert img.size == (320 * scale, 240 * scale)
    assert (data["image_width"], data["image_height"]) == img.size
    assert (data["type"], data["out_format"], img.format) == (task_type, "png", "PNG")


def test_default_type_is_ultra_hd(sandbox):
    data, _ = run(sandbox)
    assert data["type"] == 0 and data["image_width"] == 320 * 4


def test_ultra_hd_is_capped_at_8192_px(sandbox):
    files = {"image_file": ("wide.jpg", image_bytes((4000, 10)), "image/jpeg")}
    data, _ = run(sandbox, files=files)
    assert data["image_width"] == 8192


def test_return_type_2_is_the_image_in_base64(sandbox):
    data, _ = run(sandbox, return_type=2, type=1)
    img = Image.open(io.BytesIO(base64.b64decode(data["image"])))
    assert img.size == (640, 480) and data["return_type"] == 2


def test_multipart_upload_wins_over_url(sandbox):
    files = {"image_file": ("x.jpg", image_bytes((50, 40)), "image/jpeg")}
    data, _ = run(sandbox, files=files, type=1, image_url="http://127.0.0.1:9/never.png")
    assert (data["image_width"], data["image_height"], data["out_format"]) == (100, 80, "jpg")
    assert data["download_time"] is None  # nothing was downloaded


def test_sync_waits_and_answers_the_query_fields(sandbox):
    resp = submit(sandbox, sync=1, type=1)
    data = resp.json()["data"]
    assert resp.status_code == 200 and set(data) == QUERY_FIELDS
    assert data["state"] == 1 and data["image"]


@pytest.mark.parametrize("form", [
    {"type": "2"}, {"type": "x"}, {"return_type": "0"}, {"sync": "2"},
    {"image_url": ""}, {"image_url": "ftp://example.com/a.png"},
    {"image_url": "http://example.com/" + "a" * 494},  # 513 characters
])
def test_bad_parameters_answer_400(sandbox, form):
    resp = submit(sandbox, **form)
    assert resp.status_code == 400
    assert resp.json()["status"] == 400 and resp.json()["message"]


def test_512_character_url_is_accepted(sandbox):
    url = sandbox.sample_url("product.png") + "?pad=" + "a" * 400
    url = url + "a" * (512 - len(url))
    assert submit(sandbox, image_url=url).status_code == 200


@pytest.mark.parametrize("limit", [1000, None])
def test_upload_over_the_limit_is_413(sandbox, limit):
    if limit:
        sandbox.configure(picwish_max_upload_bytes=limit)
    size = (limit or 30 * 1024 * 1024) + 1
    files = {"image_file": ("big.jpg", b"\0" * size, "image/jpeg")}
    resp = submit(sandbox, files=files)
    assert resp.status_code == 413 and resp.json()["status"] == 413


def test_bad_key_is_401_and_unknown_task_404(sandbox):
    resp = submit(sandbox, key="wrong")
    assert resp.status_code == 401 and resp.json()["status"] == 401
    resp = query(sandbox, "no-such-task")
    assert resp.status_code == 404 and resp.json()["status"] == 404


@pytest.mark.parametrize(("make_source", "state"), [
    (lambda sb: {"files": {"image_file": ("t.jpg", image_bytes((4097, 8)), "image/jpeg")}}, -5),
    (lambda sb: {"files": {"image_file": ("t.jpg", b"not an image", "image/jpeg")}}, -7),
    (lambda sb: {"files": {"image_file": ("t.gif", image_bytes(fmt="GIF"), "image/gif")}}, -7),
    (lambda sb: {"image_url": sb.sample_url("broken.jpg")}, -7),
    (lambda sb: {"image_url": sb.sample_url("missing.jpg")}, -3),
    (lambda sb: {"image_url": "http://127.0.0.1:9/refused.jpg"}, -3),
])
def test_failures_end_in_documented_negative_states(sandbox, make_source, state):
    data, _ = run(sandbox, **make_source(sandbox))
    assert data["state"] == state and data["image"] is None and data["state_detail"]


def test_injected_failures_use_documented_states(sandbox):
    sandbox.configure(rate_job_failure=1.0, seed=7)
    states = {run(sandbox)[0]["state"] for _ in range(6)}
    assert states <= {-1, -2, -8} and states


def test_credits_are_charged_per_successful_task(sandbox):
    sandbox.configure(picwish_credits=9)
    run(sandbox, type=0)  # 5
    assert sandbox.config.picwish_credits == 4
    sandbox.configure(rate_job_failure=1.0)
    run(sandbox, type=1)  # fails: the 4 credits come back
    assert sandbox.config.picwish_credits == 4
    resp = submit(sandbox, type=0)
    assert resp.status_code == 402 and "credits" in resp.json()["message"].lower()
    sandbox.configure(rate_job_failure=0.0)
    run(sandbox, type=1)
    assert sandbox.config.picwish_credits == 0
