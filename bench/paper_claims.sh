#!/usr/bin/env bash
# The paper's claims at small scale (issue: pretraining): build the `small` offline corpus, pretrain every
# arm (Mel-RVQ iteration 1, BEST-RQ, iteration 2) with one preset and one budget for seeds 0 1 2, probe
# them next to a random-weight MuQ per seed and the handcrafted features, and write OUT/claims/claims.md.
# Usage: bash bench/paper_claims.sh [OUT_DIR] [extra `muqkit claims` options, e.g. --pretrain-steps 1600]
# About 40 minutes on 2 CPU cores at the default 800 steps per arm, after the corpus (resumable: rerun to continue).
set -euo pipefail
out="${1:-runs/bench-small}"
shift || true
[ -f "$out/corpus/corpus.json" ] || muqkit data build-corpus --out "$out/corpus" --size small --seed 0
time muqkit claims --corpus "$out/corpus" --out "$out/claims" "$@"
