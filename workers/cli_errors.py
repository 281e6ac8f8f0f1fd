"""What the ``enhance`` command prints when something fails, and the status it exits with.

Every command runs inside ``EnhanceGroup.invoke`` (``workers/cli.py``), which hands any
exception to ``failure_for``: a service that does not answer, a bad setting or an error of
the project's tree becomes one line naming what to check, and a documented exit status.
A traceback is printed only with ``enhance -v``. Commands registered on the group by
other modules get the same treatment.

Exit statuses (README, "CLI")::

    0   done (with --wait: the job succeeded)
    1   the job failed, or the request was refused (bad input, unknown job...)
    2   bad arguments or settings
    3   --wait gave up before the job ended
    4   a service does not answer or refuses us: Redis, the broker, S3, a provider
    130 interrupted (Ctrl-C); a submitted job carries on
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import click

from providers.errors import AuthFailed, EnhanceError, ProviderTimeout, ProviderUnavailable
from storage.errors import StorageFailed, StorageUnavailable

EXIT_FAILED = 1  # the job ended failed, or the request was refused
EXIT_USAGE = 2  # bad arguments or settings
EXIT_TIMEOUT = 3  # --wait gave up before the job ended
EXIT_UNREACHABLE = 4  # Redis, the broker, S3 or a provider does not answer or refuses us
EXIT_INTERRUPTED = 130  # Ctrl-C

_VALUE_ERROR = re.compile(r"^(Value|Assertion) error, ")
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
_REDIS_CONNECTING = re.compile(r"^Error -?\d+ connecting to \S+?\.? (\S.*)$")


class CliFailure(click.ClickException):
    """A failure already worded for a person, with the exit status it ends with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def safe_url(url: str | None) -> str:
    """``url`` without its user name and password, for messages."""
    if not url:
        return ""
    parts = urlsplit(url)
    if not parts.hostname:
        return parts._replace(netloc="").geturl()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def settings_failure(exc) -> CliFailure:
    """A pydantic ``ValidationError`` of the settings as lines naming each variable.

    A rule spanning several variables (a model validator) has no location of its own:
    the variables it names in its message are named instead.
    """
    from workers.settings import Settings

    lines = []
    for error in exc.errors():
        message = _VALUE_ERROR.sub("", error["msg"])
        names = [str(part).upper() for part in error["loc"]]
        if not names:
            found = {f: re.search(rf"\b{f}\b", message) for f in Settings.model_fields}
            names = [f.upper() for f, m in sorted(found.items(), key=lambda i: i[1] and
                                                  i[1].start() or 0) if m]
            for field in names:
                message = re.sub(rf"\b{field.lower()}\b", field, message)
        lines.append(f"  {', '.join(names) or '(settings)'}: {message}")
    return CliFailure("bad settings:\n" + "\n".join(lines), EXIT_USAGE)


def failure_for(exc: BaseException, settings) -> CliFailure | None:
    """The one-line failure for ``exc``, or None when it is not one we can word."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return settings_failure(exc)
    for test, word in _WORDINGS:
        if test(exc):
            return word(exc, settings)
    if isinstance(exc, EnhanceError):
        return CliFailure(f"{exc.code}: {strip_reprs(exc.message)}", EXIT_FAILED)
    return None


def _is_redis_down(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError)


def _is_broker_down(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError

    from tasks.errors import BrokerUnavailable

    return isinstance(exc, OperationalError | BrokerUnavailable)


def _redis_down(exc: BaseException, settings) -> CliFailure:
    if settings.redis_sentinels:
        where = f"through the Sentinels {settings.redis_sentinels} (REDIS_SENTINELS)"
    else:
        where = f"at {safe_url(settings.redis_url)} (REDIS_URL)"
    return _unreachable(f"the job store (Redis) does not answer {where}: {_reason(exc)}",
                        "Is Redis running there? (`enhance dev` runs a whole local stack)")


def _broker_down(exc: BaseException, settings) -> CliFailure:
    job_ids = getattr(exc, "job_ids", None)  # BrokerUnavailable: recorded, starts later
    check = "Is it running there?"
    if job_ids:
        check += (f" Job {job_ids[0]} is recorded and starts once it answers "
                  f"(enhance status {job_ids[0]}).")
    cause = exc.__cause__ if job_ids and exc.__cause__ else exc
    return _unreachable(f"the broker does not answer at {safe_url(settings.celery_broker_url)} "
                        f"(CELERY_BROKER_URL): {_reason(cause)}", check)


def _s3_down(exc: StorageUnavailable | StorageFailed, settings) -> CliFailure:
    where = safe_url(settings.s3_endpoint_url) or f"AWS S3 ({settings.s3_region})"
    if isinstance(exc, StorageUnavailable):
        reason = _reason(exc)
        if "Could not connect to the endpoint URL" in reason:  # botocore's, with the key's URL
            reason = "could not connect"
        return _unreachable(f"S3 does not answer at {where} (S3_ENDPOINT_URL): {reason}", "Is the endpoint running and reachable from here?")
    return _unreachable(f"S3 at {where} refused: {exc.message}",
                        f"Check that the bucket {settings.s3_bucket!r} (S3_BUCKET) exists and "
                        "the AWS credentials may use it")


def _is_storage_refusal(exc: BaseException) -> bool:
    """Credentials or bucket trouble: a 403, a missing bucket, no credentials at all."""
    if not isinstance(exc, StorageFailed):
        return False
    return exc.http_status in (401, 403) or exc.vendor_code in (
        "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"
    ) or "credentials" in exc.message.lower()


def _provider_down(exc: EnhanceError, settings) -> CliFailure:
    name = exc.provider or "provider"
    url = safe_url(getattr(settings, f"{exc.provider}_base_url", None)) if exc.provider else ""
    where = f" at {url} ({name.upper()}_BASE_URL)" if url else ""
    if isinstance(exc, AuthFailed):
        return _unreachable(f"{name} refused our key{where}: {exc.message}",
                            f"Check {name.upper()}_API_KEY")
    return _unreachable(f"{name} does not answer{where}: {exc.message}",
                        "Is the provider (or the sandbox) reachable from here?")


def _unreachable(what: str, check: str) -> CliFailure:
    return CliFailure(f"{what.rstrip('.')}. {check}", EXIT_UNREACHABLE)


def _reason(exc: BaseException) -> str:
    """The cause in a few words: the first line, never an object's repr."""
    lines = str(getattr(exc, "message", None) or exc).strip().splitlines()
    text = strip_reprs(lines[0] if lines else "")
    text = _REDIS_CONNECTING.sub(lambda m: m.group(1).lower(), text)  # redis-py's wording
    return text.strip().rstrip(".") or type(exc).__name__


def strip_reprs(text: str) -> str:
    """``text`` without object reprs such as ``<_io.BytesIO object at 0x7f...>``."""
    return _REPR.sub("an object", text)


_WORDINGS = (
    (_is_redis_down, _redis_down),
    (_is_broker_down, _broker_down),
    (lambda e: isinstance(e, StorageUnavailable), _s3_down),
    (_is_storage_refusal, _s3_down),
    (lambda e: isinstance(e, ProviderUnavailable | ProviderTimeout | AuthFailed), _provider_down),
)
