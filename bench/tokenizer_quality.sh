#!/usr/bin/env bash
# Mel-RVQ quality on real recorded music: Debian's wesnoth-1.16-music (fetched with apt-get download,
# unpacked with dpkg -x, never installed). The first 20 tracks (about an hour) train, the other 6 are
# held out. Trains two seeds of Mel-RVQ and a single 8192-code VQ with the same budget, then reports
# per-stage usage, perplexity and error, and the agreement of the two seeds beside two random
# projections (report.json, stages.png, agreement.png).
#
#   bash bench/tokenizer_quality.sh [WORK_DIR] [STEPS]      (default .cache/tokenizer-quality, 200 steps)
set -euo pipefail
cd "$(dirname "$0")/.."
MUQKIT=${MUQKIT:-.venv/bin/muqkit}
work=${1:-.cache/tokenizer-quality}
steps=${2:-200}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ ! -d "$work/x/usr/share/games/wesnoth" ]; then
  (cd "$work" && apt-get download wesnoth-1.16-music >/dev/null && dpkg -x wesnoth-1.16-music_*.deb x)
fi
find "$work/x" -name '*.ogg' | sort > "$work/all.txt"
head -n 20 "$work/all.txt" > "$work/train.txt"
tail -n +21 "$work/all.txt" > "$work/heldout.txt"
for seed in 0 1; do
  $MUQKIT tokenizer train "$work/train.txt" "$work/runs/seed$seed" --max-steps "$steps" --cache-frames \
    --seed "$seed" --no-progress
done
$MUQKIT tokenizer train "$work/train.txt" "$work/runs/single" --max-steps "$steps" --cache-frames \
  --num-codebooks 1 --codebook-size 8192 --no-progress
$MUQKIT tokenizer report "$work/runs/seed0/tokenizer" "$work/heldout.txt" --out "$work/report" \
  --compare "$work/runs/seed1/tokenizer" --single-vq "$work/runs/single/tokenizer"
echo "report: $work/report/report.json"
