#!/usr/bin/env bash
# The main job on embedded defaults: sets itself up, then enhances sample images through
# both providers and prints where each result landed (see `enhance demo --help`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash ops/setup.sh
exec .venv/bin/enhance demo "$@"
