"""The sandbox's own endpoints under ``/_sandbox/``: results, samples and control.

- ``GET  /_sandbox/health``               ``{"ok": true, "jobs": N, "requests": N}``
- ``GET  /_sandbox/requests``             the request log (filters: provider, kind, job_id)
- ``GET  /_sandbox/jobs``                 every job created: id, provider, source URL, cost
- ``POST /_sandbox/reset``                forget jobs, results, the log and QPS windows
- ``GET  /_sandbox/config``               the config (keys never shown)
- ``POST /_sandbox/config``               patch it with a JSON object; 400 if invalid
- ``GET  /_sandbox/samples/<name>``       a sample image (see ``samples.py``)
- ``PUT  /_sandbox/samples/<name>``       store the body as a new sample (tests, benchmarks)
- ``GET  /_sandbox/results/<name>``       a result file, streamed from disk; 403 once expired

Result and sample downloads are recorded in the request log; control calls are not.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, jsonify, request, send_file
from pydantic import ValidationError
from werkzeug.utils import secure_filename

from .config import SECRET_FIELDS
from .gate import sandbox_state

bp = Blueprint("sandbox", __name__, url_prefix="/_sandbox")

EXPIRED_BODY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message></Error>"
)
COPY_CHUNK_BYTES = 1024 * 1024


@bp.get("/health")
def health() -> Response:
    state = sandbox_state()
    return jsonify({"ok": True, "jobs": len(state.jobs), "requests": len(state.log.all())})


@bp.get("/requests")
def requests_log() -> Response:
    wanted = {key: request.args[key] for key in ("provider", "kind", "job_id") if key in request.args}
    records = [rec.to_dict() for rec in sandbox_state().log.all()]
    return jsonify([rec for rec in records if all(rec[k] == v for k, v in wanted.items())])


@bp.get("/jobs")
def jobs() -> Response:
    """Every job the sandbox created (each one a paid submit), oldest first.

    ``created_at`` is when the submit arrived; ``completed_at`` when the outcome became
    visible to a poll (None while the job runs): the provider's own time is the difference.
    """
    now = time.monotonic()
    return jsonify([{"id": job.id, "provider": job.provider, "source_url": job.source_url,
                     "cost": job.cost, "created_at": job.created_at,
                     "completed_at": job.wall_time(job.completed_mono)
                     if job.finished(now) else None}
                    for job in sandbox_state().jobs.all()])


@bp.post("/reset")
def reset() -> Response:
    sandbox_state().reset()
    return jsonify({"ok": True})


@bp.get("/config")
def get_config() -> Response:
    return jsonify(sandbox_state().config.public())


@bp.post("/config")
def patch_config() -> Response:
    changes = request.get_json(silent=True)
    if not isinstance(changes, dict):
        return _bad_request("send a JSON object of config fields")
    if SECRET_FIELDS & changes.keys():
        return _bad_request("API keys cannot be changed over HTTP")
    try:
        config = sandbox_state().configure(**changes)
    except ValidationError as exc:
        return _bad_request(exc.errors(include_url=False, include_context=False))
    return jsonify(config.public())


def _bad_request(detail: object) -> Response:
    response = jsonify({"error": "invalid config", "detail": detail})
    response.status_code = 400
    return response


@bp.get("/samples/<name>")
def sample(name: str) -> Response:
    g.kind = "sample"
    path = sandbox_state().samples_dir / secure_filename(name)
    if not name or not path.is_file():
        return Response("no such sample\n", status=404, mimetype="text/plain")
    return send_file(path, conditional=True, max_age=0)


@bp.put("/samples/<name>")
def put_sample(name: str) -> Response:
    safe = secure_filename(name)
    if not safe:
        return Response("bad sample name\n", status=400, mimetype="text/plain")
    with (sandbox_state().samples_dir / safe).open("wb") as fh:
        while chunk := request.stream.read(COPY_CHUNK_BYTES):
            fh.write(chunk)
    return jsonify({"ok": True, "name": safe})


@bp.get("/results/<name>")
def result(name: str) -> Response:
    """Stream a result file; 404 if unknown or unfinished, 403 once expired."""
    g.kind = "result"
    state = sandbox_state()
    job = state.jobs.by_result(name)
    now = time.monotonic()
    if job is None or not job.finished(now):
        return Response("no such result\n", status=404, mimetype="text/plain")
    g.provider, g.job_id = job.provider, job.id
    path = job.outcome.output.path
    if now > job.completed_mono + state.config.result_ttl_s or not path.is_file():
        return Response(EXPIRED_BODY, status=403, mimetype="application/xml")
    if state.chance(state.config.rate_cut_download):
        g.fault = "cut"
        return _cut_short(path)
    return send_file(path, conditional=True, max_age=0)


def _cut_short(path) -> Response:
    """The whole file's Content-Length, half its bytes, then the connection drops."""
    size = path.stat().st_size

    def body():
        with path.open("rb") as fh:
            yield fh.read(max(size // 2, 1))
        raise ConnectionAbortedError("sandbox fault: download cut mid-body")

    response = Response(body(), mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(size)
    return response
