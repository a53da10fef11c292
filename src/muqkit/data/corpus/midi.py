"""A minimal Standard MIDI File writer and the General MIDI vocabulary the corpus uses.

The corpus renders many short items in one FluidSynth run: each item gets a *slot* on a shared
timeline (its own channels, programs and notes), and the slot ends with "all sound off" so no voice
rings into the next one. Times are in seconds; the file uses 120 bpm and 480 ticks per beat, so one
tick is 1/960 s and slot boundaries on whole seconds fall on exact sample indices.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_BEAT = 480
TICKS_PER_SECOND = 960  # at the fixed 120 bpm (500000 us per beat)
DRUM_CHANNEL = 9

#: The 16 General MIDI program families (8 programs each, program // 8 indexes this tuple).
GM_FAMILIES: tuple[str, ...] = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)

#: Melodic families used for rendering (sound effects and percussive programs excluded).
MELODIC_FAMILIES: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13)


def gm_family(program: int) -> str:
    """Family name of a General MIDI program (0-127)."""
    if not 0 <= program < 128:
        raise ValueError(f"GM program must be in [0, 128), got {program}")
    return GM_FAMILIES[program // 8]


@dataclass(frozen=True)
class Note:
    """One note on the timeline.

    Attributes:
        start: onset in seconds.
        end: release in seconds (> start).
        pitch: MIDI pitch (0-127).
        velocity: MIDI velocity (1-127).
        channel: MIDI channel (0-15, 9 is drums).
    """

    start: float
    end: float
    pitch: int
    velocity: int
    channel: int

    def __post_init__(self) -> None:
        if not self.end > self.start >= 0:
            raise ValueError(f"note needs 0 <= start < end, got {self.start}, {self.end}")
        if not (0 <= self.pitch < 128 and 1 <= self.velocity < 128 and 0 <= self.channel < 16):
            raise ValueError(f"invalid note {self}")


@dataclass(frozen=True)
class Slot:
    """One rendered item: its programs per channel, its notes, and where it sits on the timeline.

    Attributes:
        start: slot start in seconds (notes are relative to it).
        duration: seconds of audio kept for the item; all sound is cut at ``start + duration``.
        programs: ``(channel, program)`` pairs set at the slot start.
        notes: notes with times relative to the slot start.
    """

    start: float
    duration: float
    programs: tuple[tuple[int, int], ...]
    notes: tuple[Note, ...]


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_slots_midi(path: str | Path, slots: Sequence[Slot]) -> None:
    """Write the slots as a format-0 MIDI file.

    Every slot starts with controller resets and program changes on its channels and ends with
    "all sound off" (CC 120) and "reset all controllers" (CC 121) on all 16 channels.
    """
    events: list[tuple[int, int, bytes]] = []  # (tick, order, message); order puts offs before ons

    def tick(seconds: float) -> int:
        return round(seconds * TICKS_PER_SECOND)

    for slot in slots:
        t0 = tick(slot.start)
        for channel, program in slot.programs:
            if channel == DRUM_CHANNEL:
                raise ValueError("channel 9 is the GM drum channel; use another one")
            events.append((t0, 0, bytes([0xB0 | channel, 7, 100])))  # channel volume
            events.append((t0, 0, bytes([0xC0 | channel, program])))
        end = slot.start + slot.duration
        for note in slot.notes:
            on = min(slot.start + note.start, end)
            off = min(slot.start + note.end, end)
            if off <= on:
                continue
            events.append((tick(on), 2, bytes([0x90 | note.channel, note.pitch, note.velocity])))
            events.append((tick(off), 1, bytes([0x80 | note.channel, note.pitch, 0])))
        for channel in range(16):
            events.append((tick(end), 3, bytes([0xB0 | channel, 120, 0])))
            events.append((tick(end), 3, bytes([0xB0 | channel, 121, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    track += _vlq(0) + b"\xff\x51\x03" + (500000).to_bytes(3, "big")  # 120 bpm
    last = 0
    for t, _, msg in events:
        track += _vlq(t - last) + msg
        last = t
    track += _vlq(TICKS_PER_SECOND) + b"\xff\x2f\x00"  # one second of tail, end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    Path(path).write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))
