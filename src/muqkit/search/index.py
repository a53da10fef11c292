"""A FAISS vector index of audio files: exact below a size threshold, approximate above it.

An index folder holds::

    meta.json              model identity, latent dimension, index kind and settings, the current files
    vectors-<g>.npy        float32 (rows, dim) unit vectors, the source of truth (memory-mapped on load)
    items-<g>.jsonl        one line per row: the path as given, the absolute path, removed or not
    faiss-<g>.index        the FAISS structure over the rows (ids = row numbers)

``<g>`` is a generation number: a save writes the new generation's files, then replaces ``meta.json``
atomically, then deletes the older generation, so a reader (or a run killed mid-save) always sees one
complete generation; a reader that finds its generation deleted under it reads the new one.

Writers never lose each other's updates. A save holds an advisory lock on ``.muqkit-index.lock`` in
the folder while it writes, and ``meta.json`` carries a ``version`` that every save changes. An index
remembers the version it was read at and the changes made to it since (``add`` and ``remove``): when
another process saved the folder in between (two ``muqkit index add`` runs on one index), the save
reads the newer index, applies its own changes to it and writes the result, so both runs' files are
kept. An index created new is never saved over one another process wrote meanwhile
(:class:`IndexChangedError`) unless ``replace=True``.

Scores are inner products of L2-normalised vectors (cosine similarity); vectors are normalised on add
and queries on search. Kinds:

* ``flat``: ``IndexFlatIP``, exact; the default below ``exact_threshold`` rows.
* ``ivfpq``: ``IndexIVFPQ`` (``nlist`` lists, ``pq_m`` bytes per vector, ``nprobe`` lists searched), whose
  ``k * rerank`` candidates are re-scored exactly with the stored vectors; the default above the threshold.
* ``hnsw``: ``IndexHNSWFlat`` (``hnsw_m`` links, ``ef_search``); removed rows are filtered at search time.

Rows are append-only: :meth:`VectorIndex.add` adds rows (a path already present is replaced: its old
row is removed) and :meth:`VectorIndex.remove` removes rows from the FAISS structure without a rebuild.
A save compacts the rows when more than a quarter of them are removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from muqkit.atomic import atomic_path

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivfpq", "hnsw"]
KINDS = ("auto", "flat", "ivfpq", "hnsw")
META_NAME = "meta.json"
LOCK_NAME = ".muqkit-index.lock"
FORMAT_VERSION = 1
_COMPACT_FRACTION = 0.25


# What a model fingerprint gets when the model runs in int8 (its vectors are another model's to an index).
INT8_TAG = "+int8"


def short_sha(fingerprint: str) -> str:
    """A model fingerprint for messages: 12 hex digits and its tag (``+onnx``, ``+int8``) when it has one."""
    digest, plus, tag = fingerprint.partition("+")
    return digest[:12] + plus + tag


class IndexMismatchError(ValueError):
    """An index was built with another model or latent dimension than the one querying it."""


class IndexChangedError(ValueError):
    """The index folder changed under a writer in a way its changes cannot be applied to (the index
    was removed, replaced by another model's, or written new by another process)."""


@dataclass(frozen=True)
class _Change:
    """One ``add`` or ``remove`` made to an index since it was read (replayed on a newer version)."""

    op: Literal["add", "remove"]
    paths: tuple[str, ...]
    vectors: np.ndarray | None = None
    checksums: tuple[str | None, ...] | None = None


@contextmanager
def _write_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's advisory write lock (waiting for another writer's save to finish)."""
    with open(folder / LOCK_NAME, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: waiting for another process to finish saving the index", folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _version(meta: dict[str, Any]) -> str:
    """The version a ``meta.json`` names (older files, without one, by their generation)."""
    return str(meta.get("version") or f"generation-{meta.get('generation')}")


@dataclass(frozen=True)
class IndexConfig:
    """How an index is built and searched.

    Attributes:
        kind: ``"auto"`` (``flat`` below ``exact_threshold`` rows, ``approximate`` from it on), ``"flat"``,
            ``"ivfpq"`` or ``"hnsw"``.
        exact_threshold: rows from which ``"auto"`` switches to the approximate kind.
        approximate: the kind ``"auto"`` uses above the threshold.
        nlist: IVF lists (``None``: ``sqrt(rows)`` rounded to a power of two, 1024 for a million rows).
        pq_m: PQ bytes per vector; must divide the dimension (``None``: ``dim // 8``, 64 for 512-d).
        nprobe: IVF lists searched per query.
        rerank: an IVF-PQ search takes ``k * rerank`` candidates and re-scores them exactly (1: no rerank).
        hnsw_m: HNSW links per node.
        ef_construction: HNSW candidate list while building.
        ef_search: HNSW candidate list while searching.
        train_size: at most this many rows train the IVF-PQ quantisers.
        seed: seed of the training sample and the k-means.
    """

    kind: IndexKind = "auto"
    exact_threshold: int = 100_000
    approximate: Literal["ivfpq", "hnsw"] = "ivfpq"
    nlist: int | None = None
    pq_m: int | None = None
    nprobe: int = 64
    rerank: int = 32
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    train_size: int = 65_536
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.approximate not in ("ivfpq", "hnsw"):
            raise ValueError(f"approximate must be 'ivfpq' or 'hnsw', got {self.approximate!r}")
        for name in ("exact_threshold", "nprobe", "rerank", "hnsw_m", "ef_construction", "ef_search", "train_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("nlist", "pq_m"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be at least 1 (or None for the default), got {value}")

    def resolve_kind(self, rows: int) -> str:
        """The concrete kind for an index of ``rows`` rows."""
        if self.kind != "auto":
            return self.kind
        return "flat" if rows < self.exact_threshold else self.approximate


@dataclass(frozen=True)
class IndexMeta:
    """What an index holds and which model made it.

    Attributes:
        dim: latent dimension.
        model_id: the model's Hub id or folder, for people (and for loading the query model).
        model_sha256: content hash of the model (:func:`muqkit.embed.model_fingerprint`); ``None`` when unknown.
        source: what the vectors are: ``"mulan-audio"`` (MuQ-MuLan audio latents) or ``"muq-mean:layer_<i>"``
            (mean-pooled MuQ hidden state ``i``).
        kind: the FAISS index kind in use (``flat``, ``ivfpq`` or ``hnsw``).
        count: live rows (files) in the index.
        config: the :class:`IndexConfig` the index was built with.
    """

    dim: int
    model_id: str | None
    model_sha256: str | None
    source: str
    kind: str = "flat"
    count: int = 0
    config: IndexConfig = field(default_factory=IndexConfig)


@dataclass(frozen=True)
class SearchHit:
    """One search result.

    Attributes:
        path: the file's absolute path (valid from any working folder).
        score: cosine similarity to the query.
        rank: 1-based position.
        given: the path as it was given when the file was added.
    """

    path: str
    score: float
    rank: int
    given: str


def _faiss() -> Any:
    try:
        import faiss
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError("No module named 'faiss' (pip install 'muqkit[search]')", name="faiss") from exc
    return faiss


def normalize(vectors: np.ndarray | Any) -> np.ndarray:
    """(N, d) float32 rows scaled to unit L2 norm (a zero row stays zero)."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise ValueError(f"vectors must be (N, d), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("vectors contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def absolute(path: str | os.PathLike[str]) -> str:
    """A path made absolute against the current folder (not resolving links), normalised."""
    return os.path.normpath(os.path.abspath(os.fspath(path)))


class VectorIndex:
    """Unit vectors of audio files in a FAISS index, with their paths and the model that made them.

    Build one with :meth:`create` and :meth:`add`, or read one with :func:`open_index`; query with
    :meth:`search` (vectors) or :meth:`search_like` (a file already in the index); :meth:`save` it.
    """

    def __init__(self, meta: IndexMeta, *, vectors: np.ndarray, items: list[dict[str, Any]], faiss_index: Any) -> None:
        self.meta = meta
        self._vectors = vectors  # (rows, dim) float32, may be a read-only memory map
        self._items = items  # one per row: {"path", "abs", "removed"}
        self._faiss = faiss_index  # None until built
        self._removed = {row for row, item in enumerate(items) if item.get("removed")}
        self._rows = {item["abs"]: row for row, item in enumerate(items) if not item.get("removed")}
        self._origin: Path | None = None  # the folder this index was read from or last saved to
        self._version: str | None = None  # the folder's version then
        self._changes: list[_Change] = []  # adds and removes since then

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        dim: int,
        *,
        model_id: str | None,
        model_sha256: str | None,
        source: str = "mulan-audio",
        config: IndexConfig | None = None,
    ) -> VectorIndex:
        """An empty index for ``dim``-dimensional vectors of the given model."""
        if int(dim) < 1:
            raise ValueError(f"dim must be at least 1, got {dim}")
        config = config or IndexConfig()
        if config.pq_m is not None and dim % config.pq_m:
            raise ValueError(f"pq_m ({config.pq_m}) must divide the dimension ({dim})")
        meta = IndexMeta(dim=int(dim), model_id=model_id, model_sha256=model_sha256, source=source, config=config)
        return cls(meta, vectors=np.zeros((0, int(dim)), dtype=np.float32), items=[], faiss_index=None)

    # -- properties -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def kind(self) -> str:
        return self.meta.kind

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str | os.PathLike) and absolute(path) in self._rows

    @property
    def paths(self) -> list[str]:
        """The live files' paths as given, in row order."""
        return [item["path"] for item in self._items if not item.get("removed")]

    @property
    def absolute_paths(self) -> list[str]:
        """The live files' absolute paths (what hits name), in the order of :attr:`paths`."""
        return [item["abs"] for item in self._items if not item.get("removed")]

    def vectors(self) -> np.ndarray:
        """The live files' (len, dim) float32 unit vectors, in the order of :attr:`paths` (a copy)."""
        live = [row for row in range(len(self._items)) if row not in self._removed]
        return np.ascontiguousarray(np.asarray(self._vectors)[live], dtype=np.float32)

    def vector(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The stored (dim,) unit vector of a file in the index.

        Raises:
            KeyError: the file is not in the index.
        """
        row = self._rows.get(absolute(path))
        if row is None:
            raise KeyError(f"{path}: not in the index")
        return np.array(self._vectors[row], dtype=np.float32)

    def checksums(self) -> dict[str, str | None]:
        """Absolute path -> content checksum given when the file was added (``None`` if none was)."""
        return {key: self._items[row].get("sha256") for key, row in self._rows.items()}

    def check(self, *, model_sha256: str | None = None, dim: int | None = None, query: bool = False) -> None:
        """Raise :class:`IndexMismatchError` unless the index was built by this model / dimension.

        With ``query`` the model only embeds queries (which are not stored), and it may run in another precision
        than the one that built the index: fingerprints that differ only by ``+int8`` match. Vectors to be
        added must come from the very model and precision that built the index (``query=False``).
        """
        if dim is not None and int(dim) != self.dim:
            raise IndexMismatchError(
                f"the index holds {self.dim}-d vectors, the model gives {dim}-d ones; use the model that built it "
                f"({self.meta.model_id})"
            )
        built = self.meta.model_sha256
        if model_sha256 is None or built is None:
            return
        if query:
            same = model_sha256.removesuffix(INT8_TAG) == built.removesuffix(INT8_TAG)
        else:
            same = model_sha256 == built
        if not same:
            raise IndexMismatchError(
                f"the index was built by model {self.meta.model_id} (sha256 {short_sha(built)}), not "
                f"by this one (sha256 {short_sha(model_sha256)}); search with the model that built it or rebuild the "
                "index"
            )

    # -- changes --------------------------------------------------------------------------------
    def add(
        self,
        paths: Sequence[str | os.PathLike[str]],
        vectors: np.ndarray | Any,
        *,
        checksums: Sequence[str | None] | None = None,
    ) -> None:
        """Add files with their (N, dim) vectors (normalised here). A file already in the index is
        replaced. The FAISS structure grows without a rebuild, unless ``kind="auto"`` crosses the
        threshold (then it is rebuilt as the approximate kind once).

        Args:
            paths: the files, stored as given (and as absolute paths, to resolve them from anywhere).
            vectors: (N, dim) float vectors (NumPy or torch).
            checksums: the files' content checksums, when known (see :meth:`checksums`).
        """
        array = normalize(vectors)
        if array.shape != (len(paths), self.dim):
            raise ValueError(f"expected ({len(paths)}, {self.dim}) vectors, got {array.shape}")
        if checksums is not None and len(checksums) != len(paths):
            raise ValueError(f"{len(checksums)} checksums for {len(paths)} files")
        keys = [absolute(p) for p in paths]
        if len(set(keys)) != len(keys):
            raise ValueError("a file is given twice")
        self._changes.append(_Change("add", tuple(os.fspath(p) for p in paths), array,
                                     None if checksums is None else tuple(checksums)))
        self._remove_rows([k for k in keys if k in self._rows])
        start = len(self._items)
        self._vectors = np.concatenate([np.asarray(self._vectors), array]) if start else array
        for offset, (given, key) in enumerate(zip(paths, keys, strict=True)):
            item: dict[str, Any] = {"path": os.fspath(given), "abs": key}
            if checksums is not None and checksums[offset]:
                item["sha256"] = checksums[offset]
            self._items.append(item)
            self._rows[key] = start + offset
        wanted = self.meta.config.resolve_kind(len(self._rows))
        if self._faiss is None or wanted != self.kind:
            self._rebuild()
        elif self.kind == "hnsw":  # ids are positions: the new rows follow the old ones
            self._faiss.add(array)
        else:
            self._faiss.add_with_ids(array, np.arange(start, start + len(keys), dtype=np.int64))
        self.meta = replace(self.meta, count=len(self._rows))

    def remove(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Remove files from the index (without a rebuild); returns how many were in it."""
        self._changes.append(_Change("remove", tuple(os.fspath(p) for p in paths)))
        return self._remove_rows(paths)

    def _remove_rows(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        rows = []
        for path in paths:
            row = self._rows.pop(absolute(path), None)
            if row is not None:
                rows.append(row)
                self._items[row]["removed"] = True
                self._removed.add(row)
        if rows and self._faiss is not None and self.kind != "hnsw":  # HNSW cannot delete: filtered at search
            self._faiss.remove_ids(np.asarray(rows, dtype=np.int64))
        self.meta = replace(self.meta, count=len(self._rows))
        return len(rows)

    def compact(self) -> None:
        """Drop removed rows and rebuild the FAISS structure over the live ones."""
        live = [row for row in range(len(self._items)) if row not in self._removed]
        self._vectors = np.ascontiguousarray(np.asarray(self._vectors)[live], dtype=np.float32)
        self._items = [{k: v for k, v in self._items[row].items() if k != "removed"} for row in live]
        self._removed = set()
        self._rows = {item["abs"]: row for row, item in enumerate(self._items)}
        self._rebuild()

    def _rebuild(self) -> None:
        """Build the FAISS structure of the configured kind over every live row."""
        kind = self.meta.config.resolve_kind(len(self._rows))
        live = np.asarray(sorted(self._rows.values()), dtype=np.int64)
        self._faiss = build_faiss(np.asarray(self._vectors), kind, self.meta.config, rows=live)
        self.meta = replace(self.meta, kind=kind, count=len(self._rows))

    # -- queries --------------------------------------------------------------------------------
    def search(self, queries: np.ndarray | Any, k: int = 10) -> list[list[SearchHit]]:
        """The ``k`` nearest files of each (Q, dim) query vector (normalised here), best first."""
        return [self._hits(ids, scores) for ids, scores in self.search_rows(queries, k)]

    def search_like(self, path: str | os.PathLike[str], k: int = 10) -> list[SearchHit]:
        """"More like this file": the ``k`` files nearest to one already in the index, itself left out."""
        row = self._rows.get(absolute(path))
        if row is None:
            raise KeyError(f"{path}: not in the index")
        ids, scores = self.search_rows(self.vector(path), k + 1)[0]
        keep = ids != row
        return self._hits(ids[keep][:k], scores[keep][:k])

    def search_rows(self, queries: np.ndarray | Any, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row numbers and scores of the ``k`` nearest live rows of each query (best first)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        array = normalize(queries)
        if array.shape[1] != self.dim:
            raise IndexMismatchError(f"queries are {array.shape[1]}-d, the index holds {self.dim}-d vectors")
        if not self._rows or self._faiss is None:
            return [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(len(array))]
        k = min(k, len(self._rows))
        config = self.meta.config
        faiss = _faiss()
        params = None
        fetch = k
        if self.kind == "ivfpq":
            self._faiss.nprobe = config.nprobe
            fetch = min(k * config.rerank, len(self._rows))
        elif self.kind == "hnsw":
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(config.ef_search, k)
            if self._removed:
                params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._removed, dtype=np.int64)))
        scores, ids = self._faiss.search(array, fetch, params=params) if params else self._faiss.search(array, fetch)
        out = []
        for q in range(len(array)):
            valid = ids[q] >= 0
            row_ids, row_scores = ids[q][valid], scores[q][valid]
            if self.kind == "ivfpq" and config.rerank > 1 and len(row_ids):
                order = np.argsort(row_ids)  # sorted rows read a memory map faster
                exact = np.asarray(self._vectors[row_ids[order]]) @ array[q]
                row_scores = np.empty_like(exact)
                row_scores[order] = exact
                best = np.argsort(-row_scores, kind="stable")[:k]
                row_ids, row_scores = row_ids[best], row_scores[best]
            out.append((row_ids[:k], row_scores[:k].astype(np.float32)))
        return out

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> list[SearchHit]:
        return [
            SearchHit(path=self._items[int(i)]["abs"], score=float(s), rank=r + 1, given=self._items[int(i)]["path"])
            for r, (i, s) in enumerate(zip(ids, scores, strict=True))
        ]

    # -- storage --------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike[str], *, replace: bool = False) -> Path:
        """Write the index folder: a new generation of files, then ``meta.json`` atomically.

        When another process saved the folder since this index was read from it, this index's changes
        are applied to that newer index and the result is written (and becomes this index): no update
        is lost.

        Args:
            folder: the index folder (created if needed).
            replace: let an index that was not read from ``folder`` replace one that another process
                saved there (otherwise that is an error).

        Raises:
            IndexChangedError: the folder's index was removed, or holds another model's vectors, since
                this index was read; or an index not read from it would replace one saved there.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _write_lock(folder):
            meta_path = folder / META_NAME
            previous = _read_meta_file(meta_path) if meta_path.is_file() else {}
            here = self._origin is not None and self._origin == folder.resolve()
            if here and not previous:
                raise IndexChangedError(
                    f"{folder}: the index was removed while this change was made; nothing was saved"
                )
            if here and _version(previous) != self._version:
                self._apply_to_newer(folder)
            elif not here and previous and not replace:
                raise IndexChangedError(
                    f"{folder}: another index was saved there while this one was built; nothing was saved "
                    "(write to an empty folder, or replace it with --overwrite)"
                )
            self._write(folder, previous)
        return folder

    def _apply_to_newer(self, folder: Path) -> None:
        """Make this index the folder's newer index with this index's changes applied to it."""
        latest = open_index(folder, mmap=False)
        if latest.meta.source != self.meta.source or latest.dim != self.dim or (
            latest.meta.model_sha256 != self.meta.model_sha256
        ):
            raise IndexChangedError(
                f"{folder}: the index was replaced by one of another model ({latest.meta.model_id}) while this "
                "change was made; nothing was saved"
            )
        log.info("%s: another process saved the index meanwhile; applying %d change(s) to its version",
                 folder, len(self._changes))
        for change in self._changes:
            if change.op == "add":
                latest.add(list(change.paths), change.vectors, checksums=change.checksums)
            else:
                latest.remove(list(change.paths))
        self.__dict__.update(latest.__dict__)

    def _write(self, folder: Path, previous: dict[str, Any]) -> None:
        """Write a new generation after ``previous`` (the folder's current meta; the write lock held)."""
        faiss = _faiss()
        if self._removed and len(self._removed) > _COMPACT_FRACTION * len(self._items):
            self.compact()
        if self._faiss is None:
            self._rebuild()
        generation = int(previous.get("generation", -1)) + 1
        files = {
            "vectors": f"vectors-{generation}.npy",
            "items": f"items-{generation}.jsonl",
            "faiss": f"faiss-{generation}.index",
        }
        with atomic_path(folder / files["vectors"], suffix=".npy") as tmp:
            np.save(tmp, np.asarray(self._vectors, dtype=np.float32))
        with atomic_path(folder / files["items"]) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for item in self._items:
                handle.write(json.dumps(item) + "\n")
        with atomic_path(folder / files["faiss"]) as tmp:
            faiss.write_index(self._faiss, str(tmp))
        version = uuid.uuid4().hex
        meta = {"format": FORMAT_VERSION, "generation": generation, "version": version, "files": files,
                "rows": len(self._items)}  # fmt: skip
        meta.update({k: v for k, v in asdict(self.meta).items() if k != "config"})
        meta["config"] = asdict(self.meta.config)
        with atomic_path(folder / META_NAME) as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        for name in previous.get("files", {}).values():
            if name not in files.values():
                (folder / name).unlink(missing_ok=True)
        self._origin, self._version, self._changes = folder.resolve(), version, []


def build_faiss(
    vectors: np.ndarray,
    kind: str,
    config: IndexConfig,
    *,
    rows: np.ndarray | None = None,
) -> Any:
    """A FAISS index of ``kind`` over ``vectors[rows]`` with the row numbers as ids.

    Args:
        vectors: (N, d) float32 unit vectors.
        kind: ``flat``, ``ivfpq`` or ``hnsw``.
        config: the settings (``nlist``, ``pq_m``, ``hnsw_m``, ...).
        rows: the rows to index (default: all; an HNSW graph always holds every row).
    """
    faiss = _faiss()
    dim = vectors.shape[1]
    rows = np.arange(len(vectors), dtype=np.int64) if rows is None else rows
    metric = faiss.METRIC_INNER_PRODUCT
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        _add_blocks(index, vectors, rows)
        return index
    if kind == "ivfpq":
        n = len(rows)
        nlist = config.nlist or min(65536, 2 ** max(0, round(math.log2(max(1.0, math.sqrt(n))))))
        nlist = max(1, min(nlist, n // 39 if n >= 39 else 1))  # FAISS wants >= 39 training points per list
        pq_m = config.pq_m or max(1, dim // 8)
        if dim % pq_m:
            raise ValueError(f"pq_m ({pq_m}) must divide the dimension ({dim})")
        nbits = 8 if n >= 256 * 39 else max(1, int(math.log2(max(2, n // 39))))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, pq_m, nbits, metric)
        rng = np.random.default_rng(config.seed)
        sample = rows if n <= config.train_size else np.sort(rng.choice(rows, config.train_size, replace=False))
        index.cp.seed = config.seed
        index.train(np.ascontiguousarray(vectors[sample]))
        _add_blocks(index, vectors, rows)
        return index
    if kind == "hnsw":
        # An HNSW graph cannot delete or skip ids: it holds every row, removed ones are filtered at search time.
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, metric)
        index.hnsw.efConstruction = config.ef_construction
        for start in range(0, len(vectors), 65536):
            index.add(np.ascontiguousarray(vectors[start : start + 65536], dtype=np.float32))
        return index
    raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS[1:])}")


def _add_blocks(index: Any, vectors: np.ndarray, rows: np.ndarray, block: int = 65536) -> None:
    for start in range(0, len(rows), block):
        ids = rows[start : start + block]
        index.add_with_ids(np.ascontiguousarray(vectors[ids], dtype=np.float32), ids)


def _read_meta_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: corrupt index file ({exc}); rebuild the index") from exc


def open_index(
    path: str | os.PathLike[str],
    *,
    model_sha256: str | None = None,
    dim: int | None = None,
    mmap: bool = True,
) -> VectorIndex:
    """Read an index folder written by :meth:`VectorIndex.save`.

    Args:
        path: the index folder.
        model_sha256: when given, the index must have been built by the model with this fingerprint.
        dim: when given, the index must hold vectors of this dimension.
        mmap: memory-map the stored vectors instead of reading them into memory.

    Raises:
        FileNotFoundError: not an index folder.
        IndexMismatchError: another model or dimension.
        ValueError: a corrupt index file (the message names it).
    """
    folder = Path(path)
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        hint = (
            "it was written by an older muqkit; rebuild it with `muqkit mulan index`"
            if (folder / "latents.safetensors").is_file()
            else "build one with `muqkit mulan index` or `muqkit index embeddings`"
        )
        raise FileNotFoundError(f"{folder}: not a muqkit search index (no {META_NAME}); {hint}")
    for attempt in range(10):
        raw = _read_meta_file(meta_path)
        try:
            index = _read_generation(folder, raw, mmap=mmap)
            break
        except FileNotFoundError:
            # a writer saved a newer generation and deleted this one after meta.json was read: read again
            if attempt == 9 or not meta_path.is_file() or _version(_read_meta_file(meta_path)) == _version(raw):
                raise
    index.check(model_sha256=model_sha256, dim=dim)
    return index


def _read_generation(folder: Path, raw: dict[str, Any], *, mmap: bool) -> VectorIndex:
    """The index of the generation ``raw`` (a ``meta.json``) names.

    Raises:
        FileNotFoundError: one of its files is gone (the message names it).
        ValueError: a corrupt file (the message names it).
    """
    faiss = _faiss()
    current = folder / META_NAME
    try:
        if raw.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {raw.get('format')!r}, this muqkit reads format {FORMAT_VERSION}")
        known = {f for f in IndexConfig.__dataclass_fields__}
        config = IndexConfig(**{k: v for k, v in raw["config"].items() if k in known})
        meta = IndexMeta(
            dim=int(raw["dim"]),
            model_id=raw.get("model_id"),
            model_sha256=raw.get("model_sha256"),
            source=str(raw.get("source", "mulan-audio")),
            kind=str(raw["kind"]),
            count=int(raw["count"]),
            config=config,
        )
        files = raw["files"]
        current = folder / files["items"]
        with open(current, encoding="utf-8") as handle:
            items = [json.loads(line) for line in handle if line.strip()]
        if not all(isinstance(item, dict) and "path" in item and "abs" in item for item in items):
            raise ValueError("an item without 'path' and 'abs'")
        if "rows" in raw and len(items) != int(raw["rows"]):  # a file cut at a line end still parses
            raise ValueError(f"{len(items)} items, the metadata says {raw['rows']} (a truncated file)")
        current = folder / files["vectors"]
        vectors = np.load(current, mmap_mode="r" if mmap else None, allow_pickle=False)
        if vectors.dtype != np.float32 or vectors.shape != (len(items), meta.dim):
            raise ValueError(f"expected float32 ({len(items)}, {meta.dim}), got {vectors.dtype} {vectors.shape}")
        current = folder / files["faiss"]
        if not current.is_file():  # FAISS would say "could not open" as a RuntimeError
            raise FileNotFoundError(current)
        faiss_index = faiss.read_index(str(current))
        if faiss_index.d != meta.dim:
            raise ValueError(f"a {faiss_index.d}-d FAISS index, the metadata says {meta.dim}")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{current}: missing; rebuild the index") from exc
    except Exception as exc:  # JSON, key, numpy and FAISS errors alike
        raise ValueError(f"{current}: corrupt index file ({type(exc).__name__}: {exc}); rebuild the index") from exc
    index = VectorIndex(meta, vectors=vectors, items=items, faiss_index=faiss_index)
    index._origin, index._version = folder.resolve(), _version(raw)
    return index
