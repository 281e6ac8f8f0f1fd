"""The one small interface every provider client implements, and its normalised models.

A client speaks one vendor's HTTP API; the pipeline only sees this module's types:

- ``Provider.build_request`` turns (model, options, image) into the vendor's pydantic
  request and validates it locally, before any money is spent (raises ``InvalidInput``).
- ``Provider.submit`` sends it once and returns a ``Submission`` (job id, cost charged).
- ``Provider.query`` asks once for a job's state and returns a normalised ``JobStatus``.
- ``Provider.submit_not_taken`` says whether a failed submit proves the vendor did not
  take the request (only then may it be sent again without risking a second charge).

Errors are the classes of ``providers.errors``; no ``requests`` exception leaves a client.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from providers.errors import (
    EnhanceError,
    PermanentError,
    ProtocolError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)


class Phase(StrEnum):
    """Where a provider job stands, whatever the vendor calls it."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


class ImageInfo(BaseModel):
    """What we know of an image from its header alone (it is never decoded)."""

    format: str  # Pillow's format name, upper case: "JPEG", "PNG", "WEBP"...
    width: int
    height: int
    size_bytes: int | None = None

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1_000_000


class ModelInfo(BaseModel):
    """One model a provider offers."""

    name: str
    scale: int  # output pixels per input pixel, per side
    category: str  # e.g. "enhance", "generative", "ultra_hd"
    cost: float | None = None  # coins/credits per job, where documented


class JobStatus(BaseModel):
    """One answer to "how is job X doing?", normalised across providers."""

    model_config = ConfigDict(frozen=True)

    provider: str
    job_id: str
    phase: Phase
    raw_status: str  # the vendor's own status or state, kept for diagnosis
    progress: int | None = None  # 0-100 where the provider reports it
    result_url: str | None = None
    result_bytes: bytes | None = Field(default=None, repr=False)  # PicWish return_type=2
    result_expires_at: datetime | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None
    out_format: str | None = None
    cost: float | None = None
    error_code: str | None = None  # a providers.errors code, when phase is FAILED
    error_message: str | None = None


class Submission(BaseModel):
    """The provider's answer to a submit: the job it created and what it charged."""

    provider: str
    job_id: str
    cost: float | None = None
    status: JobStatus | None = None  # set when the provider answered synchronously


class Provider(ABC):
    """A client of one provider's API. One instance per process; not thread-safe."""

    name: ClassVar[str]
    #: The provider can fetch a source from a URL of at most this many characters.
    max_url_chars: ClassVar[int | None] = None
    #: The provider accepts the image bytes in the request itself (multipart upload).
    accepts_upload: ClassVar[bool] = False
    #: Largest upload accepted, in bytes, where ``accepts_upload``.
    max_upload_bytes: ClassVar[int | None] = None

    #: Every model this provider offers, by the name the pipeline uses.
    MODELS: ClassVar[dict[str, ModelInfo]]
    #: The model used when a request names none.
    DEFAULT_MODEL: ClassVar[str]
    #: HTTP statuses of a failed submit that prove the request was not taken: the server
    #: gave up waiting for it (408), refused it for the rate (429), or a gateway in front
    #: of the vendor could not hand it on (502, 503). 500, 504 and the rest may come after
    #: the vendor created (and charged) the job.
    SUBMIT_NOT_TAKEN_STATUSES: ClassVar[frozenset[int]] = frozenset({408, 429, 502, 503})

    @classmethod
    def submit_not_taken(cls, exc: EnhanceError) -> bool:
        """Whether a failed ``submit`` proves the vendor did not take the request.

        True for a refused or timed-out connection (nothing was sent), a 429, a 4xx
        refusal and the statuses in ``SUBMIT_NOT_TAKEN_STATUSES``. False (an unknown
        outcome: the job may exist and be charged) for no answer after sending, a broken
        answer, any other 5xx and a garbled success.
        """
        if isinstance(exc, RateLimited):
            return True
        if isinstance(exc, ProviderTimeout | ProtocolError):
            return False
        if isinstance(exc, PermanentError):  # a refusal says so with a 4xx
            return exc.http_status is not None and 400 <= exc.http_status <= 499
        if exc.http_status is None:  # connection refused / connect timeout: nothing sent
            return isinstance(exc, ProviderUnavailable)
        return exc.http_status in cls.SUBMIT_NOT_TAKEN_STATUSES

    #: Options that change only how the result is delivered, never the image itself.
    DELIVERY_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: What an option left out means, so ``{"exif": False}`` and ``{}`` fingerprint alike.
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def output_options(cls, options: dict[str, Any],
                       image_info: ImageInfo | None = None) -> dict[str, Any]:
        """The options that decide the output image, defaults filled in (for fingerprints).

        Every option not declared a delivery option counts: an option we know nothing of
        could change the result, so it keeps two jobs apart rather than merging them.
        """
        merged = {**cls.OPTION_DEFAULTS, **options}
        return {k: v for k, v in sorted(merged.items()) if k not in cls.DELIVERY_OPTIONS}

    @classmethod
    def models(cls) -> dict[str, ModelInfo]:
        """Every model this provider offers, by the name the pipeline uses."""
        return dict(cls.MODELS)

    @classmethod
    def default_model(cls) -> str:
        """The model used when a request names none."""
        return cls.DEFAULT_MODEL

    @abstractmethod
    def build_request(
        self,
        model: str | None,
        options: dict[str, Any],
        *,
        image_url: str | None = None,
        image_file: bytes | None = None,
        image_info: ImageInfo | None = None,
    ) -> BaseModel:
        """Build and validate the vendor request; raise ``InvalidInput`` naming the limit."""

    @abstractmethod
    def submit(self, request: BaseModel) -> Submission:
        """Send the request once. Never retried here: a submit is paid."""

    @abstractmethod
    def query(self, job_id: str) -> JobStatus:
        """Ask once for the job's state."""

    @abstractmethod
    def close(self) -> None:
        """Close the HTTP session."""

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
