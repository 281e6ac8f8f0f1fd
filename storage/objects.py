"""The S3 object store: staged inputs, streamed results, presigned links.

Errors: botocore/boto3 errors are translated in one place, ``storage_errors()``, into
``StorageUnavailable`` (throttling, 5xx, timeouts, no connection) or ``StorageFailed``
(access denied, no such bucket or key, no credentials). Errors raised by reading a stream
the caller hands in are the caller's and pass through unchanged.

Results: ``stream_result`` checks the image header before anything is written, then feeds
the stream part by part into a multipart upload, checking the whole file's structure on
the way (a result cut short never completes its upload): memory stays near
``(max_concurrency + 3) x part_size_bytes`` whatever the size. After any failure no object it
wrote and no incomplete upload of its own remain at the key; what another call wrote or is
uploading at the same key is never touched (each call marks its upload and object, and
aborts only its own UploadId). If S3 is unreachable during that clean-up, or the process
dies mid-upload, the bucket lifecycle rule (``apply_lifecycle``:
AbortIncompleteMultipartUpload) is the backstop.

User metadata travels as HTTP headers, so only ASCII survives: keys are lower-cased, runs
outside ``[a-z0-9_-]`` become ``-``; values other than printable ASCII are stored RFC 2047
encoded (``=?utf-8?b?<base64>?=``, as S3 itself returns them) and ``head`` decodes them.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict

from providers.base import ImageInfo
from providers.errors import InvalidInput
from providers.images import content_type_for_format, inspect_image
from storage.errors import ResultCheckFailed, StorageFailed, StorageUnavailable
from storage.structure import StructureCheck, structure_check

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE_BYTES = 5 * MIB  # S3's smallest part (except the last)
MAX_COPY_BYTES = 5 * 1024 * MIB  # the largest object one CopyObject request copies
HEADER_PROBE_BYTES = (64 * 1024, 16 * MIB)  # the second only when big metadata (ICC, XMP) comes first
_READ_ALL_CHUNK_BYTES = MIB  # read(-1) pulls the source in pieces of this size
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "OperationAborted",
})
_OWNER_METADATA = "eq-upload-owner"  # marks which stream_result call wrote an object
_METADATA_KEY_UNSAFE = re.compile(r"[^a-z0-9_-]+")


class StoredObject(BaseModel):
    """An object in the store, as written by ``stream_result``/``put_*`` or read by ``head``."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    uri: str  # s3://bucket/key
    size_bytes: int
    content_type: str | None = None
    width: int | None = None  # known for results, from the image header
    height: int | None = None
    image_format: str | None = None  # Pillow's name: "JPEG", "PNG"...
    etag: str | None = None
    metadata: dict[str, str] = {}  # decoded, as read back by ``head``


@contextmanager
def storage_errors(action: str) -> Iterator[None]:
    """Translate botocore/boto3 errors raised inside the block into the project's tree."""
    try:
        yield
    except ClientError as exc:
        raise _from_client_error(exc, action) from exc
    except (BotoConnectionError, HTTPClientError, IncompleteReadError) as exc:
        # refused, timeouts, dropped (a body cut short of its Content-Length included)
        raise StorageUnavailable(f"{action}: {exc}") from exc
    except BotoCoreError as exc:  # no credentials, invalid parameters...
        raise StorageFailed(f"{action}: {exc}") from exc


def _from_client_error(exc: ClientError, action: str) -> StorageUnavailable | StorageFailed:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "") or None
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = f"{action}: {code or status} {error.get('Message') or ''}".strip()
    transient = code in _TRANSIENT_CODES or status == 429 or (status or 0) >= 500
    return (StorageUnavailable if transient else StorageFailed)(message, None, code, status)


def make_s3_client(endpoint_url: str | None = None, region: str = "us-east-1", *,
                   connect_timeout_s: float = 5.0, read_timeout_s: float = 60.0,
                   max_attempts: int = 5, max_pool_connections: int = 10) -> Any:
    """A thread-safe S3 client for one process (credentials from the standard AWS variables).

    Checksums are sent and checked only where S3 requires them (S3-compatible stores reject
    the boto3 >= 1.36 defaults), retries use botocore's standard mode, and a custom endpoint
    (MinIO, R2...) is addressed path-style.
    """
    config = Config(
        region_name=region, connect_timeout=connect_timeout_s, read_timeout=read_timeout_s,
        retries={"mode": "standard", "max_attempts": max_attempts},
        max_pool_connections=max_pool_connections,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if endpoint_url else "auto"})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key); raise ``InvalidInput`` otherwise."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise InvalidInput(f"not an s3://bucket/key URI: {uri!r}")
    return bucket, key


def encode_metadata(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """Make user metadata ASCII-safe (see the module docstring); ``None`` values are dropped."""
    encoded = {}
    for name, value in (metadata or {}).items():
        key = _METADATA_KEY_UNSAFE.sub("-", str(name).lower()).strip("-")
        if not key:
            raise InvalidInput(f"metadata key {name!r} has no usable character")
        if value is not None:
            encoded[key] = _encode_metadata_value(str(value))
    return encoded


def _encode_metadata_value(text: str) -> str:
    if text.isascii() and text.isprintable() and text == text.strip() and "=?" not in text:
        return text
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Reverse ``encode_metadata`` on values (RFC 2047 encoded words are decoded)."""
    decoded = {}
    for key, value in metadata.items():
        try:
            decoded[key] = str(make_header(decode_header(value))) if "=?" in value else value
        except (HeaderParseError, UnicodeDecodeError, ValueError):
            decoded[key] = value
    return decoded


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of stream (sources may return short reads)."""
    chunks: list[bytes] = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _probe_image(stream: BinaryIO) -> tuple[bytes, ImageInfo]:
    """Read the stream's header and identify the image; raise ``ResultCheckFailed`` if none."""
    header = b""
    for limit_bytes in HEADER_PROBE_BYTES:
        header += _read_up_to(stream, limit_bytes - len(header))
        with suppress(InvalidInput):  # not (yet) an image Pillow can read a header from
            return header, inspect_image(header)
        if len(header) < limit_bytes:
            break
    raise ResultCheckFailed(f"the result is not an image ({len(header)} bytes read)")


def _check_dimensions(info: ImageInfo, width: int | None, height: int | None) -> None:
    if (width is not None and info.width != width) or (height is not None and info.height != height):
        raise ResultCheckFailed(
            f"the result is {info.width}x{info.height}, expected {width or '?'}x{height or '?'}"
        )


class _CheckedReader:
    """Serves the probed header then the source, checking the total and the structure.

    Every byte goes through the format's ``StructureCheck`` as it passes; at the end of the
    stream the byte count must match and the structure must be whole (a JPEG cut mid-scan
    with a matching Content-Length fails here). An error raised from ``read`` fails the
    transfer, and s3transfer then aborts the multipart upload. ``close`` leaves the source
    open: boto3 may close what it uploads (boto3#929) and the source belongs to the caller.
    """

    def __init__(self, header: bytes, source: BinaryIO, expected_size: int | None,
                 check: StructureCheck,
                 on_progress: Callable[[int], None] | None = None) -> None:
        self._header = header
        self._source = source
        self._expected_size = expected_size
        self._check = check
        self._finished = False
        self._on_progress = on_progress
        self.size_bytes = 0
        self.at_eof = False

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_READ_ALL_CHUNK_BYTES), b""))
        data, self._header = self._header[:size], self._header[size:]
        data += _read_up_to(self._source, size - len(data))
        self.size_bytes += len(data)
        self.at_eof = self.at_eof or len(data) < size
        self._check_size()
        self._check.feed(data)
        if self.at_eof and not self._finished:
            self._finished = True
            self._check.finish()
        if self._on_progress is not None:
            self._on_progress(self.size_bytes)
        return data

    def _check_size(self) -> None:
        expected = self._expected_size
        if expected is None:
            return
        if self.size_bytes > expected or (self.at_eof and self.size_bytes != expected):
            more = "" if self.at_eof else "at least "
            raise ResultCheckFailed(f"the result has {more}{self.size_bytes} bytes, expected {expected}")

    def close(self) -> None:
        """Do nothing: the source stays open for its owner."""


class ObjectStore:
    """One bucket and key prefix. Thread-safe if the client is (boto3 clients are)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "",
                 part_size_bytes: int = 8 * MIB, max_concurrency: int = 2, *,
                 source_buckets: tuple[str, ...] = (), sse: str = "",
                 sse_kms_key_id: str | None = None) -> None:
        if part_size_bytes < MIN_PART_SIZE_BYTES:
            raise ValueError(f"part_size_bytes must be at least {MIN_PART_SIZE_BYTES}")
        prefix = prefix.lstrip("/")
        self.client = client
        self.bucket = bucket
        self.readable_buckets = frozenset((bucket, *source_buckets))  # s3:// sources may name
        self._encryption = _encryption_args(sse, sse_kms_key_id)
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.transfer_config = TransferConfig(
            multipart_threshold=part_size_bytes, multipart_chunksize=part_size_bytes,
            max_concurrency=max_concurrency, use_threads=max_concurrency > 1,
            preferred_transfer_client="classic")
        # Parts of a non-seekable stream s3transfer may read ahead (default 10): no more
        # than the threads can upload at once.
        self.transfer_config.max_in_memory_upload_chunks = max_concurrency
        self._upload_ids: dict[str, str] = {}  # stream_result owner mark -> its UploadId
        events = client.meta.events
        events.register("before-call.s3.CreateMultipartUpload", self._note_owner,
                        unique_id=f"eq-owner-{id(self)}")
        events.register("after-call.s3.CreateMultipartUpload", self._note_upload_id,
                        unique_id=f"eq-upload-id-{id(self)}")

    @classmethod
    def from_settings(cls, settings: Any, client: Any = None) -> ObjectStore:
        """A store configured by ``workers.settings.Settings`` (a new client unless given)."""
        client = client or make_s3_client(settings.s3_endpoint_url, settings.s3_region)
        return cls(client, settings.s3_bucket, settings.s3_prefix,
                   settings.s3_part_size_bytes, settings.s3_max_concurrency,
                   source_buckets=settings.s3_source_buckets, sse=settings.s3_sse,
                   sse_kms_key_id=settings.s3_sse_kms_key_id)

    parse_s3_uri = staticmethod(parse_s3_uri)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def result_key(self, job_id: str, extension: str) -> str:
        """The one key of a job's result: a retry overwrites it, never duplicates it."""
        return f"{self.prefix}{_file_name(job_id, extension)}"

    def input_key(self, job_id: str, extension: str) -> str:
        """The one key of a job's staged input."""
        return f"{self.prefix}inputs/{_file_name(job_id, extension)}"

    def is_staged_input(self, uri: str, job_id: str) -> bool:
        """True when ``uri`` is the input staged for ``job_id`` (see ``input_key``)."""
        if not uri.startswith(f"s3://{self.bucket}/"):
            return False
        key = parse_s3_uri(uri)[1]
        return key.startswith(f"{self.prefix}inputs/{job_id}.") and "/" not in key[
            len(f"{self.prefix}inputs/"):]

    def put_bytes(self, key: str, data: bytes, content_type: str,
                  metadata: Mapping[str, object] | None = None) -> StoredObject:
        """Store ``data`` at ``key`` in one request."""
        with storage_errors(f"put {self.uri(key)}"):
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, **self._extra_args(content_type, metadata))
        return self._stored(key, len(data), content_type, response.get("ETag"))

    def put_file(self, key: str, path: str | Path, content_type: str,
                 metadata: Mapping[str, object] | None = None) -> StoredObject:
        """Store a local file at ``key`` (multipart above the part size)."""
        with open(path, "rb") as file, storage_errors(f"upload {path} to {self.uri(key)}"):
            self.client.upload_fileobj(file, self.bucket, key, Config=self.transfer_config,
                                       ExtraArgs=self._extra_args(content_type, metadata))
        return self.head(key)

    def stream_result(self, key: str | Callable[[ImageInfo], str], stream: BinaryIO, *,
                      content_type: str | None = None,
                      metadata: Mapping[str, object] | None = None,
                      expected_size: int | None = None, expected_width: int | None = None,
                      expected_height: int | None = None,
                      on_progress: Callable[[int], None] | None = None) -> StoredObject:
        """Stream a result into ``key`` with bounded memory, checking it on the way.

        The image header is read and checked (format, dimensions) before anything is
        written; the file's structure is checked as it streams (``storage.structure``: a
        JPEG must reach its end marker, a PNG's chunks their CRCs and IEND...) and the byte
        count as the stream ends. ``stream`` is read to its end and never closed.

        Args:
            key: the object's key, or a function of the probed image giving it (so the
                extension follows what the bytes are, not what they were said to be).
            content_type: the object's type; by default the probed format's.
            on_progress: called with the bytes read so far after each read from ``stream``
                (a long store renews its lease there); what it raises aborts the upload.

        Raises:
            ResultCheckFailed: not an image, not a whole one (cut short, broken), or its
                dimensions or size differ from those given.
            StorageUnavailable, StorageFailed: S3 failed (see ``storage_errors``).
            Whatever ``stream.read`` or ``on_progress`` raise, unchanged.
        """
        header, info = _probe_image(stream)
        _check_dimensions(info, expected_width, expected_height)
        key = key(info) if callable(key) else key
        content_type = content_type or content_type_for_format(info.format)
        reader = _CheckedReader(header, stream, expected_size, structure_check(info.format),
                                on_progress)
        owner = uuid.uuid4().hex  # marks this call's upload and object (see _clean_up)
        metadata = {**(metadata or {}), _OWNER_METADATA: owner}
        completed = False
        try:
            with storage_errors(f"upload {self.uri(key)}"):
                self.client.upload_fileobj(reader, self.bucket, key, Config=self.transfer_config,
                                           ExtraArgs=self._extra_args(content_type, metadata))
            completed = True
            stored = self.head(key)
            if not reader.at_eof or stored.size_bytes != reader.size_bytes:
                raise ResultCheckFailed(
                    f"{self.uri(key)} holds {stored.size_bytes} bytes, {reader.size_bytes} were read")
        except BaseException:
            self._clean_up_failed_upload(key, owner, completed)
            raise
        finally:
            upload_id = self._upload_ids.pop(owner, None)
        log.info("stored %s: %d bytes, %s %dx%d%s", stored.uri, stored.size_bytes,
                 info.format, info.width, info.height,
                 f" (multipart {upload_id[:12]})" if upload_id else "")
        return stored.model_copy(
            update={"width": info.width, "height": info.height, "image_format": info.format})

    def _clean_up_failed_upload(self, key: str, owner: str, completed: bool) -> None:
        """Best effort: remove what THIS call left at ``key``; never raises.

        Only this call's own multipart upload is aborted (s3transfer usually did that
        already) and the object is deleted only while it is still the one this call wrote:
        another store's upload or object at the same key is never touched. An upload left
        by a crashed process is the lifecycle rule's (AbortIncompleteMultipartUpload).
        """
        try:
            if completed and self._owner_of(key) == owner:
                self.delete(key)
            upload_id = self._upload_ids.get(owner)
            if upload_id:
                with storage_errors(f"abort upload {upload_id[:12]} of {self.uri(key)}"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                       UploadId=upload_id)
        except StorageFailed as exc:
            if exc.vendor_code != "NoSuchUpload":  # s3transfer had aborted it: fine
                log.warning("could not clean up %s after a failed upload: %s", self.uri(key), exc)
        except StorageUnavailable as exc:
            log.warning("could not clean up %s after a failed upload: %s", self.uri(key), exc)

    def _owner_of(self, key: str) -> str | None:
        """The owner mark of the object at ``key`` (None if none or unreadable)."""
        try:
            with storage_errors(f"head {self.uri(key)}"):
                response = self.client.head_object(Bucket=self.bucket, Key=key)
        except (StorageFailed, StorageUnavailable):
            return None
        return response.get("Metadata", {}).get(_OWNER_METADATA)

    def _note_owner(self, params: dict, context: dict, **_: Any) -> None:
        """botocore ``before-call`` hook: carry a multipart upload's owner mark along."""
        owner = params.get("headers", {}).get(f"x-amz-meta-{_OWNER_METADATA}")
        if owner:
            context["eq_owner"] = owner

    def _note_upload_id(self, parsed: dict, context: dict, **_: Any) -> None:
        """botocore ``after-call`` hook: remember which UploadId a stream_result call owns."""
        owner = context.get("eq_owner")
        if owner and parsed.get("UploadId"):
            self._upload_ids[owner] = parsed["UploadId"]

    def lifecycle_rules(self, inputs_expire_days: int = 7,
                        abort_incomplete_days: int = 1) -> list[dict[str, Any]]:
        """The bucket lifecycle rules this store relies on as a backstop (S3's format).

        Staged inputs are deleted when their job ends; the first rule catches any whose
        deletion failed. Incomplete multipart uploads (a worker killed mid-store) are
        aborted by the second; ``stream_result`` aborts its own when it can.
        """
        return [
            {"ID": "enhance-inputs-expire", "Status": "Enabled",
             "Filter": {"Prefix": f"{self.prefix}inputs/"},
             "Expiration": {"Days": inputs_expire_days}},
            {"ID": "enhance-abort-incomplete-uploads", "Status": "Enabled",
             "Filter": {"Prefix": self.prefix},
             "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": abort_incomplete_days}},
        ]

    def apply_lifecycle(self, inputs_expire_days: int = 7,
                        abort_incomplete_days: int = 1) -> list[dict[str, Any]]:
        """Put ``lifecycle_rules`` on the bucket, keeping every rule of other owners.

        Returns the bucket's rules as written.
        """
        ours = self.lifecycle_rules(inputs_expire_days, abort_incomplete_days)
        ids = {rule["ID"] for rule in ours}
        with storage_errors(f"lifecycle of s3://{self.bucket}"):
            try:
                current = self.client.get_bucket_lifecycle_configuration(
                    Bucket=self.bucket).get("Rules", [])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                current = []
            rules = [r for r in current if r.get("ID") not in ids] + ours
            self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": rules})
        return rules

    def presign_get(self, uri_or_key: str, expires_s: int = 3600, *,
                    content_type: str | None = None,
                    content_disposition: str | None = None) -> str:
        """A URL that lets anyone GET the object for ``expires_s`` seconds.

        ``content_type`` and ``content_disposition`` are signed into the URL
        (``response-content-type``, ``response-content-disposition``): S3 answers the GET
        with those headers, whatever the object was stored with.
        """
        bucket, key = self._locate(uri_or_key)
        params = {"Bucket": bucket, "Key": key}
        if content_type:
            params["ResponseContentType"] = content_type
        if content_disposition:
            params["ResponseContentDisposition"] = content_disposition
        with storage_errors(f"presign s3://{bucket}/{key}"):
            return self.client.generate_presigned_url("get_object", Params=params,
                                                      ExpiresIn=expires_s)

    def head(self, uri_or_key: str) -> StoredObject:
        """The object's size, type, ETag and decoded metadata; ``StorageFailed`` (404) if none."""
        bucket, key = self._locate(uri_or_key)
        with storage_errors(f"head s3://{bucket}/{key}"):
            response = self.client.head_object(Bucket=bucket, Key=key)
        metadata = {k: v for k, v in response.get("Metadata", {}).items() if k != _OWNER_METADATA}
        return self._stored(key, response["ContentLength"], response.get("ContentType"),
                            response.get("ETag"), bucket=bucket,
                            metadata=decode_metadata(metadata))

    def exists(self, uri_or_key: str) -> bool:
        """True when the object exists."""
        try:
            self.head(uri_or_key)
        except StorageFailed as exc:
            if exc.http_status == 404:
                return False
            raise
        return True

    def copy(self, source: str, key: str, *, metadata: Mapping[str, object] | None = None,
             size_bytes: int | None = None, content_type: str | None = None) -> StoredObject:
        """Copy an object (an ``s3://`` URI or a key of this bucket) to ``key``, server-side.

        No byte passes through this process. The copy keeps the source's content type and
        gets ``metadata`` instead of the source's; it is its own object, so deleting either
        never touches the other. S3 copies up to 5 GiB in one request, atomically: a failed
        copy leaves nothing at ``key``. With ``size_bytes`` and ``content_type`` known (a
        job's recorded output), the copy is one request; otherwise the source is looked at
        first and copied only if unchanged since.

        Raises:
            StorageFailed: the source is gone (``http_status`` 404), changed between the
                look and the copy (412), or is over 5 GiB.
            StorageUnavailable: S3 throttled or could not be reached.
        """
        if size_bytes is None or content_type is None:
            src = self.head(source)
        else:
            bucket, src_key = self._locate(source)
            src = self._stored(src_key, size_bytes, content_type, None, bucket=bucket)
        if src.size_bytes > MAX_COPY_BYTES:
            raise StorageFailed(f"copy {src.uri}: {src.size_bytes} bytes is over the 5 GiB "
                                "a single copy request takes")
        extra = self._extra_args(src.content_type or "application/octet-stream", metadata)
        if src.etag:  # the object looked at, not one written over it since
            extra["CopySourceIfMatch"] = f'"{src.etag}"'
        copy_source = {"Bucket": src.bucket, "Key": src.key}
        with storage_errors(f"copy {src.uri} to {self.uri(key)}"):
            response = self.client.copy_object(
                Bucket=self.bucket, Key=key, CopySource=copy_source, MetadataDirective="REPLACE",
                **extra)
        etag = response.get("CopyObjectResult", {}).get("ETag")
        return self._stored(key, src.size_bytes, src.content_type, etag,
                            metadata=decode_metadata(extra["Metadata"]))

    def delete(self, uri_or_key: str) -> None:
        """Delete the object (no error if there is none)."""
        bucket, key = self._locate(uri_or_key)
        with storage_errors(f"delete s3://{bucket}/{key}"):
            self.client.delete_object(Bucket=bucket, Key=key)

    def open_stream(self, uri_or_key: str) -> ObjectStream:
        """A streaming reader of an ``s3://`` URI (any bucket) or a key of this bucket."""
        bucket, key = self._locate(uri_or_key)
        with storage_errors(f"get s3://{bucket}/{key}"):
            response = self.client.get_object(Bucket=bucket, Key=key)
        return ObjectStream(response["Body"], response["ContentLength"], f"s3://{bucket}/{key}")

    def check_readable(self, uri: str) -> tuple[str, str]:
        """(bucket, key) of an ``s3://`` URI in this bucket or an allowed source bucket.

        Raises:
            InvalidInput: Not an s3://bucket/key URI, or another bucket (the worker's
                credentials must not read objects a user merely names).
        """
        bucket, key = parse_s3_uri(uri)
        if bucket not in self.readable_buckets:
            raise InvalidInput(f"s3:// source refused: bucket {bucket!r} is neither S3_BUCKET "
                               "nor listed in S3_SOURCE_BUCKETS")
        return bucket, key

    def _locate(self, uri_or_key: str) -> tuple[str, str]:
        if uri_or_key.startswith("s3://"):
            return self.check_readable(uri_or_key)
        return self.bucket, uri_or_key

    def _extra_args(self, content_type: str, metadata: Mapping[str, object] | None) -> dict:
        # Objects are private (no ACL argument: the bucket's default, never public-read).
        return {"ContentType": content_type, "Metadata": encode_metadata(metadata),
                **self._encryption}

    def _stored(self, key: str, size_bytes: int, content_type: str | None, etag: str | None,
                bucket: str | None = None, **fields: Any) -> StoredObject:
        bucket = bucket or self.bucket
        return StoredObject(bucket=bucket, key=key, uri=f"s3://{bucket}/{key}",
                            size_bytes=size_bytes, content_type=content_type,
                            etag=(etag or "").strip('"') or None, **fields)


class ObjectStream:
    """A stored object's body, read in pieces; botocore errors come out translated."""

    def __init__(self, body: Any, size_bytes: int, uri: str) -> None:
        self._body = body
        self.size_bytes = size_bytes
        self.uri = uri

    def read(self, size: int | None = None) -> bytes:
        with storage_errors(f"read {self.uri}"):
            return self._body.read(size)

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _encryption_args(sse: str, kms_key_id: str | None) -> dict[str, str]:
    """``ExtraArgs`` for server-side encryption: none, ``AES256`` or ``aws:kms`` (+ key id)."""
    if sse not in ("", "AES256", "aws:kms"):
        raise ValueError(f"unknown server-side encryption {sse!r}")
    if not sse:
        return {}
    args = {"ServerSideEncryption": sse}
    if sse == "aws:kms" and kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def _file_name(job_id: str, extension: str) -> str:
    """``job-1`` and ``JPG`` or ``.jpg`` -> ``job-1.jpg``; ``InvalidInput`` if unsafe."""
    extension = extension.lower().lstrip(".")
    if not job_id or "/" in job_id or job_id in (".", "..") or not extension.isalnum():
        raise InvalidInput(f"not a job id and extension: {job_id!r}, {extension!r}")
    return f"{job_id}.{extension}"
