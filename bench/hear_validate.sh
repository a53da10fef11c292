#!/usr/bin/env bash
# Run the official HEAR 2021 validator on muqkit.hear before each release:
#   bench/hear_validate.sh [MODEL_DIR_OR_HUB_ID]
# Needs `pip install hearvalidator` (it pulls TensorFlow). Without a model, a tiny random MuQ is saved and used.
set -euo pipefail
model="${1:-}"
if [[ -z "$model" ]]; then
  model="$(mktemp -d)/tiny"
  python -c "import sys; from muqkit import MuQ; MuQ.from_preset('tiny').save_pretrained(sys.argv[1])" "$model"
fi
hear-validator muqkit.hear --model "$model" --device cpu
