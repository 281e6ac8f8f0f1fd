"""Sample source images, drawn with Pillow when the sandbox starts (nothing binary is committed).

=================  =========  ======================================================
name               size (px)  what it is
=================  =========  ======================================================
portrait.jpg       256x256    a face-like drawing; EXIF (Make, Model) and 72 DPI
product.png        320x240    an object on a transparent background (RGBA)
landscape.webp     300x200    a horizon
scan.bmp           200x150    a page of lines
broken.jpg         -          not an image at all (for failure paths)
=================  =========  ======================================================
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

#: EXIF tag numbers written into portrait.jpg.
EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110
SAMPLE_CAMERA = ("SandboxCam", "Model S")


def _portrait() -> Image.Image:
    img = Image.new("RGB", (256, 256), (90, 120, 160))
    draw = ImageDraw.Draw(img)
    draw.ellipse((64, 40, 192, 200), fill=(230, 190, 160))
    draw.ellipse((96, 96, 112, 112), fill=(40, 40, 40))
    draw.ellipse((144, 96, 160, 112), fill=(40, 40, 40))
    draw.arc((100, 130, 156, 170), 20, 160, fill=(150, 50, 50), width=4)
    return img


def _product() -> Image.Image:
    img = Image.new("RGBA", (320, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.rounded_rectangle((100, 40, 220, 200), radius=20, fill=(200, 40, 40, 255))
    draw.rectangle((140, 20, 180, 40), fill=(60, 60, 60, 255))
    return img


def _landscape() -> Image.Image:
    img = Image.new("RGB", (300, 200), (135, 206, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 120, 300, 200), fill=(34, 139, 34))
    draw.ellipse((220, 20, 260, 60), fill=(255, 215, 0))
    return img


def _scan() -> Image.Image:
    img = Image.new("RGB", (200, 150), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    for y in range(15, 150, 12):
        draw.line((15, y, 185, y), fill=(30, 30, 30), width=1)
    return img


def write_samples(directory: Path) -> list[str]:
    """Draw every sample into ``directory``; return their names."""
    directory.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    exif[EXIF_MAKE], exif[EXIF_MODEL] = SAMPLE_CAMERA
    _portrait().save(directory / "portrait.jpg", "JPEG", quality=90, dpi=(72, 72), exif=exif)
    _product().save(directory / "product.png", "PNG")
    _landscape().save(directory / "landscape.webp", "WEBP", quality=85)
    _scan().save(directory / "scan.bmp", "BMP")
    (directory / "broken.jpg").write_bytes(b"this is not an image\n" * 20)
    return sorted(path.name for path in directory.iterdir())
