"""Mel-RVQ: official parity, frame counts, padding, save / load, official weight translation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from muqkit.hub.official.rvq import mel_rvq_to_official, rvq_from_official, rvq_to_official
from muqkit.tokenizer import IGNORE_CODE, MelRVQ, MelRVQConfig, load_tokenizer


@pytest.fixture(scope="module")
def official(parity_dir: Path):
    from safetensors.torch import load_file

    folder = parity_dir / "muq_small"
    return folder, load_file(str(folder / "inputs.safetensors")), load_file(str(folder / "expected.safetensors"))


def test_codes_equal_the_official_rvq_tokens(official):
    folder, inputs, expected = official
    tokenizer = MelRVQ.from_pretrained(folder / "model")
    assert tokenizer.num_codebooks == 8 and tokenizer.codebook_size == 1024 and tokenizer.frame_rate == 25.0
    codes = tokenizer.encode(inputs["batch"])
    assert codes.shape == (2, 8, 125)
    # The fixture stores codes codebook-major: all 125 codes of codebook 0, then codebook 1, ...
    assert torch.equal(codes.reshape(2, 8 * 125), expected["batch.rvq_tokens"])


def test_odd_lengths_drop_the_last_partial_token(official):
    folder, inputs, expected = official
    tokenizer = MelRVQ.from_pretrained(folder / "model")
    out = tokenizer.tokenize(inputs["odd"])
    assert expected["odd.mel_db"].shape[-1] == 577
    assert out.codes.shape == (1, 8, 577 // 4) and out.lengths.tolist() == [144]
    assert int(tokenizer.num_frames(torch.tensor(138480))) == 144


def test_padded_batch_gives_each_item_its_own_codes(official):
    folder, inputs, _ = official
    tokenizer = MelRVQ.from_pretrained(folder / "model")
    a, b = inputs["batch"][0], inputs["batch"][1, :50000]
    batch = torch.zeros(2, a.shape[0])
    batch[0], batch[1, : b.shape[0]] = a, b
    out = tokenizer.tokenize(batch, torch.tensor([a.shape[0], b.shape[0]]))
    frames = int(tokenizer.num_frames(torch.tensor(b.shape[0])))
    assert out.lengths.tolist() == [125, frames]
    assert torch.equal(out.codes[1, :, :frames], tokenizer.encode(b.unsqueeze(0))[0])
    assert (out.codes[1, :, frames:] == IGNORE_CODE).all()


def test_official_translation_round_trip(official):
    from muqkit.hub.weights import read_state_dict

    folder, _, _ = official
    state = read_state_dict(folder / "model")
    ours = rvq_from_official(state)
    back = rvq_to_official(ours)
    assert set(back) == {k for k in state if k.startswith("model.rvq.")}
    again = rvq_from_official(back)
    for key, value in ours.items():
        torch.testing.assert_close(again[key], value, atol=1e-6, rtol=1e-6)
    tokenizer = MelRVQ.from_pretrained(folder / "model")
    assert set(mel_rvq_to_official(tokenizer.state_dict())) == set(back)


def test_save_and_load_keeps_codebooks_and_statistics(tmp_path: Path):
    torch.manual_seed(0)
    tokenizer = MelRVQ(MelRVQConfig(num_codebooks=2, codebook_size=32), mean=5.0, std=15.0).eval()
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, MelRVQ) and loaded.config == tokenizer.config
    assert float(loaded.features.mean) == 5.0 and float(loaded.features.std) == 15.0
    wav = torch.randn(1, 24000)
    assert torch.equal(loaded.encode(wav), tokenizer.encode(wav))


def test_decode_inverts_stacking():
    tokenizer = MelRVQ(MelRVQConfig(num_codebooks=2, codebook_size=16), mean=1.0, std=2.0).eval()
    wav = torch.randn(1, 9600)
    feats = tokenizer.featurize(wav)
    mel_db = tokenizer.features.log_mel(wav).values  # (1, 40, 128)
    torch.testing.assert_close(tokenizer.unstack(feats.values), mel_db.transpose(1, 2), atol=1e-4, rtol=1e-5)
    assert tokenizer.decode(tokenizer.encode(wav)).shape == feats.values.shape
