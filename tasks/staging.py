"""Getting a source image to a provider in a form it takes.

A producer's source is an http(s) URL, an ``s3://`` object, a local path, bytes or a
file object. Local bytes are read (header only) for the checks made before paying, then
staged into the bucket. At submit time the source becomes what the provider takes:

- HitPaw takes only a URL: an ``s3://`` source is passed as a presigned GET URL.
- PicWish takes a URL of at most 512 characters, or the file itself (at most 30 MB):
  a presigned URL is usually longer, so the bytes are uploaded instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from pydantic import BaseModel

from providers.base import Provider
from providers.download import fetch_bytes
from providers.errors import InvalidInput, ResultExpired
from providers.images import content_type_for_format, extension_for_format, inspect_image
from storage.jobs import JobRecord, JobSource
from workers.runtime import Runtime

Source = str | os.PathLike | bytes | BinaryIO


def stage_source(rt: Runtime, job_id: str, source: Source, filename: str | None = None) -> JobSource:
    """Describe ``source`` for a job record, uploading local bytes to the bucket."""
    if isinstance(source, str) and source.startswith(("http://", "https://", "s3://")):
        return JobSource(uri=source, filename=filename or source.split("?")[0].rsplit("/", 1)[-1])
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidInput(f"source {str(path)!r} is not a readable file")
        return _stage_bytes(rt, job_id, path.read_bytes(), filename or path.name)
    if isinstance(source, bytes):
        return _stage_bytes(rt, job_id, source, filename)
    if hasattr(source, "read"):
        return _stage_bytes(rt, job_id, source.read(), filename or getattr(source, "name", None))
    raise InvalidInput(f"unsupported source type {type(source).__name__}")


def _stage_bytes(rt: Runtime, job_id: str, data: bytes, filename: str | None) -> JobSource:
    info = inspect_image(data)  # InvalidInput when it is not an image
    content_type = content_type_for_format(info.format)
    key = rt.objects.input_key(job_id, extension_for_format(info.format) or ".img")
    rt.objects.put_bytes(key, data, content_type=content_type, metadata={"job-id": job_id})
    return JobSource(uri=f"s3://{rt.objects.bucket}/{key}", filename=filename and Path(filename).name,
                     content_type=content_type, image=info)


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
    if record.source.uri.startswith("s3://"):
        return rt.objects.presign_get(record.source.uri, rt.settings.s3_presign_ttl_s)
    return record.source.uri


def _source_bytes(rt: Runtime, provider: Provider, record: JobRecord) -> bytes:
    limit = provider.max_upload_bytes or 30 * 1024 * 1024
    if record.source.uri.startswith("s3://"):
        with rt.objects.open_stream(record.source.uri) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise InvalidInput(f"source is over {limit} bytes, the most {provider.name} "
                               "accepts", provider.name)
        return data
    try:
        return fetch_bytes(rt.http, provider.name, record.source.uri, limit, rt.settings)
    except ResultExpired as exc:
        raise InvalidInput(f"source URL could not be downloaded: {exc.message}",
                           provider.name) from exc


