"""The offline corpus builder: rendered music21 scores, NSynth-style notes and Debian game music.

:func:`build_corpus` (:mod:`~muqkit.data.corpus.build`) is the entry point; the plan, the score parser,
rendering, the game-music segments, the sizes and the format version are its modules. The corpus's music
theory is :mod:`muqkit.data.theory`, its frame labels :mod:`muqkit.data.labels`.
"""

from muqkit.data.corpus.build import CorpusSummary, build_corpus
from muqkit.data.corpus.fluidsynth import SystemRequirementError, find_soundfonts, require_fluidsynth
from muqkit.data.corpus.format import FORMAT_VERSION, require_frame_labels
from muqkit.data.corpus.game import segment_tracks
from muqkit.data.corpus.midi import GM_FAMILIES
from muqkit.data.corpus.plan import DANCE_BPM
from muqkit.data.corpus.sizes import SAMPLE_RATE, SIZES, CorpusMismatchError, CorpusSize
from muqkit.data.theory import beat_quarters

__all__ = [
    "DANCE_BPM",
    "FORMAT_VERSION",
    "GM_FAMILIES",
    "SAMPLE_RATE",
    "SIZES",
    "CorpusMismatchError",
    "CorpusSize",
    "CorpusSummary",
    "SystemRequirementError",
    "beat_quarters",
    "build_corpus",
    "find_soundfonts",
    "require_fluidsynth",
    "require_frame_labels",
    "segment_tracks",
]
