"""``muqkit serve``: a clear one-line error for a bad or missing index, and the app it starts."""

from __future__ import annotations

import pytest
import torch

from muqkit.cli.main import main


def test_missing_index_is_a_user_error(tmp_path, capsys):
    assert main(["serve", "--index", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "not a MuQ-MuLan index" in err and "Traceback" not in err


def test_corrupt_index_is_a_user_error(mulan_index, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(mulan_index, broken)
    (broken / "items.jsonl").write_text("{not json\n")
    assert main(["serve", "--index", str(broken)]) == 2
    assert "corrupt MuQ-MuLan index file" in capsys.readouterr().err


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


def test_mulan_index_with_a_muq_checkpoint_gives_muq_latents(collection, parity_dir, tmp_path, capsys):
    from muqkit.audio.io import load_audio
    from muqkit.mulan.index import AudioIndex
    from muqkit.serve.embedder import MuQAudioLatents, load_embedder
    from muqkit.ssl.muq import MuQ

    model_dir = parity_dir / "muq_small" / "model"
    assert main(["mulan", "index", str(collection), "--model", str(model_dir), "--out", str(tmp_path / "idx")]) == 0
    index = AudioIndex.load(tmp_path / "idx")
    assert index.latents.shape == (7, 128) and load_embedder(index.model).kind == "muq"
    expected = MuQAudioLatents(MuQ.from_pretrained(model_dir)).extract_audio_latents([load_audio(index.paths[0])])
    assert torch.allclose(index.latents[0], expected[0], atol=1e-5)


def test_non_loopback_host_warns(mulan_index, mulan_embedder, monkeypatch, capsys):
    import uvicorn

    import muqkit.serve.embedder as embedder_module

    monkeypatch.setattr(embedder_module, "load_embedder", lambda name, **kw: mulan_embedder)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    assert main(["serve", "--index", str(mulan_index), "--host", "0.0.0.0"]) == 0
    assert "reachable from other machines" in capsys.readouterr().out
    assert main(["serve", "--index", str(mulan_index), "--host", "::1"]) == 0
    assert "reachable" not in capsys.readouterr().out


def test_serve_config_is_validated():
    from muqkit.serve.app import ServeConfig

    with pytest.raises(ValueError, match="ServeConfig.max_upload_mb must be positive"):
        ServeConfig(max_upload_mb=0)
    with pytest.raises(ValueError, match="default_tags"):
        ServeConfig(default_tags=())
    assert ServeConfig(max_upload_mb=1.5).max_upload_bytes == 1572864
