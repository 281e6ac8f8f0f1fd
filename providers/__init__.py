"""Provider clients: the interface, the two vendors' clients, and the error tree.

Public names are re-exported here; ``PROVIDERS`` maps a provider name to its client class.
"""

from __future__ import annotations

from providers.base import ImageInfo, JobStatus, ModelInfo, Phase, Provider, Submission
from providers.errors import InvalidInput
from providers.hitpaw import HitPawClient
from providers.hitpaw_api import HITPAW_ERRORS, HitPawRequest
from providers.http import (
    ApiSession,
    error_class_for_status,
    map_requests_errors,
    parse_retry_after,
)
from providers.images import (
    content_type_for_format,
    extension_for_format,
    format_for_extension,
    inspect_image,
)
from providers.picwish import PicWishClient
from providers.picwish_api import PicWishRequest

#: Provider name -> client class.
PROVIDERS: dict[str, type[Provider]] = {"hitpaw": HitPawClient, "picwish": PicWishClient}


def get_provider_class(name: str) -> type[Provider]:
    """The client class of a provider.

    Raises:
        InvalidInput: No provider has that name.
    """
    try:
        return PROVIDERS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown provider {name!r}; providers: {', '.join(PROVIDERS)}"
        ) from None


__all__ = [
    "HITPAW_ERRORS",
    "PROVIDERS",
    "ApiSession",
    "HitPawClient",
    "HitPawRequest",
    "ImageInfo",
    "JobStatus",
    "ModelInfo",
    "Phase",
    "PicWishClient",
    "PicWishRequest",
    "Provider",
    "Submission",
    "content_type_for_format",
    "error_class_for_status",
    "extension_for_format",
    "format_for_extension",
    "get_provider_class",
    "inspect_image",
    "map_requests_errors",
    "parse_retry_after",
]
