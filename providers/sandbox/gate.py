"""What every provider API request goes through before and after its view.

Before (in this order): the slow-response fault, the 5xx fault, the API key, the
per-key QPS cap, the 429 fault. After: the create latency (``create_latency_s``: a
submit's answer comes that much later, the job already created and charged, as a real
vendor's create call takes a second or more), then the malformed-body fault, on
successful answers only (so a corrupted submit answer still created and charged its
job, as a truncated response from a real vendor would have).

Each vendor blueprint supplies ``error(kind, retry_after_s)`` building its documented
error for ``kind`` in ``("auth", "rate", "server")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, g, request

from .faults import malformed_body, retry_after_header
from .state import SandboxState

ErrorBuilder = Callable[[str], Response]


def sandbox_state() -> SandboxState:
    """The state of the sandbox serving this request."""
    return current_app.extensions["sandbox"]


def install(bp: Blueprint, provider: str, key_header: str, error: ErrorBuilder) -> None:
    """Attach the fault and auth gate and the malformed-body fault to ``bp``."""

    def before() -> Response | None:
        g.provider, g.kind = provider, (request.endpoint or "").rpartition(".")[2]
        return _guard(sandbox_state(), provider, key_header, error)

    def after(response: Response) -> Response:
        _create_latency(sandbox_state())
        return _maybe_malform(sandbox_state(), response)

    bp.before_request(before)
    bp.after_request(after)


def _guard(state: SandboxState, provider: str, header: str, error: ErrorBuilder) -> Response | None:
    cfg = state.config
    if cfg.slow_response_s > 0 and state.chance(cfg.rate_slow):
        g.fault = "slow"
        time.sleep(cfg.slow_response_s)
    if state.chance(cfg.rate_5xx):
        g.fault = "5xx"
        return error("server")
    key = request.headers.get(header, "")
    if key != getattr(cfg, f"{provider}_key"):
        return error("auth")
    return _rate_gate(state, provider, key, error)


def _rate_gate(state: SandboxState, provider: str, key: str, error: ErrorBuilder) -> Response | None:
    cfg = state.config
    qps = getattr(cfg, f"{provider}_qps")
    wait_s = state.limiter.admit(f"{provider}:{key}", qps) if qps else None
    if wait_s is not None:
        g.fault = "qps"
        return _with_retry_after(error("rate"), retry_after_header(wait_s))
    if state.chance(cfg.rate_429):
        g.fault = "429"
        if cfg.retry_after_s is None:  # a 429 that says nothing about when to come back
            return error("rate")
        return _with_retry_after(error("rate"), str(cfg.retry_after_s))
    return None


def _with_retry_after(response: Response, value: str) -> Response:
    response.headers["Retry-After"] = value
    return response


def _create_latency(state: SandboxState) -> None:
    low, high = state.config.create_latency_s
    if high > 0 and g.get("kind") == "submit":
        time.sleep(state.uniform(low, high))


def _maybe_malform(state: SandboxState, response: Response) -> Response:
    if response.status_code != 200 or not response.is_json:
        return response
    body = response.get_json(silent=True)
    if not _documented_success(body) or not state.chance(state.config.rate_malformed):
        return response
    g.fault = "malformed"
    text, mimetype = malformed_body(state.choice(state.config.malformed_kinds), body)
    response.set_data(text)
    response.mimetype = mimetype
    return response


def _documented_success(body: object) -> bool:
    """True for a success envelope (HitPaw ``code`` 200, PicWish ``status`` 200)."""
    if not isinstance(body, dict):
        return False
    return body.get("code", body.get("status")) == 200
