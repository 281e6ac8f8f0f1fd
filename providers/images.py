"""Image facts from headers alone, and canonical format names.

``inspect_image`` opens an image lazily with Pillow: it reads the header for the format
and dimensions and never decodes pixels, so a 400 MP image costs a few kilobytes of I/O.
The format helpers map between Pillow's format names ("JPEG"), file extensions (".jpg")
and content types ("image/jpeg").
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from PIL import Image, UnidentifiedImageError

from providers.base import ImageInfo
from providers.errors import InvalidInput

#: Pillow format -> (canonical extension, content type).
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": (".jpg", "image/jpeg"),
    "MPO": (".jpg", "image/jpeg"),  # multi-picture JPEG from cameras: still a JPEG file
    "PNG": (".png", "image/png"),
    "WEBP": (".webp", "image/webp"),
    "BMP": (".bmp", "image/bmp"),
    "TIFF": (".tiff", "image/tiff"),
    "TGA": (".tga", "image/x-tga"),
    "HEIF": (".heif", "image/heif"),
    "GIF": (".gif", "image/gif"),
}

#: File extension -> Pillow format, for the spellings the vendors accept.
EXTENSIONS: dict[str, str] = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".bitmap": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".tga": "TGA",
    ".heif": "HEIF",
    ".heic": "HEIF",
    ".gif": "GIF",
}

#: Pillow format -> what its file starts with: (offset, bytes), any of them. Formats not
#: listed (TGA) have no signature. A file Pillow reads as one format but that does not
#: start like it is refused: polyglots (HTML or ZIP also "read" as an image) stop here.
SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "MPO": ((0, b"\xff\xd8\xff"),),
    "PNG": ((0, b"\x89PNG\r\n\x1a\n"),),
    "GIF": ((0, b"GIF87a"), (0, b"GIF89a")),
    "WEBP": ((8, b"WEBP"),),
    "BMP": ((0, b"BM"),),
    "TIFF": ((0, b"II*\x00"), (0, b"MM\x00*")),
    "HEIF": ((4, b"ftyp"),),
}

_BOMB_CHECK_LOCK = threading.Lock()


def check_source_image(info: ImageInfo, head: bytes, max_pixels: int) -> None:
    """Refuse a source image from its header: too many pixels, or not what it claims.

    Args:
        info: What ``inspect_image`` read from the header.
        head: The file's first bytes (at least 16).
        max_pixels: The largest width x height accepted (a decompression bomb, or a
            header lying about its size, is refused here, before any pixel is decoded).

    Raises:
        InvalidInput: Naming the rule.
    """
    pixels = info.width * info.height
    if pixels > max_pixels:
        raise InvalidInput(f"image is {info.width} x {info.height} = {pixels} pixels; at most "
                           f"{max_pixels} are accepted (MAX_SOURCE_PIXELS)")
    if info.format not in FORMATS:
        raise InvalidInput(f"image format {info.format} is not accepted")
    signatures = SIGNATURES.get(info.format)
    if signatures and not any(head[at:at + len(magic)] == magic for at, magic in signatures):
        raise InvalidInput(f"file is read as {info.format} but does not start like one "
                           "(a polyglot or a mislabelled file)")


def normalize_extension(extension: str) -> str:
    """Lower-case an extension and give it its dot: "JPG" -> ".jpg"."""
    extension = extension.strip().lower()
    return extension if extension.startswith(".") else "." + extension


def format_for_extension(extension: str) -> str | None:
    """The Pillow format for a file extension (".jpg" -> "JPEG"), or None if unknown."""
    return EXTENSIONS.get(normalize_extension(extension))


def extension_for_format(image_format: str) -> str | None:
    """The canonical extension for a Pillow format ("JPEG" -> ".jpg"), or None."""
    entry = FORMATS.get(image_format.upper())
    return entry[0] if entry else None


def content_type_for_format(image_format: str) -> str:
    """The content type for a Pillow format; ``application/octet-stream`` if unknown."""
    entry = FORMATS.get(image_format.upper())
    return entry[1] if entry else "application/octet-stream"


def extension_from_url(url: str) -> str | None:
    """The lower-case extension of a URL's path (query ignored), or None if it has none."""
    path = unquote(urlsplit(url).path)
    name = path.rsplit("/", 1)[-1]
    if "." not in name.strip("."):
        return None
    return normalize_extension(name.rsplit(".", 1)[-1])


def inspect_image(source: bytes | str | os.PathLike[str] | BinaryIO) -> ImageInfo:
    """Read an image's format and dimensions from its header, without decoding pixels.

    Args:
        source: The image bytes, a file path, or a binary file object (read from its
            start, and left at the position it had).

    Returns:
        The format, width, height and (when it can be known) size in bytes.

    Raises:
        InvalidInput: The data is not an image Pillow recognises, or the file is missing.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return _inspect_stream(io.BytesIO(data), len(data))
    if isinstance(source, str | os.PathLike):
        return _inspect_path(os.fspath(source))
    return _inspect_file_object(source)


def _inspect_path(path: str) -> ImageInfo:
    try:
        with open(path, "rb") as handle:
            return _inspect_stream(handle, os.fstat(handle.fileno()).st_size)
    except OSError as exc:
        raise InvalidInput(f"cannot read image file {path!r}: {exc.strerror or exc}") from exc


def _inspect_file_object(handle: BinaryIO) -> ImageInfo:
    try:
        position = handle.tell()
        size_bytes: int | None = handle.seek(0, os.SEEK_END)
    except (AttributeError, OSError):  # a pipe or socket: Pillow buffers it itself
        return _inspect_stream(handle, None)
    try:
        return _inspect_stream(handle, size_bytes)
    finally:
        handle.seek(position)


def _inspect_stream(handle: BinaryIO, size_bytes: int | None) -> ImageInfo:
    try:
        with _bomb_check_disabled(), Image.open(handle) as image:
            image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError as exc:  # its text names the BytesIO, not the image
        raise InvalidInput("not a recognised image: no known image format in its first "
                           "bytes (JPEG, PNG, WebP, BMP, GIF, TIFF...)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"not a recognised image: {exc}") from exc
    if not image_format or width <= 0 or height <= 0:
        raise InvalidInput(f"not a usable image: format {image_format}, {width} x {height}")
    return ImageInfo(format=image_format, width=width, height=height, size_bytes=size_bytes)


@contextmanager
def _bomb_check_disabled() -> Iterator[None]:
    """Turn off Pillow's decompression-bomb check while a header is read.

    The check guards decoding; a header read never decodes, and it must report the true
    size of a huge image so the caller can refuse it with a clear message. Pillow keeps the
    limit in a module global, so the change is serialised by a lock and undone at once;
    a thread decoding another image in that instant would run without the check.
    """
    with _BOMB_CHECK_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved
