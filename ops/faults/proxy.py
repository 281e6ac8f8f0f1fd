"""A TCP proxy on loopback in front of moto's S3 server, which the fault suite can break.

Modes:
- ``pass``: bytes go through both ways.
- ``error``: every new connection reads the request and answers ``500 InternalError``
  (an S3 error document), then closes.
- ``hang``: new connections are accepted and never answered (S3 not answering).

Every change of mode cuts the connections open at the time (the way a failing load
balancer resets them), so a client waiting on a hung one sees the outage end.

It runs in threads of the fault-suite process; workers reach S3 only through it.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from workers.embedded import LOOPBACK

S3_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
          b"Connection: close\r\nContent-Length: 117\r\n\r\n"
          b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>"
          b"<Message>fault suite</Message></Error>")
BUFFER = 64 * 1024


class BreakableProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; ``mode`` decides what clients get."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True, name="s3-proxy").start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def set_mode(self, mode: str) -> None:
        if mode not in ("pass", "error", "hang"):
            raise ValueError(mode)
        self.mode = mode
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            victims, self._open = list(self._open), set()
        for sock in victims:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        mode = self.mode
        if mode == "error":
            with contextlib.suppress(OSError):
                client.recv(BUFFER)
                client.sendall(S3_500)
                client.close()
            return
        if mode == "hang":
            return  # held open, never answered, until the mode changes or the client gives up
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        self._track(upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut_all()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(BUFFER):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
