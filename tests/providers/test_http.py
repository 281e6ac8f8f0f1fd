"""ApiSession and the one requests-error map, over real HTTP on loopback."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

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
    error_class_for_status,
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
