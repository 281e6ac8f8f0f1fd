"""What the sandbox sells: models, scales, prices and limits, in one place.

HitPaw documents the 16 models, their scale (the name's 1x/2x/4x suffix) and their limits,
but not their price. The sandbox's coin table (``consume_coins``) follows the one documented
figure, 75 coins for ``general_2x`` in the vendor's example, and grows with the scale;
generative models cost more:

=====================  ====  ====  ====
model family            1x    2x    4x
=====================  ====  ====  ====
enhance & denoise       50    75   100
generative (+portrait) 150   200   250
=====================  ====  ====  ====

PicWish documents its prices (type 0 Ultra HD: 5 credits, type 1 HD: 4) but not its
scale. The sandbox uses 4x for Ultra HD and 2x for HD, lowered when needed so that the
output's longer side stays within ``PICWISH_MAX_OUTPUT_SIDE_PX``.
"""

from __future__ import annotations

from dataclasses import dataclass

MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class HitPawModel:
    """One documented HitPaw model."""

    name: str
    scale: int  # output pixels per input pixel, per side
    generative: bool
    coins: int  # consume_coins charged at submit (sandbox price list)

    @property
    def max_input_mp(self) -> float:
        return 34.0 if self.generative else 70.0

    @property
    def max_output_mp(self) -> float:
        return 34.0 if self.generative else 432.0


_COINS = {(False, 1): 50, (False, 2): 75, (False, 4): 100,
          (True, 1): 150, (True, 2): 200, (True, 4): 250}
_NAMES = (
    "face_2x", "face_4x", "face_v2_2x", "face_v2_4x", "general_2x", "general_4x",
    "high_fidelity_2x", "high_fidelity_4x", "sharpen_denoise_1x", "detail_denoise_1x",
    "generative_portrait_1x", "generative_portrait_2x", "generative_portrait_4x",
    "generative_1x", "generative_2x", "generative_4x",
)


def _model(name: str) -> HitPawModel:
    scale = int(name.rsplit("_", 1)[1].rstrip("x"))
    generative = name.startswith("generative")
    return HitPawModel(name, scale, generative, _COINS[(generative, scale)])


#: The 16 documented models, by ``model_name``.
HITPAW_MODELS: dict[str, HitPawModel] = {name: _model(name) for name in _NAMES}

#: Documented ``extension`` values (with the leading dot, compared case-insensitively).
HITPAW_EXTENSIONS = frozenset(
    {".bmp", ".jpeg", ".jpg", ".png", ".jfif", ".tga", ".tiff", ".webp", ".heif"}
)


@dataclass(frozen=True)
class PicWishType:
    """One documented PicWish model type."""

    type: int
    label: str
    scale: int  # sandbox choice; the vendor does not document it
    credits: int  # documented


PICWISH_TYPES: dict[int, PicWishType] = {
    0: PicWishType(0, "Ultra HD", 4, 5),
    1: PicWishType(1, "HD", 2, 4),
}
PICWISH_MAX_URL_CHARS = 512
PICWISH_MAX_INPUT_SIDE_PX = 4096
PICWISH_MAX_OUTPUT_SIDE_PX = 8192  # sandbox choice: keeps rendering affordable
#: Pillow formats PicWish accepts (jpg, jpeg, bmp, png, webp, tiff, bitmap).
PICWISH_FORMATS = frozenset({"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF"})


def picwish_scale(kind: PicWishType, width: int, height: int) -> float:
    """The scale used for an input of ``width`` x ``height``: the type's, capped."""
    longest = max(width, height, 1)
    return min(float(kind.scale), PICWISH_MAX_OUTPUT_SIDE_PX / longest)
