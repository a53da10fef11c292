"""How big a corpus build is: :class:`CorpusSize` and the named sizes of :data:`SIZES`."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 24000  # every corpus file is 24 kHz mono 16-bit


class CorpusMismatchError(RuntimeError):
    """The output folder holds (part of) a corpus built with other settings."""


@dataclass(frozen=True)
class CorpusSize:
    """How much of each source a build uses.

    Attributes:
        name: ``"ci"``, ``"small"``, ``"medium"`` or ``"full"``.
        scores_per_collection: usable scores taken per music21 collection (``None``: all of them).
        renders_per_score: renderings of each score (soundfont, programs, tempo, transposition vary).
        clip_seconds: longest excerpt rendered from the start of a score.
        programs_per_family: GM programs per family for the single notes (of 8).
        pitches_per_instrument: pitches drawn for each (soundfont, program) instrument.
        note_seconds: length of a single-note item (the note is held for two thirds of it).
        game_packages: Debian game-music packages used for the unlabeled pool.
        game_segments_per_track: segments taken from each track (``None``: the whole track).
        game_segment_seconds: length of a game-music segment.
    """

    name: str
    scores_per_collection: int | None
    renders_per_score: int
    clip_seconds: float
    programs_per_family: int
    pitches_per_instrument: int
    note_seconds: float
    game_packages: tuple[str, ...]
    game_segments_per_track: int | None
    game_segment_seconds: float

    def __post_init__(self) -> None:
        if self.scores_per_collection is not None and self.scores_per_collection < 3:
            raise ValueError("scores_per_collection must be >= 3 (one per split) or None")
        if self.renders_per_score < 1 or not 1 <= self.programs_per_family <= 8:
            raise ValueError("renders_per_score must be >= 1 and programs_per_family in [1, 8]")
        if self.clip_seconds < 2 or self.note_seconds < 0.5 or self.game_segment_seconds < 1:
            raise ValueError("clip_seconds >= 2, note_seconds >= 0.5 and game_segment_seconds >= 1 required")


SIZES: dict[str, CorpusSize] = {
    "ci": CorpusSize("ci", 4, 1, 6.0, 1, 2, 1.5, ("asc-music",), 1, 8.0),
    # The demo's: enough test items per task (>= 30 key clips, about 90 notes) in a few minutes.
    "demo": CorpusSize("demo", 36, 2, 8.0, 4, 4, 2.0, (), 1, 8.0),
    "small": CorpusSize("small", 80, 2, 10.0, 4, 4, 3.0, ("asc-music", "drascula-music", "hyperrogue-music"), 6, 30.0),
    # The small corpus's pool and notes with four times the scores, rendered three times: enough
    # annotated tunes (mode, metre, dance type) for music-text training on a CPU.
    "medium": CorpusSize(
        "medium", 320, 3, 10.0, 4, 4, 3.0, ("asc-music", "drascula-music", "hyperrogue-music"), 6, 30.0
    ),
    "full": CorpusSize(
        "full",
        None,
        2,
        20.0,
        8,
        12,
        4.0,
        (
            "asc-music",
            "drascula-music",
            "hyperrogue-music",
            "planetblupi-music-ogg",
            "singularity-music",
            "nexuiz-music",
            "warzone2100-music",
            "wesnoth-1.16-music",
            "ufoai-music",
        ),
        None,
        30.0,
    ),
}


__all__ = ["SAMPLE_RATE", "SIZES", "CorpusMismatchError", "CorpusSize"]
