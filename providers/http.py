"""HTTP plumbing shared by the provider clients: one session, timeouts, one error map.

- ``ApiSession`` holds the ``requests.Session`` (auth header, User-Agent, JSON accept) and
  passes ``(connect_timeout_s, read_timeout_s)`` on every call. It never follows a
  redirect (``requests`` would send the key headers to whatever host a redirect names):
  a 3xx answer is a ``ProtocolError``.
- ``map_requests_errors`` is the one place where ``requests`` exceptions become
  ``providers.errors`` classes, the way httpx maps httpcore's errors::

      connect error, connect timeout, TLS, proxy  -> ProviderUnavailable (not taken: retry)
      read timeout, connection dropped mid-call   -> ProviderTimeout (sent: caller decides)
      broken or undecodable response body         -> ProviderTimeout
      too many redirects                          -> ProtocolError
      an invalid header (message not kept: it holds the value) -> PermanentError
      malformed URL or header (our config)        -> PermanentError

  ``urllib3`` errors raised while a body is read from ``Response.raw`` (read timeout,
  connection broken, incomplete or undecodable body) map like their ``requests`` wrappers.
- Every answer is bounded: ``read_body`` streams it under an overall deadline (``requests``'
  read timeout is per socket read, so a body dripping a byte at a time never trips it) and
  stops past a size cap (``ProtocolError``, with the start of the body kept).
- ``json_body`` decodes strictly: no NaN/Infinity, no nesting deep enough to recurse out.
- ``error_class_for_status`` maps an HTTP status (or a status-like vendor code) to a class.
- ``parse_retry_after`` reads ``Retry-After`` (seconds or HTTP date) into seconds.

The API key is never put into a message, a repr or a log line.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from pydantic import SecretStr
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError as Urllib3ProtocolError
from urllib3.exceptions import ReadTimeoutError as Urllib3ReadTimeout

from providers.constants import USER_AGENT
from providers.errors import (
    BODY_EXCERPT_CHARS,
    AuthFailed,
    EnhanceError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PermanentError,
    ProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)

#: The largest API answer read by default (after content decoding); larger is ProtocolError.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
#: How much one read of an answer body asks for.
BODY_CHUNK_BYTES = 64 * 1024
#: How much of a body an error keeps (``EnhanceError`` cuts it to BODY_EXCERPT_CHARS).
EXCERPT_BYTES = BODY_EXCERPT_CHARS * 4

#: Classes for the HTTP statuses both vendors document; other 4xx are PermanentError.
STATUS_ERRORS: dict[int, type[EnhanceError]] = {
    400: InvalidInput,
    401: AuthFailed,
    402: InsufficientCredits,
    403: AuthFailed,
    404: NotFound,
    408: ProviderUnavailable,  # the server gave up waiting for our request: not taken
    413: InvalidInput,
    422: InvalidInput,
    429: RateLimited,
}


def error_class_for_status(status: int | None) -> type[EnhanceError]:
    """The error class for an HTTP status, or for a vendor code that is one.

    Args:
        status: An HTTP status, or None when there is none to go by.

    Returns:
        The class from ``STATUS_ERRORS``; ``ProviderUnavailable`` for 5xx,
        ``PermanentError`` for other 4xx, ``ProtocolError`` for anything else (a
        "failure" carrying a success or meaningless status has no documented shape).
    """
    if status is None:
        return ProtocolError
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if 500 <= status <= 599:
        return ProviderUnavailable
    if 400 <= status <= 499:
        return PermanentError
    return ProtocolError


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value.

    Args:
        value: The header value: delay seconds ("120", "1.5") or an HTTP date.
        now: The current time, for tests; defaults to the clock.

    Returns:
        A non-negative number of seconds, or None when the value is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until_http_date(value, now or datetime.now(UTC))
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is unreadable


def _seconds_until_http_date(value: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def body_excerpt(response: requests.Response) -> str:
    """The start of a response body as text, for error messages and ``body``."""
    return _excerpt(response.content)


def _excerpt(data: bytes) -> str:
    return data[:EXCERPT_BYTES].decode("utf-8", errors="replace")


def read_body(response: requests.Response, provider: str, *, max_bytes: int,
              deadline: float) -> bytes:
    """Read a streamed response's whole body, at most ``max_bytes`` of it, by ``deadline``.

    Each read returns what one socket read brings (``read1``) and the socket's timeout is
    cut to the time left, so the deadline holds however slowly the bytes come.

    Args:
        response: A response sent with ``stream=True``, its body not read yet.
        provider: The provider name, for errors.
        max_bytes: The largest body accepted, after content decoding.
        deadline: A ``time.monotonic()`` value by which the body must be complete.

    Raises:
        ProviderTimeout: The deadline passed first, or the body broke off.
        ProtocolError: The body (declared or read) is over ``max_bytes``.
    """
    declared = _declared_length(response)
    if declared is not None and declared > max_bytes:  # keep only its start, for the error
        start = _read_at_most(response, provider, deadline, EXCERPT_BYTES)
        raise _too_large(response, provider, max_bytes, start)
    body = _read_at_most(response, provider, deadline, max_bytes + 1)
    if len(body) > max_bytes:
        raise _too_large(response, provider, max_bytes, body[:EXCERPT_BYTES])
    return body


def _read_at_most(response: requests.Response, provider: str, deadline: float,
                  limit_bytes: int) -> bytes:
    """Read until the body ends or ``limit_bytes`` are in hand (possibly a few more)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit_bytes and (chunk := _read_some(response, provider, deadline)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _read_some(response: requests.Response, provider: str, deadline: float) -> bytes:
    remaining_s = deadline - time.monotonic()
    if remaining_s <= 0:
        raise _past_deadline(provider)
    cap_socket_timeout(response.raw, remaining_s)
    try:
        return response.raw.read1(BODY_CHUNK_BYTES, decode_content=True)
    except Urllib3ReadTimeout as exc:
        if time.monotonic() >= deadline - 0.05:
            raise _past_deadline(provider) from exc
        raise


def cap_socket_timeout(raw: Any, limit_s: float) -> None:
    """Lower the timeout of the socket under ``raw`` (a urllib3 response) to ``limit_s``.

    urllib3 sets the read timeout again on every new request over a pooled connection,
    so the lowered value never leaks into a later call.
    """
    sock = getattr(getattr(raw, "_connection", None), "sock", None) or _response_socket(raw)
    if sock is None:
        return
    current = sock.gettimeout()
    if current is None or current > limit_s:
        sock.settimeout(max(limit_s, 0.001))


def _response_socket(raw: Any) -> Any:
    """The socket an http.client response reads from (its connection may have let go of it
    when the server said ``Connection: close``)."""
    buffered = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(buffered, "raw", None), "_sock", None)


def _past_deadline(provider: str) -> ProviderTimeout:
    return ProviderTimeout(f"{provider}: the answer did not complete in time (overall deadline)",
                           provider)


def _declared_length(response: requests.Response) -> int | None:
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None  # the length of the encoded bytes, not of the body
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _too_large(response: requests.Response, provider: str, max_bytes: int,
               start: bytes) -> ProtocolError:
    return ProtocolError(
        f"{provider}: answer larger than {max_bytes} bytes (HTTP {response.status_code})",
        provider, None, response.status_code, None, _excerpt(start))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf
        raise ValueError(f"{text} is out of range")
    return value


#: Deepest JSON nesting accepted (the vendors' answers are three levels deep). Deeper is
#: refused before decoding: a RecursionError caught from the decoder can leave CPython
#: 3.11's recursion bookkeeping off (a later ``ast.parse`` fails with SystemError).
MAX_JSON_DEPTH = 100
_JSON_STRUCTURE = re.compile(r'["\\\[\]{}]')


def _too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests arrays/objects deeper than ``limit`` (strings skipped)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_string, skip_at = 0, False, -1
    for match in _JSON_STRUCTURE.finditer(text):
        at, char = match.start(), match.group()
        if at == skip_at:  # the character after a backslash
            continue
        if char == "\\":
            skip_at = at + 1
        elif char == '"':
            in_string = not in_string
        elif not in_string:
            depth += 1 if char in "[{" else -1
            if depth > limit:
                return True
    return False


def json_body(response: requests.Response) -> Any | None:
    """The decoded JSON body, or None when the body is not JSON.

    Strict where Python's decoder is lenient: the text must be UTF-8 (no lone surrogates,
    no other encoding guessed from the first bytes); ``NaN``, ``Infinity`` and numbers out
    of a float's range are not JSON; nesting deep enough to exhaust the recursion limit is
    not an answer either (the decoder raises ``RecursionError``).
    """
    try:
        text = response.content.decode("utf-8")  # strict: JSON answers are UTF-8 (RFC 8259)
        if _too_deep(text):
            return None
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


_UNSENDABLE = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


@contextmanager
def map_requests_errors(provider: str) -> Iterator[None]:
    """Translate ``requests`` exceptions raised inside the block into our tree.

    Args:
        provider: The provider name, put into the error and its message.

    Raises:
        ProviderUnavailable: The request was not taken (connect error or timeout).
        ProviderTimeout: The request went out and no complete answer came back (``requests``
            errors, and ``urllib3`` errors raised while reading ``Response.raw``).
        ProtocolError: The server redirected us in circles.
        PermanentError: The request could not be built (bad URL or header).
    """
    try:
        yield
    except requests.exceptions.ConnectTimeout as exc:
        raise ProviderUnavailable(f"{provider}: connect timeout", provider) from exc
    except requests.exceptions.ReadTimeout as exc:
        raise ProviderTimeout(f"{provider}: no answer in time (read timeout)", provider) from exc
    except requests.exceptions.ConnectionError as exc:
        raise _connection_error(provider, exc) from exc
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ContentDecodingError,
    ) as exc:
        raise ProviderTimeout(f"{provider}: response broken off: {exc}", provider) from exc
    except requests.exceptions.TooManyRedirects as exc:
        raise ProtocolError(f"{provider}: too many redirects", provider) from exc
    except _UNSENDABLE as exc:
        raise PermanentError(f"{provider}: request not sendable: {_unsendable_reason(exc)}",
                             provider) from exc
    except requests.exceptions.RequestException as exc:
        raise ProviderTimeout(f"{provider}: transport error: {exc}", provider) from exc
    except Urllib3ReadTimeout as exc:  # raised reading Response.raw: not wrapped by requests
        raise ProviderTimeout(f"{provider}: no answer in time (read timeout)", provider) from exc
    except Urllib3Error as exc:  # connection broken, incomplete or undecodable body
        raise ProviderTimeout(f"{provider}: response broken off: {exc}", provider) from exc


def _unsendable_reason(exc: Exception) -> str:
    """Why a request could not be built; an invalid header's message holds its value."""
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return "a header value is invalid"
    return str(exc)


def _connection_error(provider: str, exc: requests.exceptions.ConnectionError) -> EnhanceError:
    """Split connection errors by whether the request can have reached the server."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, Urllib3ProtocolError):  # connection dropped after sending
        return ProviderTimeout(f"{provider}: connection dropped before an answer", provider)
    return ProviderUnavailable(f"{provider}: cannot connect: {exc}", provider)


def reveal(api_key: str | SecretStr) -> str:
    """The plain API key, stripped of surrounding whitespace and checked (never shown).

    Raises:
        AuthFailed: The key is empty, or has a control character (a newline, a tab) or a
            character a header cannot carry inside it; the message never shows the key.
    """
    plain = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    if not isinstance(plain, str) or not plain.strip():
        raise AuthFailed("API key is empty")
    plain = plain.strip()
    if not plain.isascii() or not plain.isprintable():
        raise AuthFailed("API key has a control or non-ASCII character (a stray newline?); "
                         "the key is not shown")
    return plain


class ApiSession:
    """One provider's HTTP session: auth header, User-Agent, timeouts, bounds, error mapping.

    Args:
        provider: The provider name, used in error messages.
        base_url: The API's base URL, without a trailing path.
        auth_header: The header carrying the key (``Apikey``, ``X-API-KEY``).
        api_key: The key; kept only inside the session's headers.
        connect_timeout_s: Seconds to wait for a connection.
        read_timeout_s: Seconds to wait between bytes of the answer.
        deadline_s: Seconds one call may take in all, however its bytes trickle in
            (default: connect + read timeout + 15 s).
        max_answer_bytes: The largest answer body read; larger is a ``ProtocolError``.
        session: A session to use instead of a new one; its headers are updated, and
            it is not closed by ``close()`` (the caller owns it).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        auth_header: str,
        api_key: str | SecretStr,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        deadline_s: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        session: requests.Session | None = None,
    ) -> None:
        if connect_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if (deadline_s is not None and deadline_s <= 0) or max_answer_bytes <= 0:
            raise ValueError("deadline_s and max_answer_bytes must be positive")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.timeout_s = (connect_timeout_s, read_timeout_s)
        self.deadline_s = deadline_s or connect_timeout_s + read_timeout_s + 15.0
        self.max_answer_bytes = max_answer_bytes
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.session.headers.update(
            {auth_header: reveal(api_key), "User-Agent": USER_AGENT, "Accept": "application/json"}
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        read_timeout_s: float | None = None,
        deadline_s: float | None = None,
        max_answer_bytes: int | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request within the bounds; ``requests`` errors come out translated.

        Args:
            method: "GET", "POST"...
            path: The path under the base URL, starting with "/".
            read_timeout_s, deadline_s, max_answer_bytes: This call's own bounds, where
                it needs longer or larger than the session's (e.g. a synchronous job).
            **kwargs: Passed to ``requests.Session.request`` (json, files...).

        Returns:
            The response, whatever its status, its body read (the client decides what it
            means).
        """
        deadline = time.monotonic() + (deadline_s or self.deadline_s)
        timeout = (self.timeout_s[0], read_timeout_s or self.timeout_s[1])
        with map_requests_errors(self.provider):
            response = self.session.request(
                method, self.base_url + path, timeout=timeout, stream=True,
                allow_redirects=False, **kwargs
            )
            try:
                body = read_body(response, self.provider, deadline=deadline,
                                 max_bytes=max_answer_bytes or self.max_answer_bytes)
                response._content, response._content_consumed = body, True
            finally:
                response.close()  # back to the pool when read whole; else dropped
        if response.is_redirect or response.is_permanent_redirect:
            # The key headers would follow a redirect to any host: never follow one.
            raise ProtocolError(f"{self.provider}: API answered a redirect (HTTP "
                                f"{response.status_code}); API calls never follow redirects",
                                self.provider, None, response.status_code)
        return response

    def close(self) -> None:
        """Close the session if this object created it."""
        if self._owns_session:
            self.session.close()

    def __repr__(self) -> str:
        return f"ApiSession(provider={self.provider!r}, base_url={self.base_url!r})"
