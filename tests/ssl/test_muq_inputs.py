"""Input checks of ``MuQ.forward``: integer PCM, numpy, NaN, masks with gaps, empty batches, lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from muqkit import MuQ


@pytest.fixture(scope="module")
def muq() -> MuQ:
    return MuQ.from_preset("tiny", seed=0).eval()


def _audio(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * 24000)) / 24000
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
    return (0.4 * torch.sin(2 * torch.pi * 330 * t) + 0.05 * noise).unsqueeze(0)


def test_int16_pcm_is_scaled_like_soundfile_reads_it(muq: MuQ) -> None:
    x = _audio()
    pcm = (x * 32768).round().clamp(-32768, 32767).to(torch.int16)
    a = muq(x).last_hidden_state
    b = muq(pcm).last_hidden_state
    cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert float(cosine.detach()) > 0.999
    b32 = muq(pcm.int() * 65536).last_hidden_state  # int32 PCM
    assert torch.allclose(b, b32, atol=1e-5)
    with pytest.raises(TypeError, match=r"ambiguous as audio.*wavs.float\(\) / 32768"):
        muq(pcm.long())


def test_numpy_input_is_accepted(muq: MuQ) -> None:
    x = _audio()
    assert torch.allclose(muq(x.numpy()).last_hidden_state, muq(x).last_hidden_state)
    assert torch.allclose(muq(x.numpy().astype(np.float64)).last_hidden_state, muq(x).last_hidden_state, atol=1e-6)


def test_non_finite_input_is_a_value_error(muq: MuQ) -> None:
    x = _audio().repeat(2, 1)
    x[1, 100] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or infinite samples \(batch items \[1\]\)"):
        muq(x)
    x[1, 100] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite"):
        muq(x)


def test_a_mask_with_gaps_is_refused_and_a_prefix_mask_works(muq: MuQ) -> None:
    x = _audio().repeat(2, 1)
    mask = torch.ones_like(x, dtype=torch.long)
    mask[1, 12000:] = 0
    out = muq(x, attention_mask=mask)
    assert out.lengths.tolist() == [25, 13]
    gap = mask.clone()
    gap[0, 5000:6000] = 0
    with pytest.raises(ValueError, match=r"prefix.*items \[0\]"):
        muq(x, attention_mask=gap)
    leading = torch.zeros_like(mask)
    leading[:, 2000:] = 1
    with pytest.raises(ValueError, match="prefix"):
        muq(x, attention_mask=leading)


def test_empty_batch_and_lists_give_clear_errors(muq: MuQ) -> None:
    with pytest.raises(ValueError, match="empty batch"):
        muq(torch.zeros(0, 24000))
    with pytest.raises(TypeError, match="got a list.*torch.stack"):
        muq([torch.zeros(24000), torch.zeros(12000)])
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        muq(torch.zeros(1, 1, 24000))
