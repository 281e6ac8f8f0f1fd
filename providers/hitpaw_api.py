"""What the HitPaw photo enhancer documents: models, limits, formats, codes, statuses.

The request model ``HitPawRequest`` serialises with the documented names (``DPI``).
Source: /work/shared/provider-api/hitpaw-photo-enhancer.md and its reader's notes.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from providers.base import ModelInfo
from providers.errors import (
    AuthFailed,
    EnhanceError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    ProviderJobFailed,
    ProviderUnavailable,
    RateLimited,
)
from providers.validation import FiniteNumber, VendorId

ENHANCE, GENERATIVE = "enhance", "generative"

#: Input / output limits in megapixels, per model category.
LIMITS_MP: dict[str, tuple[float, float]] = {ENHANCE: (70.0, 432.0), GENERATIVE: (34.0, 34.0)}

MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        *(
            ModelInfo(name=f"{family}_{scale}x", scale=scale, category=ENHANCE)
            for family in ("face", "face_v2", "general", "high_fidelity")
            for scale in (2, 4)
        ),
        ModelInfo(name="sharpen_denoise_1x", scale=1, category=ENHANCE),
        ModelInfo(name="detail_denoise_1x", scale=1, category=ENHANCE),
        *(
            ModelInfo(name=f"{family}_{scale}x", scale=scale, category=GENERATIVE)
            for family in ("generative_portrait", "generative")
            for scale in (1, 2, 4)
        ),
    )
}

#: The extensions HitPaw documents (same list in and out, for every model).
EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".jfif", ".tga", ".tiff", ".webp", ".heif")

_AUTH = (110400000, 100401000, 100403001, 100403002, 100400000)
#: HitPaw's own server errors (100500007 is "operation timeout"): the job may have run.
SERVER_ERROR_CODES = frozenset(range(100500000, 100500008))
_INVALID = (100400001, 100400002, 100403000, 110400005, *range(110400007, 110400012))
#: Every documented error_code, whether it comes with an HTTP error or in a 200 envelope.
HITPAW_ERRORS: dict[int, type[EnhanceError]] = {
    **dict.fromkeys(_AUTH, AuthFailed),
    **dict.fromkeys(_INVALID, InvalidInput),
    100429000: RateLimited,
    **dict.fromkeys(SERVER_ERROR_CODES, ProviderUnavailable),
    **dict.fromkeys((110402000, 110402001, 110402004), InsufficientCredits),
    110400002: NotFound,
    110400003: ProviderJobFailed,
}

IN_PROGRESS = frozenset(
    {"CONVERTING", "WAITING", "PENDING", "INPUT_PREPARING", "CONVERT_COMPLETED"}
    | {"OUTPUT_SAVING", "OUTPUT_SAVED"}
)
FAILED = frozenset({"ERROR", "ERROR_INTERRUPTION", "TIMEOUT", "CANCEL", "REJECT", "NSFW"})
OPTIONS = frozenset({"extension", "exif", "dpi"})
MAX_COINS = 1_000_000  # far above any documented price: more is not a price


class HitPawRequest(BaseModel):
    """The body of ``POST /api/photo-enhancer``; ``payload()`` uses the documented names."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    model_name: str
    img_url: str = Field(pattern=r"^https?://", min_length=8)
    extension: str = Field(pattern=r"^\.[a-z0-9]+$")
    exif: StrictBool = False
    dpi: StrictInt | None = Field(
        None, ge=1, validation_alias=AliasChoices("dpi", "DPI"), serialization_alias="DPI"
    )

    @model_validator(mode="after")
    def _known_model_without_generative_dpi(self) -> HitPawRequest:
        info = MODELS.get(self.model_name)
        if info is None:
            raise ValueError(f"unknown model {self.model_name!r}")
        if info.category == GENERATIVE and self.dpi is not None:
            object.__setattr__(self, "dpi", None)  # generative models ignore DPI: never send it
        return self

    def payload(self) -> dict[str, Any]:
        """The JSON body, with ``DPI`` spelt as documented and left out when unset."""
        return self.model_dump(by_alias=True, exclude_none=True)


def as_int(value: Any) -> int | None:
    """A vendor code as an int: 200, "200" -> 200; anything else -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def status_for(vendor_code: int | None, http_status: int) -> int | None:
    """The HTTP status an unknown code stands for: the response's, else the code's own.

    HitPaw's codes embed the status in digits 4-6 (``110402000`` -> 402); a short code
    in an envelope may itself be a status (``{"code": 500}``).
    """
    if http_status >= 400:
        return http_status
    if vendor_code is None:
        return None
    if 100_000_000 <= vendor_code <= 999_999_999:
        return vendor_code // 1000 % 1000
    return vendor_code if 400 <= vendor_code <= 599 else None


# --- Reading answers ---------------------------------------------------------------------


class HitPawSubmitted(BaseModel):
    """``data`` of a submit answer: the job's id and the coins charged (finite, >= 0).

    A field of another type fails the model, which the client reports as ``ProtocolError``
    before anything records the submission.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: VendorId
    consume_coins: Annotated[FiniteNumber, Field(ge=0, le=MAX_COINS)] | None = None


class HitPawTaskStatus(BaseModel):
    """``data`` of a task-status answer: the status word and, when done, the result URL."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: Annotated[str, Field(strict=True, max_length=64)]
    res_url: Annotated[str, Field(strict=True)] | None = None
