"""Real outputs with Pillow: inspect a source, scale or filter it, save it, pad it.

The output keeps the input's format (JPEG in, JPEG out...; formats Pillow cannot write
fall back to PNG). ``dpi`` is written where the format carries it (JPEG, PNG, TIFF, BMP);
without it the input's own DPI is kept. EXIF is copied only when asked.

Padding (``large_result_bytes``) grows a file while keeping it a valid image: a private
ancillary chunk in PNG, trailing bytes after the end of the image elsewhere (JPEG's EOI
included: metadata segments before the frame header would make any reader of the header
buffer the padding). It is written in 1 MiB pieces, never held in memory.
"""

from __future__ import annotations

import os
import struct
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFilter

PAD_CHUNK_BYTES = 1024 * 1024
_WRITABLE = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "BMP": "BMP",
             "TIFF": "TIFF", "TGA": "TGA"}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff",
               "TGA": "tga"}
_DPI_FORMATS = {"JPEG", "PNG", "TIFF", "BMP"}
_EXIF_FORMATS = {"JPEG", "PNG", "WEBP", "TIFF"}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "TGA"}
#: 1x models get a filter instead of a resize, so the output differs from the input.
FILTERS = {
    "sharpen_denoise_1x": (ImageFilter.MedianFilter(3), ImageFilter.SHARPEN),
    "detail_denoise_1x": (ImageFilter.SMOOTH_MORE, ImageFilter.DETAIL),
}
DEFAULT_FILTERS = (ImageFilter.SMOOTH, ImageFilter.EDGE_ENHANCE)


class SourceError(Exception):
    """The source is not an image Pillow can read."""


class TooManyPixels(SourceError):
    """The source declares more pixels than Pillow will open (over 2x its bomb limit)."""


@dataclass(frozen=True)
class SourceInfo:
    """A source image's header."""

    format: str
    width: int
    height: int
    size_bytes: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


@dataclass(frozen=True)
class RenderSpec:
    """What to make of a source."""

    scale: float
    model: str = ""  # picks the filter of a 1x model
    dpi: int | None = None
    keep_exif: bool = False
    pad_to_bytes: int | None = None


@dataclass(frozen=True)
class Output:
    """A rendered result on disk."""

    path: Path
    format: str
    extension: str
    width: int
    height: int
    size_bytes: int


def inspect(path: Path) -> SourceInfo:
    """Read the header of the image at ``path`` (raise ``SourceError`` if none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return SourceInfo(img.format or "", img.width, img.height, path.stat().st_size)
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"not a readable image: {exc}") from exc


def output_format(source_format: str) -> str:
    """The Pillow format a result of ``source_format`` is saved in."""
    return _WRITABLE.get(source_format.upper(), "PNG")


def extension_for(fmt: str) -> str:
    """The file extension (no dot) of Pillow format ``fmt``."""
    return _EXTENSIONS.get(fmt, "png")


def render(source: Path, spec: RenderSpec, out_dir: Path) -> Output:
    """Render ``source`` per ``spec`` into a new file under ``out_dir``."""
    try:
        with Image.open(source) as img:
            img.load()
            fmt = output_format(img.format or "")
            out = _transform(img, spec)
            path = _new_path(out_dir, extension_for(fmt))
            out.save(path, format=fmt, **_save_options(img, fmt, spec))
    except (OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"cannot render: {exc}") from exc
    if spec.pad_to_bytes:
        pad_file(path, fmt, spec.pad_to_bytes)
    return Output(path, fmt, extension_for(fmt), out.width, out.height, path.stat().st_size)


def _transform(img: Image.Image, spec: RenderSpec) -> Image.Image:
    work = img.convert("RGBA" if _has_alpha(img) else "RGB")
    if spec.scale == 1:
        for flt in FILTERS.get(spec.model, DEFAULT_FILTERS):
            work = _filtered(work, flt)
        return work
    size = (max(1, round(img.width * spec.scale)), max(1, round(img.height * spec.scale)))
    return work.resize(size, Image.Resampling.LANCZOS)


def _filtered(img: Image.Image, flt: ImageFilter.Filter) -> Image.Image:
    if img.mode != "RGBA":
        return img.filter(flt)
    rgb, alpha = img.convert("RGB").filter(flt), img.getchannel("A")
    rgb.putalpha(alpha)
    return rgb


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info


def _save_options(img: Image.Image, fmt: str, spec: RenderSpec) -> dict:
    options: dict = {}
    dpi = spec.dpi or img.info.get("dpi")
    if dpi and fmt in _DPI_FORMATS:
        options["dpi"] = (dpi, dpi) if isinstance(dpi, int) else tuple(round(v) for v in dpi)
    exif = img.info.get("exif")
    if spec.keep_exif and exif and fmt in _EXIF_FORMATS:
        options["exif"] = exif
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = 90
    return options


def _new_path(out_dir: Path, extension: str) -> Path:
    fd, name = tempfile.mkstemp(dir=out_dir, suffix=f".{extension}")
    os.close(fd)
    return Path(name)


def pad_file(path: Path, fmt: str, target_bytes: int) -> None:
    """Grow the image file at ``path`` to at least ``target_bytes``, keeping it valid."""
    missing = target_bytes - path.stat().st_size
    if missing <= 0:
        return
    if fmt == "PNG":
        _pad_png(path, missing)
    else:  # after JPEG's EOI as after any other format's end: decoders stop before it
        with path.open("ab") as fh:
            _write_zeros(fh, missing)


def _write_zeros(fh, count: int, crc: int | None = None) -> int:
    block = bytes(PAD_CHUNK_BYTES)
    while count > 0:
        piece = block[: min(count, PAD_CHUNK_BYTES)]
        fh.write(piece)
        if crc is not None:
            crc = zlib.crc32(piece, crc)
        count -= len(piece)
    return crc or 0


def _pad_png(path: Path, missing: int) -> None:
    """Insert a private ancillary ``saNd`` chunk of zeros before IEND."""
    iend = 12  # length + type + crc of the IEND chunk ending every PNG
    size = path.stat().st_size
    length = max(0, missing - 12)
    with path.open("r+b") as fh:
        fh.seek(size - iend)
        tail = fh.read(iend)
        fh.seek(size - iend)
        fh.write(struct.pack(">I", length) + b"saNd")
        crc = _write_zeros(fh, length, zlib.crc32(b"saNd"))
        fh.write(struct.pack(">I", crc & 0xFFFFFFFF) + tail)
