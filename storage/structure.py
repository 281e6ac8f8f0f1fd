"""Whole-file structure checks of an image, fed as it streams: a result cut short is refused.

A header says what an image claims to be; only its end says it arrived whole. Each check
reads the bytes once, in the pieces they come in, keeping a few bytes between pieces (memory
stays flat whatever the size), and ``finish()`` raises ``ResultCheckFailed`` when the file
ended early or its structure is broken:

- JPEG: segments walked by their lengths (an EXIF thumbnail's own end marker is skipped with
  its segment), at least one scan (SOS), entropy-coded data followed to the end-of-image
  marker (EOI). Bytes after EOI are allowed (some cameras append data).
- PNG: signature, IHDR first, every chunk's CRC, at least one IDAT, IEND.
- WebP: the RIFF size matches the byte count.
- GIF: ends with the trailer byte. BMP: the size in its header matches the byte count.

Other formats get no structure check (the byte count is still checked against
Content-Length by the caller).
"""

from __future__ import annotations

import zlib
from typing import Protocol

from storage.errors import ResultCheckFailed


class StructureCheck(Protocol):
    """Fed every byte of a file in order; ``finish`` raises if the file was not whole."""

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


def structure_check(image_format: str) -> StructureCheck:
    """The check for Pillow's format name ("JPEG", "PNG"...); a byte counter for others."""
    checks = {"JPEG": JpegCheck, "MPO": JpegCheck, "PNG": PngCheck, "WEBP": WebpCheck,
              "GIF": GifCheck, "BMP": BmpCheck}
    return checks.get(image_format.upper(), NoCheck)()


def _broken(what: str) -> ResultCheckFailed:
    return ResultCheckFailed(f"the result is not a whole image: {what}")


class NoCheck:
    """Formats whose structure is not checked (TIFF, HEIF...)."""

    def feed(self, data: bytes) -> None:
        pass

    def finish(self) -> None:
        pass


class JpegCheck:
    """Walks JPEG markers and scans to EOI (ITU T.81 B.1)."""

    def __init__(self) -> None:
        self._pending = b""  # at most a few bytes carried to the next piece
        self._skip = 0  # bytes of a segment's payload still to pass over
        self._state = "soi"  # soi -> marker <-> scan ... -> end
        self._saw_scan = False

    def feed(self, data: bytes) -> None:
        if self._state == "end":
            return
        buf, pos = self._pending + data, 0
        while pos < len(buf) and self._state != "end":
            if self._skip:
                step = min(self._skip, len(buf) - pos)
                pos, self._skip = pos + step, self._skip - step
                continue
            step = self._step(buf, pos)
            if step is None:  # needs more bytes than this piece holds
                break
            pos = step
        self._pending = buf[pos:] if self._state != "end" else b""

    def _step(self, buf: bytes, pos: int) -> int | None:
        if self._state == "soi":
            if len(buf) - pos < 2:
                return None
            if buf[pos:pos + 2] != b"\xff\xd8":
                raise _broken("a JPEG that does not start with SOI")
            self._state = "marker"
            return pos + 2
        if self._state == "scan":
            return self._in_scan(buf, pos)
        return self._at_marker(buf, pos)

    def _in_scan(self, buf: bytes, pos: int) -> int | None:
        ff = buf.find(b"\xff", pos)
        if ff < 0:
            return len(buf)
        if ff + 1 >= len(buf):
            return ff if ff > pos else None  # keep the 0xFF for the next piece
        following = buf[ff + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:  # stuffed byte, restart marker
            return ff + 2
        if following == 0xFF:  # fill byte before a marker
            return ff + 1
        self._state = "marker"
        return ff

    def _at_marker(self, buf: bytes, pos: int) -> int | None:
        ff = buf.find(b"\xff", pos)
        if ff < 0:
            return len(buf)  # extraneous bytes between segments: libjpeg skips them too
        marker_at = ff
        while marker_at < len(buf) and buf[marker_at] == 0xFF:
            marker_at += 1
        if marker_at >= len(buf):  # keep the last 0xFF for the next piece
            return marker_at - 1 if marker_at - 1 > pos else None
        marker = buf[marker_at]
        if marker == 0xD9:
            if not self._saw_scan:
                raise _broken("a JPEG with no scan (SOS) before its end marker")
            self._state = "end"
            return marker_at + 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            return marker_at + 1
        if marker in (0x00, 0xD8):
            raise _broken(f"a JPEG with a stray marker 0xFF{marker:02X}")
        return self._segment(buf, pos, marker_at)

    def _segment(self, buf: bytes, pos: int, marker_at: int) -> int | None:
        """A marker with a length: pass over its payload; SOS starts a scan."""
        marker = buf[marker_at]
        if len(buf) - marker_at < 3:
            return marker_at - 1 if marker_at - 1 > pos else None
        length = int.from_bytes(buf[marker_at + 1:marker_at + 3], "big")
        if length < 2:
            raise _broken(f"a JPEG segment 0xFF{marker:02X} of length {length}")
        self._skip = length - 2
        if marker == 0xDA:
            self._state, self._saw_scan = "scan", True
        return marker_at + 3

    def finish(self) -> None:
        if self._state != "end":
            what = "scan data" if self._state == "scan" else "its segments"
            raise _broken(f"the JPEG ends in {what}, without its end-of-image marker "
                          "(cut short)")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PngCheck:
    """Walks PNG chunks, checking each CRC, to IEND (PNG spec 5.3)."""

    def __init__(self) -> None:
        self._pending = b""
        self._state = "signature"  # signature -> header -> data -> crc -> header ... -> end
        self._chunk_type = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._crc = 0
        self._chunks = 0
        self._saw_idat = False

    def feed(self, data: bytes) -> None:
        buf, pos = self._pending + data, 0
        while pos < len(buf) and self._state != "end":
            if self._state == "data":
                step = min(self._left, len(buf) - pos)
                self._crc = zlib.crc32(buf[pos:pos + step], self._crc)
                pos, self._left = pos + step, self._left - step
                if not self._left:
                    self._state = "crc"
                continue
            need = {"signature": 8, "header": 8, "crc": 4}[self._state]
            if len(buf) - pos < need:
                break
            self._fixed(buf[pos:pos + need])
            pos += need
        self._pending = buf[pos:] if self._state != "end" else b""

    def _fixed(self, part: bytes) -> None:
        if self._state == "signature":
            if part != _PNG_SIGNATURE:
                raise _broken("a PNG without its signature")
            self._state = "header"
        elif self._state == "header":
            self._header(part)
        else:
            if int.from_bytes(part, "big") != self._crc & 0xFFFFFFFF:
                raise _broken(f"PNG chunk {self._chunk_type!r} fails its CRC")
            self._state = "end" if self._chunk_type == b"IEND" else "header"

    def _header(self, part: bytes) -> None:
        length, kind = int.from_bytes(part[:4], "big"), part[4:]
        if length > 2**31 - 1 or not kind.isalpha():
            raise _broken(f"a PNG chunk header of no valid shape ({part.hex()})")
        if self._chunks == 0 and kind != b"IHDR":
            raise _broken("a PNG whose first chunk is not IHDR")
        if kind == b"IEND" and not self._saw_idat:
            raise _broken("a PNG with no image data (IDAT)")
        self._chunks += 1
        self._saw_idat = self._saw_idat or kind == b"IDAT"
        self._chunk_type, self._left, self._crc = kind, length, zlib.crc32(kind)
        self._state = "data" if length else "crc"

    def finish(self) -> None:
        if self._state != "end":
            raise _broken(f"the PNG ends inside {self._state} of chunk {self._chunk_type!r} "
                          "or before IEND (cut short)")


class _CountingCheck:
    """Counts bytes and keeps the first few (where these formats keep their size)."""

    def __init__(self) -> None:
        self.size_bytes = 0
        self.head = b""
        self.last = b""

    def feed(self, data: bytes) -> None:
        if len(self.head) < 16:
            self.head += data[:16 - len(self.head)]
        if data:
            self.last = data[-1:]
        self.size_bytes += len(data)


class WebpCheck(_CountingCheck):
    """The RIFF container's size field (bytes 4-8) is the file's size less 8."""

    def finish(self) -> None:
        if self.head[:4] != b"RIFF" or self.head[8:12] != b"WEBP":
            raise _broken("a WebP without its RIFF header")
        expected = int.from_bytes(self.head[4:8], "little") + 8
        if expected != self.size_bytes:
            raise _broken(f"the WebP's RIFF header says {expected} bytes, "
                          f"{self.size_bytes} came")


class GifCheck(_CountingCheck):
    """A GIF ends with its trailer byte, 0x3B."""

    def finish(self) -> None:
        if self.last != b"\x3b":
            raise _broken("the GIF ends without its trailer (cut short)")


class BmpCheck(_CountingCheck):
    """The BMP file header's size field (bytes 2-6), when set, is the file's size."""

    def finish(self) -> None:
        if self.head[:2] != b"BM" or len(self.head) < 6:
            raise _broken("a BMP without its file header")
        expected = int.from_bytes(self.head[2:6], "little")
        if expected and expected != self.size_bytes:
            raise _broken(f"the BMP's header says {expected} bytes, {self.size_bytes} came")
