"""``muqkit export onnx --mulan``: MuQ-MuLan's audio and text towers on onnxruntime match the official outputs,
and ``muqkit search --backend onnxruntime`` queries an index built with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("transformers")

from muqkit.cli.main import main  # noqa: E402

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "parity" / "mulan_small"


@pytest.fixture(scope="module")
def exported(export_parity):
    return export_parity("mulan_small", "mulan", "--mulan")


def test_towers_match_the_official_outputs(exported):
    from safetensors.torch import load_file

    from muqkit.export.onnx import OnnxMuLan

    inputs, expected = load_file(PARITY / "inputs.safetensors"), load_file(PARITY / "expected.safetensors")
    texts = json.loads((PARITY / "texts.json").read_text())
    model = OnnxMuLan(exported)
    audio = model.extract_audio_latents(list(inputs["wavs"]))  # 9.5 s each: clips of 4 s, the last one wrapped
    assert (audio - expected["audio_latents"]).abs().max() <= 1e-4
    alone = torch.cat([model.extract_text_latents([t]) for t in texts])
    together = model.extract_text_latents(texts)  # padded: the same latents
    assert (alone - expected["text_latents"]).abs().max() <= 1e-4
    assert (together - alone).abs().max() <= 1e-5
    shorter = model.extract_audio_latents([inputs["wavs"][0, :50_000]])  # a single, partly wrapped clip
    from muqkit.mulan import MuQMuLan

    with torch.no_grad():
        reference = MuQMuLan.from_pretrained(PARITY / "mulan").extract_audio_latents([inputs["wavs"][0, :50_000]])
    assert (shorter - reference).abs().max() <= 1e-4


def test_search_with_onnxruntime_on_a_pytorch_index(exported, tmp_path, capsys):
    import soundfile as sf

    rng = np.random.default_rng(0)
    for i in range(5):
        t = np.arange(24000 * 2) / 24000
        wav = 0.3 * np.sin(2 * np.pi * 200 * (i + 1) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(tmp_path / f"{i}.wav", wav.astype(np.float32), 24000)
    index = str(tmp_path / "idx")
    assert main(["mulan", "index", *(str(tmp_path / f"{i}.wav") for i in range(5)), "--model", str(PARITY / "mulan"),
                 "--out", index]) == 0  # fmt: skip
    capsys.readouterr()
    hits = {}
    for backend, model in (("torch", str(PARITY / "mulan")), ("onnxruntime", str(exported))):
        args = ["search", "a calm piano piece", "--like", str(tmp_path / "2.wav"), "--index", index, "--top-k", "4"]
        assert main([*args, "--model", model, "--backend", backend, "--json"]) == 0
        hits[backend] = json.loads(capsys.readouterr().out)
    for ours, theirs in zip(hits["onnxruntime"], hits["torch"], strict=True):
        assert [h["path"] for h in ours["hits"]] == [h["path"] for h in theirs["hits"]]
        assert np.allclose([h["score"] for h in ours["hits"]], [h["score"] for h in theirs["hits"]], atol=1e-4)
