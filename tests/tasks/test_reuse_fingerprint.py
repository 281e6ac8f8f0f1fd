"""Unit tests of the reuse fingerprint: which changes make a different job, which do not."""

from __future__ import annotations

import pytest

from providers.base import ImageInfo
from providers.errors import InvalidInput
from tasks.reuse import check_mode, fingerprint_of

JPEG = ImageInfo(format="JPEG", width=40, height=30)
INPUT = {"sha256": "a" * 64}


def fp(provider="hitpaw", model="general_2x", options=None, input_id=None, image=JPEG):
    return fingerprint_of(provider, model, options or {}, input_id or INPUT, image)


def test_a_fingerprint_is_a_sha256_hex_that_repeats():
    assert fp() == fp()
    assert len(fp()) == 64 and int(fp(), 16) >= 0


@pytest.mark.parametrize(("name", "other"), [
    ("other bytes", dict(input_id={"sha256": "b" * 64})),
    ("other model", dict(model="general_4x")),
    ("other provider", dict(provider="picwish", model="general_2x")),
    ("exif kept", dict(options={"exif": True})),
    ("print DPI", dict(options={"dpi": 300})),
    ("other output format", dict(options={"extension": ".png"})),
    ("an s3 ETag, not bytes", dict(input_id={"s3_etag": "a" * 32, "size": 10})),
    ("a URL, not bytes", dict(input_id={"url": "https://example.test/a.jpg"})),
])
def test_what_changes_the_output_changes_the_fingerprint(name, other):
    assert fp(**other) != fp(), name


@pytest.mark.parametrize(("name", "same"), [
    ("defaults spelt out", dict(options={"exif": False, "dpi": None})),
    ("extension as the image's own format", dict(options={"extension": ".jpg"})),
    ("extension spelt differently", dict(options={"extension": "JPG"})),
])
def test_hitpaw_spellings_of_the_same_request_fingerprint_alike(name, same):
    assert fp(**same) == fp(), name


def test_option_order_does_not_matter():
    assert fp(options={"exif": True, "dpi": 72}) == fp(options={"dpi": 72, "exif": True})


def test_picwish_delivery_options_do_not_change_the_fingerprint():
    base = fp(provider="picwish", model="hd")
    assert fp(provider="picwish", model="hd", options={"return_type": 2, "sync": 1}) == base
    assert fp(provider="picwish", model="ultra_hd") != base
    assert fp(provider="picwish", model="hd", options={"filename": "x.png"}) != base, \
        "an option not known to be harmless keeps jobs apart"


def test_a_url_is_an_input_only_by_its_exact_text():
    a = fp(input_id={"url": "https://example.test/a.jpg"})
    assert fp(input_id={"url": "https://example.test/a.jpg?v=2"}) != a


@pytest.mark.parametrize("mode", [True, False, "url"])
def test_reuse_modes(mode):
    assert check_mode(mode) == mode


@pytest.mark.parametrize("mode", ["yes", 1, None, "URL"])
def test_other_reuse_modes_are_refused(mode):
    with pytest.raises(InvalidInput):
        check_mode(mode)
