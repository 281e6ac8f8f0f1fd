"""Which failed submits prove the vendor did not take the request (safe to send again).

Every case comes from a real call over loopback HTTP, so the errors carry exactly what the
clients put in them.
"""

from __future__ import annotations

import pytest

from providers import HitPawClient, PicWishClient
from providers.errors import EnhanceError, ProviderTimeout, ProviderUnavailable, RateLimited

URL = "https://bucket.example/in/photo.jpg"
CLIENTS = {"hitpaw": HitPawClient, "picwish": PicWishClient}


def submit_error(client_cls, base_url: str) -> EnhanceError:
    client = client_cls("key", base_url=base_url, connect_timeout_s=1, read_timeout_s=1,
                        deadline_s=2)
    with pytest.raises(EnhanceError) as caught:
        client.submit(client.build_request(None, {}, image_url=URL))
    return caught.value


def hitpaw_error(code: int, message: str = "vendor says no") -> dict:
    return {"error_code": code, "message": message}


def picwish_error(status: int) -> dict:
    return {"status": status, "message": "vendor says no"}


@pytest.mark.parametrize("provider", CLIENTS)
def test_a_refused_connection_proves_not_taken(provider, closed_port_url):
    exc = submit_error(CLIENTS[provider], closed_port_url)
    assert isinstance(exc, ProviderUnavailable)
    assert CLIENTS[provider].submit_not_taken(exc)


@pytest.mark.parametrize("provider", CLIENTS)
def test_no_answer_after_sending_is_unknown(provider, canned):
    canned.add(200, {}, delay_s=1.5)
    exc = submit_error(CLIENTS[provider], canned.base_url)
    assert isinstance(exc, ProviderTimeout)
    assert not CLIENTS[provider].submit_not_taken(exc)


@pytest.mark.parametrize("provider", CLIENTS)
def test_a_connection_dropped_after_sending_is_unknown(provider, canned):
    canned.add(drop=True)
    exc = submit_error(CLIENTS[provider], canned.base_url)
    assert not CLIENTS[provider].submit_not_taken(exc)


HITPAW_CASES = [
    # (HTTP status, body, proves not taken)
    (429, hitpaw_error(100429000, "Too many requests"), True),
    (200, {"code": 100429000, "message": "Too many requests"}, True),  # 429 in an envelope
    (503, "<html>503 Service Unavailable</html>", True),
    (408, "", True),
    (500, hitpaw_error(100500000, "Internal error"), False),  # may have created the job
    (502, "<html>502 Bad Gateway</html>", False),  # seen to create the job, then answer 502
    (504, "<html>504 Gateway Time-out</html>", False),
    (503, hitpaw_error(100500007, "operation timeout"), False),  # "operation timeout"
    (200, {"code": 100500007, "message": "operation timeout"}, False),
    (200, {"code": 100500000, "message": "Internal error"}, False),
    (520, "", False),
]


@pytest.mark.parametrize(("http_status", "body", "not_taken"), HITPAW_CASES)
def test_hitpaw_submit_failures(canned, http_status, body, not_taken):
    canned.add(http_status, body)
    exc = submit_error(HitPawClient, canned.base_url)
    assert exc.retryable
    assert HitPawClient.submit_not_taken(exc) is not_taken


PICWISH_CASES = [
    (429, picwish_error(429), True),
    (200, picwish_error(429), True),
    (502, "<html>502 Bad Gateway</html>", True),  # a gateway refusing before the vendor
    (503, "<html>503 Service Unavailable</html>", True),
    (408, "", True),
    (500, picwish_error(500), False),
    (200, picwish_error(500), False),
    (504, "<html>504 Gateway Time-out</html>", False),  # seen to create the job, then 504
    (599, "", False),
]


@pytest.mark.parametrize(("http_status", "body", "not_taken"), PICWISH_CASES)
def test_picwish_submit_failures(canned, http_status, body, not_taken):
    canned.add(http_status, body)
    exc = submit_error(PicWishClient, canned.base_url)
    assert exc.retryable
    assert PicWishClient.submit_not_taken(exc) is not_taken


@pytest.mark.parametrize("provider", CLIENTS)
def test_rate_limited_without_a_status_proves_not_taken(provider):
    """Our own shared budget refuses before any call: RateLimited with no HTTP status."""
    assert CLIENTS[provider].submit_not_taken(RateLimited("budget spent", provider))
