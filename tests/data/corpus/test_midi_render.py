"""MIDI writing and FluidSynth rendering (rendering tests skip without fluidsynth and a soundfont)."""

from __future__ import annotations

import numpy as np
import pytest

from muqkit.data.corpus.fluidsynth import SystemRequirementError, find_soundfonts, render_slots, require_fluidsynth
from muqkit.data.corpus.midi import Note, Slot, _vlq, gm_family, write_slots_midi


def test_vlq_known_values():
    assert _vlq(0) == b"\x00"
    assert _vlq(0x40) == b"\x40"
    assert _vlq(0x80) == b"\x81\x00"
    assert _vlq(0x3FFF) == b"\xff\x7f"


def test_gm_family():
    assert gm_family(0) == "piano"
    assert gm_family(40) == "strings"
    assert gm_family(73) == "pipe"
    with pytest.raises(ValueError):
        gm_family(128)


def test_midi_file_structure(tmp_path):
    slots = [Slot(0.0, 1.0, ((0, 40),), (Note(0.0, 0.5, 69, 100, 0),))]
    write_slots_midi(tmp_path / "a.mid", slots)
    data = (tmp_path / "a.mid").read_bytes()
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert bytes([0xC0, 40]) in data and bytes([0x90, 69, 100]) in data
    assert data.endswith(b"\xff\x2f\x00")
    with pytest.raises(ValueError, match="drum"):
        write_slots_midi(tmp_path / "b.mid", [Slot(0.0, 1.0, ((9, 0),), ())])


def test_missing_soundfont_message(tmp_path):
    with pytest.raises(SystemRequirementError, match="apt-get install"):
        find_soundfonts([str(tmp_path / "none.sf2")])


@pytest.fixture(scope="module")
def soundfont():
    try:
        require_fluidsynth()
        return find_soundfonts()[0]
    except SystemRequirementError as exc:
        pytest.skip(f"needs fluidsynth and a GM soundfont: {exc}")


def test_render_slots_pitch_silence_and_determinism(soundfont):
    slots = [
        Slot(0.0, 1.5, ((0, 0),), (Note(0.0, 1.0, 69, 100, 0),)),  # A4 piano
        Slot(3.0, 1.0, ((0, 0),), ()),  # nothing: must be silent (the previous note was cut)
    ]
    first = render_slots(slots, soundfont)
    assert [len(a) for a in first] == [36000, 24000]
    spectrum = np.abs(np.fft.rfft(first[0][:24000]))
    peak_hz = np.argmax(spectrum) * 24000 / 24000
    assert abs(peak_hz - 440) < 5
    assert np.sqrt(np.mean(first[1] ** 2)) < 1e-5
    second = render_slots(slots, soundfont)
    np.testing.assert_array_equal(first[0], second[0])
