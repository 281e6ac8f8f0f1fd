"""The Flask app: both vendors' APIs and the sandbox's own endpoints, one base URL.

Every request is timed; those a view marked with ``g.kind`` (API calls, result and
sample downloads) are recorded in the request log once answered.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request

from . import admin, hitpaw, picwish
from .gate import sandbox_state
from .records import RequestRecord
from .state import SandboxState


def create_app(state: SandboxState) -> Flask:
    """A Flask app serving ``state``."""
    app = Flask("providers.sandbox")
    app.extensions["sandbox"] = state
    app.json.sort_keys = False
    for blueprint in (hitpaw.bp, picwish.bp, admin.bp):
        app.register_blueprint(blueprint)
    app.before_request(_start_clock)
    app.after_request(_record)
    return app


def _start_clock() -> None:
    g.started_at, g.started_mono = time.time(), time.monotonic()


def _record(response: Response) -> Response:
    kind = g.get("kind")
    if kind:
        state = sandbox_state()
        state.log.add(RequestRecord(
            ts=g.started_at, provider=g.get("provider"), kind=kind, method=request.method,
            path=request.path, job_id=g.get("job_id"), status=response.status_code,
            fault=g.get("fault"), duration_s=round(time.monotonic() - g.started_mono, 6),
        ))
    return response


