"""Malformed provider answers, generated with hypothesis, against the real clients.

Every example is one answer the loopback server gives to one real client call
(``HitPawClient.submit/query``, ``PicWishClient.submit/query`` over HTTP). The categories::

    wrong_type      a documented field with a value of another JSON type
    missing_field   a required field left out
    html            a proxy's or CDN's HTML page with HTTP 200
    truncated_json  the documented answer cut short
    huge            the documented answer padded past the answer cap (with and without
                    Content-Length)
    unknown_status  a status word / state / envelope code the vendor does not document
    undocumented_http  an HTTP status the vendor does not document, with any body
    non_finite      NaN, Infinity or 1e999 where a number belongs
    deep_nesting    JSON nested deep enough to exhaust a recursive decoder
    bad_encoding    bytes that are not UTF-8 text

What must hold: no call raises anything but our ``EnhanceError`` tree (no "internal
error"), no malformed answer is accepted, and every error carries the vendor's text
(``body``, truncated). Answers with an undocumented HTTP 4xx/5xx are classified by their
status (retryable for 5xx); every other category must end as ``ProtocolError``.

Run it: ``python -m ops.faults.malformed --examples 200`` prints a JSON report. The
pytest module tests/providers/test_hostile_answers.py runs it with a fixed seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from providers.errors import EnhanceError, ProtocolError
from providers.hitpaw import HitPawClient
from providers.hitpaw_api import FAILED as HITPAW_FAILED
from providers.hitpaw_api import IN_PROGRESS as HITPAW_IN_PROGRESS
from providers.http import BODY_EXCERPT_CHARS, error_class_for_status
from providers.picwish import PicWishClient

KEY = "malformed-answers-key"
SOURCE_URL = "https://bucket.example/in/photo.jpg"
ANSWER_CAP_BYTES = 1024 * 1024  # both clients get this cap here, so "huge" means over it
CATEGORIES = (
    "wrong_type", "missing_field", "html", "truncated_json", "huge", "unknown_status",
    "undocumented_http", "non_finite", "deep_nesting", "bad_encoding",
)

# --- The documented answers each endpoint gives, and their required fields ---------------

DOCUMENTED: dict[str, dict[str, Any]] = {
    "hitpaw.submit": {"code": 200, "message": "OK",
                      "data": {"job_id": "job-1", "consume_coins": 75}},
    "hitpaw.query": {"code": 200, "message": "OK",
                     "data": {"job_id": "job-1", "status": "COMPLETED",
                              "res_url": "https://r.example/out.jpg"}},
    "picwish.submit": {"status": 200, "message": "success", "data": {"task_id": "t-1"}},
    "picwish.query": {"status": 200, "message": "success", "data": {
        "task_id": "t-1", "state": 1, "progress": 100, "image": "https://r.example/out.jpg",
        "return_type": 1, "type": 0, "image_width": 1024, "image_height": 768,
        "image_size_kb": 200, "out_format": "jpg", "created_at": 1_700_000_000,
        "completed_at": 1_700_000_010, "state_detail": "Complete"}},
}
ENDPOINTS = tuple(DOCUMENTED)

#: Field path -> the JSON type it must have ("number", "string", "object", "int-code").
TYPED_FIELDS: dict[str, dict[tuple[str, ...], str]] = {
    "hitpaw.submit": {("data",): "object", ("data", "job_id"): "string",
                      ("data", "consume_coins"): "number", ("code",): "int-code"},
    "hitpaw.query": {("data",): "object", ("data", "status"): "string",
                     ("data", "res_url"): "string", ("code",): "int-code"},
    "picwish.submit": {("data",): "object", ("data", "task_id"): "string",
                       ("status",): "int-code"},
    "picwish.query": {("data",): "object", ("status",): "int-code",
                      **{("data", name): "number" for name in (
                          "state", "progress", "image_width", "image_height",
                          "image_size_kb", "completed_at", "return_type", "type")},
                      ("data", "image"): "string", ("data", "task_id"): "string",
                      ("data", "out_format"): "string"},
}
REQUIRED: dict[str, tuple[tuple[str, ...], ...]] = {
    "hitpaw.submit": (("code",), ("data",), ("data", "job_id")),
    "hitpaw.query": (("code",), ("data",), ("data", "status"), ("data", "res_url")),
    "picwish.submit": (("status",), ("data",), ("data", "task_id")),
    "picwish.query": (("status",), ("data",), ("data", "state"), ("data", "image")),
}
NUMBER_FIELDS = {endpoint: [path for path, kind in fields.items() if kind == "number"]
                 for endpoint, fields in TYPED_FIELDS.items()}
NUMBER_FIELDS["hitpaw.query"] = [("code",)]
NUMBER_FIELDS["picwish.submit"] = [("status",)]

UNDOCUMENTED_HTTP = (201, 202, 203, 204, 206, 300, 302, 304, 307, 405, 409, 410, 418, 420,
                     422, 451, 499, 501, 505, 507, 508, 520, 522, 599)


@dataclass(frozen=True)
class Answer:
    """One answer the loopback server gives."""

    endpoint: str
    category: str
    status: int
    body: bytes
    chunked: bool = False  # no Content-Length: the client must stop reading by itself

    def key(self) -> tuple[str, int, bytes, bool]:
        return (self.endpoint, self.status, self.body, self.chunked)


# --- Strategies -----------------------------------------------------------------------------

json_leaves = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _type_of(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "bool/null"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "number" if _numeric_text(value) else "string"
    return "object" if isinstance(value, dict) else "array"


def _numeric_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _wrong_for(kind: str) -> Callable[[Any], bool]:
    """Values that are not of ``kind``: a number field gets no number, not even "12"."""
    if kind == "int-code":
        return lambda v: _type_of(v) not in ("number",)
    if kind == "object":
        return lambda v: not isinstance(v, dict)
    if kind == "string":  # null is "absent" for optional strings: give a real wrong type
        return lambda v: v is not None and not isinstance(v, str)
    return lambda v: v is not None and _type_of(v) != "number"


def _set(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


def _drop(body: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return body


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


@st.composite
def wrong_type(draw: st.DrawFn, endpoint: str) -> Answer:
    path, kind = draw(st.sampled_from(sorted(TYPED_FIELDS[endpoint].items())))
    value = draw(json_values.filter(_wrong_for(kind)))
    return Answer(endpoint, "wrong_type", 200, _dumps(_set(DOCUMENTED[endpoint], path, value)))


@st.composite
def missing_field(draw: st.DrawFn, endpoint: str) -> Answer:
    path = draw(st.sampled_from(REQUIRED[endpoint]))
    return Answer(endpoint, "missing_field", 200, _dumps(_drop(DOCUMENTED[endpoint], path)))


@st.composite
def html(draw: st.DrawFn, endpoint: str) -> Answer:
    title = draw(st.sampled_from(["502 Bad Gateway", "Just a moment...", "Error", "Login"]))
    filler = draw(st.text(max_size=200))
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{filler}</body></html>"
    return Answer(endpoint, "html", 200, page.encode())


@st.composite
def truncated_json(draw: st.DrawFn, endpoint: str) -> Answer:
    text = _dumps(DOCUMENTED[endpoint])
    cut = draw(st.integers(1, len(text) - 1))
    return Answer(endpoint, "truncated_json", 200, text[:cut])


@st.composite
def huge(draw: st.DrawFn, endpoint: str) -> Answer:
    size = draw(st.integers(ANSWER_CAP_BYTES + 1, 3 * ANSWER_CAP_BYTES))
    pad = draw(st.sampled_from("x 0[{"))
    start = _dumps(DOCUMENTED[endpoint])[:-1] + b', "pad": "'
    body = start + pad.encode() * (size - len(start) - 2) + b'"}'
    return Answer(endpoint, "huge", 200, body, chunked=draw(st.booleans()))


def _unknown_hitpaw_status(value: str) -> bool:
    return value not in HITPAW_IN_PROGRESS | HITPAW_FAILED | {"COMPLETED"}


@st.composite
def unknown_status(draw: st.DrawFn, endpoint: str) -> Answer:
    outside = st.integers(-(10**6), 10**6).filter(lambda n: n != 200 and not 400 <= n <= 599)
    if endpoint == "hitpaw.query" and draw(st.booleans()):
        word = draw(st.text(min_size=1, max_size=20).filter(_unknown_hitpaw_status))
        body = _set(DOCUMENTED[endpoint], ("data", "status"), word)
    elif endpoint == "picwish.query" and draw(st.booleans()):
        state = draw(st.floats(-100, 100).filter(lambda x: not x.is_integer()))
        body = _set(DOCUMENTED[endpoint], ("data", "state"), state)
    else:
        envelope = "code" if endpoint.startswith("hitpaw") else "status"
        body = _set(DOCUMENTED[endpoint], (envelope,), draw(outside))
    return Answer(endpoint, "unknown_status", 200, _dumps(body))


@st.composite
def undocumented_http(draw: st.DrawFn, endpoint: str) -> Answer:
    status = draw(st.sampled_from(UNDOCUMENTED_HTTP))
    if status in (204, 304):  # no body allowed
        return Answer(endpoint, "undocumented_http", status, b"")
    body = draw(st.sampled_from(["documented", "value", "text"]))
    if body == "documented":
        data = _dumps(DOCUMENTED[endpoint])
    elif body == "value":
        data = _dumps(draw(json_values))
    else:
        data = draw(st.text(max_size=100)).encode()
    return Answer(endpoint, "undocumented_http", status, data)


@st.composite
def non_finite(draw: st.DrawFn, endpoint: str) -> Answer:
    path = draw(st.sampled_from(NUMBER_FIELDS[endpoint]))
    literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]))
    marker = "__NON_FINITE__"
    text = json.dumps(_set(DOCUMENTED[endpoint], path, marker)).replace(f'"{marker}"', literal)
    return Answer(endpoint, "non_finite", 200, text.encode())


@st.composite
def deep_nesting(draw: st.DrawFn, endpoint: str) -> Answer:
    depth = draw(st.integers(2_000, 200_000))
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    envelope = "code" if endpoint.startswith("hitpaw") else "status"
    text = f'{{"{envelope}": 200, "data": ' + opener * depth + "1" + closer * depth + "}"
    return Answer(endpoint, "deep_nesting", 200, text.encode())


@st.composite
def bad_encoding(draw: st.DrawFn, endpoint: str) -> Answer:
    text = _dumps(DOCUMENTED[endpoint])
    at = draw(st.integers(0, len(text)))
    junk = draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xfe\xff\x00{"]))
    return Answer(endpoint, "bad_encoding", 200, text[:at] + junk + text[at:])


STRATEGIES = {
    "wrong_type": wrong_type, "missing_field": missing_field, "html": html,
    "truncated_json": truncated_json, "huge": huge, "unknown_status": unknown_status,
    "undocumented_http": undocumented_http, "non_finite": non_finite,
    "deep_nesting": deep_nesting, "bad_encoding": bad_encoding,
}


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """One malformed answer, of any category, for any endpoint."""
    endpoint = draw(st.sampled_from(ENDPOINTS))
    category = draw(st.sampled_from(CATEGORIES))
    return draw(STRATEGIES[category](endpoint))


# --- The loopback server and the calls ------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stops reading an answer over its cap resets the connection."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class AnswerServer:
    """A loopback HTTP server answering every request with the answer set last."""

    def __init__(self) -> None:
        self.answer: Answer | None = None
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                _write(self, owner.answer)

            do_GET = do_POST = _answer

        return Handler

    def __enter__(self) -> AnswerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _write(handler: BaseHTTPRequestHandler, answer: Answer | None) -> None:
    if answer is None:
        handler.send_error(599)
        return
    handler.send_response(answer.status)
    handler.send_header("Content-Type", "application/json")
    try:
        if answer.status in (204, 304):
            handler.end_headers()
        elif answer.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            step = 64 * 1024
            for start in range(0, len(answer.body), step):
                piece = answer.body[start:start + step]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            handler.wfile.write(b"0\r\n\r\n")
        else:
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            handler.wfile.write(answer.body)
    except OSError:  # the client stopped reading (an answer over its cap): expected
        handler.close_connection = True


class Clients:
    """The real clients, pointed at the loopback server with a 1 MiB answer cap."""

    def __init__(self, base_url: str) -> None:
        bounds = {"connect_timeout_s": 2.0, "read_timeout_s": 10.0, "deadline_s": 20.0,
                  "max_answer_bytes": ANSWER_CAP_BYTES}
        self.hitpaw = HitPawClient(KEY, base_url=base_url, **bounds)
        self.picwish = PicWishClient(KEY, base_url=base_url, **bounds)
        self._requests = {
            "hitpaw": self.hitpaw.build_request(None, {}, image_url=SOURCE_URL),
            "picwish": self.picwish.build_request(None, {}, image_url=SOURCE_URL),
        }

    def call(self, endpoint: str) -> Any:
        provider, action = endpoint.split(".")
        client = getattr(self, provider)
        if action == "submit":
            return client.submit(self._requests[provider])
        return client.query("job-1")

    def close(self) -> None:
        self.hitpaw.close()
        self.picwish.close()


# --- Judging one outcome ---------------------------------------------------------------------


@dataclass
class Outcome:
    """What one call did with one answer, and what was wrong with that, if anything."""

    answer: Answer
    result: str  # the error class's name, "accepted", or "unhandled:<Type>"
    problem: str | None = None


def expected_excerpt(body: bytes) -> str:
    """The start of the vendor's text an error must carry (as ``body_excerpt`` makes it)."""
    return body[: BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:BODY_EXCERPT_CHARS]


def judge(answer: Answer, exc: BaseException | None) -> Outcome:
    """Check one call's outcome against what must hold for its answer."""
    if exc is None:
        return Outcome(answer, "accepted", "a malformed answer was accepted")
    if not isinstance(exc, EnhanceError):
        return Outcome(answer, f"unhandled:{type(exc).__name__}",
                       f"unhandled {type(exc).__name__}: {str(exc)[:200]}")
    outcome = Outcome(answer, type(exc).__name__)
    excerpt = expected_excerpt(answer.body)
    if exc.body is None or not exc.body.startswith(excerpt[:200]):
        outcome.problem = "the error does not carry the vendor's text"
    elif answer.category == "undocumented_http" and answer.status >= 400:
        wanted = error_class_for_status(answer.status)
        if exc.http_status != answer.status or exc.retryable != wanted.retryable:
            outcome.problem = f"HTTP {answer.status} read as {exc!r} ({exc.http_status})"
    elif not isinstance(exc, ProtocolError):
        outcome.problem = f"expected protocol_error, got {exc.code}"
    return outcome


@dataclass
class Report:
    """The run's figures, as the fault suite's report shows them."""

    seed: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def distinct(self) -> int:
        return len({outcome.answer.key() for outcome in self.outcomes})

    @property
    def problems(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.problem]

    @property
    def unhandled(self) -> int:
        return sum(outcome.result.startswith("unhandled") for outcome in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        by_category: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            by_category.setdefault(outcome.answer.category, Counter())[outcome.result] += 1
        return {
            "seed": self.seed,
            "examples": len(self.outcomes),
            "distinct_answers": self.distinct,
            "unhandled_exceptions": self.unhandled,
            "accepted": sum(o.result == "accepted" for o in self.outcomes),
            "problems": len(self.problems),
            "by_category": {name: dict(counts) for name, counts in sorted(by_category.items())},
            "first_problems": [
                {"endpoint": o.answer.endpoint, "category": o.answer.category,
                 "http_status": o.answer.status, "body": expected_excerpt(o.answer.body)[:200],
                 "result": o.result, "problem": o.problem}
                for o in self.problems[:10]
            ],
        }


def run(examples: int = 200, seed: int = 20261130) -> Report:
    """Generate ``examples`` malformed answers and send each to a real client call.

    Deterministic for a given ``seed`` (hypothesis is derandomized from it; no example
    database), so the same run gives the same answers.
    """
    report = Report(seed)
    with AnswerServer() as server:
        clients = Clients(server.base_url)
        try:
            _generate(examples, seed, server, clients, report)
        finally:
            clients.close()
    return report


def _generate(examples: int, seed: int, server: AnswerServer, clients: Clients,
              report: Report) -> None:
    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(answer=answers())
    def one(answer: Answer) -> None:
        server.answer = answer
        try:
            clients.call(answer.endpoint)
        except BaseException as exc:  # noqa: BLE001 - judging every exception is the point
            report.outcomes.append(judge(answer, exc))
        else:
            report.outcomes.append(judge(answer, None))

    one()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261130)
    args = parser.parse_args(argv)
    report = run(args.examples, args.seed)
    json.dump(report.as_dict(), sys.stdout, indent=2)
    print()
    return 1 if report.problems or report.distinct < min(100, args.examples) else 0


if __name__ == "__main__":
    sys.exit(main())
