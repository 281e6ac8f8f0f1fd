"""ApiSession and the one requests-error map, over real HTTP on loopback."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import urllib3

from providers.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PermanentError,
    ProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from providers.http import (
    ApiSession,
    cap_socket_timeout,
    error_class_for_status,
    json_body,
    map_requests_errors,
    parse_retry_after,
)
from workers.constants import USER_AGENT

KEY = "secret-key-123"


def session_for(url: str, read_timeout_s: float = 2.0, **kwargs) -> ApiSession:
    return ApiSession(
        "hitpaw", url, "Apikey", KEY, connect_timeout_s=1.0, read_timeout_s=read_timeout_s, **kwargs
    )


# --- Retry-After ---------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("Fri, 02 Jan 2026 03:05:05 -0000", 60.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


# --- Status table --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidInput),
        (401, AuthFailed),
        (402, InsufficientCredits),
        (403, AuthFailed),
        (404, NotFound),
        (408, ProviderUnavailable),
        (409, PermanentError),
        (413, InvalidInput),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (503, ProviderUnavailable),
        (200, ProtocolError),
        (302, ProtocolError),
        (None, ProtocolError),
    ],
)
def test_error_class_for_status(status, cls):
    assert error_class_for_status(status) is cls


# --- The session ---------------------------------------------------------------------------


def test_sends_auth_user_agent_accept_and_returns_any_status(canned):
    canned.add(418, {"x": 1})
    api = session_for(canned.base_url + "/")
    response = api.request("POST", "/api/thing", json={"a": 1})
    assert response.status_code == 418
    sent = canned.received[0]
    assert (sent.method, sent.path) == ("POST", "/api/thing")
    assert sent.headers["Apikey"] == KEY
    assert sent.headers["User-Agent"] == USER_AGENT
    assert sent.headers["Accept"] == "application/json"


def test_key_never_in_repr():
    api = session_for("http://127.0.0.1:9")
    assert KEY not in repr(api)
    assert "hitpaw" in repr(api)


def test_empty_key_refused_without_showing_anything():
    with pytest.raises(AuthFailed, match="empty"):
        session_for_key("  ")


def session_for_key(key: str) -> ApiSession:
    return ApiSession(
        "picwish", "http://x", "X-API-KEY", key, connect_timeout_s=1, read_timeout_s=1
    )


def test_timeouts_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        ApiSession("hitpaw", "http://x", "Apikey", KEY, connect_timeout_s=0, read_timeout_s=1)


def test_own_session_closed_given_session_left_open(canned):
    own = session_for(canned.base_url)
    own.close()
    given = requests.Session()
    api = session_for(canned.base_url, session=given)
    api.close()
    canned.add(200, {})
    assert given.get(canned.base_url, timeout=2).status_code == 200  # still usable
    assert given.headers["Apikey"] == KEY


# --- Transport failures, each over a real socket -------------------------------------------


def test_connection_refused_is_unavailable(closed_port_url):
    with pytest.raises(ProviderUnavailable) as info:
        session_for(closed_port_url).request("GET", "/")
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert info.value.provider == "hitpaw" and info.value.retryable


def test_read_timeout_is_provider_timeout(canned):
    canned.add(200, {}, delay_s=1.0)
    with pytest.raises(ProviderTimeout, match="read timeout"):
        session_for(canned.base_url, read_timeout_s=0.2).request("POST", "/")


def test_dropped_connection_is_provider_timeout(canned):
    canned.add(drop=True)
    with pytest.raises(ProviderTimeout, match="dropped"):
        session_for(canned.base_url).request("POST", "/")


def test_broken_chunked_body_is_provider_timeout(canned):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk"
    canned.add(raw=raw)
    with pytest.raises(ProviderTimeout, match="broken off"):
        session_for(canned.base_url).request("GET", "/")


def test_redirect_loop_is_protocol_error(canned):
    for _ in range(40):
        canned.add(302, "", headers={"Location": "/again"})
    with pytest.raises(ProtocolError, match="redirects"):
        session_for(canned.base_url).request("GET", "/")


def test_bad_base_url_is_permanent():
    with pytest.raises(PermanentError, match="not sendable"):
        session_for("nonsense-without-scheme").request("GET", "/")


def test_connect_timeout_is_unavailable():
    """A listener whose accept queue is full makes the kernel drop our SYN: connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the backlog
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        api = ApiSession(
            "hitpaw",
            f"http://127.0.0.1:{port}",
            "Apikey",
            KEY,
            connect_timeout_s=0.3,
            read_timeout_s=5,
        )
        with pytest.raises(ProviderUnavailable, match="connect timeout"):
            api.request("GET", "/")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (requests.exceptions.ConnectTimeout("x"), ProviderUnavailable),
        (requests.exceptions.ReadTimeout("x"), ProviderTimeout),
        (requests.exceptions.SSLError("x"), ProviderUnavailable),
        (requests.exceptions.ProxyError("x"), ProviderUnavailable),
        (requests.exceptions.ContentDecodingError("x"), ProviderTimeout),
        (requests.exceptions.InvalidHeader("x"), PermanentError),
        (requests.exceptions.RequestException("x"), ProviderTimeout),
    ],
)
def test_map_requests_errors_table(raised, expected):
    """The translator itself, for the failures a loopback socket can't stage."""
    with pytest.raises(expected) as info, map_requests_errors("picwish"):
        raise raised
    assert type(info.value) is expected
    assert info.value.__cause__ is raised


def test_map_requests_errors_leaves_other_exceptions_alone():
    with pytest.raises(KeyError), map_requests_errors("picwish"):
        raise KeyError("not ours")


# --- Bounded answers: an overall deadline and a size cap ----------------------------------


class DripServer:
    """Answers every connection with headers, then one body byte every ``interval_s``."""

    def __init__(self, body: bytes, interval_s: float, headers: bytes = b"") -> None:
        self.body, self.interval_s, self.headers = body, interval_s, headers
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         + self.headers + b"Content-Length: %d\r\n\r\n" % len(self.body))
            for byte in self.body:
                if self.stop.wait(self.interval_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def __enter__(self) -> DripServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def test_a_dripping_body_is_cut_at_the_overall_deadline():
    """Each byte comes well within the read timeout; the whole answer would take 60 s."""
    with DripServer(b'{"code": 200, "data": {}}' + b" " * 175, interval_s=0.3) as server:
        api = session_for(server.base_url, read_timeout_s=2.0, deadline_s=1.0)
        with pytest.raises(ProviderTimeout, match="overall deadline"):
            api.request("POST", "/")


def test_an_answer_declared_over_the_cap_is_refused_with_only_its_start_read(canned):
    canned.add(200, b"<html>" + b"x" * 64 * 1024 * 1024)  # 64 MB: never read whole
    with pytest.raises(ProtocolError, match="larger than 4096 bytes") as info:
        session_for(canned.base_url, max_answer_bytes=4096).request("GET", "/")
    assert info.value.http_status == 200
    assert info.value.body.startswith("<html>xxx")  # the vendor's text, truncated
    assert info.value.body.endswith("...[truncated]")


def test_an_answer_without_length_is_stopped_past_the_cap(canned):
    body = b'{"data": "' + b"y" * 300_000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                       for i in range(0, len(body), 1000))
    canned.add(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    with pytest.raises(ProtocolError, match="larger than 65536 bytes") as info:
        session_for(canned.base_url, max_answer_bytes=65536).request("GET", "/")
    assert info.value.body.startswith('{"data": "yyy')  # the vendor's text, truncated
    assert len(info.value.body) <= 600


def test_an_answer_within_the_cap_is_read_whole_and_the_connection_reused(canned):
    canned.add(200, {"a": 1}).add(200, {"b": 2})
    api = session_for(canned.base_url)
    assert api.request("GET", "/").json() == {"a": 1}
    assert api.request("GET", "/").json() == {"b": 2}


def test_a_call_can_ask_for_longer_and_larger_than_the_session(canned):
    canned.add(200, {"x": "z" * 5000}, delay_s=0.5)
    api = session_for(canned.base_url, read_timeout_s=0.2, max_answer_bytes=1024)
    response = api.request("GET", "/", read_timeout_s=2.0, max_answer_bytes=10_000)
    assert response.json() == {"x": "z" * 5000}


# --- Strict JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000 + "]" * 100_000, '{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}',
     '{"a": 1e999}', '{"a": "\\ud800"', "1" * 5000, "<html>", "",
     b'{"a": "\xed\xa0\x80"}', b'\xff\xfe{\x00}\x00', b'{"a": "\xc3\x28"}'],
    ids=["deep", "nan", "inf", "-inf", "1e999", "truncated", "huge-int", "html", "empty",
         "utf8-surrogate", "utf16", "bad-utf8"],
)
def test_json_body_is_none_for_what_is_not_an_answer(canned, text):
    canned.add(200, text)
    assert json_body(session_for(canned.base_url).request("GET", "/")) is None


def test_json_body_decodes_an_answer(canned):
    canned.add(200, {"a": [1, 2.5, None, True], "b": {"c": "d"}})
    assert json_body(session_for(canned.base_url).request("GET", "/")) == {
        "a": [1, 2.5, None, True], "b": {"c": "d"}}


@pytest.mark.parametrize(
    "raised",
    [urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),
     urllib3.exceptions.ProtocolError("Connection broken", ConnectionResetError()),
     urllib3.exceptions.IncompleteRead(10, 20),
     urllib3.exceptions.DecodeError("bad gzip")],
    ids=["read-timeout", "protocol", "incomplete", "decode"],
)
def test_urllib3_errors_from_a_raw_read_are_provider_timeouts(raised):
    with pytest.raises(ProviderTimeout) as info, map_requests_errors("hitpaw"):
        raise raised
    assert info.value.retryable and info.value.__cause__ is raised


@pytest.mark.parametrize("close", [True, False], ids=["connection-close", "keep-alive"])
def test_the_deadline_caps_the_socket_a_streamed_response_reads_from(close):
    """With ``Connection: close`` http.client lets go of the socket; the cap must find it."""
    extra = b"Connection: close\r\n" if close else b""
    with DripServer(b"x" * 50, interval_s=0.05, headers=extra) as server, \
            requests.get(server.base_url, stream=True, timeout=(1, 5)) as response:
        cap_socket_timeout(response.raw, 0.5)
        sock = response.raw._fp.fp.raw._sock
        assert sock.gettimeout() == 0.5


def test_nesting_is_refused_before_the_decoder_can_recurse_out(canned):
    """A RecursionError caught from json can leave CPython 3.11's recursion bookkeeping off
    (a later ast.parse raised SystemError): too deep is refused before decoding."""
    from providers import http

    assert http._too_deep("[" * 101 + "]" * 101) and not http._too_deep("[" * 100 + "]" * 100)
    inside_strings = '{"a": "' + "[" * 5000 + '", "b": "\\"[[[", "c": [[1]]}'
    assert not http._too_deep(inside_strings)
    canned.add(200, inside_strings)
    assert json_body(session_for(canned.base_url).request("GET", "/"))["c"] == [[1]]
    canned.add(200, '{"a": ' + "[" * 150 + "]" * 150 + "}")
    assert json_body(session_for(canned.base_url).request("GET", "/")) is None
