"""The `enhance` CLI as a person runs it: a subprocess against a real deployment."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.system import ROOT, image_bytes

pytestmark = pytest.mark.integration


def enhance(system, *args, timeout_s=90):
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT,
                          env=system.env, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(image_bytes(60, 40))
    return path


def test_submit_wait_json_exits_zero_with_the_output_uri(system, sandbox, photo):
    system.start_worker()

    done = enhance(system, "submit", str(photo), "--provider", "hitpaw", "--model", "face_2x",
                   "--wait", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "succeeded"
    assert result["output_uri"] == (f"s3://{system.settings.s3_bucket}/"
                                    f"{system.settings.s3_prefix}{result['job_id']}.jpg")
    assert result["error"] is None
    assert (result["output"]["width"], result["output"]["height"]) == (120, 80)

    status = enhance(system, "status", result["job_id"], "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["output_uri"] == result["output_uri"]


def test_submit_wait_exits_one_with_the_error_when_the_job_fails(system, sandbox, photo):
    system.start_worker()

    done = enhance(system, "submit", str(photo), "--provider", "hitpaw", "--model",
                   "enhanced_v1", "--wait", "--json")

    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["state"] == "failed"
    assert result["error"]["code"] == "invalid_input"
    assert "enhanced_v1" in result["error"]["message"]


def test_submit_without_wait_returns_the_queued_job_at_once(system, sandbox, photo):
    done = enhance(system, "submit", str(photo), "--provider", "picwish", "--json")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["state"] == "queued" and result["model"] == "ultra_hd"


def test_a_missing_file_and_an_unknown_job_are_clear_errors(system, sandbox, tmp_path):
    missing = enhance(system, "submit", str(tmp_path / "nope.jpg"), "--provider", "hitpaw")
    assert missing.returncode == 1
    assert "invalid_input" in missing.stderr and "nope.jpg" in missing.stderr

    unknown = enhance(system, "status", "0123abcd")
    assert unknown.returncode == 1
    assert "no job '0123abcd'" in unknown.stderr


def test_a_bad_setting_stops_the_cli_with_the_variable_named(system):
    env = {**system.env, "S3_BUCKET": "Not_A_Bucket"}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "status", "x"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "S3_BUCKET" in done.stderr


def test_lifecycle_puts_the_backstop_rules_on_the_bucket(system, s3_client):
    done = enhance(system, "lifecycle", "--json")

    assert done.returncode == 0, done.stderr
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=system.settings.s3_bucket)
    by_id = {rule["ID"]: rule for rule in rules["Rules"]}
    assert by_id["enhance-inputs-expire"]["Filter"]["Prefix"] == "enhanced/inputs/"
    assert "AbortIncompleteMultipartUpload" in by_id["enhance-abort-incomplete-uploads"]
    assert json.loads(done.stdout) == rules["Rules"]
