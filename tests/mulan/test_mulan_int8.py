"""MuQ-MuLan's text tower in int8 (onnxruntime ``quantize_dynamic``) against float32, and ``search --dtype int8``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.export.int8 import quantize_mulan_text, text_int8_problem

pytestmark = pytest.mark.skipif(text_int8_problem() is not None, reason=str(text_int8_problem()))

# The bound the int8 text tower is held to on the official fixture (cosine of each text's latent to float32's).
TEXT_INT8_MIN_COSINE = 0.99
TEXTS = ["a calm piano piece in a minor key", "drums", "an upbeat jazz trio with brushed drums and a walking bass"]


def test_int8_text_latents_match_float32_on_the_official_fixture(official_mulan) -> None:
    texts = json.loads((Path(__file__).resolve().parents[2] / ".." / "shared" / "parity" / "mulan_small" /
                        "texts.json").read_text()) + TEXTS  # fmt: skip
    with torch.no_grad():
        ref = official_mulan.extract_text_latents(texts)
    int8 = quantize_mulan_text(official_mulan)
    got = int8.extract_text_latents(texts)
    assert got.shape == ref.shape and got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert float(cosine.min()) >= TEXT_INT8_MIN_COSINE, cosine
    assert not torch.allclose(got, ref, atol=1e-6)  # int8 really ran
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(texts)), atol=1e-4, rtol=0)
    # A text's latent does not depend on its batch; the audio side is the float32 model's.
    torch.testing.assert_close(int8.extract_text_latents(texts[-1:])[0], got[-1], atol=1e-5, rtol=0)
    assert int8.config is official_mulan.config and int8.sample_rate == official_mulan.sample_rate
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        int8.to("cuda")


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_mulan):
    pytest.importorskip("faiss")
    from muqkit.cli.main import main

    root = tmp_path_factory.mktemp("int8-search")
    model_dir = tiny_mulan.save_pretrained(root / "model")
    audio = root / "audio"
    audio.mkdir()
    t = np.arange(24000) / 24000
    for i in range(6):
        sf.write(audio / f"{i}.wav", (0.3 * np.sin(2 * math.pi * 110 * 1.3**i * t)).astype(np.float32), 24000)
    assert main(["mulan", "index", str(audio), "--model", str(model_dir), "--out", str(root / "index")]) == 0
    return root / "index"


def test_search_int8_ranks_as_float32(index, capsys) -> None:
    from muqkit.cli.main import main

    capsys.readouterr()
    results = {}
    for dtype in ("float32", "int8"):
        args = ["search", "a calm piano piece", "--index", str(index), "--json", "--top-k", "6"]
        assert main([*args, "--dtype", dtype]) == 0
        results[dtype] = json.loads(capsys.readouterr().out)[0]["hits"]
    assert [h["path"] for h in results["int8"]][:3] == [h["path"] for h in results["float32"]][:3]
    scores = [(a["score"], b["score"]) for a, b in zip(results["int8"], results["float32"], strict=True)]
    assert max(abs(a - b) for a, b in scores) < 0.05


def test_the_app_caches_text_queries(tiny_mulan, monkeypatch) -> None:
    from muqkit.serve import embedder as module

    embedder = module.Embedder(tiny_mulan, name="tiny")
    calls: list[list[str]] = []
    real = tiny_mulan.extract_text_latents
    monkeypatch.setattr(tiny_mulan, "extract_text_latents", lambda texts: calls.append(list(texts)) or real(texts))
    monkeypatch.setattr(module, "QUERY_CACHE_SIZE", 2)
    first = embedder.text_latents(["drums", "piano"])
    again = embedder.text_latents(["piano", "drums"])
    assert calls == [["drums", "piano"]]
    torch.testing.assert_close(again, first.flip(0))
    embedder.text_latents(["violin"])  # evicts the least recently asked ("piano")
    embedder.text_latents(["drums"])
    embedder.text_latents(["piano"])
    assert calls == [["drums", "piano"], ["violin"], ["piano"]]
    with torch.no_grad():
        torch.testing.assert_close(embedder.text_latents(["violin"]), real(["violin"]))
