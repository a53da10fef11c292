#!/usr/bin/env bash
# MuQ-MuLan in the demo setting: train the `tiny` preset on the `small` offline corpus on CPU (minutes),
# then zero-shot tagging (instrument family, mode, metre, dance type) and text<->music retrieval on the
# held-out test split, next to the same architecture untrained (the chance reference).
#
# usage: bench/mulan_demo.sh CORPUS_DIR OUT_DIR [MUQ_CHECKPOINT]
#   CORPUS_DIR      built by `muqkit data build-corpus --out CORPUS_DIR --size small --seed 0` (or
#                   `--size medium --no-game-music`: four times the annotated tunes)
#   OUT_DIR         run folder (model, logs, eval_*.json / eval_*.md)
#   MUQ_CHECKPOINT  optional pretrained MuQ folder (config.json + model.safetensors) for the audio tower;
#                   without it the audio tower starts from a random `tiny` MuQ.
# env: MUQKIT (default: muqkit), PYTHON (python), STEPS (200), CLIP_SECS (4), NICE (5),
#      AUDIO_LAYER (the MuQ hidden state feeding the audio tower; default: the preset's, the last),
#      LAG_POOLING (longest lag in 25 Hz frames of the audio tower's lag pooling; default: none),
#      FREEZE (parts kept fixed; default: text_backbone), MODEL_CONFIG (a MuQMuLanConfig JSON instead of
#      the tiny preset),
#      EXCLUDE (manifests, space-separated: test items whose group appears in them are left out, e.g. the
#      audio the MuQ checkpoint was pretrained on), EXCLUDE_SPLITS (only these splits of them, e.g.
#      "train valid"), LR (1e-3), BATCH (16),
#      MIN_POSITIVES (score only tags with that many positive test items; default 1),
#      SEED (0: the training seed, also of the untrained reference),
#      EVAL_ONLY (set: evaluate an existing OUT_DIR/run again, no training)
set -euo pipefail
CORPUS=${1:?usage: $0 CORPUS_DIR OUT_DIR [MUQ_CHECKPOINT]}
OUT=${2:?usage: $0 CORPUS_DIR OUT_DIR [MUQ_CHECKPOINT]}
MUQ=${3:-}
MUQKIT=${MUQKIT:-muqkit}
STEPS=${STEPS:-200}
RUN="nice -n ${NICE:-5}"
mkdir -p "$OUT"
MANIFESTS=(--manifest "$CORPUS/scores.jsonl" --manifest "$CORPUS/notes.jsonl")
EXCLUDED=()
for manifest in ${EXCLUDE:-}; do EXCLUDED+=(--exclude-groups "$manifest"); done
[ -n "${EXCLUDE_SPLITS:-}" ] && EXCLUDED+=(--exclude-splits ${EXCLUDE_SPLITS})

if [ -z "${EVAL_ONLY:-}" ]; then
start=$(date +%s)
$RUN $MUQKIT mulan train "${MANIFESTS[@]}" --out "$OUT/run" --preset tiny ${MODEL_CONFIG:+--model-config "$MODEL_CONFIG"} ${MUQ:+--muq "$MUQ"} \
    ${AUDIO_LAYER:+--audio-layer "$AUDIO_LAYER"} ${LAG_POOLING:+--lag-pooling "$LAG_POOLING"} --freeze "${FREEZE:-text_backbone}" \
    --max-steps "$STEPS" --batch-size "${BATCH:-16}" --clip-seconds "${CLIP_SECS:-4}" --lr "${LR:-1e-3}" --warmup-steps 20 --val-every 100 \
    --accelerator cpu --seed "${SEED:-0}" --no-resume > "$OUT/train.log" 2>&1
echo "train: $(( $(date +%s) - start )) s" | tee "$OUT/timings.txt"
fi

# The untrained reference: the same preset and seed, saved before any step.
$RUN ${PYTHON:-python} - "$OUT/untrained" "$MUQ" "${AUDIO_LAYER:-}" "${MODEL_CONFIG:-}" "${LAG_POOLING:-}" "${SEED:-0}" <<'PY'
import sys
from muqkit.train.mulan import MuLanTrainConfig, build_model
cfg = MuLanTrainConfig(manifests=("-",), out=sys.argv[1], preset="tiny", muq=sys.argv[2] or None, seed=int(sys.argv[6]),
                       audio_layer=int(sys.argv[3]) if sys.argv[3] else None, model_config=sys.argv[4] or None,
                       lag_pooling=int(sys.argv[5]) if sys.argv[5] else None)
model = build_model(cfg)
model.eval()
model.save_pretrained(sys.argv[1])
PY

models=(run/model untrained)
[ -d "$OUT/run/model-best" ] && models=(run/model run/model-best untrained)
for model in "${models[@]}"; do
    tag=${model//\//-}
    for source in scores notes all; do
        start=$(date +%s)
        filter=(); [ "$source" = all ] || filter=(--source "$source")
        $RUN $MUQKIT mulan evaluate "${MANIFESTS[@]}" --split test "${filter[@]}" "${EXCLUDED[@]}" --min-positives "${MIN_POSITIVES:-1}" --model "$OUT/$model" \
            --json "$OUT/eval_${tag}_${source}.json" > "$OUT/eval_${tag}_${source}.md" 2>/dev/null
        echo "evaluate $tag $source: $(( $(date +%s) - start )) s" | tee -a "$OUT/timings.txt"
        echo "## $tag, test split, source: $source"; cat "$OUT/eval_${tag}_${source}.md"
    done
done
