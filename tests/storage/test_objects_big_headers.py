"""Results whose metadata before the frame header is large still store and check."""

from __future__ import annotations

import io
import struct

from PIL import Image

from storage.objects import ObjectStore
from tests.system import image_bytes


def jpeg_with_metadata(width: int, height: int, metadata_bytes: int) -> bytes:
    """A JPEG with ``metadata_bytes`` of APP15 segments between SOI and the frame header."""
    plain = image_bytes(width, height)
    segments = bytearray()
    while len(segments) < metadata_bytes:
        segments += b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)
    return plain[:2] + bytes(segments) + plain[2:]


def test_a_jpeg_with_megabytes_of_metadata_first_is_stored_and_checked(s3_client, s3_bucket):
    data = jpeg_with_metadata(64, 48, 3 * 1024 * 1024)
    store = ObjectStore(s3_client, s3_bucket, "r/", part_size_bytes=5 * 1024 * 1024)

    stored = store.stream_result("r/big.jpg", io.BytesIO(data), content_type="image/jpeg",
                                 expected_size=len(data), expected_width=64, expected_height=48)

    assert (stored.width, stored.height, stored.size_bytes) == (64, 48, len(data))
    body = s3_client.get_object(Bucket=s3_bucket, Key="r/big.jpg")["Body"].read()
    assert Image.open(io.BytesIO(body)).size == (64, 48)
