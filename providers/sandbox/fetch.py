"""Download a source image the way a vendor would: streamed to disk, bounded in time and size."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

CHUNK_BYTES = 256 * 1024


class FetchError(Exception):
    """The source URL could not be downloaded."""


def is_http_url(url: object) -> bool:
    """True for a syntactically usable http(s) URL."""
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def fetch(url: str, dest: Path, timeout_s: float, max_bytes: int) -> float:
    """Stream ``url`` into ``dest``; return the download time in seconds.

    The whole download must finish within ``timeout_s``. Raises ``FetchError`` on a
    network error, a non-2xx answer, a body over ``max_bytes`` or the deadline passing.
    """
    started = time.monotonic()
    try:
        with requests.get(url, stream=True, timeout=(timeout_s, timeout_s)) as resp:
            if not 200 <= resp.status_code < 300:
                raise FetchError(f"source answered HTTP {resp.status_code}")
            _save(resp, dest, started + timeout_s, max_bytes)
    except requests.RequestException as exc:
        raise FetchError(f"download failed: {type(exc).__name__}") from exc
    return time.monotonic() - started


def _save(resp: requests.Response, dest: Path, deadline: float, max_bytes: int) -> None:
    written = 0
    with dest.open("wb") as fh:
        for chunk in resp.iter_content(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise FetchError(f"source is over {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchError("download timed out")
            fh.write(chunk)
