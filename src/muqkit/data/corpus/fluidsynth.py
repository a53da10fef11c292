"""Render MIDI slots to audio with the FluidSynth command line and General MIDI soundfonts from Debian.

A batch of :class:`~muqkit.data.corpus.midi.Slot` is written as one MIDI file, rendered once (one soundfont
load per batch), down-mixed to mono and cut back into one array per slot. Reverb and chorus are off
and the output is float, so rendering is deterministic.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from muqkit.data.corpus.midi import Slot, write_slots_midi

#: Where Debian's GM soundfont packages install their files, and which package provides each.
SOUNDFONT_PACKAGES: dict[str, str] = {
    "/usr/share/sounds/sf2/FluidR3_GM.sf2": "fluid-soundfont-gm",
    "/usr/share/sounds/sf2/TimGM6mb.sf2": "timgm6mb-soundfont",
    "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3": "musescore-general-soundfont-small",
}


class SystemRequirementError(RuntimeError):
    """A program or data package the corpus builder needs is not installed."""


def require_fluidsynth() -> str:
    """Path of the ``fluidsynth`` program, or a :class:`SystemRequirementError` saying what to install."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise SystemRequirementError(
            "the corpus builder renders MIDI with the fluidsynth program, which is not installed: "
            "run `apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont`"
        )
    return exe


def find_soundfonts(candidates: Sequence[str] | None = None) -> list[Path]:
    """General MIDI soundfonts that exist on this machine, in a fixed order.

    Args:
        candidates: soundfont files to look for; defaults to Debian's GM soundfont packages.

    Raises:
        SystemRequirementError: none is installed (the message names the packages).
    """
    paths = list(candidates) if candidates is not None else list(SOUNDFONT_PACKAGES)
    found = [Path(p) for p in paths if Path(p).is_file()]
    if not found:
        packages = " ".join(SOUNDFONT_PACKAGES.values())
        raise SystemRequirementError(
            f"no General MIDI soundfont found (looked for {', '.join(paths)}): run `apt-get install {packages}`"
        )
    return found


def render_slots(
    slots: Sequence[Slot],
    soundfont: str | Path,
    *,
    sample_rate: int = 24000,
    gain: float = 0.4,
) -> list[np.ndarray]:
    """Render slots with FluidSynth and return one mono float32 array per slot.

    Args:
        slots: items on one timeline (non-overlapping, slot starts on whole seconds are sample-exact).
        soundfont: ``.sf2``/``.sf3`` file.
        sample_rate: output rate in Hz.
        gain: FluidSynth master gain.

    Returns:
        Arrays of ``round(duration * sample_rate)`` samples each.
    """
    exe = require_fluidsynth()
    with tempfile.TemporaryDirectory(prefix="muqkit-render-") as tmp:
        midi = Path(tmp) / "batch.mid"
        wav = Path(tmp) / "batch.wav"
        write_slots_midi(midi, slots)
        cmd = [
            exe, "-ni", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-O", "float", "-T", "wav",
            "-F", str(wav), "-r", str(sample_rate), str(soundfont), str(midi),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"fluidsynth failed ({proc.returncode}) on {soundfont}: {proc.stderr.strip()}")
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz instead of {sample_rate} Hz")
    mono = audio.mean(axis=1)
    out = []
    for slot in slots:
        start = round(slot.start * sample_rate)
        n = round(slot.duration * sample_rate)
        piece = mono[start : start + n]
        out.append(np.pad(piece, (0, n - len(piece))).astype(np.float32))
    return out
