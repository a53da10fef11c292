#!/usr/bin/env bash
# The GPU check, on one H100/H200 within 8 minutes: installs muqkit from the working tree without
# dependencies, adds the wheels prepared in .gpu/whl, then runs bench/gpu_check.py (parity, embedding
# and pretraining throughput with MFU, then a small-preset claims run in the minutes left).
# Prepare here first: bash bench/gpu_prepare.sh; then run on the device with `carry: [".gpu"]`:
#   bash bench/gpu_check.sh "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-runs/gpu-check}}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH="$PWD/src:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
timeout 470 python3 bench/gpu_check.py --out "$out" --budget 420 "${@:2}"
