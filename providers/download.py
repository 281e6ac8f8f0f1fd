"""Downloads of result files from the provider's (expiring) result URLs, streamed.

A result URL that answers 403, 404 or 410 has expired or been deleted: the result is
gone, which is ``ResultExpired``, not a retryable failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import requests

from providers.errors import InvalidInput, ProviderUnavailable, ResultExpired
from providers.http import error_class_for_status, map_requests_errors

GONE_STATUSES = (403, 404, 410)  # how expired presigned or deleted result URLs answer


@dataclass
class Download:
    """An open download: read ``stream`` to the end, then leave the ``with`` block."""

    stream: BinaryIO
    content_type: str | None
    size_bytes: int | None  # from Content-Length, when the body is not content-encoded


@contextmanager
def open_result(session: requests.Session, provider: str, url: str | None,
                settings) -> Iterator[Download]:
    """Open a streaming GET of a result URL; raise ``ResultExpired`` when it is gone."""
    if not url:
        raise ResultExpired("the provider reported no result URL", provider)
    timeout = (settings.http_connect_timeout_s, settings.http_read_timeout_s)
    with map_requests_errors(provider):
        response = session.get(url, stream=True, timeout=timeout)
    try:
        _raise_for_status(provider, response)
        response.raw.decode_content = True  # the bytes of the file, not of the transfer
        yield Download(response.raw, response.headers.get("Content-Type"), _size(response))
    finally:
        response.close()


def fetch_bytes(session: requests.Session, provider: str, url: str, max_bytes: int,
                settings) -> bytes:
    """Download a whole (source) file of at most ``max_bytes``; ``InvalidInput`` if larger."""
    with open_result(session, provider, url, settings) as download:
        if download.size_bytes is not None and download.size_bytes > max_bytes:
            raise InvalidInput(f"source is {download.size_bytes} bytes; {provider} accepts "
                               f"at most {max_bytes}", provider)
        with map_requests_errors(provider):
            data = download.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InvalidInput(f"source is over {max_bytes} bytes, the most {provider} accepts",
                           provider)
    return data


def _raise_for_status(provider: str, response: requests.Response) -> None:
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
