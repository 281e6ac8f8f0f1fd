"""Security settings: closed defaults, keys cleaned or refused without being shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from providers.urlguard import UrlPolicy
from workers.settings import Settings, get_settings

KEY = "sk-live-SECURITY-0123456789"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults_are_closed():
    settings = Settings()
    assert settings.allow_private_urls is False
    assert settings.url_allowlist == ()
    assert settings.s3_source_buckets == ()
    assert settings.metrics_bind == "127.0.0.1"
    assert settings.s3_sse == ""
    assert settings.s3_provider_url_ttl_s <= 900
    assert UrlPolicy.from_settings(settings) == UrlPolicy(max_redirects=3)


@pytest.mark.parametrize("raw", [f" {KEY}", f"{KEY}\n", f"\t{KEY}\r\n", f"{KEY} "])
def test_api_keys_lose_surrounding_whitespace(monkeypatch, raw):
    monkeypatch.setenv("HITPAW_API_KEY", raw)
    monkeypatch.setenv("PICWISH_API_KEY", raw)
    settings = Settings()
    assert settings.hitpaw_api_key.get_secret_value() == KEY
    assert settings.picwish_api_key.get_secret_value() == KEY


@pytest.mark.parametrize("raw", [f"{KEY[:8]}\n{KEY[8:]}", f"{KEY}\x00x", f"{KEY[:5]}\x1b[0m{KEY}"])
def test_api_key_with_a_control_character_refused_without_showing_it(raw):
    with pytest.raises(ValidationError) as caught:
        Settings(hitpaw_api_key=raw)
    text = str(caught.value) + repr(caught.value)
    assert "hitpaw_api_key" in text
    assert "control character" in text
    assert KEY[:8] not in text and KEY[8:] not in text


def test_cli_reports_a_bad_key_without_showing_it(monkeypatch):
    from click.testing import CliRunner

    from workers.cli import main

    monkeypatch.setenv("PICWISH_API_KEY", f"{KEY[:8]}\r{KEY[8:]}")
    result = CliRunner().invoke(main, ["stats"])
    assert result.exit_code != 0
    assert "PICWISH_API_KEY" in result.output and "control character" in result.output
    assert KEY[:8] not in result.output and KEY[8:] not in result.output


def test_blank_api_key_is_unset(monkeypatch):
    monkeypatch.setenv("PICWISH_API_KEY", "  \n")
    assert Settings().picwish_api_key is None


def test_lists_read_comma_separated_from_the_environment(monkeypatch):
    monkeypatch.setenv("URL_ALLOWLIST", "127.0.0.1, sandbox,10.0.0.0/8,.corp.example")
    monkeypatch.setenv("S3_SOURCE_BUCKETS", "uploads-a,uploads-b")
    monkeypatch.setenv("ALLOW_PRIVATE_URLS", "true")
    settings = Settings()
    assert settings.url_allowlist == ("127.0.0.1", "sandbox", "10.0.0.0/8", ".corp.example")
    assert settings.s3_source_buckets == ("uploads-a", "uploads-b")
    policy = UrlPolicy.from_settings(settings)
    assert policy.allow_private and policy.allow_hosts == ("sandbox", ".corp.example")


@pytest.mark.parametrize(("field", "values"), [
    ("url_allowlist", {"url_allowlist": "10.0.0.0/8,not a host!"}),
    ("s3_source_buckets", {"s3_source_buckets": "Bad_Bucket"}),
    ("s3_sse", {"s3_sse": "rot13"}),
    ("s3_provider_url_ttl_s", {"s3_provider_url_ttl_s": 86400}),
    ("s3_sse_kms_key_id", {"s3_sse_kms_key_id": "alias/x", "s3_sse": "AES256"}),
    ("max_redirects", {"max_redirects": 50}),
])
def test_bad_security_settings_refused(field, values):
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    assert field in str(caught.value)
