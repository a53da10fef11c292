#!/usr/bin/env bash
# Build the `small` offline corpus and run every baseline through the corpus probe suite (CPU).
# Usage: bash bench/probe_small_suite.sh [OUT_DIR]   (default runs/bench-small)
# Needs: apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small
#        pip install 'muqkit[eval]'
set -euo pipefail
out="${1:-runs/bench-small}"
time muqkit data build-corpus --out "$out/corpus" --size small --seed 0
time muqkit probe --suite corpus --corpus "$out/corpus" --out "$out/probe" \
    --model mel --model mfcc --model chroma --model rhythm --model random:tiny --model madmom-key
