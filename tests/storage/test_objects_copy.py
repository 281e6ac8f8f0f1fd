"""ObjectStore.copy: server-side copies against moto's S3 server over HTTP."""

from __future__ import annotations

import pytest

from providers.errors import InvalidInput
from storage.errors import StorageFailed
from storage.objects import ObjectStore, make_s3_client
from tests.storage.test_objects import real_png

MIB = 1024 * 1024


@pytest.fixture
def store(s3_endpoint, s3_bucket):
    return ObjectStore(make_s3_client(s3_endpoint, max_attempts=2), s3_bucket, "enhanced/",
                       part_size_bytes=5 * MIB)


def body(store, key):
    return store.client.get_object(Bucket=store.bucket, Key=key)["Body"].read()


def test_copy_is_its_own_object_with_new_metadata_and_the_same_bytes(store):
    data = real_png(30, 20)
    store.put_bytes("enhanced/a.png", data, "image/png", metadata={"job-id": "a"})

    copied = store.copy("enhanced/a.png", "enhanced/b.png",
                        metadata={"job-id": "b", "reused-from": "a"})

    assert (copied.key, copied.size_bytes, copied.content_type) == (
        "enhanced/b.png", len(data), "image/png")
    assert copied.metadata == {"job-id": "b", "reused-from": "a"}
    assert body(store, "enhanced/b.png") == data
    assert store.head("enhanced/b.png").metadata == {"job-id": "b", "reused-from": "a"}
    store.delete("enhanced/a.png")
    assert body(store, "enhanced/b.png") == data, "deleting the source leaves the copy whole"


def test_copy_takes_an_s3_uri_of_a_readable_bucket_only(s3_endpoint, s3_bucket, s3_client):
    s3_client.create_bucket(Bucket="other-bucket-copy")
    s3_client.put_object(Bucket="other-bucket-copy", Key="x.png", Body=real_png(8, 8),
                         ContentType="image/png")
    client = make_s3_client(s3_endpoint, max_attempts=2)
    closed = ObjectStore(client, s3_bucket, "enhanced/")
    opened = ObjectStore(client, s3_bucket, "enhanced/", source_buckets=("other-bucket-copy",))

    with pytest.raises(InvalidInput):
        closed.copy("s3://other-bucket-copy/x.png", "enhanced/x.png")
    assert not closed.exists("enhanced/x.png")
    copied = opened.copy("s3://other-bucket-copy/x.png", "enhanced/x.png")

    assert copied.uri == f"s3://{s3_bucket}/enhanced/x.png"
    assert body(opened, "enhanced/x.png") == real_png(8, 8)


def test_copy_of_a_missing_object_is_a_404_and_writes_nothing(store):
    with pytest.raises(StorageFailed) as caught:
        store.copy("enhanced/missing.png", "enhanced/c.png")

    assert caught.value.http_status == 404
    assert not store.exists("enhanced/c.png")


def test_a_copy_of_a_known_object_is_one_request_and_still_404s_when_it_is_gone(store):
    data = real_png(12, 10)
    store.put_bytes("enhanced/k.png", data, "image/png")
    calls = []
    store.client.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    copied = store.copy("enhanced/k.png", "enhanced/k2.png", size_bytes=len(data),
                        content_type="image/png")

    assert calls == ["CopyObject"]
    assert (copied.size_bytes, copied.content_type) == (len(data), "image/png")
    assert body(store, "enhanced/k2.png") == data
    store.delete("enhanced/k.png")
    with pytest.raises(StorageFailed) as caught:
        store.copy("enhanced/k.png", "enhanced/k3.png", size_bytes=len(data),
                   content_type="image/png")
    assert caught.value.http_status == 404
    assert not store.exists("enhanced/k3.png")
