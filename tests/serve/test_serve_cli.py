"""``muqkit serve``: a clear one-line error for a bad or missing index, and the app it starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from muqkit.cli.main import main


def test_missing_index_is_a_user_error(tmp_path, capsys):
    assert main(["serve", "--index", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "not a muqkit search index" in err and "Traceback" not in err


def test_corrupt_index_is_a_user_error(mulan_index, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(mulan_index, broken)
    next(broken.glob("items-*.jsonl")).write_text("{not json\n")
    assert main(["serve", "--index", str(broken)]) == 2
    assert "corrupt index file" in capsys.readouterr().err


def test_bad_port_is_a_user_error(mulan_index, capsys):
    assert main(["serve", "--index", str(mulan_index), "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err


def test_serve_loads_the_model_once_and_binds_loopback(mulan_index, mulan_embedder, monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    import muqkit.serve.embedder as embedder_module

    loads: list[str] = []
    started: dict = {}
    monkeypatch.setattr(embedder_module, "load_embedder", lambda name, **kw: loads.append(str(name)) or mulan_embedder)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    assert main(["serve", "--index", str(mulan_index), "--tags", "piano,organ", "--port", "8123"]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8123 and len(loads) == 1
    client = TestClient(started["app"])
    assert client.get("/api/info").json()["default_tags"] == ["piano", "organ"]
    assert client.get("/api/search", params={"q": "organ", "k": 2}).status_code == 200
    assert len(loads) == 1
    assert "7 tracks" in capsys.readouterr().out


def test_mulan_index_with_a_muq_checkpoint_gives_muq_latents(muq_index, muq_dir, tmp_path, capsys):
    from muqkit.audio.io import load_audio
    from muqkit.embed.api import model_fingerprint
    from muqkit.search import open_index
    from muqkit.serve.embedder import MuQAudioLatents, index_embedder
    from muqkit.ssl.muq import MuQ

    index = open_index(muq_index)
    muq = MuQ.from_pretrained(muq_dir)
    assert len(index) == 7 and index.dim == 128 and index_embedder(index).kind == "muq"
    assert index.meta.model_sha256 == model_fingerprint(muq) and index.meta.model_id == str(muq_dir.absolute())
    expected = MuQAudioLatents(muq).extract_audio_latents([load_audio(index.paths[0])])
    assert np.allclose(index.vectors()[0], expected[0].numpy(), atol=1e-5)
    # the same vectors as `muqkit embed --pooling mean` of the last layer
    depth = muq.config.encoder_depth
    out = tmp_path / "emb"
    assert main(["embed", index.paths[0], "--out", str(out), "--model", str(muq_dir), "--pooling", "mean",
                 "--layers", str(depth), "--no-progress"]) == 0  # fmt: skip
    assert main(["index", "embeddings", str(out), "--layer", str(depth), "--out", str(tmp_path / "idx")]) == 0
    assert np.allclose(open_index(tmp_path / "idx").vectors()[0], index.vectors()[0], atol=1e-5)


def test_serve_reads_an_index_of_muq_embeddings(muq_index, muq_dir, tmp_path, monkeypatch, capsys):
    """``muqkit embed --pooling mean`` then ``muqkit index embeddings``: the app serves it with that layer."""
    pytest.importorskip("uvicorn")
    import uvicorn
    from fastapi.testclient import TestClient

    from muqkit.search import open_index

    started: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: started.update(app=app, **kw))
    music = open_index(muq_index).paths
    out = tmp_path / "emb"
    assert main(["embed", *music, "--out", str(out), "--model", str(muq_dir), "--pooling", "mean", "--layers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["index", "embeddings", str(out), "--layer", "1", "--out", str(tmp_path / "idx")]) == 0
    assert main(["serve", "--index", str(tmp_path / "idx"), "--port", "0"]) == 0
    assert "7 tracks (flat index)" in capsys.readouterr().out
    client = TestClient(started["app"])
    assert client.get("/api/info").json()["text_search"] is False
    hits = client.get("/api/tracks/2/similar", params={"k": 3}).json()["hits"]
    index = open_index(tmp_path / "idx")
    expected = index.search_like(index.paths[2], 3)
    assert [h["track"]["id"] for h in hits] == [index.absolute_paths.index(h.path) for h in expected]
    example = Path(music[4])  # uploaded: embedded like the index's vectors (the same layer)
    upload = client.post("/api/search/audio", params={"k": 1, "name": example.name}, content=example.read_bytes())
    best = upload.json()["hits"][0]
    assert best["track"]["id"] == index.absolute_paths.index(str(example.absolute()))
    assert best["score"] == pytest.approx(1.0, abs=1e-3)
    assert client.get("/api/search", params={"q": "piano"}).status_code == 409


def test_a_busy_port_is_a_user_error_before_the_model_loads(mulan_index, monkeypatch, capsys):
    """Once the model loaded, "Application startup complete" was printed, then uvicorn exited with 3."""
    import socket

    import uvicorn

    import muqkit.serve.embedder as embedder_module

    loads: list[str] = []
    monkeypatch.setattr(embedder_module, "load_embedder", lambda name, **kw: loads.append(str(name)))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("uvicorn started on a busy port"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--index", str(mulan_index), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in err and len(err.strip().splitlines()) == 1
    assert loads == []


def test_non_loopback_host_warns(mulan_index, mulan_embedder, monkeypatch, capsys):
    import uvicorn

    import muqkit.serve.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "load_embedder", lambda name, **kw: mulan_embedder)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    # --port 0: the port check binds the address (8000 may be taken, ::1 missing)
    assert main(["serve", "--index", str(mulan_index), "--host", "0.0.0.0", "--port", "0"]) == 0
    assert "reachable from other machines" in capsys.readouterr().out
    assert main(["serve", "--index", str(mulan_index), "--host", "::1", "--port", "0"]) == 0
    assert "reachable" not in capsys.readouterr().out


def test_serve_config_is_validated():
    from muqkit.serve.app import ServeConfig

    with pytest.raises(ValueError, match="ServeConfig.max_upload_mb must be positive"):
        ServeConfig(max_upload_mb=0)
    with pytest.raises(ValueError, match="default_tags"):
        ServeConfig(default_tags=())
    assert ServeConfig(max_upload_mb=1.5).max_upload_bytes == 1572864
