"""Deployment settings: one class, read from the environment, that fails fast.

Every field is an environment variable of the same name in upper case
(``S3_BUCKET``, ``HITPAW_API_KEY``...). A bad value stops the process at start-up with a
message naming the variable. AWS credentials are not here: boto3 reads the standard
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE`` variables itself.

Tests build ``Settings(...)`` directly instead of touching the environment.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from providers.urlguard import UrlPolicy

HITPAW_DEFAULT_BASE_URL = "https://api-base.hitpaw.com"
PICWISH_DEFAULT_BASE_URL = "https://techhk.aoscdn.com"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # as enqueue checks a tenant
_BROKER_SCHEMES = ("redis://", "rediss://", "sentinel://", "amqp://", "amqps://", "pyamqp://")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
MIB = 1024 * 1024


class Settings(BaseSettings):
    """Everything an operator can set, with safe defaults where one exists."""

    # hide_input_in_errors: a refused value (an API key with a newline) is never echoed.
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True,
                                      hide_input_in_errors=True)

    # --- Where things live -------------------------------------------------------------
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    redis_url: str = "redis://127.0.0.1:6379/0"  # the job store (and the shared budgets)
    s3_bucket: str = "enhance-results"
    s3_prefix: str = "enhanced/"
    s3_endpoint_url: str | None = None  # MinIO, R2...; None means AWS (or AWS_ENDPOINT_URL)
    s3_region: str = "us-east-1"
    s3_presign_ttl_s: int = Field(3600, ge=60, le=7 * 24 * 3600)
    s3_part_size_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)  # S3's minimum
    s3_max_concurrency: int = Field(2, ge=1, le=16)  # bounds memory when streaming results

    # --- Security: what users' input may reach (SECURITY.md) ---------------------------
    allow_private_urls: bool = False  # loopback/private/CGNAT URLs may be fetched
    url_allowlist: Annotated[tuple[str, ...], NoDecode] = ()  # CIDRs, addresses, host names
    max_redirects: int = Field(3, ge=0, le=10)  # per download, each through the URL guard
    download_max_bytes: int = Field(1024 * MIB, ge=MIB)  # any result or source download
    s3_source_buckets: Annotated[tuple[str, ...], NoDecode] = ()  # besides S3_BUCKET
    local_source_max_bytes: int = Field(50 * MIB, ge=1)  # a local file given to enqueue
    max_source_pixels: int = Field(100_000_000, ge=1)  # refused from the header, unpaid
    s3_provider_url_ttl_s: int = Field(900, ge=60, le=3600)  # presigned URLs to providers
    s3_sse: Literal["", "AES256", "aws:kms"] = ""  # server-side encryption of every object
    s3_sse_kms_key_id: str | None = None  # with S3_SSE=aws:kms; None = the bucket's key
    metrics_bind: str = "127.0.0.1"  # `enhance metrics` address (0.0.0.0 opens it)

    # --- Providers ---------------------------------------------------------------------
    hitpaw_api_key: SecretStr | None = None
    hitpaw_base_url: str = HITPAW_DEFAULT_BASE_URL
    hitpaw_result_ttl_s: int = Field(24 * 3600, ge=60)  # undocumented; vendor FAQ says 8 days
    picwish_api_key: SecretStr | None = None
    picwish_base_url: str = PICWISH_DEFAULT_BASE_URL
    http_connect_timeout_s: float = Field(5.0, gt=0)
    http_read_timeout_s: float = Field(30.0, gt=0)

    # --- Provider answers: bounded, checked, unknown outcomes ------------------------
    http_deadline_s: float = Field(45.0, gt=0)  # one API call in all, however slow its bytes
    http_max_answer_bytes: int = Field(1024 * 1024, ge=4096)  # larger is protocol_error
    picwish_max_inline_answer_bytes: int = Field(48 * 1024 * 1024, ge=1024 * 1024)  # base64 results
    result_download_deadline_s: float = Field(600.0, gt=0)  # one result download in all
    # A failed submit that does not prove it was not taken (no answer, 500, 504...): fail
    # the job outcome_unknown (never pays twice) or send it again (may pay twice).
    unknown_submit_policy: Literal["fail", "resubmit"] = "fail"

    # --- Polling: a countdown per poll, never a sleep ----------------------------------
    hitpaw_poll_interval_s: float = Field(3.0, gt=0)  # vendor FAQ: every 2-5 s
    hitpaw_poll_max_interval_s: float = Field(15.0, gt=0)
    hitpaw_job_deadline_s: int = Field(3600, gt=0)  # CONVERTING can last over 15 min
    picwish_poll_interval_s: float = Field(1.0, gt=0)  # vendor samples: about 1 s
    picwish_poll_max_interval_s: float = Field(5.0, gt=0)
    picwish_job_deadline_s: int = Field(600, gt=0)  # processing is capped at 30 s
    poll_jitter: float = Field(0.2, ge=0, le=1)  # +/- this fraction of each countdown

    # --- Shared provider budgets (every worker on every host) --------------------------
    hitpaw_max_rps: float = Field(5.0, gt=0)  # unpublished; 429 tells us when it is less
    picwish_max_rps: float = Field(2.0, gt=0)  # the vendor's default QPS per account
    hitpaw_max_in_flight: int = Field(500, gt=0)
    picwish_max_in_flight: int = Field(200, gt=0)

    # --- Admission: who is sent to the provider next, and what it may cost -------------
    admission_batch_max: int = Field(50, ge=1, le=1000)  # submits one admission run sends
    tenant_max_in_flight: int | None = Field(None, gt=0)  # per tenant; None: provider cap only
    tenant_max_in_flight_overrides: str = ""  # "acme:200,b:10": caps of named tenants
    batch_share_every: int = Field(4, ge=2)  # 1 admission in N goes to batch when both wait
    queue_deadline_s: int = Field(2 * 24 * 3600, gt=0)  # a job not admitted by then fails
    hitpaw_daily_coin_limit: float | None = Field(None, ge=0)  # per UTC day; None: no cap
    picwish_daily_credit_limit: float | None = Field(None, ge=0)  # per UTC day; None: no cap
    hitpaw_tenant_daily_coin_limits: str = ""  # "acme:5000,b:300": per tenant per UTC day
    picwish_tenant_daily_credit_limits: str = ""  # "acme:400,b:20": per tenant per UTC day
    hitpaw_expected_coins: float = Field(250, gt=0)  # reserved before a price is learnt
    spend_cap_policy: Literal["wait", "fail"] = "wait"  # over a cap: next UTC day, or fail
    out_of_credit_probe_s: float = Field(600.0, gt=0)  # paused provider: one probe submit

    @field_validator("tenant_max_in_flight_overrides", "hitpaw_tenant_daily_coin_limits",
                     "picwish_tenant_daily_credit_limits")
    @classmethod
    def _tenant_map(cls, value: str) -> str:
        parse_tenant_map(value)
        return value

    def tenant_caps(self) -> dict[str, int]:
        """``TENANT_MAX_IN_FLIGHT_OVERRIDES`` as tenant -> cap."""
        return {k: int(v) for k, v in parse_tenant_map(self.tenant_max_in_flight_overrides).items()}

    def daily_limit(self, provider: str) -> float | None:
        """The provider's spend cap per UTC day, in its own unit (coins, credits)."""
        return {"hitpaw": self.hitpaw_daily_coin_limit,
                "picwish": self.picwish_daily_credit_limit}[provider]

    def tenant_daily_limits(self, provider: str) -> dict[str, float]:
        """Per-tenant spend caps per UTC day with ``provider``."""
        raw = {"hitpaw": self.hitpaw_tenant_daily_coin_limits,
               "picwish": self.picwish_tenant_daily_credit_limits}[provider]
        return parse_tenant_map(raw)

    # --- Reuse: never paying twice for the same image ----------------------------------
    reuse_scope: Literal["tenant", "global", "off"] = "tenant"  # who may reuse whose result
    reuse_follower_retries: int = Field(1, ge=0)  # failed leaders a flight outlives
    reuse_follower_check_s: float = Field(300.0, gt=0)  # followers look at their leader

    # --- Celery ------------------------------------------------------------------------
    visibility_timeout_s: int = Field(900, ge=10)  # > every countdown, << result lifetime
    max_countdown_s: float = Field(60.0, gt=0)  # ceiling on any scheduled poll or retry
    worker_eta_task_limit: int = Field(2000, gt=0)  # scheduled polls held per worker
    reconcile_interval_s: float = Field(5.0, gt=0)  # part of the recovery time after a crash
    stale_after_s: float = Field(120.0, gt=0)  # a step with no lease of its own, this overdue
    max_redeliveries: int = Field(3, ge=1)  # workers lost mid-store before a result is given up
    submit_max_retries: int = Field(8, ge=0)  # transient submit failures before failing
    worker_soft_shutdown_timeout_s: float = Field(60.0, ge=0)  # requeue time at stop
    metrics_port: int = Field(9808, ge=0, le=65535)  # job-level Prometheus metrics; 0 = off

    # --- Leases, retries and recovery (store / poll / reconcile) -----------------------
    worker_prefetch_multiplier: int = Field(4, ge=1)  # messages reserved per process
    store_prefetch_multiplier: int = Field(1, ge=1)  # ...on a worker of the store queue only
    store_lease_s: float = Field(30.0, ge=3)  # a store holds its job this long, renewed
    store_retry_window_s: int = Field(3600, ge=60)  # retry a store this long if no expiry
    # A scheduled poll or admission run not started this long after it was due is taken
    # for lost (its worker died holding the countdown) and re-driven; a started poll holds
    # its job for its call's timeouts plus this.
    poll_grace_s: float = Field(10.0, gt=0)
    # A submit's claim holds its job this long, renewed every third of it while the paid
    # call runs: a worker killed mid-call leaves its job this long (then outcome_unknown).
    submit_lease_s: float = Field(20.0, ge=3)
    # A submit claim taken before SUBMIT_LEASE_S existed holds its job for one paid call
    # (HTTP_CONNECT_TIMEOUT_S + HTTP_DEADLINE_S) plus this; then it is lost.
    lease_grace_s: float = Field(2.0, gt=0, le=60)
    # An admitted job whose submit has not claimed it this long, and whose message is no
    # longer waiting in the submit queue, lost that message with its worker: sent again.
    submit_lost_after_s: float = Field(15.0, gt=0)
    # Admitted jobs whose submit has not yet claimed them, per provider, at most: the rest
    # wait in admission, so the submit queue stays short (a re-sent submit is not stuck
    # behind minutes of it, and tenants' turns are not decided long before they run).
    admit_ahead: int = Field(32, ge=1)
    poll_protocol_retries: int = Field(3, ge=0)  # garbled poll answers asked again in a row
    lifecycle_inputs_expire_days: int = Field(7, ge=1)  # backstop for staged inputs
    lifecycle_abort_incomplete_days: int = Field(1, ge=1)  # backstop for lost uploads

    # --- Webhooks and on_done callbacks (tasks.notify; README "Webhooks and callbacks") --
    # Standard Webhooks secret(s), "whsec_<base64>"; two, space-separated, while rotating
    # (every delivery is then signed with both). Required before a job may ask for a webhook.
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(10.0, gt=0)  # one delivery's answer, in all
    webhook_retry_base_s: float = Field(5.0, gt=0)  # first retry; each later one x4...
    webhook_retry_max_interval_s: float = Field(3600.0, gt=0)  # ...up to this apart
    webhook_retry_window_s: float = Field(24 * 3600.0, gt=0)  # retried this long after the end
    notify_lost_after_s: float = Field(60.0, gt=0)  # a notify run this overdue is sent again

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _webhook_secrets(cls, value: object) -> object:
        """One or two ``whsec_`` secrets of base64 bytes; the value is never echoed."""
        plain = _secret_text(value)
        if plain is None:
            return value
        secrets = plain.split()
        if not secrets:
            return None
        if len(secrets) > 2:
            raise ValueError("holds more than two secrets (two while rotating); not shown")
        for secret in secrets:
            if not secret.startswith("whsec_") or not _is_base64(secret[6:]):
                raise ValueError("each secret must be whsec_ followed by base64 bytes "
                                 "(Standard Webhooks); the value is not shown")
        return " ".join(secrets)

    # --- Logs --------------------------------------------------------------------------
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"

    # --- Broker and job-store Redis faults ---------------------------------------------
    # Reconnection attempts (2 s, 4 s ... 30 s apart) before a worker that lost its broker
    # gives up and exits non-zero for its supervisor to restart it; 20 is about 6.5 min.
    broker_connection_max_retries: int = Field(20, ge=1)
    # Sentinels ("host:port,host:port") watching the job store's primary: the job store
    # then connects to whichever node they name (REDIS_URL gives only database and login).
    redis_sentinels: str | None = None
    redis_sentinel_master: str = "mymaster"
    # The broker takes Sentinel as CELERY_BROKER_URL=sentinel://h1:26379;sentinel://h2:26379
    # under this master name (default: REDIS_SENTINEL_MASTER).
    broker_sentinel_master: str | None = None
    # How a submit's claim is made durable before the paid call: none (trust Redis'
    # appendfsync), wait (WAIT for CLAIM_WAIT_REPLICAS replicas) or fsync (the job store
    # runs appendfsync always; checked at start).
    claim_durability: Literal["none", "wait", "fsync"] = "none"
    claim_wait_replicas: int = Field(1, ge=1)
    claim_wait_timeout_ms: int = Field(100, ge=1, le=10_000)

    @field_validator("celery_broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if not value.startswith(_BROKER_SCHEMES):
            raise ValueError(f"must start with one of {', '.join(_BROKER_SCHEMES)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_list(cls, value: str | None) -> str | None:
        if not value:
            return None
        for item in value.split(","):
            host, _, port = item.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("must be host:port[,host:port...]")
        return value

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_RE.match(value):
            raise ValueError("must be 3-63 lower-case letters, digits, dots or hyphens")
        return value

    @field_validator("s3_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"

    @field_validator("s3_endpoint_url", "hitpaw_base_url", "picwish_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("url_allowlist", "s3_source_buckets", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("url_allowlist")
    @classmethod
    def _allowlist(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        UrlPolicy.parse(False, value)  # ValueError naming the bad entry
        return value

    @field_validator("s3_source_buckets")
    @classmethod
    def _buckets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _BUCKET_RE.match(name):
                raise ValueError(f"{name!r} is not a bucket name")
        return value

    @field_validator("hitpaw_api_key", "picwish_api_key", mode="before")
    @classmethod
    def _api_key(cls, value: object) -> object:
        """Strip surrounding whitespace; refuse control characters, never echoing the key."""
        plain = _secret_text(value)
        if plain is None:
            return value
        plain = plain.strip()
        if _CONTROL_CHARS.search(plain):
            raise ValueError("contains a control character (a newline or tab inside the key?); "
                             "the value is not shown")
        return plain or None

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value

    @model_validator(mode="after")
    def _countdowns_fit(self) -> Settings:
        if self.max_countdown_s * 4 > self.visibility_timeout_s:
            raise ValueError(
                "max_countdown_s must be at most a quarter of visibility_timeout_s, or Redis "
                "delivers scheduled tasks twice"
            )
        if self.s3_sse_kms_key_id and self.s3_sse != "aws:kms":
            raise ValueError("s3_sse_kms_key_id needs s3_sse=aws:kms")
        if self.store_lease_s * 2 > self.visibility_timeout_s:
            raise ValueError("store_lease_s must be at most half of visibility_timeout_s")
        if self.visibility_timeout_s >= 3600:
            raise ValueError("visibility_timeout_s must stay under the 1 hour result lifetime")
        return self

    @property
    def step_lease_s(self) -> float:
        """The paid call's longest (connect + overall deadline) plus ``LEASE_GRACE_S``: how
        long a submit claim taken before ``SUBMIT_LEASE_S`` existed holds its job."""
        return self.http_connect_timeout_s + self.http_deadline_s + self.lease_grace_s

    @model_validator(mode="after")
    def _answers_fit(self) -> Settings:
        if self.http_deadline_s < self.http_read_timeout_s:
            raise ValueError("http_deadline_s must be at least http_read_timeout_s")
        return self


def parse_tenant_map(value: str) -> dict[str, float]:
    """``"acme:200,b:10"`` as ``{"acme": 200.0, "b": 10.0}``; raises ValueError when malformed."""
    result: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        tenant, sep, number = item.rpartition(":")
        if not sep or not TENANT_RE.fullmatch(tenant):
            raise ValueError(f"{item!r}: expected tenant:number, e.g. acme:200")
        try:
            result[tenant] = float(number)
        except ValueError:
            raise ValueError(f"{item!r}: {number!r} is not a number") from None
        if result[tenant] < 0:
            raise ValueError(f"{item!r}: must not be negative")
    return result


def _secret_text(value: object) -> str | None:
    """The text of a secret setting given as a str or a SecretStr; None for anything else."""
    plain = value.get_secret_value() if isinstance(value, SecretStr) else value
    return plain if isinstance(plain, str) else None


def _is_base64(text: str) -> bool:
    try:
        return len(base64.b64decode(text + "=" * (-len(text) % 4), validate=True)) >= 16
    except (binascii.Error, ValueError):
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
