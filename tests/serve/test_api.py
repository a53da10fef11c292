"""The JSON API: every endpoint, its errors and status codes, byte ranges (RFC 9110) and HEAD, path traversal,
upload limits, no server path in any answer (the model named, not located), pages of the track list, durations,
labelled scores and the favicon."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch


@pytest.fixture(scope="module")
def client(mulan_backend):
    from fastapi.testclient import TestClient

    from muqkit.serve.app import ServeConfig, create_app

    config = ServeConfig(max_k=20, max_upload_mb=0.5, max_upload_seconds=4.0, default_tags=("piano", "drums", "voice"))
    return TestClient(create_app(mulan_backend, config))


@pytest.fixture(scope="module")
def muq_client(muq_backend):
    from fastapi.testclient import TestClient

    from muqkit.serve.app import create_app

    return TestClient(create_app(muq_backend))


def error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and message
    return message


def wav_bytes(seconds: float, freq: float = 440.0, rate: int = 24000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_info_and_tracks(client, mulan_backend, mulan_dir):
    answer = client.get("/api/info")
    info = answer.json()
    assert info["tracks"] == 7 and info["text_search"] is True and info["default_tags"] == ["piano", "drums", "voice"]
    # the model by name (its folder's), not by its path on the server (it was the absolute folder)
    assert info["model"] == mulan_dir.name == "mulan" and str(mulan_dir.parent) not in answer.text
    tracks = client.get("/api/tracks").json()["tracks"]
    assert [t["id"] for t in tracks] == list(range(7))
    assert {t["folder"] for t in tracks} == {"tones", "noise", "chords"}
    assert [t["name"] for t in tracks if not t["playable"]] == ["minor.aiff"]
    # paths relative to the collection's common folder; the server's files stay on the server
    assert [t["path"] for t in tracks] == [f"{t['folder']}/{t['name']}" for t in tracks]
    assert all("file" not in t for t in tracks)
    # every track's duration, from its file's header (2.5 s each, the AIFF, FLAC and Ogg ones included)
    assert [t["duration"] for t in tracks] == pytest.approx([2.5] * 7, abs=1e-3)
    assert client.get("/api/tracks/4").json() == tracks[4]
    assert "no track 7" in error(client.get("/api/tracks/7"), 404)


def test_track_list_pages_and_filter(client):
    """The page lists 50 tracks at a time and filters by path: ``offset``, ``limit`` and ``q``, with ``total``."""
    every = client.get("/api/tracks").json()
    assert every["total"] == 7 and every["offset"] == 0
    paths = [t["path"] for t in every["tracks"]]
    pages = [client.get("/api/tracks", params={"offset": o, "limit": 3}).json() for o in (0, 3, 6, 9)]
    assert [[t["path"] for t in p["tracks"]] for p in pages] == [paths[:3], paths[3:6], paths[6:], []]
    assert {p["total"] for p in pages} == {7} and [p["offset"] for p in pages] == [0, 3, 6, 9]
    tones = client.get("/api/tracks", params={"q": " TONES/ ", "limit": 2}).json()
    assert tones["total"] == 3 and [t["path"] for t in tones["tracks"]] == [p for p in paths if "tones/" in p][:2]
    assert [t["name"] for t in client.get("/api/tracks", params={"q": "aiff"}).json()["tracks"]] == ["minor.aiff"]
    assert client.get("/api/tracks", params={"q": "nothing like it"}).json() == {"total": 0, "offset": 0, "tracks": []}
    assert "offset" in error(client.get("/api/tracks", params={"offset": -1}), 400)
    assert "limit" in error(client.get("/api/tracks", params={"limit": 0}), 400)


def test_scores_say_what_they_measure(client, collection):
    """Text-to-music and music-to-music similarities differ in scale: each answer says which it holds."""
    assert client.get("/api/search", params={"q": "piano"}).json()["similarity"] == "text-to-audio"
    assert client.get("/api/tracks/1/similar").json()["similarity"] == "audio-to-audio"
    upload = (collection / "tones" / "low.wav").read_bytes()
    assert client.post("/api/search/audio", params={"name": "x.wav"}, content=upload).json()["similarity"] == (
        "audio-to-audio")  # fmt: skip


def test_favicon(client):
    page = client.get("/").text
    assert '<link rel="icon" href="/static/favicon.svg"' in page
    for url in ("/static/favicon.svg", "/favicon.ico"):
        icon = client.get(url)
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        assert icon.text.startswith("<svg")


def test_text_search_equals_the_library(client, mulan_backend):
    query = "bright high tones"
    body = client.get("/api/search", params={"q": query, "k": 5}).json()
    index, model = mulan_backend.index, mulan_backend.embedder.model
    expected = index.search(model.extract_text_latents([query]), k=5)[0]
    assert [mulan_backend.tracks[h["track"]["id"]].file for h in body["hits"]] == [h.path for h in expected]
    assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in expected], abs=1e-5)
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [({"q": "  "}, 400, "empty"), ({}, 400, "q"), ({"q": "x", "k": 0}, 400, "between 1 and 20"),
     ({"q": "x", "k": 21}, 400, "between 1 and 20"), ({"q": "x", "k": "ten"}, 400, "k")],
)  # fmt: skip
def test_search_errors(client, params, status, needle):
    assert needle in error(client.get("/api/search", params=params), status)


def test_more_like_this_leaves_the_track_out(client, mulan_backend):
    hits = client.get("/api/tracks/3/similar", params={"k": 6}).json()["hits"]
    ids = [h["track"]["id"] for h in hits]
    assert 3 not in ids and len(ids) == 6
    latents = torch.from_numpy(mulan_backend.index.vectors())
    scores = (latents @ latents[3]).tolist()
    assert ids == sorted((i for i in range(7) if i != 3), key=lambda i: -scores[i])
    assert "no track 7" in error(client.get("/api/tracks/7/similar"), 404)
    assert "no track -1" in error(client.get("/api/tracks/-1/similar"), 404)


def test_tags_default_and_edited(client, mulan_backend):
    body = client.get("/api/tracks/2/tags").json()
    assert sorted(t["tag"] for t in body["tags"]) == ["drums", "piano", "voice"]
    scores = [t["score"] for t in body["tags"]]
    assert scores == sorted(scores, reverse=True)
    edited = client.get("/api/tracks/2/tags", params={"tags": "noise, calm ,noise"}).json()["tags"]
    assert sorted(t["tag"] for t in edited) == ["calm", "noise"]  # stripped, duplicates once
    tag_latents = mulan_backend.embedder.tag_latents(["noise", "calm"])
    track = torch.from_numpy(mulan_backend.index.vectors())[2]
    expected = dict(zip(["noise", "calm"], (tag_latents @ track).tolist(), strict=True))
    assert {t["tag"]: t["score"] for t in edited} == pytest.approx(expected, abs=1e-5)
    assert "tags" in error(client.get("/api/tracks/2/tags", params={"tags": " , "}), 400)
    assert "at most" in error(client.get("/api/tracks/2/tags", params={"tags": ",".join(map(str, range(65)))}), 400)


def test_map_points_and_tag_colours(client, mulan_backend):
    points = client.get("/api/map").json()["points"]
    assert [p["id"] for p in points] == list(range(7))
    xy = np.array([[p["x"], p["y"]] for p in points])
    assert xy.min() == 0.0 and xy.max() == 1.0
    coloured = client.get("/api/map", params={"tags": "piano,noise"}).json()["points"]
    assert [p["tag"] for p in coloured] == mulan_backend.best_tags(["piano", "noise"])


def test_audio_is_served_with_ranges(client, collection):
    whole = client.get("/api/tracks/0/audio")
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    path = client.get("/api/tracks").json()["tracks"][0]["path"]
    assert whole.content == (collection / path).read_bytes()
    part = client.get("/api/tracks/0/audio", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == whole.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"


def test_aiff_is_transcoded_to_wav_with_ranges(client, collection):
    track = next(t for t in client.get("/api/tracks").json()["tracks"] if not t["playable"])
    whole = client.get(track["audio"])
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/wav"
    data, rate = sf.read(io.BytesIO(whole.content))
    original, original_rate = sf.read(collection / track["path"])
    assert rate == original_rate and np.abs(data - original).max() < 1e-4
    tail = client.get(track["audio"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    message = error(client.get(track["audio"], headers={"Range": f"bytes={len(whole.content)}-"}), 416)
    assert "outside" in message


@pytest.mark.parametrize("playable", [True, False], ids=["wav", "transcoded"])
def test_ranges_follow_rfc_9110(client, playable):
    """An invalid Range (another unit, bad syntax, last before first) is ignored: 200 and the whole audio. One
    that starts past the end is 416 with ``Content-Range: bytes */LENGTH`` and the JSON error, on the WAV path
    (once 400 text/plain and an empty 416) as on the transcoded one."""
    track = next(t for t in client.get("/api/tracks").json()["tracks"] if t["playable"] == playable)
    whole = client.get(track["audio"])
    size = len(whole.content)
    for header in ("bytes=5-3", "bytes=abc", "items=0-5", "bytes=-", "bytes=0-1,5-6", "bytes 0-5"):
        answer = client.get(track["audio"], headers={"Range": header})
        assert answer.status_code == 200 and answer.content == whole.content, header
    for header in ("bytes=999999999-", f"bytes={size}-", "bytes=-0"):
        answer = client.get(track["audio"], headers={"Range": header})
        assert "audio" in error(answer, 416), header
        assert answer.headers["content-range"] == f"bytes */{size}"
    part = client.get(track["audio"], headers={"Range": "BYTES=10-19"})  # the unit is case-insensitive
    assert part.status_code == 206 and part.content == whole.content[10:20]
    end = client.get(track["audio"], headers={"Range": f"bytes={size - 5}-{size + 100}"})  # clipped to the end
    assert end.status_code == 206 and end.content == whole.content[-5:]
    assert end.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"


@pytest.mark.parametrize("playable", [True, False], ids=["wav", "transcoded"])
def test_head_on_audio_gives_the_headers_without_the_body(client, playable):
    track = next(t for t in client.get("/api/tracks").json()["tracks"] if t["playable"] == playable)
    whole = client.get(track["audio"])
    head = client.head(track["audio"])
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(whole.content))
    assert head.headers["content-type"] == whole.headers["content-type"]
    assert head.headers["accept-ranges"] == "bytes"
    part = client.head(track["audio"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == b"" and part.headers["content-length"] == "100"
    assert part.headers["content-range"] == f"bytes 100-199/{len(whole.content)}"
    assert client.head(track["audio"], headers={"Range": "bytes=999999999-"}).status_code == 416


@pytest.mark.parametrize(
    "url",
    ["/api/tracks/..%2F..%2F..%2Fetc%2Fpasswd/audio", "/api/tracks/%2Fetc%2Fpasswd/audio",
     "/api/tracks/%2e%2e/audio", "/api/tracks//etc/passwd/audio", "/api/audio?path=/etc/passwd",
     "/static/..%2F..%2Fapp.py", "/static/%2e%2e/%2e%2e/app.py", "/static//etc/passwd", "/api/tracks/1.5/audio"],
)  # fmt: skip
def test_no_path_traversal(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404), response.status_code
    assert "root:" not in response.text and "create_app" not in response.text
    error(response, response.status_code)


def test_a_missing_file_is_a_clear_404(mulan_backend, tmp_path, collection):
    from fastapi.testclient import TestClient

    from muqkit.search import VectorIndex
    from muqkit.serve.app import create_app
    from muqkit.serve.backend import IndexBackend

    gone = tmp_path / "gone.wav"
    gone.write_bytes(wav_bytes(1.0))
    meta = mulan_backend.index.meta
    index = VectorIndex.create(meta.dim, model_id=meta.model_id, model_sha256=meta.model_sha256)
    index.add([str(gone)], mulan_backend.index.vectors()[:1])
    client = TestClient(create_app(IndexBackend(index, mulan_backend.embedder)))
    gone.unlink()
    for headers in ({}, {"Range": "bytes=0-0"}):  # the page asks with a one-byte range when its player fails
        message = error(client.get("/api/tracks/0/audio", headers=headers), 404)
        assert "gone.wav" in message and "its file is missing" in message and str(tmp_path) not in message
    assert client.get("/api/tracks/0").json()["duration"] is None


def test_a_corrupt_file_is_named_without_its_server_path(mulan_backend, tmp_path):
    from fastapi.testclient import TestClient

    from muqkit.search import VectorIndex
    from muqkit.serve.app import create_app
    from muqkit.serve.backend import IndexBackend

    broken = tmp_path / "music" / "broken.aiff"  # transcoded when played: decoded on the server
    broken.parent.mkdir()
    broken.write_bytes(b"FORM" + b"\0" * 200)
    meta = mulan_backend.index.meta
    index = VectorIndex.create(meta.dim, model_id=meta.model_id, model_sha256=meta.model_sha256)
    index.add([str(broken)], mulan_backend.index.vectors()[:1])
    client = TestClient(create_app(IndexBackend(index, mulan_backend.embedder)))
    assert client.get("/api/tracks").json()["tracks"][0]["path"] == "broken.aiff"
    message = error(client.get("/api/tracks/0/audio"), 400)
    assert "broken.aiff" in message and str(tmp_path) not in message


def test_search_by_uploaded_audio(client, collection, mulan_backend):
    example = collection / "tones" / "mid.flac"
    body = client.post("/api/search/audio", params={"k": 3, "name": "mine.flac"}, content=example.read_bytes()).json()
    assert body["hits"][0]["track"]["path"] == "tones/mid.flac"
    assert body["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(body["hits"]) == 3


@pytest.mark.parametrize(
    ("body", "name", "status", "needle"),
    [(b"", "a.wav", 400, "empty"), (b"not audio at all" * 10, "a.wav", 400, "not a readable audio file"),
     (b"x", "a.txt", 400, "unsupported format"), (b"\0" * (600 * 1024), "a.wav", 413, "limit is 0.5 MiB"),
     (None, "long.wav", 413, "limit is 4 s")],
)  # fmt: skip
def test_upload_errors(client, body, name, status, needle):
    import tempfile

    content = wav_bytes(5.0) if body is None else body
    message = error(client.post("/api/search/audio", params={"name": name}, content=content), status)
    assert needle in message
    assert "muqkit-upload-" not in message and tempfile.gettempdir() not in message  # no temporary path


def test_upload_limit_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b"\0" * (64 * 1024)

    assert "limit" in error(client.post("/api/search/audio", params={"name": "a.wav"}, content=chunks()), 413)


def test_unknown_routes_answer_json(client):
    assert "no such route" in error(client.get("/api/nothing"), 404)
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert client.get("/static/app.js").status_code == 200


def test_muq_index_searches_music_but_not_text(muq_client, muq_backend, muq_dir):
    info = muq_client.get("/api/info").json()
    assert info["text_search"] is False and info["model"] == muq_dir.name
    message = error(muq_client.get("/api/search", params={"q": "piano"}), 409)
    assert "MuQ-MuLan" in message and str(muq_dir) not in message
    assert "MuQ-MuLan" in error(muq_client.get("/api/tracks/0/tags"), 409)
    assert "MuQ-MuLan" in error(muq_client.get("/api/map", params={"tags": "a,b"}), 409)
    hits = muq_client.get("/api/tracks/0/similar", params={"k": 3}).json()["hits"]
    assert len(hits) == 3 and 0 not in [h["track"]["id"] for h in hits]
    assert len(muq_client.get("/api/map").json()["points"]) == 7
    example = Path(muq_backend.tracks[4].file)
    body = muq_client.post("/api/search/audio", params={"name": example.name}, content=example.read_bytes()).json()
    assert body["hits"][0]["track"]["id"] == 4


def test_concurrent_requests_agree(client):
    queries = ["calm piano", "loud noise", "a major chord", "high tones"] * 3
    expected = {q: client.get("/api/search", params={"q": q}).json() for q in set(queries)}
    results: dict[int, dict] = {}

    def ask(i: int, q: str) -> None:
        results[i] = client.get("/api/search", params={"q": q}).json()

    threads = [threading.Thread(target=ask, args=(i, q)) for i, q in enumerate(queries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected[q] for i, q in enumerate(queries))


def test_concurrent_uploads_each_find_their_own_file(client, collection, mulan_backend):
    """Uploads at once (decoded two at a time, embedded one at a time on the model's thread) each get their
    own answer."""
    files = [t for t in mulan_backend.tracks if t.playable][:5] * 2
    results: dict[int, dict] = {}

    def upload(i: int) -> None:
        body = Path(files[i].file).read_bytes()
        results[i] = client.post("/api/search/audio", params={"k": 1, "name": files[i].name}, content=body).json()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(files))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i]["hits"][0]["track"]["id"] for i in range(len(files))] == [t.id for t in files]


def test_an_internal_error_answers_json(mulan_backend, monkeypatch):
    from fastapi.testclient import TestClient

    from muqkit.serve.app import create_app

    client = TestClient(create_app(mulan_backend), raise_server_exceptions=False)
    monkeypatch.setattr(mulan_backend, "more_like_this", lambda *a, **kw: 1 / 0)
    assert "ZeroDivisionError" in error(client.get("/api/tracks/0/similar"), 500)
