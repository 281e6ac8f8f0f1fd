"""PicWish scale-pro: ``POST /api/tasks/visual/scale-pro`` and ``GET .../<task_id>``.

Submit (multipart/form-data) answers HTTP 400 for bad parameters or a missing source,
an ``image_url`` over 512 characters or not http(s); 401 for a bad key; 413 for an
``image_file`` over 30 MB; 429 over the QPS cap; 402 when the credit balance cannot pay
for the task. The vendor's status page has no code for that last case: 401 would read as
a bad key and 400 as a bad request, both misleading; 402 says what it is and stays a
permanent 4xx for any client that treats unknown 4xx as such.

Everything that needs the image happens in the task, as with the vendor: a download
failure ends in state -3, an unreadable or unsupported image in -7, a source over
4096 x 4096 in -5, an injected failure in -1, -2 or -8. Credits are held at submit and
given back when the task fails, so they are charged per successful task.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from .catalog import PICWISH_MAX_URL_CHARS, PICWISH_TYPES
from .fetch import is_http_url
from .gate import install, sandbox_state
from .jobs import Job
from .picwish_work import task_data, work
from .state import SandboxState

bp = Blueprint("picwish", __name__)

_GATE_ERRORS = {
    "auth": (401, "Unauthorized: invalid API key or service not enabled"),
    "rate": (429, "Too many requests: over the QPS limit"),
    "server": (500, "Internal server error"),
}
_CHOICES = {"sync": (0, 1), "type": (0, 1), "return_type": (1, 2)}
_DEFAULTS = {"sync": 0, "type": 0, "return_type": 1}


class PicWishError(Exception):
    """Answer HTTP ``status`` with ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.status, self.message = status, message


def error_response(status: int, message: str) -> Response:
    """A PicWish error body: ``{"status": N, "message": ...}`` with HTTP ``N``."""
    response = jsonify({"status": status, "message": message})
    response.status_code = status
    return response


install(bp, "picwish", "X-API-KEY", lambda kind: error_response(*_GATE_ERRORS[kind]))


@bp.errorhandler(PicWishError)
def _on_error(exc: PicWishError) -> Response:
    return error_response(exc.status, exc.message)


def _ok(data: dict[str, Any]) -> Response:
    return jsonify({"status": 200, "message": "success", "data": data})


@bp.post("/api/tasks/visual/scale-pro")
def submit() -> Response:
    """Create a task; with ``sync=1`` wait for it and answer the query fields."""
    state = sandbox_state()
    params = _params()
    upload, url = _source()
    kind = PICWISH_TYPES[params["type"]]
    if not state.spend("picwish_credits", kind.credits):
        raise PicWishError(402, "Insufficient credits: the account balance cannot pay for this task")
    job = Job("picwish", state.processing_time_s(), params, kind.credits, source_url=url,
              serve_result=params["return_type"] == 1)
    if upload is not None:
        upload.save(state.jobs.job_dir(job) / "source")
    injected = state.chance(state.config.rate_job_failure)
    state.jobs.start(job, lambda j: work(state, j, uploaded=upload is not None, injected=injected))
    g.job_id = job.id
    state.jobs.sweep(state.config.result_ttl_s)
    if params["sync"] == 1:
        _wait(state, job)
        return _ok(task_data(job, time.monotonic(), request.host_url))
    return _ok({"task_id": job.id})


@bp.get("/api/tasks/visual/scale-pro/<task_id>")
def query(task_id: str) -> Response:
    """Report a task's state and, when done, its result; never waits on its work."""
    g.job_id = task_id
    job = sandbox_state().jobs.get(task_id)
    if job is None or job.provider != "picwish":
        raise PicWishError(404, "Task not found")
    return _ok(task_data(job, time.monotonic(), request.host_url))


def _params() -> dict[str, int]:
    params = {}
    for name, allowed in _CHOICES.items():
        raw = request.form.get(name, "").strip()
        value = _DEFAULTS[name] if raw == "" else _as_int(raw)
        if value not in allowed:
            raise PicWishError(400, f"Invalid parameter {name}: must be one of {allowed}")
        params[name] = value
    return params


def _as_int(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _source():
    """The upload (which wins) or the checked ``image_url``."""
    upload = request.files.get("image_file")
    if upload is not None:
        _check_upload_size(upload)
        return upload, None
    url = request.form.get("image_url", "")
    if not url:
        raise PicWishError(400, "Missing parameter: image_url or image_file is required")
    if len(url) > PICWISH_MAX_URL_CHARS:
        raise PicWishError(400, f"image_url is over {PICWISH_MAX_URL_CHARS} characters")
    if not is_http_url(url):
        raise PicWishError(400, "image_url is not a valid http(s) URL")
    return None, url


def _check_upload_size(upload) -> None:
    upload.stream.seek(0, 2)
    size = upload.stream.tell()
    upload.stream.seek(0)
    limit = sandbox_state().config.picwish_max_upload_bytes
    if size > limit:
        raise PicWishError(413, f"image_file is too large: {size} bytes, limit {limit}")
    if size == 0:
        raise PicWishError(400, "image_file is empty")


def _wait(state: SandboxState, job: Job) -> None:
    """Sleep through the task's processing time (sync mode), up to ``sync_wait_max_s``."""
    deadline = time.monotonic() + state.config.sync_wait_max_s
    time.sleep(max(0.0, min(job.ready_mono, deadline) - time.monotonic()))
    job.done.wait(max(0.0, deadline - time.monotonic()))
