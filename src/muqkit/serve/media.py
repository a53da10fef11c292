"""Audio for the browser: byte ranges of in-memory audio and on-the-fly WAV transcoding."""

from __future__ import annotations

import io
import os
import re

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(ValueError):
    """A ``Range`` header outside the content."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` byte range of a ``Range: bytes=...`` header, ``None`` for the whole
    content (no header, or a form this server does not split, such as several ranges).

    Raises:
        RangeNotSatisfiable: the range starts past the end or is empty.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"range {header!r} is outside the {size} bytes of the audio")
    return start, end


def transcode_wav(path: str | os.PathLike[str]) -> bytes:
    """The file decoded (libsndfile) and written as 16-bit PCM WAV, at its own rate and channels.

    Raises:
        AudioError: the file cannot be decoded.
    """
    import soundfile as sf

    from muqkit.audio.io import AudioError

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(path, f"cannot decode ({exc})") from exc
    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
