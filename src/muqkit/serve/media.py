"""Audio for the browser: byte ranges of in-memory audio and on-the-fly WAV transcoding."""

from __future__ import annotations

import io
import os
import re

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """A valid ``Range`` header that selects none of the content (answered 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` byte range of a ``Range: bytes=...`` header, or ``None`` for the whole
    content.

    As RFC 9110 (section 14) asks, a header this server cannot use is ignored (the whole content, 200): another
    unit (``items=0-5``), invalid syntax (``bytes=abc``, ``bytes=5-3``: a last position before the first),
    and several ranges, which this server does not split.

    Raises:
        RangeNotSatisfiable: a valid range that selects no byte: it starts at or past the end
            (``bytes=999999999-``), or asks for the last 0 bytes (``bytes=-0``).
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:  # "bytes=-": invalid
        return None
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {header.strip()!r} selects none of the {size} bytes of the audio")
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:  # invalid, not unsatisfiable
        return None
    if start >= size:
        raise RangeNotSatisfiable(f"range {header.strip()!r} starts outside the {size} bytes of the audio")
    return start, min(int(last), size - 1) if last else size - 1


def without_path(text: str, path: str | os.PathLike[str], shown: str) -> str:
    """``text`` (an error message) with every spelling of ``path`` (as given, absolute, resolved) replaced by
    ``shown``, so that an answer carries no server path."""
    given = os.fspath(path)
    spellings = {given, os.path.abspath(given), os.path.realpath(given)}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, shown)
    return text


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
