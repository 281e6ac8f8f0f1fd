"""Settings fail fast on bad values, read the environment, and keep secrets out of sight."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.settings import (
    HITPAW_DEFAULT_BASE_URL,
    PICWISH_DEFAULT_BASE_URL,
    Settings,
    get_settings,
)

SECRET = "sk-live-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No setting comes from the environment the tests happen to run in."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def refused(field: str, **values) -> str:
    """Build Settings that must fail; return the error text, which must name ``field``."""
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    text = str(caught.value)
    assert field in text
    return text


def test_defaults_are_valid():
    settings = Settings()
    assert settings.celery_broker_url == "redis://127.0.0.1:6379/0"
    assert settings.hitpaw_base_url == HITPAW_DEFAULT_BASE_URL
    assert settings.picwish_base_url == PICWISH_DEFAULT_BASE_URL
    assert settings.hitpaw_api_key is None and settings.s3_endpoint_url is None
    assert settings.max_countdown_s * 4 <= settings.visibility_timeout_s < 3600


# --- broker, Redis and HTTP URLs -----------------------------------------------------


@pytest.mark.parametrize("url", ["redis://h:6379/1", "rediss://h/0", "amqp://guest@h//",
                                 "amqps://h", "pyamqp://h"])
def test_known_broker_schemes_are_accepted(url):
    assert Settings(celery_broker_url=url).celery_broker_url == url


@pytest.mark.parametrize("url", ["sqs://", "http://h:6379", "127.0.0.1:6379", "", "REDIS://h"])
def test_unknown_broker_schemes_are_refused(url):
    refused("celery_broker_url", celery_broker_url=url)


@pytest.mark.parametrize("url", ["redis://h/2", "rediss://h/0", "unix:///run/redis.sock"])
def test_redis_urls_are_accepted(url):
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize("url", ["amqp://h", "http://h", "localhost:6379"])
def test_non_redis_urls_are_refused(url):
    refused("redis_url", redis_url=url)


@pytest.mark.parametrize("field", ["hitpaw_base_url", "picwish_base_url", "s3_endpoint_url"])
def test_http_urls_lose_a_trailing_slash(field):
    assert getattr(Settings(**{field: "https://api.example.com/"}), field) == (
        "https://api.example.com"
    )


@pytest.mark.parametrize("field", ["hitpaw_base_url", "picwish_base_url", "s3_endpoint_url"])
@pytest.mark.parametrize("url", ["ftp://api.example.com", "api.example.com", "file:///etc"])
def test_non_http_urls_are_refused(field, url):
    refused(field, **{field: url})


def test_an_empty_s3_endpoint_means_aws():
    assert Settings(s3_endpoint_url="").s3_endpoint_url is None


# --- the bucket and the prefix -------------------------------------------------------


@pytest.mark.parametrize("name", ["abc", "my-results.2024", "a" * 63, "0bucket9"])
def test_valid_bucket_names(name):
    assert Settings(s3_bucket=name).s3_bucket == name


@pytest.mark.parametrize(
    "name", ["ab", "a" * 64, "My-Bucket", "under_score", "-leading", "trailing-", ".dot",
             "dot.", "has space", "s3://bucket"],
)
def test_invalid_bucket_names_are_refused(name):
    refused("s3_bucket", s3_bucket=name)


@pytest.mark.parametrize(
    ("given", "kept"),
    [("enhanced", "enhanced/"), ("/a/b", "a/b/"), ("a/b/", "a/b/"), ("", ""), ("/", "")],
)
def test_prefix_is_relative_and_ends_with_a_slash(given, kept):
    assert Settings(s3_prefix=given).s3_prefix == kept


# --- Celery timing -------------------------------------------------------------------


def test_countdown_ceiling_must_fit_four_times_in_the_visibility_timeout():
    assert Settings(max_countdown_s=225, visibility_timeout_s=900).max_countdown_s == 225
    text = refused("max_countdown_s", max_countdown_s=226, visibility_timeout_s=900)
    assert "visibility_timeout_s" in text


@pytest.mark.parametrize("timeout_s", [3600, 7200, 43200])
def test_visibility_timeout_must_stay_under_an_hour(timeout_s):
    refused("visibility_timeout_s", visibility_timeout_s=timeout_s, max_countdown_s=60)


def test_visibility_timeout_just_under_an_hour_is_accepted():
    assert Settings(visibility_timeout_s=3599).visibility_timeout_s == 3599


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("visibility_timeout_s", 5),
        ("max_countdown_s", 0),
        ("poll_jitter", 1.5),
        ("poll_jitter", -0.1),
        ("hitpaw_max_rps", 0),
        ("picwish_max_in_flight", 0),
        ("s3_part_size_bytes", 5 * 1024 * 1024 - 1),
        ("s3_max_concurrency", 17),
        ("s3_presign_ttl_s", 8 * 24 * 3600),
        ("http_read_timeout_s", 0),
        ("metrics_port", 70000),
        ("log_format", "xml"),
        ("log_level", "TRACE"),
    ],
)
def test_out_of_range_values_are_refused(field, value):
    refused(field, **{field: value})


def test_log_level_is_upper_cased():
    assert Settings(log_level="debug").log_level == "DEBUG"


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.poll_jitter = 0.5


# --- the environment -----------------------------------------------------------------


def test_fields_are_read_from_upper_case_environment_variables(monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "from-env")
    monkeypatch.setenv("POLL_JITTER", "0.1")
    monkeypatch.setenv("CELERY_BROKER_URL", "amqp://rabbit//")
    monkeypatch.setenv("HITPAW_API_KEY", SECRET)
    monkeypatch.setenv("LOG_FORMAT", "json")
    settings = Settings()
    assert settings.s3_bucket == "from-env"
    assert settings.poll_jitter == 0.1
    assert settings.celery_broker_url == "amqp://rabbit//"
    assert settings.hitpaw_api_key.get_secret_value() == SECRET
    assert settings.log_format == "json"


def test_a_bad_environment_value_stops_start_up_naming_it(monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "Not_A_Bucket")
    refused("s3_bucket")
    monkeypatch.setenv("S3_BUCKET", "fine")
    monkeypatch.setenv("HITPAW_MAX_RPS", "fast")
    refused("hitpaw_max_rps")


def test_the_countdown_rule_applies_to_the_environment(monkeypatch):
    monkeypatch.setenv("VISIBILITY_TIMEOUT_S", "100")
    monkeypatch.setenv("MAX_COUNTDOWN_S", "60")
    refused("max_countdown_s")


def test_arguments_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "from-env")
    assert Settings(s3_bucket="from-args").s3_bucket == "from-args"


def test_get_settings_reads_the_environment_once(monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "first-read")
    settings = get_settings()
    monkeypatch.setenv("S3_BUCKET", "second-read")
    assert get_settings() is settings
    assert settings.s3_bucket == "first-read"


# --- secrets -------------------------------------------------------------------------


def test_secrets_never_show(monkeypatch):
    monkeypatch.setenv("PICWISH_API_KEY", SECRET)
    settings = Settings(hitpaw_api_key=SECRET)
    for shown in (repr(settings), str(settings), settings.model_dump_json(),
                  repr(settings.hitpaw_api_key), str(settings.picwish_api_key)):
        assert SECRET not in shown
    assert settings.hitpaw_api_key.get_secret_value() == SECRET
    assert settings.picwish_api_key.get_secret_value() == SECRET


def test_a_refused_value_error_does_not_echo_a_secret():
    with pytest.raises(ValidationError) as caught:
        Settings(hitpaw_api_key=SECRET, hitpaw_base_url="ftp://x")
    assert SECRET not in str(caught.value)


# --- Provider answers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("http_deadline_s", 0), ("http_max_answer_bytes", 100),
     ("picwish_max_inline_answer_bytes", 1000), ("result_download_deadline_s", 0),
     ("unknown_submit_policy", "retry")],
)
def test_answer_bounds_out_of_range_are_refused(field, value):
    refused(field, **{field: value})


def test_the_deadline_cannot_be_shorter_than_the_read_timeout():
    refused("http_deadline_s", http_read_timeout_s=40, http_deadline_s=35)


@pytest.mark.parametrize("deadline_s", [30, 45, 116, 600])
def test_a_claim_outlasts_its_paid_call_whatever_the_deadline(deadline_s):
    # A submit's claim taken for lost while its call is inside its deadline pays twice.
    s = Settings(http_deadline_s=deadline_s)
    assert s.step_lease_s > s.http_connect_timeout_s + s.http_deadline_s


def test_a_dead_workers_jobs_move_again_within_a_minute_by_default():
    # Issue 9: a claim held STALE_AFTER_S (120 s), so a worker SIGKILLed mid-submit left
    # its job 124 s. Each lease plus one reconcile period now stays under 60 s.
    s = Settings()
    leases = {"submit claim (renewed while its call runs)": s.submit_lease_s,
              "admission run (from its due time)": s.poll_grace_s,
              "poll not started (from its due time)": s.poll_grace_s,
              "poll started": s.http_connect_timeout_s + s.http_read_timeout_s + s.poll_grace_s,
              "store": s.store_lease_s, "lost submit message": s.submit_lost_after_s}
    for what, lease_s in leases.items():
        assert lease_s + s.reconcile_interval_s < 60, what


# --- Leases, retries and recovery ------------------------------------------------------


def test_only_a_store_only_worker_reserves_a_single_message():
    from workers.cli import prefetch_multiplier

    settings = Settings(worker_prefetch_multiplier=4, store_prefetch_multiplier=1)
    assert prefetch_multiplier(settings, "enhance.store") == 1
    assert prefetch_multiplier(settings, " enhance.store, ") == 1
    assert prefetch_multiplier(settings, "enhance.submit,enhance.poll,enhance.store") == 4


def test_task_time_limits_end_a_task_inside_the_visibility_timeout():
    from workers.app import celery_config

    for timeout_s in (60, 900, 3599):
        config = celery_config(Settings(visibility_timeout_s=timeout_s,
                                        max_countdown_s=timeout_s // 4))
        soft, hard = config["task_soft_time_limit"], config["task_time_limit"]
        assert 0 < soft < hard < timeout_s


def test_a_store_lease_longer_than_half_the_visibility_timeout_is_refused():
    refused("store_lease_s", store_lease_s=31, visibility_timeout_s=60, max_countdown_s=15)
