#!/usr/bin/env bash
# Prepares .gpu/ (ignored by git; `carry` it to the GPU machine) for bench/gpu_check.sh: the wheels
# the GPU image lacks (Python 3.12), the official parity fixtures, and a small corpus of Ogg Vorbis
# audio cut from a built corpus. The working tree that travels is at most 64 MiB.
# Usage: bash bench/gpu_prepare.sh [CORPUS] (default runs/bench-small/corpus)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-runs/bench-small/corpus}"
rm -rf .gpu
mkdir -p .gpu/whl .gpu/parity
# soundfile needs cffi (and pycparser); mir_eval needs decorator; the image has numpy and scipy.
for spec in soundfile==0.14.0 cffi pycparser soxr==1.1.0 mir_eval==0.8.2 decorator; do
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .gpu/whl "$spec"
done
for fixture in muq_small objective_small; do
  cp -r "../shared/parity/$fixture" .gpu/parity/
done
[ -f "$corpus/scores.jsonl" ] || { echo "gpu_prepare: no corpus at $corpus (muqkit data build-corpus --size small)" >&2; exit 2; }
.venv/bin/python bench/gpu_data.py "$corpus" .gpu/data --max-mb 22
du -sh .gpu .gpu/*
