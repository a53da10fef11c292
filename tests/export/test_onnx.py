"""``muqkit export onnx`` and the onnxruntime backend: parity with the official MuQ outputs and with PyTorch,
dynamic batch and length, padding-exact batches, and ``muqkit embed --backend onnxruntime``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from muqkit import MuQ  # noqa: E402
from muqkit.cli.main import main  # noqa: E402

PARITY = Path(__file__).resolve().parents[2] / ".." / "shared" / "parity" / "muq_small"


@pytest.fixture(scope="module")
def exported(export_parity):
    return export_parity("muq_small", "model", "--layers", "all")


@pytest.fixture(scope="module")
def fixture_data():
    from safetensors.torch import load_file

    return load_file(PARITY / "inputs.safetensors"), load_file(PARITY / "expected.safetensors")


def test_onnx_matches_the_official_outputs(exported, fixture_data):
    from muqkit.export.onnx import MuQGraph, OnnxMuQ

    inputs, expected = fixture_data
    runner = OnnxMuQ(exported)
    assert runner.layers == (0, 1, 2)
    hidden, frames = runner(inputs["batch"].numpy(), np.full(2, inputs["batch"].shape[1]))
    assert hidden.shape == (2, 3, 125, 128) and frames.tolist() == [125, 125]
    for i in range(3):
        assert np.abs(hidden[:, i] - expected[f"batch.hidden_states.{i}"].numpy()).max() <= 1e-4
    # `odd` has quiet mel bins where float32 FFTs disagree by ~0.02 dB: the official (float32 torch.stft) outputs
    # differ from the exact (float64) spectrum's by 1.4e-4. The graph's float64 DFT matches the exact values.
    odd = inputs["odd"]
    hidden, frames = runner(odd.numpy(), np.array([odd.shape[1]]))
    for i in range(3):
        assert np.abs(hidden[:, i] - expected[f"odd.hidden_states.{i}"].numpy()).max() <= 2e-4
    muq = MuQ.from_pretrained(PARITY / "model").eval()
    with torch.no_grad():
        exact, _ = MuQGraph(muq, [0, 1, 2])(odd, torch.tensor([odd.shape[1]]))
    assert np.abs(hidden - exact.numpy()).max() <= 1e-5


def test_dynamic_batch_and_padding_as_in_pytorch(exported, fixture_data):
    from muqkit.embed.chunks import encode_batch
    from muqkit.export.onnx import OnnxMuQ

    inputs, _ = fixture_data
    runner = OnnxMuQ(exported)
    muq = MuQ.from_pretrained(PARITY / "model").eval()
    a, b = inputs["batch"][0], inputs["batch"][1, :77_777]  # another length, padded in the batch
    singles = [runner.encode_batch([w], layers=(2, 0))[0] for w in (a, b)]
    batched = runner.encode_batch([a, b, a[:50_000]], layers=(2, 0))
    assert [t.shape[1] for t in batched] == [125, int(muq.num_frames(77_777)), int(muq.num_frames(50_000))]
    for single, together in zip(singles, batched, strict=False):
        assert torch.allclose(single, together, atol=1e-5, rtol=0)  # an item does not depend on its batch
    with torch.no_grad():
        reference = encode_batch(muq, [a, b, a[:50_000]], layers=(2, 0))
    for ours, theirs in zip(batched, reference, strict=True):
        assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= 1e-4


def test_embed_with_the_onnxruntime_backend(exported, tmp_path, capsys):
    import soundfile as sf

    from muqkit.embed import read_embedding, read_index

    rng = np.random.default_rng(0)
    t = np.arange(int(3.3 * 24000)) / 24000
    wav = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(tmp_path / "a.wav", wav.astype(np.float32), 24000)
    common = [str(tmp_path / "a.wav"), "--layers", "0,2", "--chunk-seconds", "1.5", "--no-progress"]
    assert main(["embed", *common, "--out", str(tmp_path / "pt"), "--model", str(PARITY / "model")]) == 0
    onnx = ["embed", *common, "--out", str(tmp_path / "ort"), "--model", str(exported)]
    assert main([*onnx, "--backend", "onnxruntime"]) == 0
    pt = read_embedding(tmp_path / "pt" / "a.wav.safetensors")
    ort = read_embedding(tmp_path / "ort" / "a.wav.safetensors")
    assert torch.equal(pt.timestamps, ort.timestamps)  # the same chunking: 1.5 s chunks, the same frame grid
    for layer in (0, 2):
        assert (pt.layers[layer] - ort.layers[layer]).abs().max() <= 1e-4
    record = read_index(tmp_path / "ort" / "index.jsonl")["a.wav.safetensors"]
    assert record.model_sha256.endswith("+onnx")
    capsys.readouterr()
    assert main(onnx) == 2 and "--backend onnxruntime" in capsys.readouterr().err
    from muqkit.export.onnx import OnnxMuQ

    runner = OnnxMuQ(exported)
    runner.layers = (0, 2)  # as if only those were exported
    with pytest.raises(ValueError, match=r"hidden states \[1\] were not exported"):
        runner.check_layers([1])
