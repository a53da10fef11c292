"""The search index over mean-pooled MuQ embeddings (``muqkit embed --pooling mean`` then ``muqkit index
embeddings``): the same vectors, kept in sync, searched music to music."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from muqkit import MuQ
from muqkit.cli.main import main

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = MuQ.from_preset(
        "tiny", seed=0, n_fft=512, n_mels=32, conv_dim=4, encoder_dim=16, encoder_depth=1, num_heads=2, ffn_dim=32
    )
    return model.save_pretrained(tmp_path_factory.mktemp("muq") / "model")


def write(folder, count, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(12000) / 24000
    for i in range(count):
        tone = np.sin(2 * np.pi * (150 + 40 * i + seed) * t) + 0.2 * rng.standard_normal(t.size)
        sf.write(folder / f"{seed}-{i}.wav", (0.3 * tone).astype(np.float32), 24000)


def test_muq_embeddings_index_sync_and_like(model_dir, tmp_path, capsys, monkeypatch):
    from muqkit.embed import read_embedding
    from muqkit.search import open_index

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "music", 6)
    embed = ["embed", "music", "--out", "emb", "--model", str(model_dir), "--pooling", "mean", "--layers", "1",
             "--no-progress"]  # fmt: skip
    assert main(embed) == 0
    assert main(["index", "embeddings", "emb", "--layer", "1", "--out", "idx"]) == 0
    index = open_index("idx")
    assert index.meta.source == "muq-mean:layer_1" and len(index) == 6 and index.dim == 16
    stored = read_embedding("emb/0-2.wav.safetensors").layers[1].numpy()
    assert np.allclose(index.vector("music/0-2.wav"), stored / np.linalg.norm(stored), atol=1e-6)
    # new files and a removed one: the index follows the embeddings folder
    write(tmp_path / "music", 2, seed=1)
    (tmp_path / "music" / "0-0.wav").unlink()
    assert main(embed) == 0
    lines = [json.loads(line) for line in (tmp_path / "emb" / "index.jsonl").read_text().splitlines()]
    (tmp_path / "emb" / "index.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines if r["input"] != "music/0-0.wav")
    )
    capsys.readouterr()
    assert main(["index", "embeddings", "emb", "--layer", "1", "--out", "idx"]) == 0
    assert "2 added, 0 replaced, 1 removed, 7 files" in capsys.readouterr().out
    # more like this file, from another folder; text queries are refused
    monkeypatch.chdir(tmp_path / "emb")
    assert main(["search", "--like", "../music/0-3.wav", "--index", "../idx", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert len(hits) == 6 and str(tmp_path / "music" / "0-3.wav") not in [h["path"] for h in hits]
    assert main(["search", "a tune", "--index", "../idx"]) == 2
    assert "no text tower" in capsys.readouterr().err


def test_a_rerun_of_index_embeddings_lists_what_it_removes(model_dir, tmp_path, capsys, monkeypatch):
    """The index mirrors the embeddings folder, so a file added by `muqkit index add` goes on a rerun: once
    silently, now listed on stderr (and counted)."""
    from muqkit.search import open_index

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "music", 3)
    write(tmp_path / "extra", 1, seed=2)
    assert main(["mulan", "index", "music", "--model", str(model_dir), "--out", "idx"]) == 0
    embed = ["embed", "music", "--out", "emb", "--model", str(model_dir), "--pooling", "mean", "--layers",
             str(open_index("idx").meta.source.rsplit("_", 1)[1]), "--no-progress"]  # fmt: skip
    assert main(embed) == 0
    assert main(["index", "add", "extra", "--index", "idx"]) == 0
    capsys.readouterr()
    assert main(["index", "embeddings", "emb", "--layer", "1", "--out", "idx"]) == 0
    captured = capsys.readouterr()
    assert "0 added, 0 replaced, 1 removed, 3 files" in captured.out
    assert captured.err.strip() == "muqkit index embeddings: removed extra/2-0.wav (not in emb)"


def test_an_int8_muq_index_is_close_to_float32_and_is_another_models(model_dir, tmp_path, capsys):
    from muqkit.embed.int8 import int8_problem
    from muqkit.search import open_index

    if int8_problem():
        pytest.skip(int8_problem())
    write(tmp_path / "music", 4)
    build = ["mulan", "index", str(tmp_path / "music"), "--model", str(model_dir), "--out"]
    assert main([*build, str(tmp_path / "fp32")]) == 0
    assert main([*build, str(tmp_path / "int8"), "--dtype", "int8"]) == 0
    fp32, int8 = open_index(tmp_path / "fp32"), open_index(tmp_path / "int8")
    assert int8.meta.model_sha256 == f"{fp32.meta.model_sha256}+int8"
    for path in sorted((tmp_path / "music").glob("*.wav")):
        a, b = fp32.vector(str(path)), int8.vector(str(path))
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99
        assert not np.allclose(a, b, atol=1e-6)
    # More files for the int8 index with the float32 model are refused, as another model's would be.
    write(tmp_path / "more", 1, seed=3)
    capsys.readouterr()
    assert main(["index", "add", str(tmp_path / "more"), "--index", str(tmp_path / "int8")]) == 2
    assert "+int8" in capsys.readouterr().err
