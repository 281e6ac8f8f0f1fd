"""Getting a source image to a provider in a form it takes.

A producer's source is an http(s) URL, an ``s3://`` object, a local path, bytes or a
file object. Local bytes are read (header only) for the checks made before paying, then
staged into the bucket. At submit time the source becomes what the provider takes:

- HitPaw takes only a URL: an ``s3://`` source is passed as a presigned GET URL.
- PicWish takes a URL of at most 512 characters, or the file itself (at most 30 MB):
  a presigned URL is usually longer, so the bytes are uploaded instead.

Sources are users' input (SECURITY.md). At enqueue: an http(s) URL loses its
``user:password@`` and passes the URL guard's checks that need no DNS; an ``s3://`` URI
must name the configured bucket or one in ``S3_SOURCE_BUCKETS``; a local path must be a
regular file of at most ``LOCAL_SOURCE_MAX_BYTES``, read here, in the producer. In the
worker, before the paid call: an http(s) URL is resolved and every address checked; a
record naming anything else than http(s) or ``s3://`` is refused (a worker never reads a
local path).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from providers.base import Provider
from providers.download import fetch_bytes
from providers.errors import InvalidInput
from providers.images import (
    check_source_image,
    content_type_for_format,
    extension_for_format,
    inspect_image,
)
from providers.urlguard import strip_credentials
from storage.jobs import JobRecord, JobSource
from workers.runtime import Runtime

Source = str | os.PathLike | bytes | BinaryIO

_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SPECIAL_ROOTS = ("/proc/", "/sys/", "/dev/")  # regular-looking files that are not files


def stage_source(rt: Runtime, job_id: str, source: Source, filename: str | None = None) -> JobSource:
    """Describe ``source`` for a job record, uploading local bytes to the bucket."""
    if isinstance(source, str) and _URL_SCHEME.match(source):
        uri = check_source_uri(rt, source)
        return JobSource(uri=uri, filename=filename or uri.split("?")[0].rsplit("/", 1)[-1])
    limit = rt.settings.local_source_max_bytes
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return _stage_bytes(rt, job_id, read_local_file(path, limit), filename or path.name)
    if isinstance(source, bytes):
        return _stage_bytes(rt, job_id, _capped(source, limit), filename)
    if hasattr(source, "read"):
        data = _capped(source.read(limit + 1), limit)
        return _stage_bytes(rt, job_id, data, filename or getattr(source, "name", None))
    raise InvalidInput(f"unsupported source type {type(source).__name__}")


def check_source_uri(rt: Runtime, uri: str) -> str:
    """The URI to record for a URL source; ``InvalidInput`` naming the rule it breaks."""
    scheme = _URL_SCHEME.match(uri).group(1).lower()  # type: ignore[union-attr]
    if scheme in ("http", "https"):
        uri = strip_credentials(uri)
        rt.guard.check_static(uri)
        return uri
    if scheme == "s3":
        rt.objects.check_readable(uri)
        if not rt.objects.exists(uri):  # said now, not by a provider as "invalid URL" later
            raise InvalidInput(f"s3:// source {uri} does not exist: no such object")
        return uri
    raise InvalidInput(f"source scheme {scheme!r} is not allowed: give an http(s) URL, an "
                       "s3:// URI, a local file (read by the caller) or bytes")


def read_local_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular local file of at most ``max_bytes``, checked before reading."""
    shown = str(path)[:200]
    try:
        real = os.path.realpath(path)
        if real.startswith(_SPECIAL_ROOTS):
            raise InvalidInput(f"source {shown!r} is not a regular file (under /proc, /sys or "
                               "/dev)")
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(f"source {shown!r} is not a readable file: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInput(f"source {shown!r} is not a regular file (a directory, device, "
                               "FIFO or socket)")
        if info.st_size > max_bytes:
            raise InvalidInput(f"source {shown!r} is {info.st_size} bytes; at most {max_bytes} "
                               "are accepted (LOCAL_SOURCE_MAX_BYTES)")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return _capped(handle.read(max_bytes + 1), max_bytes)
    finally:
        os.close(fd)


def _capped(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise InvalidInput(f"source is over {max_bytes} bytes, the most accepted "
                           "(LOCAL_SOURCE_MAX_BYTES)")
    return data


def _stage_bytes(rt: Runtime, job_id: str, data: bytes, filename: str | None) -> JobSource:
    info = inspect_image(data)  # InvalidInput when it is not an image
    check_source_image(info, data[:64], rt.settings.max_source_pixels)
    content_type = content_type_for_format(info.format)
    key = rt.objects.input_key(job_id, extension_for_format(info.format) or ".img")
    rt.objects.put_bytes(key, data, content_type=content_type, metadata={"job-id": job_id})
    return JobSource(uri=f"s3://{rt.objects.bucket}/{key}", filename=filename and Path(filename).name,
                     content_type=content_type, image=info, sha256=hashlib.sha256(data).hexdigest())


def build_provider_request(rt: Runtime, provider: Provider, record: JobRecord) -> BaseModel:
    """The provider's validated request for a job; ``InvalidInput`` before any cost."""
    url = _source_url(rt, record)
    image_file = None
    if provider.max_url_chars is not None and len(url) > provider.max_url_chars:
        if not provider.accepts_upload:
            raise InvalidInput(f"source URL is {len(url)} characters; {provider.name} accepts "
                               f"at most {provider.max_url_chars}", provider.name)
        image_file, url = _source_bytes(rt, provider, record), None
    return provider.build_request(
        record.model, dict(record.options),
        image_url=url, image_file=image_file, image_info=record.source.image,
    )


def _source_url(rt: Runtime, record: JobRecord) -> str:
    """The URL handed to the provider: presigned for ``s3://``, else the checked http(s) URL.

    A presigned URL points to our own S3 endpoint (operator configuration, not user input)
    and is not put through the URL guard; it lives ``S3_PROVIDER_URL_TTL_S``.
    """
    uri = record.source.uri
    scheme = _URL_SCHEME.match(uri)
    if scheme and scheme.group(1).lower() == "s3":
        return rt.objects.presign_get(uri, rt.settings.s3_provider_url_ttl_s)
    if scheme and scheme.group(1).lower() in ("http", "https"):
        rt.guard.check(uri)  # resolved now, before the paid call
        return uri
    raise InvalidInput("job source is neither an http(s) URL nor an s3:// URI; a worker never "
                       "reads a local path")


def _source_bytes(rt: Runtime, provider: Provider, record: JobRecord) -> bytes:
    """The source's bytes for an upload, checked from the header before any charge."""
    limit = provider.max_upload_bytes or 30 * 1024 * 1024
    data = _read_s3(rt, provider, record.source.uri, limit) if record.source.uri.startswith(
        "s3://") else _download(rt, provider, record.source.uri, limit)
    check_source_image(inspect_image(data), data[:64], rt.settings.max_source_pixels)
    return data


def _read_s3(rt: Runtime, provider: Provider, uri: str, limit: int) -> bytes:
    with rt.objects.open_stream(uri) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise InvalidInput(f"source is over {limit} bytes, the most {provider.name} accepts",
                           provider.name)
    return data


def _download(rt: Runtime, provider: Provider, url: str, limit: int) -> bytes:
    return fetch_bytes(rt.http, provider.name, url, limit, rt.settings)  # an HTTP error: InvalidInput
