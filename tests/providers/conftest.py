"""A tiny real HTTP server answering canned responses, for answers the sandbox can't give.

It is real HTTP on loopback, not a mock of the clients: the clients' own ``requests`` calls
run unchanged. Each test queues answers with ``canned.add(...)`` and reads what was sent
from ``canned.received``.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image


@dataclass
class Canned:
    """One queued answer."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None  # written to the socket as is (broken responses)
    drop: bool = False  # close the connection without answering


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class CannedServer:
    """A threaded HTTP server on loopback answering queued ``Canned`` responses in order."""

    def __init__(self) -> None:
        self.answers: deque[Canned] = deque()
        self.received: list[Received] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def add(self, status: int = 200, body: Any = None, **kwargs: Any) -> CannedServer:
        self.answers.append(Canned(status, body, **kwargs))
        return self

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner.received.append(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                canned = owner.answers.popleft() if owner.answers else Canned(599, "no answer")
                time.sleep(canned.delay_s)
                _write(self, canned)

            do_GET = do_POST = do_PUT = _answer

        return Handler

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _write(handler: BaseHTTPRequestHandler, canned: Canned) -> None:
    if canned.drop:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return
    if canned.raw is not None:
        handler.close_connection = True
        handler.wfile.write(canned.raw)
        return
    payload = canned.body
    if isinstance(payload, dict | list):
        payload = json.dumps(payload)
    data = payload.encode() if isinstance(payload, str) else (payload or b"")
    handler.send_response(canned.status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in canned.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture
def canned():
    with CannedServer() as server:
        yield server


@pytest.fixture
def closed_port_url():
    """A loopback URL where nothing listens: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real image in ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (no pixel data: never decodable)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def poll_until_done(client, job_id: str, timeout_s: float = 15.0, interval_s: float = 0.02):
    """Query until the job leaves IN_PROGRESS; return the final ``JobStatus`` and raw statuses."""
    from providers.base import Phase

    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        job = client.query(job_id)
        seen.append(job.raw_status)
        if job.phase is not Phase.IN_PROGRESS:
            return job, seen
        time.sleep(interval_s)
    raise AssertionError(f"job {job_id} still in progress after {timeout_s} s: {seen[-5:]}")
