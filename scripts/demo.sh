#!/usr/bin/env bash
# Sets up ./.venv if needed, then runs muqkit's main job end to end, offline, on the embedded default
# data and the tiny preset. Outputs go to ./outputs/demo (or the folder given as first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/muqkit demo --out "${1:-outputs/demo}" --resume  # a rerun skips finished steps
