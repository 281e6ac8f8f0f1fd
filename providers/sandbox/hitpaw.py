"""HitPaw photo enhancer: ``POST /api/photo-enhancer`` and ``POST /api/task-status``.

Submit checks, in order: the key (``110400000``), a JSON body with ``model_name``,
``img_url`` and ``extension`` of the right types (``100400002``), the model (``110400005``),
the extension (``110400007``), the URL (``100400001`` when malformed or not downloadable),
the input resolution (``110400009``), the target resolution (``110400010``), then the
coins (``110402000``, HTTP 402), which are charged there and never refunded.

A job shows WAITING for the first ``hitpaw_waiting_fraction`` of its processing time,
then CONVERTING, then COMPLETED (with ``res_url``) or ERROR. With ``rate_envelope_error``
an error is answered the other documented way: HTTP 200 with ``{"code": <error_code>,
"message": ..., "data": null}``.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from .catalog import HITPAW_EXTENSIONS, HITPAW_MODELS, MEGAPIXEL, HitPawModel
from .fetch import FetchError, fetch, is_http_url
from .gate import install, sandbox_state
from .jobs import Job, Outcome
from .render import RenderSpec, SourceError, TooManyPixels, inspect, render
from .state import SandboxState

bp = Blueprint("hitpaw", __name__)

#: The documented errors the sandbox answers: error_code -> (HTTP status, message).
ERRORS = {
    100400001: (400, "Invalid URL"),
    100400002: (400, "Bad Request"),
    100429000: (429, "Too many requests, please try again later"),
    100500000: (500, "Internal error"),
    110400000: (400, "api_key is not valid"),
    110400002: (400, "The task does not exist"),
    110400005: (400, "The model is not supported, please try again"),
    110400007: (400, "The extension is not valid"),
    110400009: (400, "The input resolution is over limit"),
    110400010: (400, "The target resolution is over limit"),
    110402000: (402, "The coins are not enough"),
}
_GATE_CODES = {"auth": 110400000, "rate": 100429000, "server": 100500000}


class HitPawError(Exception):
    """Answer with documented error ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def error_response(code: int) -> Response:
    """The documented error ``code``, as an error body or (fault) as an envelope."""
    status, message = ERRORS[code]
    if sandbox_state().chance(sandbox_state().config.rate_envelope_error):
        g.fault = g.get("fault") or "envelope"
        return jsonify({"code": code, "message": message, "data": None})
    response = jsonify({"error_code": code, "message": message})
    response.status_code = status
    return response


install(bp, "hitpaw", "Apikey", lambda kind: error_response(_GATE_CODES[kind]))


@bp.errorhandler(HitPawError)
def _on_error(exc: HitPawError) -> Response:
    return error_response(exc.code)


def _ok(data: dict[str, Any]) -> Response:
    return jsonify({"code": 200, "message": "OK", "data": data})


@bp.post("/api/photo-enhancer")
def submit() -> Response:
    """Create a job: validate, download and inspect the source, charge, start the work."""
    state = sandbox_state()
    body = _json_body()
    model = _checked_request(body)
    job = Job("hitpaw", state.processing_time_s(), _params(body, model), model.coins,
              source_url=body["img_url"])
    try:
        _prepare_source(state, job, model)
    except HitPawError:
        shutil.rmtree(state.jobs.job_dir(job), ignore_errors=True)
        raise
    injected = state.chance(state.config.rate_job_failure)
    state.jobs.start(job, lambda j: _work(state, j, injected))
    g.job_id = job.id
    state.jobs.sweep(state.config.result_ttl_s)
    return _ok({"job_id": job.id, "consume_coins": model.coins})


@bp.post("/api/task-status")
def query() -> Response:
    """Report a job's status; never waits on its work."""
    job_id = _json_body().get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise HitPawError(100400002)
    g.job_id = job_id
    job = sandbox_state().jobs.get(job_id)
    if job is None or job.provider != "hitpaw":
        raise HitPawError(110400002)
    return _ok(_status_data(job, time.monotonic()))


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise HitPawError(100400002)
    return body


def _checked_request(body: dict[str, Any]) -> HitPawModel:
    """Check the parameters that need no download; return the model."""
    types = {"model_name": str, "img_url": str, "extension": str}
    if any(not isinstance(body.get(name), kind) for name, kind in types.items()):
        raise HitPawError(100400002)
    if not isinstance(body.get("exif", False), bool) or not _valid_dpi(body.get("DPI")):
        raise HitPawError(100400002)
    model = HITPAW_MODELS.get(body["model_name"])
    if model is None:
        raise HitPawError(110400005)
    if body["extension"].lower() not in HITPAW_EXTENSIONS:
        raise HitPawError(110400007)
    if not is_http_url(body["img_url"]):
        raise HitPawError(100400001)
    return model


def _valid_dpi(dpi: object) -> bool:
    return dpi is None or (isinstance(dpi, int) and not isinstance(dpi, bool) and dpi > 0)


def _params(body: dict[str, Any], model: HitPawModel) -> dict[str, Any]:
    dpi = None if model.generative else body.get("DPI")  # generative models ignore DPI
    return {"model": model.name, "scale": model.scale, "generative": model.generative,
            "dpi": dpi, "exif": bool(body.get("exif", False))}


def _prepare_source(state: SandboxState, job: Job, model: HitPawModel) -> None:
    """Download and inspect the source, check the limits, charge the coins."""
    cfg = state.config
    source = state.jobs.job_dir(job) / "source"
    try:
        job.download_time_s = fetch(job.source_url or "", source, cfg.hitpaw_fetch_timeout_s,
                                    cfg.max_source_bytes)
        info = inspect(source)
    except FetchError as exc:
        raise HitPawError(100400001) from exc
    except TooManyPixels as exc:
        raise HitPawError(110400009) from exc
    except SourceError:
        info = None  # accepted; the job ends in ERROR, as the vendor's would
    if info is not None:
        _check_resolution(info.width * info.height, model)
    if not state.spend("hitpaw_coins", model.coins):
        raise HitPawError(110402000)


def _check_resolution(pixels: int, model: HitPawModel) -> None:
    if pixels > model.max_input_mp * MEGAPIXEL:
        raise HitPawError(110400009)
    if pixels * model.scale**2 > model.max_output_mp * MEGAPIXEL:
        raise HitPawError(110400010)


def _work(state: SandboxState, job: Job, injected_failure: bool) -> Outcome:
    """Render the result (runs on the job pool)."""
    if injected_failure:
        return Outcome(detail="injected failure")
    source = state.jobs.job_dir(job) / "source"
    try:
        info = inspect(source)
    except SourceError as exc:
        return Outcome(detail=str(exc))
    scale = job.params["scale"]
    if info.width * info.height * scale**2 > state.config.max_render_mp * MEGAPIXEL:
        return Outcome(detail="output over the sandbox's max_render_mp")
    spec = RenderSpec(scale=scale, model=job.params["model"], dpi=job.params["dpi"],
                      keep_exif=job.params["exif"], pad_to_bytes=state.config.large_result_bytes)
    return Outcome(output=render(source, spec, state.jobs.job_dir(job)))


def _status_data(job: Job, now_mono: float) -> dict[str, Any]:
    return {"job_id": job.id, "status": _status(job, now_mono),
            "res_url": _result_url(job, now_mono), "original_url": job.source_url}


def _status(job: Job, now_mono: float) -> str:
    if job.finished(now_mono):
        return "COMPLETED" if job.outcome.output is not None else "ERROR"
    if job.fraction(now_mono) < sandbox_state().config.hitpaw_waiting_fraction:
        return "WAITING"
    return "CONVERTING"


def _result_url(job: Job, now_mono: float) -> str | None:
    if not job.finished(now_mono) or job.result_name is None:
        return None
    return f"{request.host_url}_sandbox/results/{job.result_name}"
