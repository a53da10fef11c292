"""MuQ-MuLan commands with bad files, bad options and a moved working folder."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import soundfile as sf

from muqkit.cli.main import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_mulan):
    root = tmp_path_factory.mktemp("cli-errors")
    model_dir = tiny_mulan.save_pretrained(root / "model")
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(36000) / 24000
    for name, freq in (("low", 110.0), ("high", 1760.0)):
        sf.write(audio / f"{name}.wav", np.sin(2 * math.pi * freq * t).astype(np.float32), 24000)
    (audio / "corrupt.wav").write_bytes(b"RIFF not really a wav file" * 10)
    (audio / "folder.flac").mkdir()  # a directory named like audio
    nan = np.zeros(24000, dtype=np.float32)
    nan[10] = np.nan
    sf.write(audio / "nan.wav", nan, 24000, subtype="FLOAT")
    return root, model_dir, audio


def test_similarity_skips_and_reports_bad_files(setup, capsys):
    root, model_dir, audio = setup
    code = main(["similarity", str(audio), "--model", str(model_dir), "--text", "a tune", "--json"])
    captured = capsys.readouterr()
    assert code == 1  # like embed: some inputs failed, the others have results
    names = [p.rsplit("/", 1)[-1] for p in json.loads(captured.out)["audio"]]
    assert names == ["high.wav", "low.wav"]
    assert "corrupt.wav" in captured.err and "nan.wav: audio contains NaN" in captured.err
    assert "folder.flac" not in captured.err and "Traceback" not in captured.err


def test_index_skips_bad_files_and_search_works_from_another_folder(setup, capsys, tmp_path, monkeypatch):
    root, model_dir, audio = setup
    monkeypatch.chdir(root)
    code = main(["mulan", "index", "audio", "--model", "model", "--out", str(tmp_path / "index")])
    assert code == 1 and "2 file(s) skipped" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)  # elsewhere: stored paths are absolute, the model too
    assert main(["search", "a high whistle", "--index", "index", "--top-k", "5", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)[0]["hits"]
    assert len(hits) == 2 and all(h["path"].startswith("/") for h in hits)
    from pathlib import Path

    assert all(Path(h["path"]).is_file() for h in hits)
    # an existing index is not replaced silently
    assert main(["mulan", "index", str(audio), "--model", str(model_dir), "--out", "index"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_corrupt_index_is_a_clear_error_naming_the_file(setup, capsys, tmp_path):
    root, model_dir, audio = setup
    index = ["mulan", "index", str(audio / "low.wav"), "--model", str(model_dir), "--out", str(tmp_path / "i")]
    assert main(index) == 0
    (tmp_path / "i" / "faiss-0.index").write_bytes(b"\x00" * 20)
    assert main(["search", "x", "--index", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert "faiss-0.index: corrupt index file" in err and "Traceback" not in err
    (tmp_path / "i" / "items-0.jsonl").write_text("{not json\n")
    assert main(["search", "x", "--index", str(tmp_path / "i")]) == 2
    assert "items-0.jsonl: corrupt" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zeroshot", "AUDIO", "--tags", ","], "--tags ',': no tag names"),
        (["zeroshot", "AUDIO", "--tags", "a,b", "--prompt", "music with {genre}"], "unknown placeholder {genre}"),
        (["zeroshot", "AUDIO", "--tags", "a,b", "--prompt", "no placeholder"], "no {tag} placeholder"),
        (["zeroshot", "EMPTY", "--tags", "a,b"], "no audio files"),
        (["similarity", "AUDIO", "--text", " "], "--text: text number 1 is empty"),
        (["search", "", "--index", "EMPTY"], "query: text number 1 is empty"),
    ],
)
def test_bad_mulan_options_are_one_line_errors(setup, capsys, tmp_path, args, message):
    root, model_dir, audio = setup
    (tmp_path / "empty").mkdir()
    args = [{"AUDIO": str(audio), "EMPTY": str(tmp_path / "empty")}.get(a, a) for a in args]
    if args[0] != "search":
        args += ["--model", str(model_dir)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_top_k_must_be_positive(setup, capsys):
    root, model_dir, audio = setup
    with pytest.raises(SystemExit) as exit_info:
        main(["zeroshot", str(audio), "--tags", "a,b", "--top-k", "-1", "--model", str(model_dir)])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_too_long_text_is_truncated_with_a_warning(tiny_mulan, caplog):
    long = "a very long description of a piece of music " * 200
    with caplog.at_level(logging.WARNING, logger="muqkit.mulan.text"):
        latents = tiny_mulan.extract_text_latents([long, "short"])
    assert latents.shape[0] == 2
    assert any("only the first" in r.getMessage() and "tokens" in r.getMessage() for r in caplog.records)
