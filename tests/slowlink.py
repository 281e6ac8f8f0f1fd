"""A TCP relay to Redis that holds back SUBSCRIBE commands: a subscription that reaches the
server late (a busy network, a busy server), while every other command goes straight
through. What a waiter reads must still come after its subscription holds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit


def _pump(src: socket.socket, dst: socket.socket, hold_s: float, stop: threading.Event) -> None:
    """Copy ``src`` to ``dst``; data holding a SUBSCRIBE waits ``hold_s`` first."""
    try:
        while data := src.recv(65536):
            if hold_s and b"SUBSCRIBE" in data.upper():
                stop.wait(hold_s)
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def _accept(listener: socket.socket, target: tuple[str, int], hold_s: float,
            stop: threading.Event, sockets: list[socket.socket]) -> None:
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except OSError:
            return
        server = socket.create_connection(target)
        sockets.extend((client, server))
        for src, dst, hold in ((client, server, hold_s), (server, client, 0.0)):
            threading.Thread(target=_pump, args=(src, dst, hold, stop), daemon=True).start()


@contextmanager
def late_subscribe(redis_url: str, delay_s: float = 0.3) -> Iterator[str]:
    """Yield a ``redis://`` URL (same database) whose SUBSCRIBEs arrive ``delay_s`` late."""
    url = urlsplit(redis_url)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sockets = [listener]
    threading.Thread(target=_accept, daemon=True, args=(
        listener, (url.hostname, url.port or 6379), delay_s, stop, sockets)).start()
    login = url.netloc.rpartition("@")[0]
    port = listener.getsockname()[1]
    try:
        yield url._replace(netloc=f"{login}{'@' if login else ''}127.0.0.1:{port}").geturl()
    finally:
        stop.set()
        for s in sockets:
            s.close()
