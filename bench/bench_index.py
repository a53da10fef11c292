"""Benchmark the FAISS index kinds of :mod:`muqkit.search`: build time, memory, queries per second, recall@10.

Data: ``--n`` synthetic ``--dim``-d unit vectors with clustered structure (``--clusters`` random unit centres,
each vector a centre plus Gaussian noise of total norm about ``--spread``, then normalised), and ``--queries``
fresh queries drawn the same way. Recall@10 is measured against the exact inner-product search (the ``flat``
kind, which is also benchmarked). Every kind runs through :class:`muqkit.search.VectorIndex` with its default
settings unless overridden, on the threads FAISS is given (``--threads``, default 1).

Usage::

    OMP_NUM_THREADS=1 python bench/bench_index.py --n 1000000 --kinds flat ivfpq --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

import numpy as np


def clustered(
    n: int, dim: int, *, clusters: int, spread: float, decay: float, seed: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, dim) float32 unit vectors around ``clusters`` random unit centres.

    The noise has a power-law spectrum (standard deviation of principal axis ``j`` proportional to
    ``j ** -decay``, in a random orthonormal basis), as learned embeddings have; ``decay=0`` is isotropic.
    Centres and basis depend on ``seed`` only, so data and queries share them.
    """
    fixed = np.random.default_rng(seed)
    centres = fixed.standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(fixed.standard_normal((dim, dim)))
    scales = np.arange(1, dim + 1, dtype=np.float64) ** -decay
    scales *= spread / np.sqrt(np.sum(scales**2))  # expected noise norm: spread
    mixing = (scales[:, None] * basis.T).astype(np.float32)  # (dim, dim)
    out = np.empty((n, dim), dtype=np.float32)
    block = 100_000
    for start in range(0, n, block):
        m = min(block, n - start)
        labels = rng.integers(0, clusters, m)
        noise = rng.standard_normal((m, dim), dtype=np.float32) @ mixing
        x = centres[labels] + noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + m] = x
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm relative to the unit centres")
    parser.add_argument("--decay", type=float, default=1.0, help="power-law decay of the noise spectrum")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq", "hnsw"])
    parser.add_argument("--hnsw-n", type=int, default=None, help="build HNSW on the first N vectors only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep", action="store_true", help="also search with other nprobe / ef_search values")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    import faiss

    from muqkit.search import IndexConfig, VectorIndex

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    shape = {"clusters": args.clusters, "spread": args.spread, "decay": args.decay, "seed": args.seed}
    data = clustered(args.n, args.dim, rng=rng, **shape)
    queries = clustered(args.queries, args.dim, rng=rng, **shape)
    print(f"data: {args.n} x {args.dim} in {time.perf_counter() - started:.1f} s", flush=True)
    paths = [f"music/{i:07d}.flac" for i in range(args.n)]
    truth: dict[int, np.ndarray] = {}
    results = []
    for kind in ["flat", *[k for k in args.kinds if k != "flat"]]:
        n = args.n if kind != "hnsw" or args.hnsw_n is None else min(args.n, args.hnsw_n)
        if n not in truth and kind != "flat":  # exact top 10 of the first n vectors
            exact = VectorIndex.create(args.dim, model_id=None, model_sha256=None, config=IndexConfig(kind="flat"))
            exact.add(paths[:n], data[:n])
            truth[n] = np.stack([ids for ids, _ in exact.search_rows(queries, 10)])
            del exact
        before = rss_bytes()
        index = VectorIndex.create(args.dim, model_id=None, model_sha256=None, config=IndexConfig(kind=kind))  # type: ignore[arg-type]
        t0 = time.perf_counter()
        index.add(paths[:n], data[:n])
        build = time.perf_counter() - t0
        added = rss_bytes() - before
        with tempfile.NamedTemporaryFile(suffix=".index") as tmp:
            faiss.write_index(index._faiss, tmp.name)
            structure = os.path.getsize(tmp.name)
        index.search(queries[:10], 10)  # warm up
        t0 = time.perf_counter()
        found = index.search_rows(queries, 10)
        seconds = time.perf_counter() - t0
        got = np.stack([ids for ids, _ in found])
        truth.setdefault(n, got)  # the flat kind is the exact search
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth[n], strict=True)]))
        row = {
            "kind": kind,
            "n": n,
            "dim": args.dim,
            "build_s": round(build, 2),
            "faiss_bytes": structure,
            "rss_added_bytes": added,
            "qps": round(args.queries / seconds, 1),
            "recall_at_10": round(recall, 4),
            "threads": args.threads,
            "config": {k: v for k, v in vars(index.meta.config).items()},
        }
        sweeps = {
            "ivfpq": [{"nprobe": p, "rerank": r} for p in (32, 64) for r in (8, 32, 64, 128)],
            "hnsw": [{"ef_search": e} for e in (32, 64, 256, 512)],
        }
        if args.sweep and kind in sweeps:  # other search settings on the same structure
            default = index.meta.config
            row["sweep"] = []
            for setting in sweeps[kind]:
                index.meta = replace(index.meta, config=replace(default, **setting))
                t0 = time.perf_counter()
                got = np.stack([ids for ids, _ in index.search_rows(queries, 10)])
                qps = args.queries / (time.perf_counter() - t0)
                rec = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth[n], strict=True)]))
                row["sweep"].append({**setting, "qps": round(qps, 1), "recall_at_10": round(rec, 4)})
                print(f"       {setting}: {qps:9.1f} q/s  recall@10 {rec:.4f}", flush=True)
            index.meta = replace(index.meta, config=default)
        results.append(row)
        print(
            f"{kind:6s} n={n} build {build:8.1f} s  faiss {structure / 2**20:8.1f} MiB  rss +{added / 2**20:8.1f} MiB"
            f"  {row['qps']:9.1f} q/s  recall@10 {recall:.4f}",
            flush=True,
        )
        del index
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
