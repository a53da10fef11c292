"""Suite runner, report files and the probe / data CLI commands, on fabricated data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from muqkit.cli.main import main
from muqkit.eval.dummies import make_marble_root
from muqkit.eval.marble import load_marble_task
from muqkit.eval.probes import ProbeConfig
from muqkit.eval.report import write_report
from muqkit.eval.suite import SuiteConfig, run_suite


class _Layers:
    """Three layers; only layer 1 knows the genre (blues vs rock vs jazz by frequency)."""

    id = "layers-v1"
    num_layers = 3

    def embed(self, wavs):
        out = []
        for w in wavs:
            spectrum = np.abs(np.fft.rfft(w.numpy()))[:200]
            informative = np.array([float(np.argmax(spectrum)), 1.0])
            noise = np.random.default_rng(len(out)).normal(size=2)
            out.append(np.stack([noise, informative, noise * 0]).astype(np.float32))
        return out


FAST = SuiteConfig(heads=("linear",), seeds=(0, 1), probe=ProbeConfig(max_epochs=30, patience=5, lr=1e-2))


def test_suite_rows_and_report(tmp_path):
    task = load_marble_task("gtzan", make_marble_root(tmp_path, "gtzan"))
    rows = run_suite(["layers"], [task], config=FAST, cache_dir=tmp_path / "cache",
                     extractor_factory=lambda spec: _Layers())  # fmt: skip
    layers = {r.layer.split(":")[0] for r in rows}
    assert layers == {"best", "weighted"}
    best = next(r for r in rows if r.layer.startswith("best"))
    assert len(best.per_layer) == 3 and best.metric == "accuracy"
    written = write_report(rows, tmp_path / "report", meta={"command": "muqkit probe ..."})
    assert (tmp_path / "report" / "layers-gtzan.png").is_file()
    data = json.loads(written["json"].read_text())
    assert data["rows"][0]["task"] == "gtzan"
    assert "| gtzan | accuracy |" in written["markdown"].read_text()


def test_same_seed_same_table(tmp_path):
    task = load_marble_task("gs-key", make_marble_root(tmp_path, "gs-key"))
    first = run_suite(["layers"], [task], config=FAST, cache_dir=None, extractor_factory=lambda spec: _Layers())
    second = run_suite(["layers"], [task], config=FAST, cache_dir=None, extractor_factory=lambda spec: _Layers())
    assert [(r.mean, r.std, r.layer) for r in first] == [(r.mean, r.std, r.layer) for r in second]


def test_probe_cli_on_marble_folder(tmp_path, capsys):
    make_marble_root(tmp_path / "marble", "gtzan")
    code = main(["probe", "--model", "chroma", "--task", "gtzan", "--marble-root", str(tmp_path / "marble"),
                 "--out", str(tmp_path / "out"), "--heads", "linear", "--seeds", "0", "--max-epochs", "5"])  # fmt: skip
    assert code == 0
    assert (tmp_path / "out" / "results.md").is_file() and (tmp_path / "out" / "results.json").is_file()
    assert "| gtzan | accuracy |" in capsys.readouterr().out


def test_probe_cli_errors(tmp_path):
    assert main(["probe", "--model", "mel", "--task", "key"]) == 2  # needs --corpus
    assert main(["probe", "--model", "mel", "--task", "nope", "--corpus", str(tmp_path)]) == 2


def test_build_corpus_cli_refuses_mixing(tmp_path):
    pytest.importorskip("music21")
    from muqkit.data.corpus.fluidsynth import SystemRequirementError, find_soundfonts, require_fluidsynth

    try:
        require_fluidsynth()
        find_soundfonts()
    except SystemRequirementError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "c"
    out.mkdir()
    (out / "corpus.json").write_text(json.dumps({"format": 1, "size": "small", "seed": 0}))
    assert main(["data", "build-corpus", "--out", str(out), "--size", "ci", "--seed", "0", "--no-game-music"]) == 1


def test_a_zero_shot_reference_has_no_spread_and_no_validation_figure():
    from muqkit.eval.report import long_table, markdown_table
    from muqkit.eval.suite import ResultRow

    nan = float("nan")
    rows = [
        ResultRow("madmom-beats", "beat", "zero-shot", "-", "beat_f", 0.669, 0.0, nan, {"beat_f": 0.669}),
        ResultRow("mel", "beat", "mlp", "-", "beat_f", 0.519, 0.002, 0.5, {"beat_f": 0.519}),
    ]
    compact, full = markdown_table(rows), long_table(rows)
    assert "| 0.669 |" in compact and "0.519 ± 0.002" in compact and "0.669 ±" not in compact
    assert "| 0.669 | - |" in full and "nan" not in full
