#!/usr/bin/env bash
# The test command: sets itself up, lints, then runs the whole suite (unit and
# integration tests against a real Redis, real Celery workers, S3 over HTTP and the
# provider sandbox over HTTP) and a smoke run of the benchmark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash ops/setup.sh
.venv/bin/ruff check .
.venv/bin/pytest "$@"
