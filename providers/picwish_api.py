"""What PicWish's scale-pro API documents: models, credits, limits, states, the request.

Source: /work/shared/provider-api/picwish-scale-pro.md and its reader's notes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from providers.base import ModelInfo
from providers.errors import InvalidInput, ProviderJobFailed
from providers.validation import FiniteNumber, VendorId, WholeNumber

PATH = "/api/tasks/visual/scale-pro"
MAX_URL_CHARS = 512
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
MAX_SIDE_PX = 4096
RESULT_TTL_S = 3600  # "The result image URL is valid for 1 hour."
PROCESSING_CAP_S = 30  # "processing is limited to 30 s" (state -8 past it)
SOURCE_FETCH_TIMEOUT_S = 10  # "10-second download timeout" for image_url
#: A ``sync=1`` submit answers only when the job is done: the read timeout must cover the
#: source fetch plus the processing cap, or the call times out after the job was charged.
SYNC_READ_TIMEOUT_S = PROCESSING_CAP_S + SOURCE_FETCH_TIMEOUT_S
MAX_RESULT_SIDE_PX = 65_536  # the output scale is undocumented: a generous sanity bound
MAX_RESULT_KB = 4 * 1024 * 1024  # 4 GiB
LATEST_TIMESTAMP_S = 7_258_118_400  # 2200-01-01: a later "timestamp" is not one
EXTENSIONS = (".jpg", ".jpeg", ".bmp", ".png", ".webp", ".tiff", ".bitmap")

#: Model name -> (the ``type`` field, credits per task). The output scale is undocumented.
MODEL_TYPES: dict[str, tuple[int, int]] = {"ultra_hd": (0, 5), "hd": (1, 4)}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(name=name, scale=1, category=name, cost=credits)
    for name, (_, credits) in MODEL_TYPES.items()
}
CREDITS_BY_TYPE = dict(MODEL_TYPES.values())

#: Failed ``data.state`` values -> (our error code, what the vendor's status page says).
FAILED_STATES: dict[int, tuple[str, str]] = {
    -1: (ProviderJobFailed.code, "processing failed"),
    -2: (ProviderJobFailed.code, "result upload failed"),
    -3: (InvalidInput.code, "could not download the source URL"),
    -5: (InvalidInput.code, "image too large"),
    -7: (InvalidInput.code, "invalid image"),
    -8: (ProviderJobFailed.code, "processing timed out (limit 30 s)"),
}
OPTIONS = frozenset({"sync", "return_type", "filename"})


class PicWishRequest(BaseModel):
    """The form of ``POST /api/tasks/visual/scale-pro`` (one of image_url / image_file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_url: str | None = Field(None, max_length=MAX_URL_CHARS)
    image_file: bytes | None = Field(None, repr=False, max_length=MAX_UPLOAD_BYTES)
    filename: str = "image"
    sync: Literal[0, 1] = 0
    type: Literal[0, 1] = 0
    return_type: Literal[1, 2] = 1

    @model_validator(mode="after")
    def _one_source(self) -> PicWishRequest:
        if (self.image_url is None) == (self.image_file is None):
            raise ValueError("exactly one of image_url and image_file is required")
        return self

    def multipart(self) -> dict[str, tuple[str | None, bytes | str]]:
        """The ``files=`` argument for requests: every field as a multipart part."""
        parts: dict[str, tuple[str | None, bytes | str]] = {
            "sync": (None, str(self.sync)),
            "type": (None, str(self.type)),
            "return_type": (None, str(self.return_type)),
        }
        if self.image_file is not None:
            parts["image_file"] = (self.filename, self.image_file)
        else:
            parts["image_url"] = (None, str(self.image_url))
        return parts


def numeric_state(value: Any) -> int | None:
    """A vendor number as an int (1, 1.0, "1"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def state_failure(state: int, detail: Any) -> tuple[str, str]:
    """(error code, message) for a negative ``data.state``, with the vendor's detail."""
    code, meaning = FAILED_STATES.get(state, (ProviderJobFailed.code, "task failed"))
    message = f"picwish: {meaning} (state {state})"
    if isinstance(detail, str) and detail:
        message += f": {detail[:200]}"
    return code, message


# --- Reading answers ---------------------------------------------------------------------


def _whole_state(value: Any) -> int | None:
    state = numeric_state(value)
    if value is not None and state is None:
        raise ValueError("must be a whole number")
    return state


def _sane_timestamp(value: float | None) -> float | None:
    if value is not None and (value / 1000 if value > 1e11 else value) > LATEST_TIMESTAMP_S:
        raise ValueError("is not a timestamp (after the year 2200)")
    return value


PixelCount = Annotated[WholeNumber, Field(ge=0, le=MAX_RESULT_SIDE_PX)]


class PicWishTask(BaseModel):
    """``data`` of a create or query answer, field by field as documented.

    Numbers are finite JSON numbers within bounds and timestamps fall before 2200 (seconds,
    or milliseconds above 1e11); a field of another type fails the model, which the client
    reports as ``ProtocolError``. Absent fields are None; unknown ones are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    task_id: VendorId | None = None
    state: int | None = None
    progress: FiniteNumber | None = None
    image: Annotated[str, Field(strict=True)] | None = None
    return_type: WholeNumber | None = None
    type: WholeNumber | None = None
    image_width: PixelCount | None = None
    image_height: PixelCount | None = None
    image_size_kb: Annotated[FiniteNumber, Field(ge=0, le=MAX_RESULT_KB)] | None = None
    out_format: Annotated[str, Field(strict=True, max_length=32)] | None = None
    completed_at: Annotated[FiniteNumber, Field(ge=0)] | None = None
    state_detail: Any = None

    _state = field_validator("state", mode="before")(_whole_state)
    _completed_at = field_validator("completed_at")(_sane_timestamp)

    @property
    def progress_percent(self) -> int | None:
        """Progress clamped to 0-100."""
        return None if self.progress is None else min(max(int(self.progress), 0), 100)

    @property
    def size_bytes(self) -> int | None:
        return None if self.image_size_kb is None else round(self.image_size_kb * 1024)

    def returns_base64(self, image: str) -> bool:
        """Whether ``image`` is the result itself (return_type 2) rather than its URL."""
        if self.return_type in (1, 2):
            return self.return_type == 2
        return not image.startswith(("http://", "https://"))

    def expires_at(self) -> datetime:
        """One hour after completion (or after now, when that is earlier or unknown)."""
        start = datetime.now(UTC)
        if self.completed_at:
            ts = self.completed_at
            start = min(datetime.fromtimestamp(ts / 1000 if ts > 1e11 else ts, UTC), start)
        return start + timedelta(seconds=RESULT_TTL_S)
