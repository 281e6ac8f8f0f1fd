"""Downloads of result files from the provider's (expiring) result URLs, streamed.

Every URL is fetched through the session's URL guard (``providers.urlguard``): the
session's ``GuardedAdapter`` checks and pins the address of each connection. Redirects are
followed here, one at a time (each target is an http(s) URL the adapter checks again), at
most ``session.max_redirects`` of them; a redirect's body is never read. Every body is
read through a byte cap, whether or not the server sent a Content-Length.

A result URL that answers 403, 404 or 410 has expired or been deleted: the result is
gone, which is ``ResultExpired``, not a retryable failure.

The body is read through ``BoundedStream``: errors raised while reading it (urllib3's
``ReadTimeoutError`` / ``ProtocolError`` / ``IncompleteRead``, which are not ``requests``
exceptions) come out as ``ProviderTimeout``, a ``TransientError``: a paid job whose URL is
still valid is retried, not failed. Each read is bounded by the read timeout (a stall) and
the whole download by an overall deadline, however slowly the bytes trickle in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from providers.errors import (
    EnhanceError,
    InvalidInput,
    ProviderTimeout,
    ProviderUnavailable,
    ResultExpired,
)
from providers.http import cap_socket_timeout, error_class_for_status, map_requests_errors
from providers.urlguard import UrlGuard

GONE_STATUSES = (403, 404, 410)  # how expired presigned or deleted result URLs answer
DEFAULT_DEADLINE_S = 600.0  # a whole download, when the settings name none


class BoundedStream:
    """A download's body: reads mapped into our errors, each bounded, all by a deadline.

    ``read(size)`` returns what at most one socket read brings (possibly fewer than
    ``size`` bytes; b"" only at the end), after cutting the socket's timeout to the time
    left before ``deadline`` (a ``time.monotonic()`` value).
    """

    def __init__(self, raw: Any, provider: str, deadline: float) -> None:
        self._raw = raw
        self._provider = provider
        self._deadline = deadline

    def read(self, size: int | None = -1) -> bytes:
        size = 1024 * 1024 if size is None or size < 0 else size
        remaining_s = self._deadline - time.monotonic()
        if remaining_s <= 0:
            raise self._past_deadline()
        cap_socket_timeout(self._raw, remaining_s)
        with map_requests_errors(self._provider):
            try:
                return self._raw.read1(size) if size else b""
            except Exception:
                if time.monotonic() >= self._deadline - 0.05:
                    raise self._past_deadline() from None
                raise

    def _past_deadline(self) -> ProviderTimeout:
        return ProviderTimeout(f"{self._provider}: result download did not finish in time "
                               "(overall deadline)", self._provider)

    def close(self) -> None:
        """Leave closing to ``open_result``."""


@dataclass
class Download:
    """An open download: read ``stream`` to the end, then leave the ``with`` block."""

    stream: BinaryIO | CappedReader
    content_type: str | None
    size_bytes: int | None  # from Content-Length, when the body is not content-encoded


class CappedReader:
    """A reader that raises ``InvalidInput`` once more than ``max_bytes`` came through."""

    def __init__(self, raw: BinaryIO, max_bytes: int, provider: str | None) -> None:
        self._raw = raw
        self.max_bytes = max_bytes
        self.provider = provider
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        room = self.max_bytes + 1 - self.bytes_read
        want = room if size is None or size < 0 else min(size, room)
        data = self._raw.read(want) if want > 0 else b""
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:
            raise InvalidInput(f"download is over {self.max_bytes} bytes, the most allowed "
                               "(DOWNLOAD_MAX_BYTES)", self.provider)
        return data


@contextmanager
def open_result(session: requests.Session, provider: str, url: str | None,
                settings, max_bytes: int | None = None,
                what: str = "result") -> Iterator[Download]:
    """Open a streaming GET of a result URL; raise ``ResultExpired`` when it is gone.

    Args:
        session: A session from ``providers.urlguard.guarded_session``.
        provider: The provider name, for errors.
        url: The URL; redirects are followed through the guard.
        settings: Timeouts, ``download_max_bytes`` and ``result_download_deadline_s``.
        max_bytes: A lower cap than ``settings.download_max_bytes``.
        what: "result" or "source", for messages; a source answering an HTTP error is
            ``InvalidInput`` (the user's server, not the provider: no retries).

    The download must end within ``settings.result_download_deadline_s`` of the call;
    reading ``stream`` raises ``ProviderTimeout`` past it or when the body breaks off.

    Raises:
        InvalidInput: The URL, a redirect target or the body size breaks a rule.
    """
    if not url:
        raise ResultExpired("the provider reported no result URL", provider)
    deadline_s = getattr(settings, "result_download_deadline_s", None) or DEFAULT_DEADLINE_S
    deadline = time.monotonic() + deadline_s
    limit = min(max_bytes or settings.download_max_bytes, settings.download_max_bytes)
    response = _get_following_redirects(session, provider, url, settings)
    try:
        _raise_for_status(provider, response, what)
        size = _size(response)
        if size is not None and size > limit:
            raise InvalidInput(f"download is {size} bytes; at most {limit} are allowed", provider)
        response.raw.decode_content = True  # the bytes of the file, not of the transfer
        stream = CappedReader(BoundedStream(response.raw, provider, deadline), limit, provider)
        yield Download(stream, response.headers.get("Content-Type"), size)  # type: ignore[arg-type]
    finally:
        response.close()


def _get_following_redirects(session: requests.Session, provider: str, url: str,
                             settings) -> requests.Response:
    timeout = (settings.http_connect_timeout_s, settings.http_read_timeout_s)
    max_redirects = session.max_redirects
    for _ in range(max_redirects + 1):
        UrlGuard.check_scheme(url)
        with _query_hidden(url), map_requests_errors(provider):
            response = session.get(url, stream=True, timeout=timeout, allow_redirects=False)
        if not response.is_redirect:
            return response
        url = urljoin(url, response.headers["Location"])
        response.close()  # never read a redirect's body
    raise InvalidInput(f"URL refused: more than {max_redirects} redirects", provider)


def fetch_bytes(session: requests.Session, provider: str, url: str, max_bytes: int,
                settings) -> bytes:
    """Download a whole (source) file of at most ``max_bytes``; ``InvalidInput`` if larger."""
    with open_result(session, provider, url, settings, what="source") as download:
        if download.size_bytes is not None and download.size_bytes > max_bytes:
            raise InvalidInput(f"source is {download.size_bytes} bytes; {provider} accepts "
                               f"at most {max_bytes}", provider)
        data = _read_up_to(download.stream, max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInput(f"source is over {max_bytes} bytes, the most {provider} accepts",
                           provider)
    return data


def _read_up_to(stream: BinaryIO | CappedReader, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := stream.read(min(size, 1024 * 1024))):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


@contextmanager
def _query_hidden(url: str) -> Iterator[None]:
    """Errors leave without the URL's query: signed URLs are bearer credentials."""
    query = urlsplit(url).query
    try:
        yield
    except EnhanceError as exc:
        if not query or query not in exc.message:
            raise
        hidden = exc.message.replace(query, "<query hidden>")
        raise type(exc)(hidden, exc.provider, exc.vendor_code, exc.http_status,
                        exc.retry_after_s, exc.body) from None


def _raise_for_status(provider: str, response: requests.Response, what: str) -> None:
    if what != "result" and response.status_code >= 400:
        raise InvalidInput(f"{what} URL answered HTTP {response.status_code}", provider,
                           http_status=response.status_code)
    if response.status_code in GONE_STATUSES:
        raise ResultExpired(
            f"result URL answered HTTP {response.status_code}: expired or deleted",
            provider, http_status=response.status_code)
    if response.status_code >= 400:
        cls = error_class_for_status(response.status_code)
        if cls is not ProviderUnavailable and response.status_code >= 500:
            cls = ProviderUnavailable
        raise cls(f"result download answered HTTP {response.status_code}", provider,
                  http_status=response.status_code)


def _size(response: requests.Response) -> int | None:
    if response.headers.get("Content-Encoding", "identity") != "identity":
        return None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None
