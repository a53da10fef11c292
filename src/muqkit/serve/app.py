"""The web app: a FastAPI application with the page (package data under ``static/``) and a JSON API
(FastAPI is the ``serve`` extra: import this module only to serve).

Every route under ``/api/`` answers JSON; an error is ``{"error": MESSAGE}`` with its status code (400 bad
parameter or audio, 404 unknown track or route, 409 no text tower, 413 upload too large or too long,
416 byte range outside the audio). Audio is served only by track id, so no request names a file, and no
answer names one on the server: tracks carry their path relative to the collection's common folder, and
errors about a file name it that way (an upload is "the upload"); the model is named, not located.

Searches say what their scores measure (``similarity``): ``text-to-audio`` (a description against the
tracks: MuQ-MuLan's cosine, on a smaller scale) or ``audio-to-audio`` (a track or an upload against the
tracks: 1 is the same audio).

Audio answers ``GET`` and ``HEAD`` with byte ranges as RFC 9110 (section 14) asks: one ``bytes`` range gives
206; a ``Range`` header of another unit, invalid syntax (``bytes=5-3``) or several ranges is ignored (200,
the whole file); a range that starts past the end is 416 with ``Content-Range: bytes */LENGTH``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from muqkit.search.query import TextSearchUnavailable
from muqkit.serve.backend import BROWSER_FORMATS, Hit, SearchBackend, Track

DEFAULT_TAGS: tuple[str, ...] = (
    "piano", "guitar", "strings", "brass", "drums", "voice", "electronic", "orchestra",
    "calm", "energetic", "happy", "sad", "jazz", "classical", "rock", "folk", "ambient", "dance",
)  # fmt: skip
log = logging.getLogger(__name__)
UPLOAD_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif")
TEXT_TO_AUDIO, AUDIO_TO_AUDIO = "text-to-audio", "audio-to-audio"
DECODED_UPLOADS = 2  # uploads decoded at once: one being embedded, the next one ready (the model runs one at a time)


@dataclass(frozen=True)
class ServeConfig:
    """Limits and defaults of the app.

    Attributes:
        max_k: most results a search returns.
        max_upload_mb: largest audio file accepted for search by example, in MiB.
        max_upload_seconds: longest audio accepted for search by example.
        max_tags: most tags scored at once.
        default_tags: the tag list the page starts with.
    """

    max_k: int = 100
    max_upload_mb: float = 20.0
    max_upload_seconds: float = 60.0
    max_tags: int = 64
    default_tags: tuple[str, ...] = DEFAULT_TAGS

    def __post_init__(self) -> None:
        for name in ("max_k", "max_upload_mb", "max_upload_seconds", "max_tags"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServeConfig.{name} must be positive, got {getattr(self, name)}")
        if not self.default_tags:
            raise ValueError("ServeConfig.default_tags must hold at least one tag")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def static_folder() -> Path:
    """The page's files (package data)."""
    return Path(str(resources.files("muqkit.serve") / "static"))


def track_json(track: Track, duration: float | None = None) -> dict[str, Any]:
    """A track as answers show it: its path relative to the collection, not the server's file, and its
    duration in seconds (``None``: unknown)."""
    return {**{k: v for k, v in dataclasses.asdict(track).items() if k != "file"},
            "duration": None if duration is None else round(duration, 3),
            "audio": f"/api/tracks/{track.id}/audio"}  # fmt: skip


def hits_json(hits: Sequence[Hit], backend: SearchBackend) -> list[dict[str, Any]]:
    return [{"rank": h.rank, "score": round(h.score, 6), "track": track_json(h.track, backend.duration(h.track.id))}
            for h in hits]  # fmt: skip


def create_app(backend: SearchBackend, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application over ``backend`` (whose model is already loaded)."""
    from muqkit.audio.io import AudioError
    from muqkit.serve.media import RangeNotSatisfiable, parse_range, transcode_wav, without_path

    config = config or ServeConfig()
    decoding = threading.BoundedSemaphore(DECODED_UPLOADS)  # bounds the memory of many uploads at once
    app = FastAPI(title="muqkit", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    static = static_folder()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such route: {request.url.path}"
        return JSONResponse({"error": str(message)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body"))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {exc}); see the server's log"},
                            status_code=500)  # fmt: skip

    def check_k(k: int) -> int:
        if not 1 <= k <= config.max_k:
            raise HTTPException(400, f"k must be between 1 and {config.max_k}, got {k}")
        return k

    def track_id(value: int) -> int:
        if not 0 <= value < len(backend.tracks):
            raise HTTPException(404, f"no track {value}; ids go from 0 to {len(backend.tracks) - 1}")
        return value

    def tag_list(text: str | None) -> list[str]:
        tags = list(dict.fromkeys(t.strip() for t in (text or "").split(",") if t.strip()))
        if text is None:
            return list(config.default_tags)
        if not tags:
            raise HTTPException(400, "tags: give comma-separated tag names")
        if len(tags) > config.max_tags:
            raise HTTPException(400, f"tags: at most {config.max_tags} tags, got {len(tags)}")
        return tags

    def no_text(exc: TextSearchUnavailable) -> HTTPException:
        return HTTPException(409, str(exc))

    def shown(track: Track) -> dict[str, Any]:
        return track_json(track, backend.duration(track.id))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """The index and the app's limits."""
        return {
            "model": backend.model_name,
            "tracks": len(backend.tracks),
            "text_search": backend.can_search_text,
            "default_tags": list(config.default_tags),
            "max_k": config.max_k,
            "max_upload_mb": config.max_upload_mb,
            "max_upload_seconds": config.max_upload_seconds,
        }

    @app.get("/api/tracks")
    def tracks(offset: int = 0, limit: int | None = None, q: str | None = None) -> dict[str, Any]:
        """The tracks of the index (``limit`` of them from ``offset``; all without ``limit``), those whose
        path holds ``q`` (case-insensitive) when given; ``total`` counts every match."""
        if offset < 0:
            raise HTTPException(400, f"offset must be 0 or more, got {offset}")
        if limit is not None and limit < 1:
            raise HTTPException(400, f"limit must be 1 or more, got {limit}")
        matches: Sequence[Track] = backend.tracks
        needle = (q or "").strip().casefold()
        if needle:
            matches = [t for t in backend.tracks if needle in t.path.casefold()]
        page = matches[offset:] if limit is None else matches[offset : offset + limit]
        return {"total": len(matches), "offset": offset, "tracks": [shown(t) for t in page]}

    @app.get("/api/tracks/{track}")
    def track(track: int) -> dict[str, Any]:
        """One track."""
        return shown(backend.tracks[track_id(track)])

    @app.get("/api/search")
    def search(q: str = Query(..., description="a description of the music"), k: int = 10) -> dict[str, Any]:
        """Text-to-music search."""
        if not q.strip():
            raise HTTPException(400, "q: the query is empty; describe the music")
        try:
            hits = backend.search_text(q, k=check_k(k))
        except TextSearchUnavailable as exc:
            raise no_text(exc) from None
        return {"query": q, "similarity": TEXT_TO_AUDIO, "hits": hits_json(hits, backend)}

    @app.get("/api/tracks/{track}/similar")
    def similar(track: int, k: int = 10) -> dict[str, Any]:
        """More like this: music-to-music search from an indexed track."""
        hits = backend.more_like_this(track_id(track), k=check_k(k))
        return {"track": shown(backend.tracks[track]), "similarity": AUDIO_TO_AUDIO, "hits": hits_json(hits, backend)}

    @app.get("/api/tracks/{track}/tags")
    def tags(track: int, tags: str | None = None) -> dict[str, Any]:
        """Zero-shot tags of a track (comma-separated ``tags``; the default list without)."""
        try:
            scores = backend.tags(track_id(track), tag_list(tags))
        except TextSearchUnavailable as exc:
            raise no_text(exc) from None
        return {"track": shown(backend.tracks[track]),
                "tags": [{"tag": s.tag, "score": round(s.score, 6)} for s in scores]}  # fmt: skip

    @app.get("/api/map")
    def map_(tags: str | None = None) -> dict[str, Any]:
        """2-D coordinates of every track, with its folder and (given ``tags``) its best tag."""
        xy = backend.map_coordinates()
        best: list[str] | None = None
        if tags is not None:
            try:
                best = backend.best_tags(tag_list(tags))
            except TextSearchUnavailable as exc:
                raise no_text(exc) from None
        points = [
            {"id": t.id, "x": round(float(x), 5), "y": round(float(y), 5), "folder": t.folder, "name": t.name,
             **({"tag": best[t.id]} if best is not None else {})}
            for t, (x, y) in zip(backend.tracks, xy.tolist(), strict=True)
        ]  # fmt: skip
        return {"points": points}

    @app.api_route("/api/tracks/{track}/audio", methods=["GET", "HEAD"])
    def audio(track: int, request: Request) -> Response:
        """The track's audio (byte ranges; formats browsers cannot play are sent as WAV)."""
        item = backend.tracks[track_id(track)]
        if not os.path.isfile(item.file):
            raise HTTPException(404, f"track {item.id} ({item.path}): its file is missing; it was moved or deleted "
                                     "since the index was built")  # fmt: skip
        head = request.method == "HEAD"

        def byte_range(size: int) -> tuple[int, int] | None:
            try:
                return parse_range(request.headers.get("range"), size)
            except RangeNotSatisfiable as exc:
                raise HTTPException(416, str(exc), headers={"Content-Range": f"bytes */{size}"}) from None

        if item.playable:
            media_type = BROWSER_FORMATS[Path(item.file).suffix.lower()]
            size = os.path.getsize(item.file)
            span = byte_range(size)
            if span is None:  # the whole file, whatever Range header came (Starlette would answer it itself)
                return _WholeFile(item.file, media_type=media_type, headers={"Accept-Ranges": "bytes"})
            start, end = span
            headers = {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}",
                       "Content-Length": str(end - start + 1)}  # fmt: skip
            if head:
                return Response(status_code=206, media_type=media_type, headers=headers)
            return StreamingResponse(_file_bytes(item.file, start, end), status_code=206, media_type=media_type,
                                     headers=headers)  # fmt: skip
        try:
            data = transcode_wav(item.file)
        except AudioError as exc:
            raise HTTPException(400, f"track {item.id}: {without_path(str(exc), item.file, item.path)}") from None
        span = byte_range(len(data))
        headers = {"Accept-Ranges": "bytes", "X-Transcoded": "wav"}
        status, body = 200, data
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            status, body = 206, data[start : end + 1]
        if head:
            headers["Content-Length"] = str(len(body))
            return Response(status_code=status, media_type="audio/wav", headers=headers)
        return Response(body, status_code=status, media_type="audio/wav", headers=headers)

    @app.post("/api/search/audio")
    async def search_audio(request: Request, k: int = 10, name: str = "upload.wav") -> dict[str, Any]:
        """Search by example: the request body is an audio file (``name`` gives its format by suffix)."""
        check_k(k)
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(400, f"{name}: unsupported format; send one of {', '.join(UPLOAD_SUFFIXES)}")
        limit = config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"{name}: {int(declared)} bytes; the limit is {config.max_upload_mb:g} MiB")
        with tempfile.TemporaryDirectory(prefix="muqkit-upload-") as folder:
            path = Path(folder) / f"upload{suffix}"
            size = 0
            with open(path, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise HTTPException(413, f"{name}: more than the limit of {config.max_upload_mb:g} MiB")
                    fh.write(chunk)
            if size == 0:
                raise HTTPException(400, f"{name}: the upload is empty; send the audio file as the request body")
            hits = await run_in_threadpool(_search_file, backend, path, name, k, config.max_upload_seconds, decoding)
        return {"query": name, "similarity": AUDIO_TO_AUDIO, "hits": hits_json(hits, backend)}

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False)
    def unknown(rest: str) -> None:
        raise HTTPException(404, f"no such route: /api/{rest}")

    return app


class _WholeFile(FileResponse):
    """A file answered whole (200, or headers only for HEAD): the request's ``Range`` header, already judged
    by :func:`~muqkit.serve.media.parse_range` to be ignored, is hidden from Starlette's own range handling."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"range", b"if-range")]
        await super().__call__({**scope, "headers": headers}, receive, send)


def _file_bytes(path: str, start: int, end: int, block: int = 1 << 16) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (inclusive) of a file, in blocks."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = fh.read(min(block, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def _search_file(backend: SearchBackend, path: Path, name: str, k: int, max_seconds: float,
                 decoding: threading.BoundedSemaphore) -> list[Hit]:  # fmt: skip
    """Decode an uploaded file (duration checked from its header first) and search with it, holding one of the
    ``decoding`` slots from the decoding to the search (so that uploads waiting for the model wait as files,
    not as decoded audio); errors name the upload, never its temporary file."""
    import soundfile as sf

    from muqkit.audio.io import AudioError, load_audio
    from muqkit.serve.media import without_path

    try:
        seconds = sf.info(str(path)).duration
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise HTTPException(400, f"{name}: not a readable audio file ({without_path(str(exc), path, name)})") from None
    if seconds > max_seconds:
        raise HTTPException(413, f"{name}: {seconds:.1f} s of audio; the limit is {max_seconds:g} s")
    with decoding:
        try:
            wav = load_audio(path, sample_rate=backend.sample_rate)
        except AudioError as exc:
            raise HTTPException(400, f"{name}: {without_path(exc.problem, path, 'the upload')}") from None
        return backend.search_audio(wav, k=k)
