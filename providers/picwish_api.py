"""What PicWish's scale-pro API documents: models, credits, limits, states, the request.

Source: /work/shared/provider-api/picwish-scale-pro.md and its reader's notes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from providers.base import ModelInfo
from providers.errors import InvalidInput, ProviderJobFailed

PATH = "/api/tasks/visual/scale-pro"
MAX_URL_CHARS = 512
MAX_UPLOAD_BYTES = 30 * 1024 * 1024
MAX_SIDE_PX = 4096
RESULT_TTL_S = 3600  # "The result image URL is valid for 1 hour."
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


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_or_none(value: Any) -> int | None:
    return int(value) if is_number(value) else None


def progress_percent(value: Any) -> int | None:
    return min(max(int(value), 0), 100) if is_number(value) else None


def returns_base64(return_type: Any, image: str) -> bool:
    if return_type in (1, 2):
        return return_type == 2
    return not image.startswith(("http://", "https://"))


def expires_at(completed_at: Any) -> datetime:
    """One hour after completion (vendor timestamps are seconds, or milliseconds)."""
    start = datetime.now(UTC)
    if is_number(completed_at) and completed_at > 0:
        seconds = completed_at / 1000 if completed_at > 1e11 else completed_at
        start = min(datetime.fromtimestamp(seconds, UTC), start)
    return start + timedelta(seconds=RESULT_TTL_S)
