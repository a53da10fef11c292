"""``muqkit mulan index`` / ``muqkit index`` / ``muqkit search`` on a FAISS index: the CLI gives the exact
scan's top 10 below the threshold, adds and removes files, searches music by music and checks the model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.cli.main import main

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_mulan):
    root = tmp_path_factory.mktemp("search")
    model_dir = tiny_mulan.save_pretrained(root / "model")
    audio = root / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 24000
    for i in range(14):
        tone = np.sin(2 * math.pi * (110 * 1.2**i) * t) + 0.1 * rng.standard_normal(t.size)
        sf.write(audio / f"{i:02d}.wav", (0.3 * tone).astype(np.float32), 24000)
    return root, model_dir, audio


def search(args, capsys):
    assert main(["search", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_search_returns_the_exact_top_10(setup, capsys, tiny_mulan):
    from muqkit.audio.io import load_audio

    root, model_dir, audio = setup
    assert main(["mulan", "index", str(audio), "--model", str(model_dir), "--out", str(root / "i")]) == 0
    assert "(flat)" in capsys.readouterr().out
    queries = ["a calm piano piece", "fast drums"]
    result = search([*queries, "--index", str(root / "i")], capsys)
    files = sorted(audio.glob("*.wav"))
    with torch.no_grad():
        a = tiny_mulan.extract_audio_latents([load_audio(f) for f in files])
        t = tiny_mulan.extract_text_latents(queries)
    scores = torch.nn.functional.normalize(t, dim=-1) @ torch.nn.functional.normalize(a, dim=-1).T  # (2, 14)
    for row, got in zip(scores, result, strict=True):
        want = [str(files[i]) for i in row.argsort(descending=True)[:10].tolist()]
        assert [h["path"] for h in got["hits"]] == want
        assert np.allclose([h["score"] for h in got["hits"]], row.sort(descending=True).values[:10], atol=1e-5)


def test_add_remove_and_more_like_this(setup, capsys, tmp_path):
    root, model_dir, audio = setup
    files = sorted(audio.glob("*.wav"))
    out = str(tmp_path / "i")
    assert main(["mulan", "index", *map(str, files[:10]), "--model", str(model_dir), "--out", out]) == 0
    assert main(["index", "add", *map(str, files[10:]), "--index", out]) == 0
    assert main(["index", "remove", str(files[0]), "--index", out]) == 0
    capsys.readouterr()
    hits = search(["--like", str(files[5]), "--index", out, "--top-k", "20"], capsys)[0]["hits"]
    paths = [h["path"] for h in hits]
    assert len(paths) == 12 and str(files[5]) not in paths and str(files[0]) not in paths
    assert str(files[13]) in paths
    # a file outside the index is embedded with the index's model; its own copy scores 1
    outside = tmp_path / "copy.wav"
    outside.write_bytes(files[5].read_bytes())
    hits = search(["--like", str(outside), "--index", out, "--top-k", "3"], capsys)[0]["hits"]
    assert hits[0]["path"] == str(files[5]) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_another_model_is_refused(setup, capsys, tmp_path):
    from muqkit.mulan import MuQMuLan, mulan_preset

    root, model_dir, audio = setup
    out = str(tmp_path / "i")
    assert main(["mulan", "index", str(audio), "--model", str(model_dir), "--out", out]) == 0
    torch.manual_seed(1)
    other = MuQMuLan.from_config(mulan_preset("test")).save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main(["search", "a tune", "--index", out, "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert "the index was built by model" in err and "Traceback" not in err


def test_two_index_add_runs_at_once_keep_both(setup, capsys, tmp_path):
    """Two `muqkit index add` processes on one index, started together: every file of both is kept and
    the later run's total counts both (once, both runs printed the same total and one run's files were lost)."""
    import subprocess
    import sys

    root, model_dir, audio = setup
    files = sorted(audio.glob("*.wav"))
    out = str(tmp_path / "i")
    assert main(["mulan", "index", *map(str, files[:4]), "--model", str(model_dir), "--out", out]) == 0
    cli = "import sys; from muqkit.cli.main import main; sys.exit(main())"
    runs = [subprocess.Popen([sys.executable, "-c", cli, "index", "add", *map(str, part), "--index", out],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for part in (files[4:9], files[9:14])]  # fmt: skip
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    totals = sorted(int(o.split("(")[1].split()[0]) for o, _ in outputs)
    assert totals[-1] == 14  # "...: 5 added, 0 replaced, 0 unchanged (14 in all, flat)"
    capsys.readouterr()
    hits = search(["--like", str(files[0]), "--index", out, "--top-k", "20"], capsys)[0]["hits"]
    assert sorted(h["path"] for h in hits) == sorted(map(str, files[1:]))


def test_index_add_reports_added_replaced_and_unchanged(setup, capsys, tmp_path):
    """A file already in the index with the same content was once counted as added (and embedded again)."""
    from muqkit.search import open_index

    root, model_dir, audio = setup
    files = sorted(audio.glob("*.wav"))
    out = str(tmp_path / "i")
    assert main(["mulan", "index", *map(str, files[:3]), "--model", str(model_dir), "--out", out]) == 0
    before = open_index(out).vector(str(files[0]))
    capsys.readouterr()
    assert main(["index", "add", *map(str, files[:4]), "--index", out]) == 0
    assert "1 added, 0 replaced, 3 unchanged (4 in all, flat)" in capsys.readouterr().out
    assert np.array_equal(open_index(out).vector(str(files[0])), before)
    changed = tmp_path / "changed.wav"
    changed.write_bytes(files[5].read_bytes())
    assert main(["index", "add", str(changed), "--index", out]) == 0
    old = open_index(out).vector(str(changed))
    changed.write_bytes(files[6].read_bytes())  # new content under the same name
    capsys.readouterr()
    assert main(["index", "add", str(changed), *map(str, files[:2]), "--index", out]) == 0
    assert "0 added, 1 replaced, 2 unchanged (5 in all, flat)" in capsys.readouterr().out
    assert not np.allclose(open_index(out).vector(str(changed)), old, atol=1e-3)
