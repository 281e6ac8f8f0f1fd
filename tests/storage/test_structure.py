"""storage.structure: whole files pass in any piece size; files cut short or broken do not."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image

from storage.errors import ResultCheckFailed
from storage.structure import structure_check


def picture(fmt: str, size: tuple[int, int] = (96, 64), **save: object) -> bytes:
    """A real, noisy image (so scans hold real entropy-coded data, stuffed 0xFF included)."""
    rng = random.Random(7)
    image = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def with_exif_thumbnail() -> bytes:
    """A JPEG whose APP1 segment carries a whole JPEG thumbnail, its own EOI included."""
    thumb = picture("JPEG", (16, 16))
    main = picture("JPEG")
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return main[:2] + app1 + main[2:]


WHOLE = {
    "jpeg": picture("JPEG"),
    "jpeg-progressive": picture("JPEG", progressive=True),
    "jpeg-restart-markers": picture("JPEG", restart_marker_blocks=1),
    "jpeg-exif-thumbnail": with_exif_thumbnail(),
    "png": picture("PNG"),
    "png-interlaced": picture("PNG", optimize=False, interlace=1),
    "webp": picture("WEBP"),
    "webp-lossless": picture("WEBP", lossless=True),
    "gif": picture("GIF"),
    "bmp": picture("BMP"),
}
FORMAT = {name: name.split("-")[0].upper() for name in WHOLE}


def run(fmt: str, data: bytes, piece: int) -> None:
    check = structure_check(fmt)
    for start in range(0, len(data), piece):
        check.feed(data[start:start + piece])
    check.finish()


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000, 10**9])
@pytest.mark.parametrize("name", WHOLE)
def test_whole_files_pass_in_any_piece_size(name, piece):
    run(FORMAT[name], WHOLE[name], piece)


@pytest.mark.parametrize("name", WHOLE)
def test_files_cut_short_are_refused_wherever_the_cut(name):
    data = WHOLE[name]
    cuts = sorted({1, 2, 8, 20, len(data) // 3, len(data) // 2, len(data) - 3, len(data) - 1})
    for cut in cuts:
        with pytest.raises(ResultCheckFailed, match="whole image"):
            run(FORMAT[name], data[:cut], 4096)


def test_a_jpeg_cut_mid_scan_is_refused_though_its_header_reads():
    data = WHOLE["jpeg"]
    cut = data[: len(data) * 2 // 3]
    Image.open(io.BytesIO(cut)).size  # noqa: B018 - the header alone still reads fine
    with pytest.raises(ResultCheckFailed, match="cut short"):
        run("JPEG", cut, 65536)


def test_a_jpeg_cut_inside_its_exif_thumbnail_is_not_fooled_by_the_thumbnail_end():
    data = WHOLE["jpeg-exif-thumbnail"]
    end_of_thumbnail = data.index(b"\xff\xd9") + 2
    with pytest.raises(ResultCheckFailed):
        run("JPEG", data[:end_of_thumbnail], 65536)


def test_bytes_after_a_jpeg_end_are_allowed():
    run("JPEG", WHOLE["jpeg"] + b"trailing camera data", 1000)


@pytest.mark.parametrize(
    ("data", "words"),
    [(b"GIF89a" + b"\x00" * 50, "SOI"),
     (b"\xff\xd8\xff\xd9", "no scan"),
     (b"\xff\xd8\xff\xd8", "stray marker"),
     (b"\xff\xd8\xff\xe0\x00\x01", "length 1")],
)
def test_broken_jpegs(data, words):
    with pytest.raises(ResultCheckFailed, match=words):
        run("JPEG", data, 3)


def test_a_png_with_a_flipped_bit_fails_its_crc():
    data = bytearray(WHOLE["png"])
    data[len(data) // 2] ^= 0x01
    with pytest.raises(ResultCheckFailed, match="CRC"):
        run("PNG", bytes(data), 4096)


def test_a_png_without_image_data_is_refused():
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    with pytest.raises(ResultCheckFailed, match="IDAT"):
        run("PNG", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""), 5)


def test_a_webp_longer_than_its_riff_size_is_refused():
    with pytest.raises(ResultCheckFailed, match="RIFF"):
        run("WEBP", WHOLE["webp"] + b"\x00\x00", 4096)


def test_formats_without_a_structure_check_pass_anything():
    run("TIFF", b"II*\x00 cut", 3)
