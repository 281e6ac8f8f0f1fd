"""Every way the ``enhance`` command fails: one line naming what to check, a documented status.

Exit statuses (workers/cli_errors.py): 1 refused or failed, 2 bad arguments or settings,
4 a service does not answer. No traceback unless ``enhance -v``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from providers.errors import AuthFailed, InvalidInput, ProviderUnavailable
from tasks.producer import list_jobs
from tests.system import ROOT, image_bytes
from workers.cli_errors import failure_for
from workers.embedded import free_port
from workers.settings import Settings

#: Variables that would point the command at a real deployment; each test sets its own.
PLACES = ("REDIS_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL", "S3_BUCKET", "REDIS_SENTINELS",
          "HITPAW_BASE_URL", "PICWISH_BASE_URL")
REDIS_HINT = "Is Redis running there? (`enhance dev` runs a whole local stack)"


def enhance(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in PLACES}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def nothing_listens() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.mark.parametrize("args", [("status", "0123abcd"), ("stats",), ("healthcheck",),
                                  ("resume", "hitpaw")])
def test_an_unreachable_job_store_is_one_line_with_its_url_and_status_4(args, nothing_listens):
    done = enhance(*args, REDIS_URL=f"redis://admin:s3cret@{nothing_listens}/0",
                   CELERY_BROKER_URL=f"redis://{nothing_listens}/0")

    assert done.returncode == 4, done.stderr
    assert done.stderr == (f"Error: the job store (Redis) does not answer at redis://"
                           f"{nothing_listens}/0 (REDIS_URL): connection refused. {REDIS_HINT}\n")
    assert "s3cret" not in done.stderr and "admin" not in done.stderr


def test_with_v_the_traceback_comes_first(nothing_listens):
    done = enhance("-v", "status", "0123abcd", REDIS_URL=f"redis://{nothing_listens}/0")

    assert done.returncode == 4
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].startswith("Error: the job store (Redis)")


@pytest.mark.integration
def test_an_unreachable_s3_endpoint_is_one_line_with_its_url(redis_url, tmp_path,
                                                            nothing_listens):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(40, 30))

    done = enhance("submit", str(photo), "--provider", "hitpaw", REDIS_URL=redis_url,
                   CELERY_BROKER_URL=redis_url, S3_ENDPOINT_URL=f"http://{nothing_listens}",
                   AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")

    assert done.returncode == 4
    assert done.stderr == (f"Error: S3 does not answer at http://{nothing_listens} "
                           "(S3_ENDPOINT_URL): could not connect. Is the endpoint running and "
                           "reachable from here?\n")


@pytest.mark.integration
def test_an_unreachable_broker_is_one_line_with_its_url(system, tmp_path, nothing_listens):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(image_bytes(40, 30))
    env = {**system.env, "CELERY_BROKER_URL": f"redis://{nothing_listens}/0"}

    done = subprocess.run([sys.executable, "-m", "workers.cli", "submit", str(photo),
                           "--provider", "hitpaw"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)

    assert done.returncode == 4
    [job] = list_jobs(runtime=system.runtime).jobs
    job_id = job.id
    assert done.stderr == (f"Error: the broker does not answer at redis://{nothing_listens}/0 "
                           "(CELERY_BROKER_URL): connection refused. Is it running there? "
                           f"Job {job_id} is recorded and starts once it answers "
                           f"(enhance status {job_id}).\n")


def test_a_rule_over_two_settings_names_both_and_exits_2():
    done = enhance("status", "x", MAX_COUNTDOWN_S="1000", VISIBILITY_TIMEOUT_S="900")

    assert done.returncode == 2
    assert done.stderr == ("Error: bad settings:\n  MAX_COUNTDOWN_S, VISIBILITY_TIMEOUT_S: "
                           "MAX_COUNTDOWN_S must be at most a quarter of VISIBILITY_TIMEOUT_S, or "
                           "Redis delivers scheduled tasks twice\n")


def test_a_bad_setting_names_its_variable_and_exits_2():
    done = enhance("stats", S3_BUCKET="Not_A_Bucket")

    assert done.returncode == 2
    assert done.stderr == ("Error: bad settings:\n  S3_BUCKET: must be 3-63 lower-case letters, "
                           "digits, dots or hyphens\n")


@pytest.mark.integration
def test_a_file_that_is_not_an_image_is_refused_without_an_object_repr(tmp_path, redis_url):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")

    done = enhance("submit", str(text), "--provider", "hitpaw", REDIS_URL=redis_url)

    assert done.returncode == 1
    assert done.stderr == ("Error: invalid_input: not a recognised image: no known image format "
                           "in its first bytes (JPEG, PNG, WebP, BMP, GIF, TIFF...)\n")


@pytest.mark.integration
def test_a_missing_s3_source_is_reported_missing(system, sandbox):
    uri = f"s3://{system.settings.s3_bucket}/uploads/gone.jpg"
    done = subprocess.run([sys.executable, "-m", "workers.cli", "submit", uri, "--provider",
                           "hitpaw"], cwd=ROOT, env=system.env, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 1
    assert done.stderr == f"Error: invalid_input: s3:// source {uri} does not exist: no such object\n"
    assert sandbox.requests() == []


def test_submit_help_lists_each_providers_models_and_default():
    from providers import PROVIDERS

    done = enhance("submit", "--help")

    assert done.returncode == 0
    for name, cls in PROVIDERS.items():
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(f"{name}:"))
        assert f"{cls.default_model()} (default)" in line
        assert all(model in line for model in cls.models())


ANOTHER_MODULE = """
import click
from storage.errors import StorageUnavailable
from workers.cli import main

@main.command("upload-for-test")
def upload():
    raise StorageUnavailable("put s3://b/k: Could not connect to the endpoint URL")

main()
"""


@pytest.mark.integration
def test_a_command_registered_by_another_module_gets_the_same_wording(redis_url):
    base = {k: v for k, v in os.environ.items() if k not in PLACES}
    done = subprocess.run([sys.executable, "-c", ANOTHER_MODULE, "upload-for-test"], cwd=ROOT,
                          env={**base, "REDIS_URL": redis_url,
                               "S3_ENDPOINT_URL": "http://127.0.0.1:9"},
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 4
    assert done.stderr == ("Error: S3 does not answer at http://127.0.0.1:9 (S3_ENDPOINT_URL): "
                           "could not connect. Is the endpoint running and reachable from here?\n")


@pytest.mark.integration
def test_stats_prints_whole_numbers_whole_and_no_empty_section(system):
    done = subprocess.run([sys.executable, "-m", "workers.cli", "stats"], cwd=ROOT,
                          env=system.env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert "failures:" not in done.stdout  # nothing failed: no empty header
    values = [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("  ")]
    assert values and all(v.replace(",", "").isdigit() or v == "none" for v in values), values


@pytest.mark.parametrize(("error", "line"), [
    (ProviderUnavailable("connection refused", "hitpaw"),
     "hitpaw does not answer at https://api.example/v1 (HITPAW_BASE_URL): connection refused. "
     "Is the provider (or the sandbox) reachable from here?"),
    (AuthFailed("invalid api key", "picwish"),
     "picwish refused our key at https://techhk.aoscdn.com (PICWISH_BASE_URL): invalid api key. "
     "Check PICWISH_API_KEY"),
    (InvalidInput("bad <_io.BytesIO object at 0x7f00aa> here"),
     "invalid_input: bad an object here"),
])
def test_provider_failures_name_the_base_url_and_what_to_check(error, line):
    settings = Settings(hitpaw_base_url="https://user:pw@api.example/v1")

    failure = failure_for(error, settings)

    assert failure.format_message() == line
    assert failure.exit_code == (1 if isinstance(error, InvalidInput) else 4)
