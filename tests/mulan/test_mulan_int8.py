"""MuQ-MuLan in int8 against float32: the text tower (onnxruntime ``MatMulNBits`` at 8 bits, or ``quantize_dynamic``),
the audio tower (PyTorch 2 export quantisation, as MuQ), ``mulan index`` and ``search --dtype int8``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit.embed.int8 import int8_problem
from muqkit.export.int8 import quantize_mulan, quantize_mulan_text, text_int8_problem

pytestmark = pytest.mark.skipif(text_int8_problem() is not None, reason=str(text_int8_problem()))

# The bound the int8 text tower is held to on the official fixture (cosine of each text's latent to float32's),
# per kind of scales (seven texts, lowest measured: "block", the default, 0.99992; "channel" 0.99982; "matrix" 0.99967).
TEXT_INT8_MIN_COSINE = {"block": 0.9995, "channel": 0.99, "matrix": 0.99}
# The bound the int8 audio tower is held to on the random ``test`` preset (cosine of each item's latent).
AUDIO_INT8_MIN_COSINE = 0.98
needs_int8 = pytest.mark.skipif(int8_problem() is not None, reason=str(int8_problem()))
TEXTS = ["a calm piano piece in a minor key", "drums", "an upbeat jazz trio with brushed drums and a walking bass"]


@pytest.mark.parametrize("scales", ["block", "channel", "matrix"])
def test_int8_text_latents_match_float32_on_the_official_fixture(official_mulan, scales) -> None:
    texts = json.loads((Path(__file__).resolve().parents[2] / ".." / "shared" / "parity" / "mulan_small" /
                        "texts.json").read_text()) + TEXTS  # fmt: skip
    with torch.no_grad():
        ref = official_mulan.extract_text_latents(texts)
    int8 = quantize_mulan_text(official_mulan, text_scales=scales)
    got = int8.extract_text_latents(texts)
    assert got.shape == ref.shape and got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert float(cosine.min()) >= TEXT_INT8_MIN_COSINE[scales], cosine
    assert not torch.allclose(got, ref, atol=1e-6)  # int8 really ran
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(texts)), atol=1e-4, rtol=0)
    # A text's latent does not depend on its batch; the audio side is the float32 model's.
    torch.testing.assert_close(int8.extract_text_latents(texts[-1:])[0], got[-1], atol=1e-5, rtol=0)
    assert int8.config is official_mulan.config and int8.sample_rate == official_mulan.sample_rate
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        int8.to("cuda")


def test_the_block_text_graph_multiplies_every_weight_in_int8(official_mulan, tmp_path) -> None:
    import onnx

    from muqkit.export.int8 import TEXT_BLOCK_SIZE, _quantize_text_graph
    from muqkit.export.onnx import MuLanTextGraph, export_graph

    batch = official_mulan.text.tokenize(TEXTS)
    graph, out = tmp_path / "text.onnx", tmp_path / "text-int8.onnx"
    export_graph(MuLanTextGraph(official_mulan).eval(), (batch.input_ids, batch.attention_mask), graph, dynamic=None,
                 inputs=["input_ids", "attention_mask"], outputs=["latents"])  # fmt: skip
    _quantize_text_graph(graph, out, "block")

    def weight_matmuls(model: onnx.ModelProto) -> int:
        weights = {init.name for init in model.graph.initializer}
        return sum(node.op_type == "MatMul" and node.input[1] in weights for node in model.graph.node)

    before, after = onnx.load(str(graph)), onnx.load(str(out))
    nbits = [node for node in after.graph.node if node.op_type == "MatMulNBits"]
    assert weight_matmuls(after) == 0 and len(nbits) == weight_matmuls(before) > 0
    for node in nbits:  # int8 weights in blocks of 32 inputs, the activations quantised to int8 too (level 4)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"], attrs["accuracy_level"]) == (8, TEXT_BLOCK_SIZE, 4)
    with pytest.raises(ValueError, match="text_scales"):
        quantize_mulan_text(official_mulan, text_scales="tensor")  # type: ignore[arg-type]


def test_building_the_block_text_tower_leaves_logging_alone() -> None:
    import subprocess
    import sys

    # onnxruntime's matmul_nbits_quantizer calls logging.basicConfig(level=INFO) when imported
    code = ("import logging; from muqkit.export.int8 import _import_matmul_nbits_quantizer as f; f(); "
            "root = logging.getLogger(); "
            "assert not root.handlers and root.level == logging.WARNING, root.handlers")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


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


@needs_int8
def test_int8_audio_latents_match_float32(tiny_mulan) -> None:
    gen = torch.Generator().manual_seed(1)
    # 2 s clips: 5 s gives two whole clips and a wrapped one; 1.25 s one; 0.5 s one short clip (padded in int8),
    # four of them: a batch of short clips alone
    wavs = [0.1 * torch.randn(n, generator=gen) for n in (120_000, 12_000, 30_000, 12_000, 12_000, 12_000)]
    with torch.no_grad():
        ref = tiny_mulan.extract_audio_latents(wavs)
    int8 = quantize_mulan(tiny_mulan)
    got = int8.extract_audio_latents(wavs)
    assert got.shape == ref.shape and got.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
    assert float(cosine.min()) >= AUDIO_INT8_MIN_COSINE, cosine
    assert not torch.allclose(got, ref, atol=1e-6)  # int8 really ran
    # An item's latent does not depend on its batch (nor on the padding of its clips).
    torch.testing.assert_close(int8.extract_audio_latents(wavs[1:2])[0], got[1], atol=1e-5, rtol=0)
    text_only = quantize_mulan_text(tiny_mulan)  # the audio tower stays float32
    torch.testing.assert_close(text_only.extract_audio_latents(wavs), ref, atol=1e-5, rtol=0)


@needs_int8
def test_an_int8_mulan_index_is_another_models_but_answers_queries_of_either_precision(index, capsys) -> None:
    from muqkit.cli.main import main
    from muqkit.search import open_index

    root = index.parent
    build = ["mulan", "index", str(root / "audio"), "--model", str(root / "model"), "--out", str(root / "int8-index")]
    assert main([*build, "--dtype", "int8"]) == 0
    fp32, int8 = open_index(index), open_index(root / "int8-index")
    assert int8.meta.model_sha256 == f"{fp32.meta.model_sha256}+int8"
    for path in sorted((root / "audio").glob("*.wav")):
        a, b = fp32.vector(str(path)), int8.vector(str(path))
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= AUDIO_INT8_MIN_COSINE
    capsys.readouterr()
    for dtype in ("float32", "int8"):  # a query is not stored: either precision searches either index
        args = ["search", "a calm piano piece", "--index", str(root / "int8-index"), "--json", "--top-k", "3"]
        assert main([*args, "--dtype", dtype]) == 0
        assert len(json.loads(capsys.readouterr().out)[0]["hits"]) == 3
    # Vectors are not mixed: float32 vectors are refused by the int8 index, int8 ones by the float32 index.
    assert main(["index", "add", str(root / "audio"), "--index", str(root / "int8-index")]) == 2
    assert "+int8" in capsys.readouterr().err
    assert main(["index", "add", str(root / "audio"), "--index", str(index), "--dtype", "int8"]) == 2
    assert "+int8" in capsys.readouterr().err
    assert main(["index", "add", str(root / "audio"), "--index", str(root / "int8-index"), "--dtype", "int8"]) == 0
    assert "0 added, 0 replaced, 6 unchanged" in capsys.readouterr().out
