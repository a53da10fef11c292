#!/usr/bin/env bash
# Sets up ./.venv if needed, then runs the test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh tests/audio` or `bash scripts/test.sh -m parity`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
