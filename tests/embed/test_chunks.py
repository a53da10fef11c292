"""The chunking and batching engine: chunk plans, layer requests, padding exactness, frame timing."""

from __future__ import annotations

import pytest
import torch

from muqkit import MuQ
from muqkit.embed.chunks import (
    Chunk,
    chunk_bounds,
    chunk_length,
    encode_batch,
    encode_chunks,
    merge_short_tail,
    resolve_layers,
)


def test_chunk_length_is_whole_frames(tiny_muq: MuQ) -> None:
    assert chunk_length(30.0, tiny_muq.config) == 720000  # 750 frames of 960 samples
    assert chunk_length(1.0, tiny_muq.config) == 24000
    assert chunk_length(0.05, tiny_muq.config) == 960  # rounded down to one frame
    with pytest.raises(ValueError, match="shorter than one frame"):
        chunk_length(0.03, tiny_muq.config)
    with pytest.raises(ValueError, match="positive"):
        chunk_length(0.0, tiny_muq.config)


def test_chunk_bounds_merge_a_tail_shorter_than_one_frame() -> None:
    assert chunk_bounds(2500, chunk_samples=1000, min_samples=960) == [(0, 1000), (1000, 2500)]
    assert chunk_bounds(2960, chunk_samples=1000, min_samples=960) == [(0, 1000), (1000, 2000), (2000, 2960)]
    assert chunk_bounds(3000, chunk_samples=1000, min_samples=960) == [(0, 1000), (1000, 2000), (2000, 3000)]
    assert chunk_bounds(500, chunk_samples=1000, min_samples=960) == [(0, 500)]


@pytest.mark.parametrize("total", [500, 1000, 2500, 2960, 3000, 3001])
def test_merge_short_tail_agrees_with_chunk_bounds(total: int) -> None:
    signal = torch.arange(total, dtype=torch.float32)
    blocks = (signal[s : s + 1000] for s in range(0, total, 1000))
    merged = list(merge_short_tail(blocks, min_samples=960))
    bounds = chunk_bounds(total, chunk_samples=1000, min_samples=960)
    assert [(int(b[0]), int(b[-1]) + 1) for b, _ in merged] == bounds
    assert [last for _, last in merged] == [False] * (len(bounds) - 1) + [True]


def test_resolve_layers() -> None:
    assert resolve_layers("all", 3) == (0, 1, 2)
    assert resolve_layers([2, 0], 3) == (2, 0)
    assert resolve_layers([-1], 13) == (12,)
    assert resolve_layers(5, 13) == (5,)
    for bad, match in [([13], "out of range"), ([1, -12], "twice"), ([], "empty"), ("last", "'all'")]:
        with pytest.raises(ValueError, match=match):
            resolve_layers(bad, 13)  # type: ignore[arg-type]


def test_a_padded_batch_gives_each_item_its_frames_alone(tiny_muq: MuQ) -> None:
    gen = torch.Generator().manual_seed(0)
    wavs = [0.1 * torch.randn(n, generator=gen) for n in (24000, 7000, 48000, 960)]
    with torch.inference_mode():
        batched = encode_batch(tiny_muq, wavs, layers=(0, 1, 2))
        for wav, hidden in zip(wavs, batched, strict=True):
            alone = encode_batch(tiny_muq, [wav], layers=(0, 1, 2))[0]
            assert hidden.shape == (3, int(tiny_muq.num_frames(wav.numel())), 64)
            torch.testing.assert_close(hidden, alone, atol=1e-5, rtol=0)


def test_only_the_needed_layers_run_and_match_a_full_pass(tiny_muq: MuQ, record_calls) -> None:  # noqa: ANN001
    wav = 0.1 * torch.randn(24000, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = encode_batch(tiny_muq, [wav], layers=(0, 1, 2))[0]
        first = encode_batch(tiny_muq, [wav], layers=(1, 0))[0]
        front = encode_batch(tiny_muq, [wav], layers=(0,))[0]
    torch.testing.assert_close(first, full[[1, 0]], atol=1e-6, rtol=0)
    torch.testing.assert_close(front, full[:1], atol=1e-6, rtol=0)


def test_encode_chunks_keeps_order_and_batches(tiny_muq: MuQ, record_calls) -> None:  # noqa: ANN001
    gen = torch.Generator().manual_seed(2)
    chunks = [
        Chunk(key=k, index=i, samples=0.1 * torch.randn(n, generator=gen), last=i == 1)
        for k in ("a", "b", "c")
        for i, n in enumerate((4800, 2000))
    ]
    calls = record_calls(tiny_muq)
    with torch.inference_mode():
        outs = list(encode_chunks(tiny_muq, iter(chunks), layers=(2,), batch_size=4))
    assert [(o.key, o.index, o.last) for o in outs] == [(c.key, c.index, c.last) for c in chunks]
    assert calls.shapes == [(4, 4800), (2, 4800)]
    assert [o.hidden.shape[1] for o in outs] == [5, 2] * 3  # frames = ceil(ceil((n // 240) / 2) / 2)
    # batched (and padded) chunks give what each chunk gives alone
    with torch.inference_mode():
        alone = list(encode_chunks(tiny_muq, iter(chunks), layers=(2,), batch_size=1))
    for o, a in zip(outs, alone, strict=True):
        torch.testing.assert_close(o.hidden, a.hidden, atol=1e-4, rtol=1e-4)


def test_timestamps_are_frame_centres(tiny_muq: MuQ) -> None:
    """A click at sample 960 m changes the conv front-end frames m - r .. m + r: frame m is centred on it."""
    quiet = torch.zeros(48000)
    for m in (10, 23):
        click = quiet.clone()
        click[960 * m] = 0.5
        with torch.inference_mode():
            base, hit = encode_batch(tiny_muq, [quiet, click], layers=(0,))
        changed = torch.nonzero((hit[0] - base[0]).abs().amax(dim=-1) > 1e-6).flatten()
        assert len(changed) >= 3
        assert int(changed.min()) + int(changed.max()) == 2 * m
