"""The corpus's format: the version a build writes, and what continuing or reading an older one takes.

Format 2 renders dance tunes at their dance's tempo (format 1: a uniform 60-150 qpm for every score); format 3
adds the frame labels of every score clip (``labels/scores/<id>.json``, :mod:`muqkit.data.labels`) to the same
audio.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from muqkit.data.corpus.sizes import CorpusMismatchError

FORMAT_VERSION = 3
UPGRADE_HINT = "muqkit data build-corpus --upgrade"


def check_upgradable(out: Path, existing: dict[str, Any], version: int, upgrade: bool) -> dict[str, Any]:
    """The stamp of a corpus of another format, as a build of ``version`` continues it; else a clear error.

    Only a complete format-2 build can be upgraded (to format 3: the same audio plus frame labels).
    """
    found = existing.get("format")
    if found == 2 and version == 3 and upgrade:
        if not existing.get("complete"):
            raise CorpusMismatchError(
                f"{out} holds an unfinished corpus of format 2; finish it with an older "
                "muqkit or build anew, --upgrade needs a complete one"
            )
        return {**existing, "format": version, "complete": False}
    hint = (
        f"add its frame labels without rendering again with `{UPGRADE_HINT}` (same --out, --size and --seed), or "
        if found == 2 and version == 3
        else ""
    )
    raise CorpusMismatchError(
        f"{out} holds a corpus of format {found}, this muqkit writes format {version} (format 3 adds the frame "
        f"labels of the score clips): {hint}build anew in another --out"
    )


def require_frame_labels(corpus: str | os.PathLike[str]) -> None:
    """Raise a clear error unless ``corpus`` is a corpus of format 3 or later (one with frame labels)."""
    stamp = Path(corpus) / "corpus.json"
    if not stamp.is_file():
        raise FileNotFoundError(f"{stamp} not found: build the corpus with `muqkit data build-corpus --out {corpus}`")
    found = json.loads(stamp.read_text()).get("format")
    if not isinstance(found, int) or found < 3:
        raise ValueError(
            f"{corpus} is a corpus of format {found}, which has no frame labels (format 3 adds them): run "
            f"`{UPGRADE_HINT} --out {corpus}` with its --size and --seed (no audio is rendered)"
        )
