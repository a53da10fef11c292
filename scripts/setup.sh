#!/usr/bin/env bash
# Installs everything muqkit needs into ./.venv (idempotent): Debian packages for rendering audio,
# torch 2.13.0 first and explicitly (never torchaudio), then muqkit with all its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MUQKIT_VENV:-.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.muqkit-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

# Debian packages: FluidSynth and General MIDI soundfonts render the offline corpus; headless Chromium and
# its driver run the browser test of `muqkit serve`; g++ compiles the int8 model (`--dtype int8`).
APT_PACKAGES="fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small chromium chromium-driver g++"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: warning: missing Debian packages:$missing (apt-get install $missing); corpus rendering and the browser test need them" >&2
  fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip >/dev/null 2>&1 || true
echo "setup: installing torch==2.13.0 (CPU)"
$PIP install "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
echo "setup: installing muqkit[train,mulan,eval,finetune,serve,search,onnx,int8,mteb,hear,dev]"
# A constraint keeps every dependency on the torch installed above.
printf 'torch==2.13.0\n' > "$VENV/torch-constraint.txt"
$PIP install -c "$VENV/torch-constraint.txt" -e ".[train,mulan,eval,finetune,serve,search,onnx,int8,mteb,hear,dev]" 2>&1 | grep -v "^WARNING: Location" || true
# The HEAR 2021 validator, without its TensorFlow requirement (it needs TensorFlow only to recognise
# TensorFlow models; the test gives it a stand-in), so that the validator runs in the test suite.
$PIP install --no-deps "hearvalidator==2021.0.2" 2>&1 | grep -v "^WARNING: Location" || true
# hear-eval-kit's runners, without their pins (numpy==1.19.2, numba==0.48, tensorflow): the hear extra above
# installs what they import, and muqkit.integrations.hear_eval gives TensorFlow's one use a stand-in.
$PIP install --no-deps "heareval==2021.1.3" 2>&1 | grep -v "^WARNING: Location" || true
# dcase_util (a hear-eval-kit dependency) installs its own top-level `tests` package, which shadows this
# repository's tests in the processes that tests spawn: remove it.
SITE="$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if grep -qs "^tests/" "$SITE"/dcase_util-*.dist-info/RECORD; then rm -rf "$SITE/tests"; fi
if $VENV/bin/python -c "import torchaudio" 2>/dev/null; then
  echo "setup: torchaudio must not be installed" >&2
  exit 1
fi
echo "$want" > "$STAMP"
