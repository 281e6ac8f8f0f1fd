"""The sandbox itself: its Python API, admin endpoints, request log, result lifetime, faults."""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from PIL import Image

from providers.sandbox import (
    DEFAULT_HITPAW_KEY,
    DEFAULT_PICWISH_KEY,
    SandboxConfig,
    SandboxServer,
)

TIMEOUT_S = 10
HITPAW, PICWISH = "hitpaw", "picwish"


def call(sb, provider: str, kind: str = "query", job_id: str = "no-such-job") -> requests.Response:
    """One cheap API request to ``provider``: a query of ``job_id``, or a submit."""
    if provider == HITPAW:
        headers = {"Apikey": sb.hitpaw_key}
        if kind == "submit":
            body = {"model_name": "general_2x", "img_url": sb.sample_url("portrait.jpg"),
                    "extension": ".jpg"}
            return requests.post(f"{sb.base_url}/api/photo-enhancer", json=body,
                                 headers=headers, timeout=TIMEOUT_S)
        return requests.post(f"{sb.base_url}/api/task-status", json={"job_id": job_id},
                             headers=headers, timeout=TIMEOUT_S)
    headers = {"X-API-KEY": sb.picwish_key}
    url = f"{sb.base_url}/api/tasks/visual/scale-pro"
    if kind == "submit":
        return requests.post(url, data={"image_url": sb.sample_url("portrait.jpg")},
                             headers=headers, timeout=TIMEOUT_S)
    return requests.get(f"{url}/{job_id}", headers=headers, timeout=TIMEOUT_S)


def job_id_of(provider: str, resp: requests.Response) -> str:
    data = resp.json()["data"]
    return data["job_id"] if provider == HITPAW else data["task_id"]


def result_url(sb, provider: str) -> tuple[str, str]:
    """Run a job to completion; return its id and result URL."""
    job_id = job_id_of(provider, call(sb, provider, "submit"))
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        data = call(sb, provider, job_id=job_id).json()["data"]
        url = data.get("res_url") or data.get("image")
        if url:
            return job_id, url
        time.sleep(0.02)
    raise AssertionError("no result")


def admin(sb, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{sb.base_url}/_sandbox/{path}", timeout=TIMEOUT_S, **kwargs)


# --- Python API ---------------------------------------------------------------------------


def test_start_stop_and_base_url():
    sb = SandboxServer(SandboxConfig(processing_time_s=(0, 0)), port=0).start()
    try:
        base_url = sb.base_url
        assert base_url.startswith("http://127.0.0.1:") and sb.port > 0
        assert admin(sb, "GET", "health").json()["ok"] is True
    finally:
        sb.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base_url}/_sandbox/health", timeout=1)


def test_keys_come_from_the_environment_else_defaults(monkeypatch):
    assert (DEFAULT_HITPAW_KEY, DEFAULT_PICWISH_KEY) == ("sandbox-hitpaw-key", "sandbox-picwish-key")
    monkeypatch.delenv("HITPAW_API_KEY", raising=False)
    monkeypatch.setenv("PICWISH_API_KEY", "from-env")
    cfg = SandboxConfig()
    assert (cfg.hitpaw_key, cfg.picwish_key) == (DEFAULT_HITPAW_KEY, "from-env")
    assert "picwish_key" not in cfg.public() and "from-env" not in repr(cfg)


@pytest.mark.parametrize("bad", [{"processing_time_s": (2, 1)}, {"rate_429": 1.5},
                                 {"picwish_qps": 0}, {"no_such_field": 1}])
def test_config_is_validated(bad):
    with pytest.raises(ValueError):
        SandboxConfig(**bad)


def test_count_and_records(sandbox):
    job_id = job_id_of(HITPAW, call(sandbox, HITPAW, "submit"))
    call(sandbox, HITPAW, job_id=job_id)
    call(sandbox, HITPAW, job_id=job_id)
    call(sandbox, PICWISH, "submit")
    assert sandbox.count(provider=HITPAW, kind="submit") == 1
    assert sandbox.count(provider=HITPAW, kind="query", job_id=job_id) == 2
    assert sandbox.count(provider=PICWISH) == 1
    assert sandbox.count(kind="sample") >= 1  # HitPaw fetched its source before answering
    rec = next(r for r in sandbox.requests() if r.kind == "submit" and r.provider == HITPAW)
    assert (rec.job_id, rec.status, rec.method, rec.path) == (
        job_id, 200, "POST", "/api/photo-enhancer")
    assert rec.ts <= time.time()


def test_keys_are_never_recorded(sandbox):
    call(sandbox, HITPAW, "submit")
    call(sandbox, PICWISH, "submit")
    text = json.dumps(admin(sandbox, "GET", "requests").json())
    assert sandbox.hitpaw_key not in text and sandbox.picwish_key not in text
    assert sandbox.hitpaw_key not in admin(sandbox, "GET", "config").text


def test_reset_forgets_jobs_and_log(sandbox):
    job_id = job_id_of(HITPAW, call(sandbox, HITPAW, "submit"))
    sandbox.reset()
    assert sandbox.requests() == []
    resp = call(sandbox, HITPAW, job_id=job_id)
    assert resp.json()["error_code"] == 110400002


def test_reset_of_a_sandbox_that_has_had_no_job(sandbox):
    assert admin(sandbox, "POST", "reset").status_code == 200


# --- admin endpoints ----------------------------------------------------------------------


def test_admin_endpoints(sandbox):
    job_id = job_id_of(PICWISH, call(sandbox, PICWISH, "submit"))
    log = admin(sandbox, "GET", "requests", params={"kind": "submit"}).json()
    assert [(r["provider"], r["job_id"]) for r in log] == [(PICWISH, job_id)]
    assert admin(sandbox, "POST", "config", json={"rate_429": 0.25}).json()["rate_429"] == 0.25
    assert sandbox.config.rate_429 == 0.25
    assert admin(sandbox, "GET", "config").json()["picwish_qps"] is None
    assert admin(sandbox, "POST", "reset").json() == {"ok": True}
    assert admin(sandbox, "GET", "requests").json() == []
    assert admin(sandbox, "GET", "requests").status_code == 200  # admin calls are not logged


@pytest.mark.parametrize("patch", [{"rate_429": 2}, {"nope": 1}, {"hitpaw_key": "x"}, [1]])
def test_config_patch_rejects_bad_values(sandbox, patch):
    assert admin(sandbox, "POST", "config", json=patch).status_code == 400
    assert sandbox.config.rate_429 == 0.0


@pytest.mark.parametrize(("name", "size", "fmt"), [
    ("portrait.jpg", (256, 256), "JPEG"), ("product.png", (320, 240), "PNG"),
    ("landscape.webp", (300, 200), "WEBP"), ("scan.bmp", (200, 150), "BMP"),
])
def test_samples(sandbox, name, size, fmt):
    img = Image.open(io.BytesIO(requests.get(sandbox.sample_url(name), timeout=TIMEOUT_S).content))
    assert (img.size, img.format) == (size, fmt)


def test_put_sample_then_get_it(sandbox):
    assert admin(sandbox, "PUT", "samples/mine.bin", data=b"hello").status_code == 200
    assert requests.get(sandbox.sample_url("mine.bin"), timeout=TIMEOUT_S).content == b"hello"
    assert requests.get(sandbox.sample_url("nope.jpg"), timeout=TIMEOUT_S).status_code == 404


# --- results ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_result_urls_expire(sandbox, provider):
    sandbox.configure(result_ttl_s=0.4)
    job_id, url = result_url(sandbox, provider)
    assert requests.get(url, timeout=TIMEOUT_S).status_code == 200
    time.sleep(0.5)
    assert requests.get(url, timeout=TIMEOUT_S).status_code == 403
    statuses = [r.status for r in sandbox.requests() if r.kind == "result"]
    assert statuses == [200, 403]
    assert sandbox.count(kind="result", job_id=job_id) == 2


def test_unknown_result_is_404(sandbox):
    assert admin(sandbox, "GET", "results/nothing.jpg").status_code == 404


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_large_result_is_a_valid_image_of_that_size(sandbox, provider):
    sandbox.configure(large_result_bytes=5_000_000)
    _, url = result_url(sandbox, provider)
    with requests.get(url, stream=True, timeout=TIMEOUT_S) as resp:
        assert int(resp.headers["Content-Length"]) == 5_000_000
        body = resp.content
    Image.open(io.BytesIO(body)).load()


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_qps_cap_answers_429_with_retry_after(sandbox, provider):
    sandbox.configure(**{f"{provider}_qps": 2.0})
    answers = [call(sandbox, provider) for _ in range(3)]
    assert [r.status_code != 429 for r in answers] == [True, True, False]
    assert answers[2].headers["Retry-After"] == "1"
    body = answers[2].json()
    assert body.get("error_code") == 100429000 if provider == HITPAW else body["status"] == 429
    time.sleep(1.0)
    assert call(sandbox, provider).status_code != 429
    assert sandbox.count(provider=provider, status=429) == 1


def test_picwish_qps_defaults_to_two():
    with SandboxServer() as sb:
        assert sb.config.picwish_qps == 2.0 and sb.config.hitpaw_qps is None
        assert [call(sb, PICWISH).status_code for _ in range(3)][-1] == 429
        assert all(call(sb, HITPAW).status_code != 429 for _ in range(5))


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_injected_429(sandbox, provider):
    sandbox.configure(rate_429=1.0, retry_after_s=3)
    resp = call(sandbox, provider, "submit")
    assert (resp.status_code, resp.headers["Retry-After"]) == (429, "3")
    assert sandbox.requests()[-1].fault == "429"
    assert sandbox.count(kind="sample") == 0  # refused before anything was done


@pytest.mark.parametrize(("provider", "body"), [
    (HITPAW, {"error_code": 100500000, "message": "Internal error"}),
    (PICWISH, {"status": 500, "message": "Internal server error"}),
])
def test_injected_5xx(sandbox, provider, body):
    sandbox.configure(rate_5xx=1.0)
    resp = call(sandbox, provider)
    assert (resp.status_code, resp.json()) == (500, body)


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
@pytest.mark.parametrize("kind", ["truncated", "flat", "html", "empty"])
def test_malformed_bodies_have_no_documented_shape(sandbox, provider, kind):
    sandbox.configure(rate_malformed=1.0, malformed_kinds=(kind,))
    resp = call(sandbox, provider, "submit")
    assert resp.status_code == 200
    try:
        body = resp.json()
    except ValueError:
        body = None
    assert not isinstance(body, dict) or "data" not in body
    if kind == "flat":
        assert ("job_id" if provider == HITPAW else "task_id") in body
    submits = [r for r in sandbox.requests() if r.kind == "submit"]
    assert [r.fault for r in submits] == ["malformed"]


def test_malformed_submit_still_created_and_charged_the_job(sandbox):
    sandbox.configure(rate_malformed=1.0, malformed_kinds=("flat",), hitpaw_coins=100)
    job_id = call(sandbox, HITPAW, "submit").json()["job_id"]
    assert sandbox.config.hitpaw_coins == 25
    sandbox.configure(rate_malformed=0.0)
    assert call(sandbox, HITPAW, job_id=job_id).json()["code"] == 200


def test_slow_responses(sandbox):
    sandbox.configure(rate_slow=1.0, slow_response_s=0.3)
    started = time.monotonic()
    call(sandbox, PICWISH)
    assert time.monotonic() - started >= 0.3
    assert sandbox.requests()[-1].fault == "slow"


def test_fault_rates_are_fractions(sandbox):
    sandbox.configure(rate_5xx=0.5, seed=1)
    codes = [call(sandbox, HITPAW).status_code for _ in range(60)]
    assert 10 < codes.count(500) < 50 and codes.count(400) == 60 - codes.count(500)


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_injected_429_without_retry_after(sandbox, provider):
    sandbox.configure(rate_429=1.0, retry_after_s=None)
    resp = call(sandbox, provider, "submit")
    assert resp.status_code == 429 and "Retry-After" not in resp.headers


@pytest.mark.parametrize("provider", [HITPAW, PICWISH])
def test_cut_download_sends_half_the_declared_body_then_drops(sandbox, provider):
    _, url = result_url(sandbox, provider)
    whole = requests.get(url, timeout=TIMEOUT_S).content
    sandbox.configure(rate_cut_download=1.0)
    with requests.get(url, stream=True, timeout=TIMEOUT_S) as resp:
        assert int(resp.headers["Content-Length"]) == len(whole)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            resp.content  # noqa: B018 - reading is the point
    assert sandbox.requests()[-1].fault == "cut"


def test_jobs_lists_every_paid_submit_with_its_source(sandbox):
    hitpaw_id = job_id_of(HITPAW, call(sandbox, HITPAW, "submit"))
    picwish_id = job_id_of(PICWISH, call(sandbox, PICWISH, "submit"))
    jobs = admin(sandbox, "GET", "jobs").json()
    assert [(j["id"], j["provider"]) for j in jobs] == [(hitpaw_id, HITPAW), (picwish_id, PICWISH)]
    assert all(j["source_url"] == sandbox.sample_url("portrait.jpg") for j in jobs)
