"""Clip cutting, batching invariances, the official call style and muqkit's checkpoint format."""

from __future__ import annotations

import pytest
import torch

from muqkit.mulan.audio import clip_spans, cut_clips


def test_clip_spans_follow_the_official_wrap_around_rule():
    assert clip_spans(8, 4) == [[(0, 4)], [(4, 8)]]
    assert clip_spans(10, 4) == [[(0, 4)], [(4, 8)], [(8, 10), (0, 2)]]
    assert clip_spans(3, 4) == [[(0, 3), (0, 1)]]  # shorter than a clip: completed from its own start
    assert clip_spans(1, 4) == [[(0, 1), (0, 1)]]  # shorter than half: the official rule gives 2 samples
    with pytest.raises(ValueError):
        clip_spans(0, 4)


def test_cut_clips_groups_by_length_and_counts_per_item():
    wavs = torch.arange(20.0).repeat(2, 1)
    clips = cut_clips(wavs, torch.tensor([10, 3]), 4)
    assert clips.counts.tolist() == [3, 1]
    ((full, owners),) = clips.groups  # 3 samples + 1 from the start make a whole clip
    assert full.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1], [0, 1, 2, 0]]
    assert owners.tolist() == [0, 0, 0, 1]
    clips = cut_clips(wavs, torch.tensor([4, 1]), 4)
    (full, owners_full), (short, owners_short) = clips.groups
    assert full.tolist() == [[0, 1, 2, 3]] and owners_full.tolist() == [0]
    assert short.tolist() == [[0, 0]] and owners_short.tolist() == [1]


@torch.no_grad()
def test_long_audio_is_the_mean_of_its_clips(tiny_mulan):
    torch.manual_seed(1)
    clip = tiny_mulan.config.clip_samples
    wav = torch.randn(int(2.5 * clip))
    latent = tiny_mulan(wavs=wav[None])[0]
    pieces = [wav[:clip], wav[clip : 2 * clip], torch.cat([wav[2 * clip :], wav[: clip // 2]])]
    expected = torch.stack([tiny_mulan.encode_audio(p[None]).latents[0] for p in pieces]).mean(0)
    assert torch.allclose(latent, expected, atol=1e-5)
    # Clip latents are unit vectors; their mean is not renormalised (official behaviour).
    assert float(latent.norm()) < 1.0


@torch.no_grad()
def test_batched_items_equal_items_alone(tiny_mulan):
    torch.manual_seed(2)
    items = [torch.randn(n) for n in (90_000, 48_000, 20_000)]
    together = tiny_mulan(wavs=items, clip_batch_size=3)
    alone = torch.cat([tiny_mulan(wavs=w[None]) for w in items])
    assert torch.allclose(together, alone, atol=1e-5)
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
    assert torch.allclose(tiny_mulan(wavs=padded, lengths=torch.tensor([90_000, 48_000, 20_000])), alone, atol=1e-5)


@torch.no_grad()
def test_text_latents_are_unit_and_batch_invariant(tiny_mulan):
    texts = ["a jig", "a slow waltz in D major played on strings and piano", "reel"]
    batch = tiny_mulan(texts=texts)
    assert torch.allclose(batch.norm(dim=-1), torch.ones(3), atol=1e-5)
    for i, t in enumerate(texts):
        assert torch.allclose(tiny_mulan(texts=[t])[0], batch[i], atol=1e-5)


@torch.no_grad()
def test_text_latents_keep_their_order_through_length_sorted_batches(tiny_mulan):
    texts = ["a slow waltz in D major played on strings and piano", "a jig", "reel", "a fast reel in G, in 4/4"]
    alone = torch.cat([tiny_mulan.extract_text_latents([t]) for t in texts])
    for batch_size in (1, 2, 3, 8):
        assert torch.allclose(tiny_mulan.extract_text_latents(texts, batch_size=batch_size), alone, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_mulan.extract_text_latents(texts, batch_size=0)


def test_packed_transformer_equals_each_sequence_alone():
    from muqkit.audio.tensors import lengths_to_mask
    from muqkit.mulan.config import TransformerConfig
    from muqkit.mulan.transformer import Transformer

    torch.manual_seed(0)
    net = Transformer(TransformerConfig(dim=32, depth=2, heads=4, dim_head=8))
    x = torch.randn(3, 7, 32, requires_grad=True)
    lengths = torch.tensor([7, 4, 2])
    mask = lengths_to_mask(lengths, 7)
    out = net(x, mask)
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(out[i, :n], net(x[i : i + 1, :n])[0], atol=1e-5)
    assert torch.equal(out[~mask], x[~mask])  # padded positions pass through
    out[mask].sum().backward()
    assert x.grad is not None and x.grad[~mask].abs().max() == 0 and x.grad[mask].abs().min() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_call_style_errors(tiny_mulan):
    with pytest.raises(ValueError, match="either wavs or texts"):
        tiny_mulan()
    with pytest.raises(ValueError, match="either wavs or texts"):
        tiny_mulan(wavs=torch.zeros(1, 100), texts=["x"])
    with pytest.raises(TypeError):
        tiny_mulan(texts="one string")


def test_save_and_load_round_trip(tiny_mulan, tmp_path):
    from muqkit.mulan import MuQMuLan

    folder = tiny_mulan.save_pretrained(tmp_path / "m")
    again = MuQMuLan.from_pretrained(folder)
    assert again.config == tiny_mulan.config
    with torch.no_grad():
        wav = torch.randn(1, 30_000)
        assert torch.equal(again(wavs=wav), tiny_mulan(wavs=wav))
        assert torch.equal(again(texts=["a fast reel"]), tiny_mulan(texts=["a fast reel"]))


def test_loading_a_misfit_checkpoint_lists_every_problem(tiny_mulan, tmp_path):
    from safetensors.torch import load_file, save_file

    from muqkit.hub.weights import CheckpointError
    from muqkit.mulan import MuQMuLan

    folder = tiny_mulan.save_pretrained(tmp_path / "m")
    state = load_file(str(folder / "model.safetensors"))
    state.pop("text_to_latents.bias")
    state["audio_to_latents.weight"] = torch.zeros(3, 3)
    state["stray"] = torch.zeros(1)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as info:
        MuQMuLan.from_pretrained(folder)
    message = str(info.value)
    assert "text_to_latents.bias" in message and "audio_to_latents.weight" in message and "stray" in message


def test_config_validation():
    from muqkit.mulan import MuQMuLanConfig, TransformerConfig

    with pytest.raises(ValueError, match="depth"):
        TransformerConfig(depth=-1)
    with pytest.raises(ValueError, match="dim_latent"):
        MuQMuLanConfig(dim_latent=0)
    with pytest.raises(ValueError, match="unknown config keys"):
        MuQMuLanConfig.from_dict({"dim_latnt": 3})
    config = MuQMuLanConfig()
    assert MuQMuLanConfig.from_dict(config.to_dict()) == config
