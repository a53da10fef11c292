"""Small benchmark tasks built from the offline corpus: single notes rendered with FluidSynth (skips without it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def notes_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notes-only offline corpus: 13 GM families x 1 program x 4 pitches, 1.5 s each at 24 kHz."""
    from muqkit.data.corpus import SIZES, build_corpus
    from muqkit.data.corpus.fluidsynth import SystemRequirementError, find_soundfonts, require_fluidsynth

    try:
        require_fluidsynth()
        soundfonts = [str(p) for p in find_soundfonts()[:1]]
    except SystemRequirementError as exc:
        pytest.skip(f"needs system packages: {exc}")
    size = dataclasses.replace(SIZES["ci"], name="ci", pitches_per_instrument=4)
    root = tmp_path_factory.mktemp("notes-corpus")
    build_corpus(root, size=size, seed=0, soundfonts=soundfonts, sources=("notes",))
    return root
