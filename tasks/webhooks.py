"""Standard Webhooks: signing a delivery (``tasks.notify``) and verifying one (receivers).

A delivery is signed with HMAC-SHA256 over ``"<webhook-id>.<webhook-timestamp>.<body>"``,
keyed with the bytes of a ``whsec_<base64>`` secret, and sent as ``webhook-signature:
v1,<base64>``; while ``WEBHOOK_SECRET`` holds two secrets (a rotation) the header carries
one signature per secret, space-separated, as the spec allows. The ``standardwebhooks``
package does the signing and the checking (timestamp within 5 minutes, constant-time
comparison); it takes one secret at a time, so rotation is done here.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from providers.errors import InvalidInput, PermanentError
from workers.runtime import get_runtime


class WebhookNotConfigured(PermanentError):
    """A job asked for a webhook while ``WEBHOOK_SECRET`` is not set (a deployment error)."""

    code = "webhook_not_configured"


class WebhookVerificationFailed(InvalidInput):
    """A delivery's headers, timestamp or signature do not verify: answer it with a 400."""

    code = "webhook_invalid"
    status_code = 400  # what a receiving view answers (the producer API's error mapping)


def secrets_of(secret: str | SecretStr | Iterable[str] | None) -> list[str]:
    """``WEBHOOK_SECRET``'s form (one or two space-separated secrets) as a list."""
    if secret is None:
        return []
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.split() if isinstance(secret, str) else [s for s in secret if s]


def sign(secrets: list[str], msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt, signed with every secret."""
    signatures = " ".join(Webhook(s).sign(msg_id, at, body.decode()) for s in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signatures}


def verify_webhook(body: bytes | str, headers: Mapping[str, str],
                   secret: str | SecretStr | Iterable[str] | None = None) -> dict[str, Any]:
    """Verify one delivery and return its event (``type``, ``timestamp``, ``data``).

    Args:
        body: the request body exactly as received (bytes; never re-serialised JSON).
        headers: the request headers (any mapping; names are matched case-insensitively).
        secret: the ``whsec_`` secret, two space-separated ones (or a list) while rotating;
            default ``WEBHOOK_SECRET`` (of the process's runtime, as every producer call).

    Raises:
        WebhookVerificationFailed: headers missing or malformed, a timestamp more than 5
            minutes off, or no signature made with the secret (an ``InvalidInput``: 400).
        WebhookNotConfigured: no secret given and ``WEBHOOK_SECRET`` unset.
    """
    if secret is None:
        secret = get_runtime().settings.webhook_secret  # the producer API's settings
    secrets = secrets_of(secret)
    if not secrets:
        raise WebhookNotConfigured("no webhook secret to verify with (WEBHOOK_SECRET)")
    reason = "no signature matches"
    for one in secrets:
        try:
            return Webhook(one).verify(body, dict(headers.items()))
        except WebhookVerificationError as exc:
            reason = str(exc)
        except (ValueError, binascii.Error):  # a webhook-signature without "v1,<base64>"
            reason = "malformed webhook-signature header"
    raise WebhookVerificationFailed(f"webhook not verified: {reason}")
