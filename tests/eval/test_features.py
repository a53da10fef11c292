"""Feature extractors: handcrafted features of known signals, MuQ pooling, the madmom key order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from muqkit.eval.features import HandcraftedExtractor, MadmomKeyExtractor, MuQExtractor, make_extractor


def _tone(freq: float, seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(24000 * seconds)) / 24000
    return 0.3 * torch.sin(2 * math.pi * freq * t)


def test_handcrafted_dims_and_chroma_peak():
    mel, mfcc, chroma = (HandcraftedExtractor(k) for k in ("mel", "mfcc", "chroma"))
    wavs = [_tone(440.0), _tone(261.63, 0.7)]
    assert mel.embed(wavs)[0].shape == (1, 256)
    assert mfcc.embed(wavs)[0].shape == (1, 40)
    feats = chroma.embed(wavs)
    assert feats[0].shape == (1, 24)
    assert int(np.argmax(feats[0][0, :12])) == 9  # A
    assert int(np.argmax(feats[1][0, :12])) == 0  # C


def test_handcrafted_is_padding_invariant():
    mfcc = HandcraftedExtractor("mfcc")
    short = _tone(330.0, 0.6)
    alone = mfcc.embed([short])[0]
    batched = mfcc.embed([short, _tone(500.0, 1.5)])[0]
    np.testing.assert_allclose(alone, batched, rtol=1e-4, atol=1e-3)


def _clicks(period_s: float, seconds: float = 4.0, phase_s: float = 0.0) -> torch.Tensor:
    """Short noise bursts every ``period_s`` seconds."""
    gen = torch.Generator().manual_seed(0)
    wav = torch.zeros(int(24000 * seconds))
    for start in np.arange(phase_s, seconds - 0.05, period_s):
        i = int(start * 24000)
        wav[i : i + 480] = 0.5 * torch.randn(480, generator=gen) * torch.linspace(1, 0, 480)
    return wav


def test_rhythm_finds_the_beat_period_and_ignores_padding():
    rhythm = HandcraftedExtractor("rhythm")
    fast, slow = _clicks(0.25), _clicks(0.4, seconds=3.0)
    feats = rhythm.embed([fast, slow])
    assert feats[0].shape == (1, 251)
    for f, period_frames in ((feats[0][0], 25), (feats[1][0], 40)):  # 100 Hz lags 1..250
        lags = f[:250]
        assert int(np.argmax(lags[10:60])) + 11 == pytest.approx(period_frames, abs=1)
    alone = rhythm.embed([slow])[0]
    np.testing.assert_allclose(alone, feats[1], rtol=1e-4, atol=1e-4)


class _Stub(torch.nn.Module):
    """Same call signature as MuQ: 25 Hz frames, 3 hidden states that are affine in the input."""

    def forward(self, wavs, lengths=None, output_hidden_states=True):
        frames = wavs.shape[1] // 960
        x = wavs[:, : frames * 960].reshape(wavs.shape[0], frames, 960).mean(-1, keepdim=True)  # (B, T, 1)
        states = tuple(x * (k + 1) + k for k in range(3))
        n = torch.div(lengths, 960, rounding_mode="floor")
        masked = tuple(s * (torch.arange(frames)[None, :, None] < n[:, None, None]) for s in states)
        return type("Out", (), {"hidden_states": masked, "lengths": n})()


def test_muq_extractor_pools_valid_frames_and_windows():
    ext = MuQExtractor(_Stub(), "stub", max_seconds=1.0)
    assert ext.num_layers == 3
    wav = torch.ones(24000 * 2 + 9600)  # 2.4 s of ones: windows of 1 s, 1 s, 0.4 s
    (feats,) = ext.embed([wav])
    np.testing.assert_allclose(feats[:, 0], [1.0, 3.0, 5.0], rtol=1e-6)
    pair = ext.embed([wav, torch.ones(4800) * 2])
    np.testing.assert_allclose(pair[0], feats, rtol=1e-6)
    np.testing.assert_allclose(pair[1][:, 0], [2.0, 5.0, 8.0], rtol=1e-6)


def test_random_tiny_muq():
    ext = make_extractor("random:tiny")
    feats = ext.embed([_tone(440.0, 1.2), _tone(220.0, 0.5)])
    assert feats[0].shape == (ext.num_layers, 64) and ext.id.startswith("random-tiny-")
    alone = ext.embed([_tone(220.0, 0.5)])[0]
    np.testing.assert_allclose(alone, feats[1], rtol=1e-4, atol=1e-4)
    assert make_extractor("random:tiny").id == ext.id  # same seed, same weights, same cache id


def test_unknown_spec():
    with pytest.raises(ValueError, match="random:PRESET"):
        make_extractor("wav2vec")


def test_madmom_key_order():
    try:
        ext = MadmomKeyExtractor()
    except ImportError as exc:
        pytest.skip(f"madmom not installed: {exc}")
    assert ext.order[3] == 0  # madmom's C major is our class 0
    assert ext.order[0] == 9 and ext.order[12] == 21  # A major, A minor
    assert sorted(ext.order.tolist()) == list(range(24))
