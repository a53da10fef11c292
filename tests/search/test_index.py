"""The FAISS index of :mod:`muqkit.search`: exact below the threshold, recall above it, incremental changes,
atomic saves, model checks and paths from any working folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("faiss")

from muqkit.search import IndexConfig, IndexMismatchError, VectorIndex, open_index  # noqa: E402
from muqkit.search.index import IndexChangedError  # noqa: E402


def clustered(n: int, dim: int = 32, *, seed: int = 0, clusters: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ vectors.T), axis=1, kind="stable")[:, :k]


def make(kind: str = "auto", n: int = 2000, **config: object) -> tuple[VectorIndex, list[str], np.ndarray]:
    x = clustered(n)
    paths = [f"music/{i:05d}.flac" for i in range(n)]
    index = VectorIndex.create(32, model_id="m", model_sha256="a" * 64, config=IndexConfig(kind=kind, **config))  # type: ignore[arg-type]
    index.add(paths, x)
    return index, paths, x


def test_below_the_threshold_the_top_10_is_the_exact_scan():
    index, paths, x = make()
    assert index.kind == "flat"
    queries = clustered(50, seed=1)
    got = [[h.given for h in hits] for hits in index.search(queries, 10)]
    want = [[paths[i] for i in row] for row in exact_top(x, queries, 10)]
    assert got == want
    scores = [h.score for h in index.search(queries[:1], 10)[0]]
    q = queries[0] / np.linalg.norm(queries[0])
    assert np.allclose(scores, np.sort(x @ q)[::-1][:10], atol=1e-5)


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_approximate_kinds_recall_the_exact_top_10(kind):
    index, paths, x = make(kind, n=5000, pq_m=8)  # 4-d sub-vectors (the default, dim / 8, is for 512-d)
    assert index.kind == kind
    queries = clustered(100, seed=2)
    truth = exact_top(x, queries, 10)
    got = [ids for ids, _ in index.search_rows(queries, 10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])
    assert recall >= 0.9


def test_auto_switches_to_the_approximate_kind_at_the_threshold():
    index, paths, x = make("auto", n=500, exact_threshold=1000, approximate="hnsw")
    assert index.kind == "flat"
    index.add([f"more/{i}.flac" for i in range(600)], clustered(600, seed=3))
    assert index.kind == "hnsw" and len(index) == 1100


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "hnsw"])
def test_add_and_remove_without_a_rebuild(kind, tmp_path):
    index, paths, x = make(kind, n=3000)
    structure = index._faiss
    if kind == "ivfpq":
        centroids = structure.quantizer.reconstruct_n(0, structure.nlist).copy()
    removed = paths[:50]
    assert index.remove([*removed, "not/there.flac"]) == 50
    new = clustered(20, seed=4)
    index.add([f"new/{i}.flac" for i in range(20)], new)
    assert index._faiss is structure  # the same FAISS structure, updated in place
    if kind == "ivfpq":
        assert np.array_equal(structure.quantizer.reconstruct_n(0, structure.nlist), centroids)
    assert len(index) == 3000 - 50 + 20
    # a removed file is never returned, even for its own vector; a new one is found for its own vector
    hits = index.search(np.concatenate([x[:5], new[:5]]), 10)
    assert not {h.given for hs in hits for h in hs} & set(removed)
    assert [hs[0].given for hs in hits[5:]] == [f"new/{i}.flac" for i in range(5)]
    # replacing a file keeps one entry with the new vector
    index.add([paths[100]], new[:1])
    assert len(index) == 3000 - 50 + 20 and np.allclose(index.vector(paths[100]), new[0], atol=1e-6)
    # the same after a save and a load
    index.save(tmp_path / "i")
    again = open_index(tmp_path / "i")
    assert again.kind == kind and len(again) == len(index)
    queries = clustered(20, seed=5)
    assert [[h.given for h in hs] for hs in again.search(queries, 10)] == [
        [h.given for h in hs] for hs in index.search(queries, 10)
    ]


def test_many_removals_compact_on_save(tmp_path):
    index, paths, x = make("hnsw", n=1000)
    index.remove(paths[:400])
    index.save(tmp_path / "i")
    again = open_index(tmp_path / "i")
    assert len(again) == 600 and again._faiss.ntotal == 600  # removed rows are gone from the graph
    hits = again.search(x[400:410], 1)
    assert [hs[0].given for hs in hits] == paths[400:410]


def test_search_like_leaves_the_file_out():
    index, paths, x = make()
    hits = index.search_like(paths[7], 10)
    assert paths[7] not in [h.given for h in hits] and len(hits) == 10
    scores = x[np.array([paths.index(h.given) for h in hits])] @ x[7]
    assert np.allclose(scores, [h.score for h in hits], atol=1e-5)
    best_other = np.sort(np.delete(x, 7, axis=0) @ x[7])[::-1][:10]
    assert np.allclose(scores, best_other, atol=1e-5)


def test_saves_are_atomic_generations(tmp_path, monkeypatch):
    import faiss

    index, paths, x = make()
    index.save(tmp_path / "i")
    index.remove(paths[:10])

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError):
        index.save(tmp_path / "i")
    monkeypatch.undo()
    assert len(open_index(tmp_path / "i")) == 2000  # the previous generation, whole
    index.save(tmp_path / "i")
    names = sorted(p.name for p in (tmp_path / "i").iterdir())
    assert names == [".muqkit-index.lock", "faiss-1.index", "items-1.jsonl", "meta.json", "vectors-1.npy"]
    assert len(open_index(tmp_path / "i")) == 1990


def test_model_and_dimension_are_checked_on_load(tmp_path):
    index, _, _ = make()
    index.save(tmp_path / "i")
    open_index(tmp_path / "i", model_sha256="a" * 64, dim=32)
    with pytest.raises(IndexMismatchError, match="built by model m"):
        open_index(tmp_path / "i", model_sha256="b" * 64)
    with pytest.raises(IndexMismatchError, match="32-d vectors, the model gives 64-d"):
        open_index(tmp_path / "i", dim=64)
    with pytest.raises(IndexMismatchError):
        index.search(np.ones((1, 16), dtype=np.float32), 3)


def test_paths_are_kept_as_given_and_resolve_from_anywhere(tmp_path, monkeypatch):
    (tmp_path / "music").mkdir()
    monkeypatch.chdir(tmp_path)
    index = VectorIndex.create(32, model_id=None, model_sha256=None)
    index.add(["music/a.flac", "./music/b.flac"], clustered(2))
    index.save("idx")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = open_index(Path("..") / "idx")
    hits = loaded.search(clustered(2), 2)[0]
    assert {h.given for h in hits} == {"music/a.flac", "./music/b.flac"}
    assert {h.path for h in hits} == {str(tmp_path / "music" / "a.flac"), str(tmp_path / "music" / "b.flac")}
    assert str(tmp_path / "music" / "b.flac") in loaded  # the same file by another spelling
    assert loaded.remove([os.path.join(str(tmp_path), "music", "a.flac")]) == 1


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a muqkit search index"):
        open_index(tmp_path)
    index, _, _ = make()
    index.save(tmp_path / "i")
    (tmp_path / "i" / "vectors-0.npy").write_bytes(b"junk")
    with pytest.raises(ValueError, match="vectors-0.npy: corrupt index file"):
        open_index(tmp_path / "i")
    # an items file cut at a line end is named as the culprit, not the vectors it no longer matches
    items = tmp_path / "i" / "items-0.jsonl"
    items.write_text("".join(items.read_text().splitlines(keepends=True)[:-3]))
    with pytest.raises(ValueError, match=r"items-0.jsonl: corrupt index file .*a truncated file"):
        open_index(tmp_path / "i")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="kind must be one of"):
        IndexConfig(kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        IndexConfig(nprobe=0)
    with pytest.raises(ValueError, match="pq_m"):
        VectorIndex.create(30, model_id=None, model_sha256=None, config=IndexConfig(pq_m=8))


# -- concurrent writers and readers --------------------------------------------------------------


def test_two_writers_from_one_version_keep_both_updates(tmp_path):
    """Two runs read the same version and each add files: the second save applies its changes to the
    first's version instead of overwriting it (the lost update of two `index add` runs)."""
    base, paths, _ = make(n=30)
    base.save(tmp_path / "i")
    first, second = open_index(tmp_path / "i", mmap=False), open_index(tmp_path / "i", mmap=False)
    first.add([f"a/{i}.flac" for i in range(50)], clustered(50, seed=2))
    second.add([f"b/{i}.flac" for i in range(50)], clustered(50, seed=3))
    second.remove(paths[:5])
    first.save(tmp_path / "i")
    second.save(tmp_path / "i")
    assert len(second) == 30 + 50 + 50 - 5  # the saving index becomes the merged one
    merged = open_index(tmp_path / "i")
    assert len(merged) == 125
    assert all(f"a/{i}.flac" in merged and f"b/{i}.flac" in merged for i in range(50))
    assert not any(p in merged for p in paths[:5])
    # vectors travel with their files
    assert np.allclose(merged.vector("b/7.flac"), clustered(50, seed=3)[7], atol=1e-6)
    assert np.allclose(merged.vector("a/7.flac"), clustered(50, seed=2)[7], atol=1e-6)
    # the first writer's next change applies to the merged version too
    first.remove(["a/0.flac"])
    first.save(tmp_path / "i")
    assert len(open_index(tmp_path / "i")) == 124 and "b/3.flac" in open_index(tmp_path / "i")


def test_a_writer_whose_index_went_away_saves_nothing(tmp_path):
    index, _, _ = make(n=30)
    index.save(tmp_path / "i")
    stale = open_index(tmp_path / "i", mmap=False)
    stale.add(["x.flac"], clustered(1, seed=4))
    other = VectorIndex.create(32, model_id="other", model_sha256="c" * 64)
    other.add(["y.flac"], clustered(1, seed=5))
    other.save(tmp_path / "i", replace=True)  # explicitly replaced by another model's index
    with pytest.raises(IndexChangedError, match="replaced by one of another model"):
        stale.save(tmp_path / "i")
    assert open_index(tmp_path / "i").paths == ["y.flac"]
    for name in os.listdir(tmp_path / "i"):
        if not name.startswith("."):
            os.remove(tmp_path / "i" / name)
    with pytest.raises(IndexChangedError, match="was removed"):
        stale.save(tmp_path / "i")


def test_a_new_index_never_silently_replaces_one_saved_meanwhile(tmp_path):
    first, _, _ = make(n=20)
    first.save(tmp_path / "i")
    second, _, _ = make(n=10)
    with pytest.raises(IndexChangedError, match="another index was saved there"):
        second.save(tmp_path / "i")
    assert len(open_index(tmp_path / "i")) == 20
    second.save(tmp_path / "i", replace=True)
    assert len(open_index(tmp_path / "i")) == 10


def test_a_reader_racing_a_save_reads_the_new_generation(tmp_path, monkeypatch):
    """meta.json names generation 0; a writer saves generation 1 and deletes 0 before the reader opens
    its files: the reader reads meta.json again and gets generation 1, whole."""
    from muqkit.search import index as module

    index, _, _ = make(n=20)
    index.save(tmp_path / "i")
    writer = open_index(tmp_path / "i", mmap=False)
    writer.add(["late.flac"], clustered(1, seed=6))
    real = module._read_generation
    calls = []

    def racing(folder, raw, *, mmap):
        if not calls:
            writer.save(tmp_path / "i")  # commits between the reader's meta.json and its files
        calls.append(raw["generation"])
        return real(folder, raw, mmap=mmap)

    monkeypatch.setattr(module, "_read_generation", racing)
    loaded = open_index(tmp_path / "i")
    assert calls == [0, 1] and len(loaded) == 21 and "late.flac" in loaded


def test_concurrent_processes_lose_no_update(tmp_path):
    """Four processes add 25 files each to one index at the same moment: all 100 are there."""
    import subprocess
    import sys

    index, _, _ = make(n=10)
    index.save(tmp_path / "i")
    script = (
        "import sys, time, numpy as np\n"
        "from muqkit.search import open_index\n"
        "name, folder, start = sys.argv[1], sys.argv[2], float(sys.argv[3])\n"
        "index = open_index(folder, mmap=False)\n"
        "while time.time() < start: time.sleep(0.001)\n"
        "vectors = np.random.default_rng(abs(hash(name)) % 1000).standard_normal((25, 32))\n"
        "index.add([f'{name}/{i}.flac' for i in range(25)], vectors)\n"
        "index.save(folder)\n"
        "print(len(index))\n"
    )
    import time

    start = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", script, f"w{k}", str(tmp_path / "i"), str(start)],
                              stdout=subprocess.PIPE, text=True) for k in range(4)]  # fmt: skip
    totals = sorted(int(p.communicate(timeout=120)[0]) for p in procs)
    assert all(p.returncode == 0 for p in procs)
    final = open_index(tmp_path / "i")
    assert len(final) == 110 and totals[-1] == 110
    assert all(f"w{k}/{i}.flac" in final for k in range(4) for i in range(25))
