#!/usr/bin/env bash
# Creates ./.venv-official with the official MuQ package (PyPI `muq`) for side-by-side benchmarks:
# torch 2.11 + torchaudio 2.11 + transformers<5, pinned by bench/official-constraints.txt. Kept apart
# from ./.venv, which must never hold torchaudio.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-official
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import muq, torchaudio, encodec, soundfile" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -c bench/official-constraints.txt \
  torch==2.11.0 torchaudio==2.11.0 muq "transformers<5" safetensors numpy encodec soundfile 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import muq" 
