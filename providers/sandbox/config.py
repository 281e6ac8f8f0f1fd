"""The sandbox's one configuration object: timings, fault rates, balances, limits.

Every field has a safe default, so ``SandboxConfig()`` is a well-behaved provider pair
that answers like the documents say. Fault fields are fractions in ``[0, 1]`` of the API
requests (or jobs) they hit. The config can be patched at run time, in process
(``SandboxServer.configure``) or over HTTP (``POST /_sandbox/config``); each patch is
validated as a whole and swapped in atomically.

API keys are fields too, but they are never serialised (``GET /_sandbox/config`` does not
show them) and cannot be patched over HTTP.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The key the sandbox accepts for HitPaw when ``HITPAW_API_KEY`` is not set.
DEFAULT_HITPAW_KEY = "sandbox-hitpaw-key"
#: The key the sandbox accepts for PicWish when ``PICWISH_API_KEY`` is not set.
DEFAULT_PICWISH_KEY = "sandbox-picwish-key"

MalformedKind = Literal["truncated", "flat", "html", "empty"]
Fraction = float  # documentation alias: a probability in [0, 1]

#: Fields that ``POST /_sandbox/config`` refuses to change.
SECRET_FIELDS = frozenset({"hitpaw_key", "picwish_key"})


def _env_key(name: str, default: str) -> str:
    return os.environ.get(name) or default


class SandboxConfig(BaseModel):
    """How the sandbox behaves. All fields defaulted; see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- Keys (never serialised) -------------------------------------------------------
    hitpaw_key: str = Field(
        default_factory=lambda: _env_key("HITPAW_API_KEY", DEFAULT_HITPAW_KEY),
        exclude=True, repr=False,
    )
    picwish_key: str = Field(
        default_factory=lambda: _env_key("PICWISH_API_KEY", DEFAULT_PICWISH_KEY),
        exclude=True, repr=False,
    )

    # --- Jobs --------------------------------------------------------------------------
    processing_time_s: tuple[float, float] = (1.0, 5.0)  # uniform (min, max) per job
    seed: int | None = None  # seeds the one RNG behind timings and faults
    result_ttl_s: float = Field(3600.0, gt=0)  # result URLs answer 403 after this
    hitpaw_waiting_fraction: Fraction = Field(0.2, ge=0, le=1)  # WAITING before CONVERTING
    large_result_bytes: int | None = Field(None, ge=0)  # pad every result to this size
    max_render_mp: float = Field(100.0, gt=0)  # bigger outputs end in ERROR / state -1
    render_workers: int = Field(4, ge=1, le=64)  # job threads (fetch + render); read at start
    hitpaw_fetch_timeout_s: float = Field(30.0, gt=0)  # undocumented; generous
    picwish_fetch_timeout_s: float = Field(10.0, gt=0)  # documented: 10 s
    max_source_bytes: int = Field(200 * 1024 * 1024, gt=0)  # a bigger download is refused
    picwish_max_upload_bytes: int = Field(30 * 1024 * 1024, gt=0)  # documented: 30 MB
    sync_wait_max_s: float = Field(60.0, gt=0)  # PicWish sync=1 answers by then, done or not

    # --- Balances (None = unlimited); they go down as jobs are charged -------------------
    hitpaw_coins: int | None = None
    picwish_credits: int | None = None

    # --- Rate limits -------------------------------------------------------------------
    hitpaw_qps: float | None = Field(None, gt=0)  # unpublished by the vendor: off
    picwish_qps: float | None = Field(2.0, gt=0)  # the vendor's default per account
    retry_after_s: int | None = Field(1, ge=0)  # Retry-After of an injected 429; None: none

    # --- Faults ------------------------------------------------------------------------
    rate_429: Fraction = Field(0.0, ge=0, le=1)
    rate_5xx: Fraction = Field(0.0, ge=0, le=1)
    rate_job_failure: Fraction = Field(0.0, ge=0, le=1)
    rate_malformed: Fraction = Field(0.0, ge=0, le=1)
    malformed_kinds: tuple[MalformedKind, ...] = ("truncated", "flat", "html", "empty")
    rate_envelope_error: Fraction = Field(0.0, ge=0, le=1)  # HitPaw: error as HTTP 200 + code
    rate_slow: Fraction = Field(0.0, ge=0, le=1)
    slow_response_s: float = Field(0.0, ge=0)
    rate_cut_download: Fraction = Field(0.0, ge=0, le=1)  # result sent half, then dropped
    create_latency_s: tuple[float, float] = (0.0, 0.0)  # uniform delay of a submit's answer

    @field_validator("processing_time_s", "create_latency_s")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if low < 0 or high < low:
            raise ValueError("must be (min, max) with 0 <= min <= max")
        return value

    @field_validator("malformed_kinds")
    @classmethod
    def _some_kind(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one kind")
        return value

    def patched(self, **changes: Any) -> SandboxConfig:
        """A validated copy with ``changes`` applied (keys included)."""
        merged = {name: getattr(self, name) for name in type(self).model_fields}
        merged.update(changes)
        return type(self).model_validate(merged)

    def public(self) -> dict[str, Any]:
        """The JSON form shown by ``GET /_sandbox/config``: everything but the keys."""
        return self.model_dump(mode="json")
