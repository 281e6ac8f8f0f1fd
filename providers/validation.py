"""Small checks both clients run in ``build_request``, before any money is spent.

Pydantic's ``ValidationError`` is translated to ``InvalidInput`` here, in one place, the
way ``providers.http`` translates ``requests`` errors.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from providers.errors import InvalidInput


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


def _describe(error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "request"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{field}: {message}"
