"""Latency of ``muqkit serve``'s text search: ``GET /api/search?q=...&k=10`` over loopback HTTP on an index
of synthetic latents (10,000 tracks by default) in the FAISS index of :mod:`muqkit.search` (``--kind``; auto
is exact below 100,000 tracks), once the model is loaded. Also times the two parts alone: the text tower on
one query, and the index search of one latent.

Models (``--model``): ``fixture`` (../shared/parity/mulan_small, official format, random weights),
``tiny`` (the tiny preset: pretrained MiniLM text backbone, random towers), ``large-text`` (random weights
with the released model's text-side sizes: a 12-layer, 768-wide backbone under an 8-layer, 768-wide
tower, 512-d latents, the tiny audio tower), or any MuQ-MuLan folder or Hub id.

    OMP_NUM_THREADS=1 python bench/bench_serve.py --model tiny --tracks 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
import urllib.parse
import urllib.request
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
QUERIES = [
    "a calm piano piece in a minor key", "fast electronic dance music with heavy bass", "a sad violin solo",
    "an upbeat jazz trio with brushed drums", "a choir singing in a large church", "lo-fi hip hop beats",
    "an acoustic guitar ballad", "a march for brass band", "ambient drones with slow pads",
    "a baroque harpsichord fugue", "rock with distorted guitars and loud drums", "a lullaby for a music box",
]  # fmt: skip


def build_model(name: str):  # noqa: ANN201
    from muqkit.mulan import MuQMuLan, mulan_preset
    from muqkit.mulan.config import TransformerConfig

    torch.manual_seed(0)
    if name == "fixture":
        return MuQMuLan.from_pretrained(REPO.parent / "shared" / "parity" / "mulan_small" / "mulan").eval()
    if name == "tiny":
        return MuQMuLan.from_config(mulan_preset("tiny")).eval()
    if name == "large-text":
        base = mulan_preset("test")
        bert_base = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514}  # fmt: skip
        text = dataclasses.replace(base.text, backbone_config=bert_base, max_length=None,
                                   transformer=TransformerConfig(dim=768, depth=8))  # fmt: skip
        return MuQMuLan.from_config(base.replace(text=text, dim_latent=512)).eval()
    return MuQMuLan.from_pretrained(name).eval()


def millis(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(1000 * statistics.median(ordered), 2),
            "p90_ms": round(1000 * ordered[int(0.9 * (len(ordered) - 1))], 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 12 queries (after one warm-up pass)")
    parser.add_argument("--kind", choices=("auto", "flat", "ivfpq", "hnsw"), default="auto", help="FAISS index kind")
    parser.add_argument("--json", default=None, help="also append the result to this JSON-lines file")
    args = parser.parse_args()

    from muqkit.search import IndexConfig, VectorIndex
    from muqkit.serve.app import create_app
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import Embedder
    from muqkit.serve.testing import running_server

    model = build_model(args.model)
    dim = model.config.dim_latent
    generator = torch.Generator().manual_seed(0)
    latents = torch.nn.functional.normalize(torch.randn(args.tracks, dim, generator=generator), dim=-1)
    paths = tuple(f"/synthetic/folder{i % 20:02d}/track{i:05d}.flac" for i in range(args.tracks))
    index = VectorIndex.create(dim, model_id=args.model, model_sha256=None, config=IndexConfig(kind=args.kind))
    index.add(paths, latents)
    backend = IndexBackend(index, Embedder(model, name=args.model))

    text_times, search_times, api_times = [], [], []
    with torch.no_grad():
        for round_ in range(args.rounds + 1):
            for q in QUERIES:
                start = time.perf_counter()
                query = model.extract_text_latents([q])
                middle = time.perf_counter()
                index.search(query, 10)
                end = time.perf_counter()
                if round_:
                    text_times.append(middle - start)
                    search_times.append(end - middle)
    with running_server(create_app(backend)) as url:
        for round_ in range(args.rounds + 1):
            for q in QUERIES:
                start = time.perf_counter()
                with urllib.request.urlopen(f"{url}/api/search?{urllib.parse.urlencode({'q': q, 'k': 10})}") as r:
                    hits = json.load(r)["hits"]
                if round_:
                    api_times.append(time.perf_counter() - start)
                assert len(hits) == 10
    result = {"model": args.model, "tracks": args.tracks, "dim": dim, "index": index.kind,
              "threads": torch.get_num_threads(),
              "queries": len(api_times), "api": millis(api_times), "text_tower": millis(text_times),
              "search": millis(search_times)}  # fmt: skip
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
