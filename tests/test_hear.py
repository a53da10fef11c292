"""The HEAR 2021 API: signatures, shapes, timestamps in ms, and agreement with the encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from muqkit import hear
from muqkit.audio.io import load_audio
from muqkit.embed.chunks import encode_batch

SR = 24000


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> hear.HearMuQ:
    return hear.load_model(str(checkpoint), sample_rate=SR)  # MuQ's own rate: no resampling


def _audio(n_sounds: int, seconds: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n_sounds, round(seconds * SR), generator=gen)


def test_load_model_has_the_hear_attributes(model: hear.HearMuQ) -> None:
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 24000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 64
    assert not model.training


def test_timestamp_embeddings_shapes_and_timestamps(model: hear.HearMuQ) -> None:
    audio = _audio(3, 1.0)
    with torch.no_grad():
        embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (3, 25, 64) and embeddings.dtype == torch.float32
    assert timestamps.shape == (3, 25) and timestamps.dtype == torch.float32
    torch.testing.assert_close(timestamps[1], torch.arange(25, dtype=torch.float32) * 40.0)
    assert torch.equal(timestamps[0], timestamps[2])


def test_default_embedding_is_the_mean_of_all_hidden_states(model: hear.HearMuQ) -> None:
    audio = _audio(2, 0.7, seed=1)
    with torch.no_grad():
        embeddings, _ = hear.get_timestamp_embeddings(audio, model)
        alone = encode_batch(model.muq, [audio[1]], layers=(0, 1, 2))[0]  # (layers, T, dim)
    torch.testing.assert_close(embeddings[1], alone.mean(dim=0), atol=1e-5, rtol=0)


def test_scene_embedding_is_the_time_mean(model: hear.HearMuQ) -> None:
    audio = _audio(2, 0.5, seed=2)
    with torch.no_grad():
        scene = hear.get_scene_embeddings(audio, model)
        embeddings, _ = hear.get_timestamp_embeddings(audio, model)
    assert scene.shape == (2, 64) and scene.dtype == torch.float32
    torch.testing.assert_close(scene, embeddings.mean(dim=1))


def test_a_sound_does_not_depend_on_its_batch(model: hear.HearMuQ) -> None:
    audio = _audio(3, 0.6, seed=3)
    with torch.no_grad():
        together = hear.get_scene_embeddings(audio, model)
        alone = hear.get_scene_embeddings(audio[2:], model)
    torch.testing.assert_close(together[2:], alone, atol=1e-5, rtol=0)


def test_layers_and_concat(checkpoint: Path) -> None:
    model = hear.load_model(str(checkpoint), layers=[0, -1], reduce="concat", sample_rate=SR)
    assert model.timestamp_embedding_size == model.scene_embedding_size == 128
    audio = _audio(1, 0.3, seed=4)
    with torch.no_grad():
        embeddings, _ = hear.get_timestamp_embeddings(audio, model)
        alone = encode_batch(model.muq, [audio[0]], layers=(0, 2))[0]
    assert embeddings.shape == (1, 8, 128)
    torch.testing.assert_close(embeddings[0, :, :64], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(embeddings[0, :, 64:], alone[1], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="reduce"):
        hear.load_model(str(checkpoint), reduce="max")


def test_long_sounds_are_chunked(checkpoint: Path) -> None:
    model = hear.load_model(str(checkpoint), chunk_seconds=1.0, batch_size=3, sample_rate=SR)
    audio = _audio(2, 2.5, seed=5)
    calls: list[tuple[int, ...]] = []
    handle = model.muq.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    finally:
        handle.remove()
    assert embeddings.shape == (2, 63, 64)  # 25 + 25 + 13 frames
    assert calls == [(3, 24000), (3, 24000)]  # 6 chunks of at most 1 s, 3 per call
    assert float(timestamps[0, -1]) == pytest.approx(62 * 40.0)


def test_sounds_shorter_than_a_frame_are_padded(model: hear.HearMuQ) -> None:
    with torch.no_grad():
        embeddings, timestamps = hear.get_timestamp_embeddings(_audio(2, 0.002), model)
        scene = hear.get_scene_embeddings(torch.zeros(1, 10), model)
    assert embeddings.shape == (2, 1, 64) and timestamps.tolist() == [[0.0], [0.0]]
    assert torch.isfinite(scene).all()


def test_generated_files_through_the_hear_api(tmp_path: Path, model: hear.HearMuQ) -> None:
    """Silent, 0.1 s and multichannel 44.1 kHz files, loaded and padded as hear-eval-kit batches them."""
    sf.write(tmp_path / "silent.wav", np.zeros(SR, dtype=np.float32), SR)
    sf.write(tmp_path / "short.wav", 0.1 * np.ones(2400, dtype=np.float32), SR)
    t = np.arange(44100) / 44100
    sf.write(tmp_path / "stereo.flac", np.stack([np.sin(440 * 6.28 * t), np.sin(660 * 6.28 * t)], 1) * 0.3, 44100)
    sounds = [load_audio(tmp_path / n) for n in ("silent.wav", "short.wav", "stereo.flac")]
    batch = torch.stack([torch.nn.functional.pad(s, (0, SR - s.numel())) for s in sounds])
    with torch.no_grad():
        embeddings, timestamps = hear.get_timestamp_embeddings(batch, model)
    assert embeddings.shape == (3, 25, 64) and torch.isfinite(embeddings).all()
    assert timestamps.shape == (3, 25)
    # one 40 ms frame per timestamp, from 0 ms, the same for every sound of the batch
    torch.testing.assert_close(timestamps, (torch.arange(25) * 40.0).expand(3, 25).to(timestamps.dtype))
    # each row is the sound's own embedding: batching with the others changes nothing
    with torch.no_grad():
        for i in range(3):
            alone, _ = hear.get_timestamp_embeddings(batch[i : i + 1], model)
            torch.testing.assert_close(embeddings[i], alone[0], atol=1e-4, rtol=1e-4)
    assert float((embeddings[0] - embeddings[2]).abs().mean()) > 1e-3  # silence and a chord are told apart


def test_input_must_be_two_dimensional(model: hear.HearMuQ) -> None:
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_timestamp_embeddings(torch.zeros(SR), model)
    with pytest.raises(ValueError, match="NaN or infinite"):
        hear.get_timestamp_embeddings(torch.full((1, SR), float("nan")), model)


def test_the_default_rate_is_a_hear_rate_resampled_like_embed(checkpoint: Path, tmp_path: Path) -> None:
    model = hear.load_model(str(checkpoint))
    assert model.sample_rate == 48000 and model.sample_rate in hear.HEAR_SAMPLE_RATES
    assert model.model_sample_rate == 24000
    t = np.arange(48000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    sf.write(tmp_path / "a48.wav", x, 48000, subtype="FLOAT")
    decoded = load_audio(tmp_path / "a48.wav")  # what `muqkit embed` feeds the model
    embeddings, timestamps = hear.get_timestamp_embeddings(torch.from_numpy(x).unsqueeze(0), model)
    with torch.no_grad():
        expected = encode_batch(model.muq, [decoded], layers=(0, 1, 2))[0].mean(dim=0)
    assert embeddings.shape == (1, 25, 64) and timestamps[0, 1] == 40.0
    torch.testing.assert_close(embeddings[0], expected, atol=1e-4, rtol=0)


def test_embeddings_carry_no_autograd_graph(model: hear.HearMuQ) -> None:
    audio = _audio(2, 0.5)
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)  # no no_grad() around it
    scene = hear.get_scene_embeddings(audio, model)
    assert not embeddings.requires_grad and not scene.requires_grad and embeddings.grad_fn is None


def test_the_hear_validator_contract(checkpoint: Path) -> None:
    """What ``hear-validator`` checks for a torch model, without its TensorFlow dependency."""
    model = hear.load_model(str(checkpoint))
    assert isinstance(model, torch.nn.Module) and model.sample_rate in (16000, 22050, 44100, 48000)
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    audio = torch.rand(16, int(2.0 * model.sample_rate)) * 2 - 1
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.dtype == torch.float32 and embeddings.shape[0] == 16
    assert embeddings.shape[:2] == timestamps.shape and embeddings.shape[2] == model.timestamp_embedding_size
    diff = torch.diff(timestamps)
    assert float(diff.float().mean()) <= 50.0 and torch.all((diff - diff.float().mean()).abs() < 1e-3)
    scene = hear.get_scene_embeddings(torch.rand(8, int(3.74 * model.sample_rate)) * 2 - 1, model)
    assert scene.dtype == torch.float32 and scene.shape == (8, model.scene_embedding_size)


def test_the_official_hear_validator_passes(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hear-validator muqkit.hear --model DIR`` (pip install hearvalidator). Its module imports TensorFlow
    only to recognise TensorFlow models; without TensorFlow a stand-in lets the torch checks run."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("hearvalidator") is None:
        pytest.skip("hearvalidator is not installed (pip install hearvalidator)")
    if importlib.util.find_spec("tensorflow") is None:
        stand_in = types.ModuleType("tensorflow")
        stand_in.Module = type("Module", (), {})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "tensorflow", stand_in)
    from hearvalidator.validate import main as validate

    monkeypatch.setattr(sys, "argv", ["hear-validator", "muqkit.hear", "--model", str(checkpoint), "--device", "cpu"])
    validate()  # raises ModelError on any failed check
