"""A loopback webhook receiver for tests: a real HTTP server in a thread.

It records every request (headers, body) and answers from a script: an HTTP status, or
``"timeout"`` (answers only after ``slow_s``, past the sender's timeout). Past the end of
the script it answers 200.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    script: list[int | str] = field(default_factory=list)
    slow_s: float = 2.0
    deliveries: list[Delivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    answer = (receiver.script[len(receiver.deliveries)]
                              if len(receiver.deliveries) < len(receiver.script) else 200)
                    receiver.deliveries.append(
                        Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    receiver._lock.notify_all()
                if answer == "timeout":
                    time.sleep(receiver.slow_s)
                    answer = 200
                self.send_response(int(answer))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks/enhance") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def wait_for(self, count: int, timeout_s: float = 60) -> list[Delivery]:
        """Block until ``count`` deliveries arrived (or ``timeout_s``); return them all."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self.deliveries) < count and time.monotonic() < deadline:
                self._lock.wait(deadline - time.monotonic())
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
