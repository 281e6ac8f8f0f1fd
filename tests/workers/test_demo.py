"""The README's first command: the main job on embedded defaults, end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.system import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIGURED = ("REDIS_URL", "CELERY_BROKER_URL", "S3_ENDPOINT_URL", "S3_BUCKET",
              "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HITPAW_API_KEY", "PICWISH_API_KEY",
              "HITPAW_BASE_URL", "PICWISH_BASE_URL")


def test_enhance_demo_runs_both_providers_into_the_bucket_with_nothing_configured(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIGURED}
    report = tmp_path / "report.html"

    done = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--timeout", "120",
                           "--report", str(report)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if " succeeded " in line]
    assert len(rows) == 5
    assert sum(" hitpaw " in row for row in rows) == 3
    assert sum(" picwish " in row for row in rows) == 2
    assert all(re.search(r"s3://enhance-results/enhanced/[0-9a-f]{32}\.\w+ \(\d+x\d+\)", row)
               for row in rows)
    assert "5 of 5 jobs succeeded" in done.stdout
    assert "hitpaw:" in done.stdout and "picwish:" in done.stdout
    assert "redis://127.0.0.1:6379" not in done.stdout, "an embedded Redis, not the machine's"
    # The report: each input beside its stored result, inline, with sizes, cost, timings.
    assert f"report: {report}" in done.stdout
    page = report.read_text()
    assert page.count("<tr><td>") == 5
    assert page.count('<img src="data:image/') == 10
    assert page.count(" px, ") == 10
    assert len(re.findall(r"<td>cost \d+ (?:coins|credits)<br>total \d+\.\d s", page)) == 5
    assert "provider " in page and "storing " in page and "5 of 5 jobs succeeded" in page
