"""Stored objects are private, optionally encrypted; other buckets are not readable."""

from __future__ import annotations

import io
import uuid

import pytest

from providers.errors import InvalidInput
from storage.objects import ObjectStore
from tests.providers.conftest import image_bytes

MIB = 1024 * 1024
OWNER_ONLY = "FULL_CONTROL"


def owner_only(s3_client, bucket: str, key: str) -> bool:
    grants = s3_client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return [g["Permission"] for g in grants] == [OWNER_ONLY] and all(
        "URI" not in g["Grantee"] for g in grants)  # no AllUsers / AuthenticatedUsers


@pytest.mark.integration
@pytest.mark.parametrize(("sse", "kms_key", "expected"), [
    ("", None, None),
    ("AES256", None, "AES256"),
    ("aws:kms", "alias/enhance-results", "aws:kms"),
])
def test_every_write_is_private_and_encrypted_as_configured(s3_client, s3_bucket, sse, kms_key,
                                                             expected):
    sent: list[tuple[str, dict]] = []  # the headers of every write, as sent over HTTP
    s3_client.meta.events.register(
        "before-call.s3", lambda model, params, **_: sent.append((model.name, params["headers"])))
    store = ObjectStore(s3_client, s3_bucket, "enhanced/", part_size_bytes=5 * MIB, sse=sse,
                        sse_kms_key_id=kms_key)
    small = store.put_bytes("enhanced/a.png", image_bytes("PNG"), "image/png")
    big_data = image_bytes("PNG") + b"\0" * (11 * MIB)  # multipart: 3 parts
    store.stream_result("enhanced/b.png", io.BytesIO(big_data), content_type="image/png")
    writes = {name: headers for name, headers in sent
              if name in ("PutObject", "CreateMultipartUpload")}
    assert set(writes) == {"PutObject", "CreateMultipartUpload"}
    for headers in writes.values():
        assert not any(h.lower().startswith("x-amz-grant") or h.lower() == "x-amz-acl"
                       for h in headers)
        assert headers.get("x-amz-server-side-encryption") == expected
        assert headers.get("x-amz-server-side-encryption-aws-kms-key-id") == kms_key
    head = s3_client.head_object(Bucket=s3_bucket, Key="enhanced/b.png")
    assert head.get("ServerSideEncryption") == expected
    assert owner_only(s3_client, s3_bucket, small.key)  # moto keeps no ACL for multipart


def test_unknown_encryption_refused(s3_client):
    with pytest.raises(ValueError, match="rot13"):
        ObjectStore(s3_client, "bucket", sse="rot13")


@pytest.mark.integration
def test_only_the_configured_and_listed_buckets_are_readable(s3_client, s3_bucket):
    listed, other = f"src-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    for name in (listed, other):
        s3_client.create_bucket(Bucket=name)
        s3_client.put_object(Bucket=name, Key="k.png", Body=image_bytes("PNG"))
    store = ObjectStore(s3_client, s3_bucket, source_buckets=(listed,))
    assert store.open_stream(f"s3://{listed}/k.png").read()[:4] == b"\x89PNG"
    for call in (store.open_stream, store.presign_get, store.head, store.delete):
        with pytest.raises(InvalidInput, match=f"bucket '{other}'"):
            call(f"s3://{other}/k.png")
    assert s3_client.head_object(Bucket=other, Key="k.png")  # untouched
