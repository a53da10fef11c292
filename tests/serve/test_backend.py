"""The backend and its parts: the map's projection, byte ranges, model kinds, MuQ latents, the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_index_backend_is_a_search_backend(mulan_backend, muq_backend):
    from muqkit.serve.backend import SearchBackend

    assert isinstance(mulan_backend, SearchBackend) and isinstance(muq_backend, SearchBackend)
    assert mulan_backend.can_search_text and not muq_backend.can_search_text


def test_search_vector_ranks_by_dot_product_and_excludes(mulan_backend):
    latents = torch.from_numpy(mulan_backend.index.vectors())
    query = torch.nn.functional.normalize(latents[1] + 0.5 * latents[5], dim=0)  # scores are cosines
    hits = mulan_backend.search_vector(query, k=4, exclude=(1,))
    order = [i for i in torch.argsort(latents @ query, descending=True).tolist() if i != 1][:4]
    assert [h.track.id for h in hits] == order and [h.rank for h in hits] == [1, 2, 3, 4]
    assert [h.score for h in hits] == pytest.approx((latents[order] @ query).tolist(), abs=1e-5)


def test_unknown_track(mulan_backend):
    from muqkit.serve.backend import UnknownTrack

    with pytest.raises(UnknownTrack, match="no track 99"):
        mulan_backend.more_like_this(99, k=3)


def test_model_must_match_the_index(mulan_backend, muq_backend, mulan_index, muq_index, tmp_path):
    from muqkit.search import IndexMismatchError, VectorIndex, open_index
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import index_embedder

    with pytest.raises(ValueError, match="serve the index with the model that built it"):
        IndexBackend(mulan_backend.index, muq_backend.embedder)
    with pytest.raises(ValueError, match="serve the index with the model that built it"):
        IndexBackend(muq_backend.index, mulan_backend.embedder)
    # same kind and dimension, other weights: the fingerprint tells them apart
    meta = mulan_backend.index.meta
    other = VectorIndex.create(meta.dim, model_id=meta.model_id, model_sha256="0" * 64)
    other.add(["a.wav"], mulan_backend.index.vectors()[:1])
    with pytest.raises(IndexMismatchError, match="not by this one"):
        IndexBackend(other, mulan_backend.embedder)
    with pytest.raises(ValueError, match="is a MuQ-MuLan checkpoint"):
        index_embedder(open_index(muq_index), model=mulan_backend.embedder.source)


def test_muq_index_is_served_with_its_layer(muq_backend, muq_index):
    """``mulan index --model MUQ`` stores the last layer's mean, the source ``muqkit index embeddings`` names."""
    from muqkit.ssl.muq import MuQ

    muq = muq_backend.embedder.model.muq
    assert isinstance(muq, MuQ)
    depth = muq.config.encoder_depth
    assert muq_backend.index.meta.source == f"muq-mean:layer_{depth}" and muq_backend.embedder.model.layer == depth
    assert muq_backend.index.meta.model_sha256 == muq_backend.embedder.fingerprint


def test_pca_map_spreads_the_leading_direction():
    from muqkit.serve.backend import project_2d

    g = torch.Generator().manual_seed(0)
    points = torch.randn(50, 8, generator=g) * torch.tensor([10.0, 3.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    xy = project_2d(points)
    assert xy.shape == (50, 2) and xy.min() == 0.0 and xy.max() == 1.0
    # the first axis follows the largest-variance coordinate, the second the next one
    assert abs(np.corrcoef(xy[:, 0], points[:, 0].numpy())[0, 1]) > 0.99
    assert abs(np.corrcoef(xy[:, 1], points[:, 1].numpy())[0, 1]) > 0.95
    assert project_2d(torch.ones(1, 4)).tolist() == [[0.5, 0.5]]
    with pytest.raises(ValueError, match="projection must be one of"):
        project_2d(points, "tsne")


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [(None, 100, None), ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
     ("bytes=50-500", 100, (50, 99)), ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None),
     ("bytes=9-3", 100, None), ("bytes=abc", 100, None), ("bytes=-", 100, None), (" Bytes = 3 - 4 ", 100, (3, 4))],
)  # fmt: skip
def test_parse_range(header, size, expected):
    from muqkit.serve.media import parse_range

    assert parse_range(header, size) == expected


def test_parse_range_outside():
    from muqkit.serve.media import RangeNotSatisfiable, parse_range

    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-5", 0)


def test_model_kind(parity_dir, tmp_path):
    from muqkit.hub.weights import CheckpointError
    from muqkit.serve.embedder import model_kind

    assert model_kind(parity_dir / "mulan_small" / "mulan") == "mulan"
    assert model_kind(parity_dir / "muq_small" / "model") == "muq"
    with pytest.raises(CheckpointError, match="missing config.json"):
        model_kind(tmp_path)


def test_muq_latents_are_the_normalised_mean_frame(muq_backend):
    from muqkit.serve.embedder import MuQAudioLatents

    adapter = muq_backend.embedder.model
    wav = torch.randn(24000 * 3, generator=torch.Generator().manual_seed(1)) * 0.1
    with torch.no_grad():
        frames = adapter.muq(wav[None]).last_hidden_state[0]
    expected = torch.nn.functional.normalize(frames.mean(0), dim=-1)
    assert torch.allclose(adapter.extract_audio_latents([wav])[0], expected, atol=1e-5)
    # long audio is cut into chunks whose frames are averaged together
    chunked = MuQAudioLatents(adapter.muq, chunk_seconds=1.0).extract_audio_latents([wav])[0]
    assert torch.nn.functional.cosine_similarity(chunked, expected, dim=0) > 0.9
    assert chunked.norm().item() == pytest.approx(1.0, abs=1e-5)


def test_model_label_names_a_folder_not_its_path(tmp_path, mulan_embedder, mulan_dir):
    from muqkit.serve.embedder import model_label

    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_label(folder) == model_label(f"{folder}/") == "my-model"
    assert model_label("OpenMuQ/MuQ-MuLan-large") == "OpenMuQ/MuQ-MuLan-large"  # a Hub id, as given
    assert mulan_embedder.name == "mulan" and mulan_embedder.source == str(mulan_dir)


def test_durations_are_read_once_and_none_for_a_missing_file(mulan_backend, tmp_path):
    from muqkit.serve.backend import audio_duration

    assert [mulan_backend.duration(t.id) for t in mulan_backend.tracks] == pytest.approx([2.5] * 7)
    assert mulan_backend._durations.keys() == set(range(7))
    assert audio_duration(str(tmp_path / "nothing.wav")) is None
    (tmp_path / "bad.wav").write_bytes(b"RIFF not a wave")
    assert audio_duration(str(tmp_path / "bad.wav")) is None


def test_forward_passes_run_on_one_model_thread(mulan_embedder, mulan_backend):
    """Requests come from a pool of threads; the model runs on its own, one pass at a time, without autograd
    (the math libraries keep buffers per thread that runs a model: memory grew with the pool)."""
    import threading

    model = mulan_embedder.model
    seen: list[tuple[str, bool]] = []
    text, audio = model.extract_text_latents, model.extract_audio_latents
    queries = [f"calm piano {i}" for i in range(6)]  # distinct: a repeated query comes from the app's cache
    expected = dict(zip(queries, text(queries).float(), strict=True))

    def record(run):  # noqa: ANN001, ANN202
        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.append((threading.current_thread().name, torch.is_grad_enabled()))
            return run(*args, **kwargs)

        return wrapped

    results: list[tuple[str, torch.Tensor]] = []
    try:
        model.extract_text_latents = record(text)
        model.extract_audio_latents = record(audio)
        threads = [threading.Thread(target=lambda q=q: results.append((q, mulan_embedder.text_latents([q])[0])))
                   for q in queries]  # fmt: skip
        threads.append(threading.Thread(target=mulan_embedder.audio_latent, args=(torch.zeros(24000),)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        del model.extract_text_latents, model.extract_audio_latents
    assert len(seen) == 7 and {name for name, _ in seen} == {seen[0][0]} and seen[0][0].startswith("muqkit-model")
    assert not any(grad for _, grad in seen)
    assert all(torch.allclose(r, expected[q], atol=1e-6) for q, r in results) and len(results) == 6
    with pytest.raises(ValueError, match="boom"):  # an error in a pass reaches the caller
        mulan_embedder._run(lambda: (_ for _ in ()).throw(ValueError("boom")))
