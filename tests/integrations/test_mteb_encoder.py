"""MTEB's evaluation on small local tasks built from the offline corpus, checked against a direct probe and
a direct retrieval on the same embeddings; padding and length of MTEB batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

mteb = pytest.importorskip("mteb")
datasets = pytest.importorskip("datasets")

from muqkit.data.manifest import read_manifest  # noqa: E402
from muqkit.embed.chunks import encode_batch  # noqa: E402
from muqkit.integrations.mteb_encoder import MuQEncoder, MuQMuLanEncoder, load_mteb_model  # noqa: E402

SR = 24000


def _metadata(name: str, task_type: str, category: str, modalities: list[str], main_score: str):
    from mteb.abstasks.task_metadata import TaskMetadata

    return TaskMetadata(
        name=name, description="a muqkit test task from the offline corpus", reference=None,
        dataset={"path": "muqkit/offline-corpus", "revision": "0"}, type=task_type, category=category,
        eval_splits=["test"], eval_langs=["eng-Latn"] if "text" in modalities else ["zxx-Zxxx"],
        main_score=main_score, date=None, domains=["Music"], task_subtypes=[], license="mit",
        annotations_creators="derived", dialect=[], modalities=modalities, sample_creation="created",
        bibtex_citation="",
    )  # fmt: skip


def _audio_column(root: Path, records) -> datasets.Dataset:
    """Encoded files in a ``datasets.Audio`` column, as MAEB's parquet files hold them."""
    items = [{"bytes": (root / r.path).read_bytes(), "path": Path(r.path).name} for r in records]
    return datasets.Dataset.from_dict({"audio": items}).cast_column("audio", datasets.Audio())


def _family_task(root: Path):
    """Instrument family of single notes: the two lowest pitches of each instrument train, the highest tests."""
    from mteb.abstasks.classification import AbsTaskClassification

    records = sorted(read_manifest(root / "notes.jsonl"), key=lambda r: (r.group, r.labels["pitch"]))
    rank = {r.id: sum(o.group == r.group and o.labels["pitch"] < r.labels["pitch"] for o in records) for r in records}
    train = [r for r in records if rank[r.id] < 2]
    test = [r for r in records if rank[r.id] == 3]
    families = sorted({r.labels["family"] for r in records})

    def split(rs):
        return _audio_column(root, rs).add_column("label", [families.index(r.labels["family"]) for r in rs])

    class NotesFamily(AbsTaskClassification):
        metadata = _metadata("MuqkitNotesFamily", "AudioClassification", "a2c", ["audio"], "accuracy")
        input_column_name = "audio"
        n_experiments = 1
        samples_per_label = 1000  # every training clip

        def load_data(self, **kwargs):
            self.dataset = {"default": datasets.DatasetDict({"train": split(train), "test": split(test)})}
            self.data_loaded = True

    return NotesFamily(), train, test, families


def _load(root: Path, records) -> list[torch.Tensor]:
    from muqkit.audio.io import load_audio

    return [load_audio(root / r.path) for r in records]


def test_mteb_classification_equals_a_direct_probe(checkpoint: Path, notes_corpus: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score

    task, train, test, families = _family_task(notes_corpus)
    model = MuQEncoder(str(checkpoint), device="cpu", layers=[1, 2], pooling="mean")
    result = mteb.evaluate(model, task, cache=None, show_progress_bar=False)
    scores = result.task_results[0].scores["test"][0]

    x_train = model.embed_waveforms(_load(notes_corpus, train)).numpy()
    x_test = model.embed_waveforms(_load(notes_corpus, test)).numpy()
    y_train = [families.index(r.labels["family"]) for r in train]
    y_test = [families.index(r.labels["family"]) for r in test]
    probe = LogisticRegression(max_iter=100, random_state=task.seed).fit(x_train, y_train)
    predicted = probe.predict(x_test)
    assert len(test) == 13 and len(train) == 26
    assert scores["accuracy"] == pytest.approx(accuracy_score(y_test, predicted), abs=1e-9)
    assert scores["f1"] == pytest.approx(f1_score(y_test, predicted, average="macro"), abs=1e-9)
    assert scores["main_score"] == scores["accuracy"]


def test_mteb_text_to_music_retrieval_equals_a_direct_retrieval(parity_dir: Path, notes_corpus: Path) -> None:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    from muqkit.mulan.captions import caption_from_metadata

    records = read_manifest(notes_corpus / "notes.jsonl")
    captions = [caption_from_metadata(r.labels) for r in records]
    corpus = _audio_column(notes_corpus, records).add_column("id", [r.id for r in records])
    queries = datasets.Dataset.from_dict({"id": [f"q{i}" for i in range(len(records))], "text": captions})

    class NotesT2A(AbsTaskRetrieval):
        metadata = _metadata("MuqkitNotesT2A", "Any2AnyRetrieval", "t2a", ["text", "audio"], "recall_at_1")

        def load_data(self, **kwargs):
            self.corpus = datasets.DatasetDict({"test": corpus})
            self.queries = datasets.DatasetDict({"test": queries})
            self.relevant_docs = {"test": {f"q{i}": {r.id: 1} for i, r in enumerate(records)}}
            self.data_loaded = True

    model = load_mteb_model(parity_dir / "mulan_small" / "mulan", device="cpu")
    assert isinstance(model, MuQMuLanEncoder)
    scores = mteb.evaluate(model, NotesT2A(), cache=None, show_progress_bar=False).task_results[0].scores["test"][0]

    audio = model.embed_waveforms(_load(notes_corpus, records))
    text = model.embed_texts(captions)
    similarity = text @ audio.T  # (queries, docs), the model's dot product
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity > own).sum(dim=1)  # 0 = the query's own clip comes first
    recall1, recall10 = float((rank < 1).float().mean()), float((rank < 10).float().mean())
    mrr10 = float(torch.where(rank < 10, 1.0 / (rank + 1).float(), torch.zeros(())).mean())
    assert scores["recall_at_1"] == pytest.approx(recall1, abs=1e-5)
    assert scores["recall_at_10"] == pytest.approx(recall10, abs=1e-5)
    assert scores["mrr_at_10"] == pytest.approx(mrr10, abs=1e-5)
    assert 0.0 < recall10 < 1.0  # a ranking, not a trivial one


def _dataloader(waves: list[np.ndarray], rates: list[int], batch_size: int):
    from torch.utils.data import DataLoader

    items = [{"array": w, "sampling_rate": r} for w, r in zip(waves, rates, strict=True)]
    return DataLoader(datasets.Dataset.from_dict({"audio": items}), batch_size=batch_size)


def test_a_batch_of_different_lengths_gives_each_clip_its_own_embedding(checkpoint: Path) -> None:
    model = MuQEncoder(str(checkpoint), device="cpu", pooling="mean_std", chunk_seconds=2.0)
    gen = np.random.default_rng(0)
    lengths = [0.3, 2.7, 1.1, 4.5]  # seconds: shorter and longer than a chunk
    waves = [(0.1 * gen.standard_normal(round(s * SR))).astype(np.float32) for s in lengths]
    task = _metadata("X", "AudioClassification", "a2c", ["audio"], "accuracy")
    together = model.encode(_dataloader(waves, [SR] * 4, 4), task_metadata=task, hf_split="test", hf_subset="default")
    for i, wave in enumerate(waves):
        alone = model.encode(_dataloader([wave], [SR], 1), task_metadata=task, hf_split="test", hf_subset="default")
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5, rtol=0)
    assert together.shape == (4, model.embed_dim) and model.embed_dim == 2 * 64
    # zero padding without a mask would have changed the short clips: it is not what the encoder does
    padded = np.zeros(len(waves[3]), dtype=np.float32)
    padded[: len(waves[0])] = waves[0]
    unmasked = model.encode(_dataloader([padded], [SR], 1), task_metadata=task, hf_split="test", hf_subset="default")
    assert np.abs(unmasked[0] - together[0]).max() > 1e-3


def test_a_three_minute_clip_is_embedded_whole(checkpoint: Path) -> None:
    model = MuQEncoder(str(checkpoint), device="cpu", layers=[-1])
    t = np.arange(180 * 48000) / 48000
    # a different tone in each minute, at 48 kHz (resampled to 24 kHz by muqkit)
    wave = (0.3 * np.sin(2 * np.pi * np.where(t < 60, 220, np.where(t < 120, 440, 880)) * t)).astype(np.float32)
    task = _metadata("X", "AudioClassification", "a2c", ["audio"], "accuracy")
    calls: list[tuple[int, ...]] = []
    handle = model.model.register_forward_pre_hook(lambda m, args: calls.append(tuple(args[0].shape)))
    try:
        embedding = model.encode(_dataloader([wave], [48000], 1), task_metadata=task, hf_split="t", hf_subset="d")[0]
    finally:
        handle.remove()
    assert sum(shape[0] for shape in calls) == 6  # six 30 s chunks: nothing past 30 s is dropped
    frames = model.frames([torch.from_numpy(wave[::2].copy())])[0]
    assert frames.shape[0] == 180 * 25
    from muqkit.integrations.audio_items import waveform_from_item

    resampled = waveform_from_item({"array": wave, "sampling_rate": 48000}, SR)
    with torch.no_grad():
        parts = [encode_batch(model.model, [resampled[i * 720000 : (i + 1) * 720000]], layers=(2,))[0][0]
                 for i in range(6)]  # fmt: skip
    whole_mean = torch.cat(parts).mean(dim=0)
    np.testing.assert_allclose(embedding, whole_mean.numpy(), atol=1e-5, rtol=0)
    first_30s = parts[0].mean(dim=0).numpy()
    assert np.abs(embedding - first_30s).max() > 1e-3  # the last 150 s count


def test_model_meta_and_options(checkpoint: Path) -> None:
    model = load_mteb_model(checkpoint, device="cpu", layers=[0, 2], reduce="concat", pooling="max")
    assert isinstance(model, MuQEncoder)
    meta = model.mteb_model_meta
    assert meta.name.startswith("muqkit/") and meta.embed_dim == 128 and meta.modalities == ["audio"]
    assert meta.similarity_fn_name == "cosine" and meta.license == "not specified"
    assert meta.n_parameters == sum(p.numel() for p in model.model.parameters())
    assert len(meta.revision) == 12 and meta.experiment_kwargs["layers"] == "0,2"
    assert isinstance(model, mteb.models.EncoderProtocol)
    with pytest.raises(ValueError, match="pooling"):
        MuQEncoder(str(checkpoint), device="cpu", pooling="median")
    with pytest.raises(ValueError, match="takes no option clip_batch_size"):
        load_mteb_model(checkpoint, clip_batch_size=4)
    with pytest.raises(ValueError, match="out of range"):
        load_mteb_model(checkpoint, layers=[7])
