"""Result downloads over real HTTP on loopback: errors while reading the body are ours."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from providers.download import fetch_bytes, open_result
from providers.errors import InvalidInput, ProviderTimeout, ResultExpired
from workers.settings import Settings

BODY = b"\xff\xd8" + bytes(range(256)) * 400  # ~100 KB


def settings(**changes) -> Settings:
    values = {"http_connect_timeout_s": 1, "http_read_timeout_s": 2, "http_deadline_s": 2,
              "result_download_deadline_s": 30, **changes}
    return Settings(**values)


class RawServer:
    """Answers one GET with ``head`` then ``body`` in pieces, each after ``interval_s``."""

    def __init__(self, head: bytes, body: bytes, *, piece_bytes: int = 1 << 20,
                 interval_s: float = 0.0) -> None:
        self.head, self.body = head, body
        self.piece_bytes, self.interval_s = piece_bytes, interval_s
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/result.jpg"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(self.head)
            for start in range(0, len(self.body), self.piece_bytes):
                if self.stop.wait(self.interval_s):
                    return
                try:
                    conn.sendall(self.body[start:start + self.piece_bytes])
                except OSError:
                    return

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def head(length: int) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % length)


def read_all(url: str, s: Settings, size: int = 65536) -> bytes:
    with requests.Session() as session, open_result(session, "hitpaw", url, s) as download:
        chunks = []
        while chunk := download.stream.read(size):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_whole_download_reads_back_byte_for_byte():
    with RawServer(head(len(BODY)), BODY) as server:
        assert read_all(server.url, settings()) == BODY


def test_a_body_cut_short_is_a_transient_provider_timeout():
    """urllib3's IncompleteRead/ProtocolError used to escape as 'internal error'."""
    with (
        RawServer(head(len(BODY) + 5000), BODY) as server,
        pytest.raises(ProviderTimeout, match="broken off") as info,
    ):
        read_all(server.url, settings())
    assert info.value.retryable


def test_a_stalled_body_is_a_transient_provider_timeout():
    with (
        RawServer(head(len(BODY)), BODY, piece_bytes=50_000, interval_s=5) as server,
        pytest.raises(ProviderTimeout, match="read timeout") as info,
    ):
        read_all(server.url, settings(http_read_timeout_s=0.5, http_deadline_s=0.5))
    assert info.value.retryable


def test_a_dripping_body_is_cut_at_the_download_deadline():
    """Every byte comes within the read timeout; the whole body would take minutes."""
    with (
        RawServer(head(len(BODY)), BODY, piece_bytes=100, interval_s=0.2) as server,
        pytest.raises(ProviderTimeout, match="overall deadline"),
    ):
        read_all(server.url, settings(result_download_deadline_s=1))


def test_an_expired_url_is_result_expired():
    with (
        RawServer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", b"") as server,
        pytest.raises(ResultExpired),
    ):
        read_all(server.url, settings())


def test_fetch_bytes_reads_whole_and_refuses_past_its_cap():
    with (
        RawServer(head(len(BODY)), BODY, piece_bytes=7000) as server,
        requests.Session() as session,
    ):
        assert fetch_bytes(session, "hitpaw", server.url, len(BODY), settings()) == BODY
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    piece = b"%x\r\n%s\r\n" % (len(BODY), BODY)
    with (
        RawServer(chunked, piece + b"0\r\n\r\n") as server,
        requests.Session() as session,
        pytest.raises(InvalidInput, match="over 1000"),
    ):
        fetch_bytes(session, "hitpaw", server.url, 1000, settings())
