"""Small checks both clients run: on requests before any money is spent, on answers.

Pydantic's ``ValidationError`` on a request is translated to ``InvalidInput`` here, in one
place, the way ``providers.http`` translates ``requests`` errors. The field types below
check vendors' answers (the models in ``*_api.py``): a JSON number is a number (never a
bool or a string), finite and within bounds, so nothing downstream meets NaN, infinity or
a year-30000 timestamp; each client turns a failed answer model into ``ProtocolError``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError

from providers.errors import InvalidInput


def _json_number(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError("must be a JSON number")
    return value


#: A finite JSON number (no bool, no numeric string, no NaN/Infinity).
FiniteNumber = Annotated[float, BeforeValidator(_json_number), Field(allow_inf_nan=False)]
#: A whole JSON number (``1024`` or ``1024.0``), never a bool or a string.
WholeNumber = Annotated[int, BeforeValidator(_json_number)]
#: An id or name from the vendor: a non-empty string of sane length.
VendorId = Annotated[str, Field(strict=True, min_length=1, max_length=512)]


def check_options(provider: str, options: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse option names the provider does not take, so a typo is not silently ignored.

    Raises:
        InvalidInput: Naming the unknown options and the known ones.
    """
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidInput(
            f"{provider} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(sorted(known))}",
            provider,
        )


def format_mp(value_mp: float, limit_mp: float) -> str:
    """A megapixel count for a message, never rounded down onto the limit it exceeds."""
    text = f"{value_mp:.1f}"
    if float(text) <= limit_mp < value_mp:
        text = f"{value_mp:.6f}".rstrip("0")
    return text


@contextmanager
def pydantic_errors_as_invalid_input(provider: str) -> Iterator[None]:
    """Translate a pydantic ``ValidationError`` raised inside the block to ``InvalidInput``."""
    try:
        yield
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise InvalidInput(f"{provider}: invalid request: {problems}", provider) from exc


def vendor_message(message: Any, most_chars: int = 200) -> str:
    """The vendor's ``message`` for our own message: text or a number, cut short."""
    if isinstance(message, str | int | float) and not isinstance(message, bool) and message != "":
        return str(message)[:most_chars]
    return "no message"


def describe_answer_errors(exc: ValidationError, prefix: str = "data", most: int = 3) -> str:
    """A short account of why a provider answer failed its model (never its values)."""
    errors = exc.errors(include_url=False, include_input=False)
    text = "; ".join(_describe(error, prefix) for error in errors[:most])
    return text + (f" (and {len(errors) - most} more)" if len(errors) > most else "")


def _describe(error: Mapping[str, Any], prefix: str | None = None) -> str:
    field = ".".join(str(part) for part in (prefix, *error.get("loc", ())) if part) or "request"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{field}: {message}"
