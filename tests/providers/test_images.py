"""inspect_image reads headers only; the format helpers agree with each other."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image

from providers.errors import InvalidInput
from providers.images import (
    content_type_for_format,
    extension_for_format,
    extension_from_url,
    format_for_extension,
    inspect_image,
    normalize_extension,
)
from tests.providers.conftest import image_bytes, png_header_only


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "TGA"])
def test_bytes_of_every_format(fmt):
    data = image_bytes(fmt, (64, 48))
    info = inspect_image(data)
    assert (info.format, info.width, info.height) == (fmt, 64, 48)
    assert info.size_bytes == len(data)


def test_path_str_and_pathlike(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("PNG", (30, 20)))
    for source in (path, str(path)):
        info = inspect_image(source)
        assert (info.format, info.width, info.height) == ("PNG", 30, 20)
        assert info.size_bytes == path.stat().st_size


def test_file_object_position_restored_and_left_open():
    data = image_bytes("JPEG", (10, 12))
    handle = io.BytesIO(data)
    handle.seek(5)
    info = inspect_image(handle)
    assert (info.width, info.height, info.size_bytes) == (10, 12, len(data))
    assert handle.tell() == 5 and not handle.closed


class _Pipe(io.RawIOBase):
    """A non-seekable stream, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")


def test_non_seekable_stream_has_no_size():
    info = inspect_image(_Pipe(image_bytes("PNG", (7, 9))))
    assert (info.format, info.width, info.height, info.size_bytes) == ("PNG", 7, 9, None)


def test_huge_header_reported_without_bomb_error_or_decoding():
    data = png_header_only(40_000, 30_000)  # 1200 MP: far past Pillow's bomb limit
    limit_before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # DecompressionBombWarning would fail the test
        info = inspect_image(data)
    assert (info.width, info.height) == (40_000, 30_000)
    assert info.megapixels == 1200.0
    assert limit_before == Image.MAX_IMAGE_PIXELS  # the check is back on for everyone else


@pytest.mark.parametrize("data", [b"", b"hello world", b"%PDF-1.4 not an image", b"\x89PNG\r\n"])
def test_not_an_image_is_invalid_input(data):
    with pytest.raises(InvalidInput, match="not a recognised image"):
        inspect_image(data)


def test_missing_file_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="cannot read image file"):
        inspect_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    ("extension", "fmt", "canonical", "content_type"),
    [
        (".jpg", "JPEG", ".jpg", "image/jpeg"),
        ("JPEG", "JPEG", ".jpg", "image/jpeg"),
        (".jfif", "JPEG", ".jpg", "image/jpeg"),
        ("png", "PNG", ".png", "image/png"),
        (".webp", "WEBP", ".webp", "image/webp"),
        (".bmp", "BMP", ".bmp", "image/bmp"),
        (".bitmap", "BMP", ".bmp", "image/bmp"),
        (".tif", "TIFF", ".tiff", "image/tiff"),
        (".TIFF", "TIFF", ".tiff", "image/tiff"),
        (".tga", "TGA", ".tga", "image/x-tga"),
        (".heic", "HEIF", ".heif", "image/heif"),
    ],
)
def test_format_helpers(extension, fmt, canonical, content_type):
    assert format_for_extension(extension) == fmt
    assert extension_for_format(fmt) == canonical
    assert content_type_for_format(fmt.lower()) == content_type


def test_mpo_is_a_jpeg_file():
    assert extension_for_format("MPO") == ".jpg"
    assert content_type_for_format("MPO") == "image/jpeg"


def test_unknown_formats():
    assert format_for_extension(".psd") is None
    assert extension_for_format("PSD") is None
    assert content_type_for_format("PSD") == "application/octet-stream"


@pytest.mark.parametrize(
    ("url", "extension"),
    [
        ("https://bucket.s3.amazonaws.com/in/photo.JPG?X-Amz-Signature=abc.def", ".jpg"),
        ("https://cdn.example/a%20b/photo.tiff#frag", ".tiff"),
        ("https://cdn.example/image", None),
        ("https://cdn.example/", None),
        ("https://cdn.example/.hidden", None),
        ("portrait.webp", ".webp"),
    ],
)
def test_extension_from_url(url, extension):
    assert extension_from_url(url) == extension


def test_normalize_extension():
    assert normalize_extension(" JPG ") == ".jpg"
    assert normalize_extension(".Png") == ".png"
