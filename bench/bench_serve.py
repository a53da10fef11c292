"""Latency of ``muqkit serve``: one client's text searches, or many clients at once (``--concurrent``).

Sequential (the default): ``GET /api/search?q=...&k=10`` over loopback HTTP on an index of synthetic latents
(10,000 tracks by default) in the FAISS index of :mod:`muqkit.search` (``--kind``; auto is exact below
100,000 tracks), once the model is loaded: texts not asked before (``api``: the text tower, tokenisation
included), then the same texts again (``api_repeated``: the app's query cache). Also times the two parts
alone: the text tower on one query, and the index search of one latent. ``--dtype int8`` runs the text
tower in int8 on onnxruntime (:mod:`muqkit.export.int8`).

Concurrent (``--concurrent N``): the app runs in a child process on 127.0.0.1 (loopback only: no other
address can be chosen) and N client threads, each on its own keep-alive connection, send text searches,
more-like-this requests and uploads (search by example, a generated WAV of ``--upload-seconds``) in the
``--mix`` ratio, until ``--requests`` have been sent or ``--seconds`` have passed. It reports each kind's
p50 / p99 latency and error count (any answer but 200, or a failed connection), the throughput, and the
server process's peak resident memory (``VmHWM``) before and after the load, with the CPU's model and
vector flags.

Models (``--model``): ``fixture`` (../shared/parity/mulan_small, official format, random weights),
``tiny`` (the tiny preset: pretrained MiniLM text backbone, random towers), ``large-text`` (random weights
with the released model's text-side sizes: a 12-layer, 768-wide backbone under an 8-layer, 768-wide
tower, 512-d latents, the tiny audio tower), or any MuQ-MuLan folder or Hub id.

    OMP_NUM_THREADS=1 python bench/bench_serve.py --model tiny --tracks 10000
    python bench/bench_serve.py --model large-text --tracks 10000 --dtype int8
    OMP_NUM_THREADS=1 python bench/bench_serve.py --model tiny --concurrent 50 --requests 500 --seconds 90
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import io
import json
import math
import multiprocessing
import os
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"  # the concurrent mode's only address
KINDS = ("text", "similar", "upload")
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "amx_tile", "amx_bf16", "amx_int8")  # fmt: skip
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


def percentile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of sorted samples, nearest rank."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def with_precision(model, dtype: str):  # noqa: ANN001, ANN201
    """The model at ``dtype`` (``muqkit serve --dtype``): int8 runs the text tower on onnxruntime."""
    from muqkit.embed.precision import resolve_precision

    precision = resolve_precision(dtype)
    if precision == "int8":
        from muqkit.export.int8 import quantize_mulan_text

        return quantize_mulan_text(model, threads=torch.get_num_threads())
    return model.to(getattr(torch, precision))


def build_backend(model_name: str, tracks: int, kind: str, dtype: str = "float32"):  # noqa: ANN201
    """The app's backend over ``tracks`` synthetic unit latents (paths that do not exist) and the model."""
    from muqkit.search import IndexConfig, VectorIndex
    from muqkit.serve.backend import IndexBackend
    from muqkit.serve.embedder import Embedder

    model = with_precision(build_model(model_name), dtype)
    dim = model.config.dim_latent
    generator = torch.Generator().manual_seed(0)
    latents = torch.nn.functional.normalize(torch.randn(tracks, dim, generator=generator), dim=-1)
    paths = tuple(f"/synthetic/folder{i % 20:02d}/track{i:05d}.flac" for i in range(tracks))
    index = VectorIndex.create(dim, model_id=model_name, model_sha256=None, config=IndexConfig(kind=kind))
    index.add(paths, latents)
    return IndexBackend(index, Embedder(model, name=model_name))


def cpu_description() -> dict[str, Any]:
    """The CPU's model name and vector flags (from /proc/cpuinfo on Linux), the cores and the load."""
    from muqkit.embed.precision import read_cpu_features

    cpu = read_cpu_features()
    return {"model": cpu.model, "simd_flags": [f for f in SIMD_FLAGS if f in cpu.flags], "cores": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def upload_wav(seconds: float, rate: int = 24000) -> bytes:
    """A chord with a little noise, as 16-bit WAV bytes."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    wave = wave + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    buffer = io.BytesIO()
    sf.write(buffer, (0.4 * wave).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _serve_child(model_name: str, tracks: int, kind: str, threads: int, conn: Any, dtype: str = "float32") -> None:
    """The app in a child process on a free port of 127.0.0.1; sends the port, then serves until terminated."""
    import socket

    import uvicorn

    from muqkit.serve.app import create_app

    torch.set_num_threads(threads)
    backend = build_backend(model_name, tracks, kind, dtype)
    backend.map_coordinates()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    conn.send({"port": sock.getsockname()[1], "index": backend.index.kind, "dim": backend.index.dim})
    server = uvicorn.Server(uvicorn.Config(create_app(backend), log_level="warning", access_log=False))
    server.run(sockets=[sock])


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process now (``VmRSS``) and at its peak (``VmHWM``), in MiB (Linux)."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


class LoadClient(threading.Thread):
    """One client: its own keep-alive connection to the app, requests until the shared budget is spent."""

    def __init__(self, port: int, plan: dict[str, Any], results: list[tuple[str, float, str | None]]) -> None:
        super().__init__(daemon=True)
        self.port, self.plan, self.results = port, plan, results
        self.conn: http.client.HTTPConnection | None = None

    def request(self, kind: str, job: int) -> str | None:
        """One request of ``kind``; ``None`` if it answered 200 with the expected body, else the problem."""
        plan = self.plan
        if kind == "text":
            query = urllib.parse.urlencode({"q": QUERIES[job % len(QUERIES)], "k": 10})
            method, url, body = "GET", f"/api/search?{query}", None
        elif kind == "similar":
            method, url, body = "GET", f"/api/tracks/{(job * 7919) % plan['tracks']}/similar?k=10", None
        else:
            method, url, body = "POST", f"/api/search/audio?k=10&name=query{job}.wav", plan["upload"]
        if self.conn is None:
            self.conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=plan["timeout"])
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        self.conn.request(method, url, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            return f"{kind}: {answer.status} {data[:200].decode(errors='replace')}"
        hits = json.loads(data)["hits"]
        return None if len(hits) == 10 else f"{kind}: {len(hits)} hits, not 10"

    def run(self) -> None:
        plan = self.plan
        while True:
            with plan["lock"]:
                job = plan["next"]
                plan["next"] += 1
            if job >= plan["requests"] or time.monotonic() > plan["deadline"]:
                break
            kind = plan["kinds"][job % len(plan["kinds"])]
            start = time.perf_counter()
            try:
                problem = self.request(kind, job)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problem = f"{kind}: {type(exc).__name__}: {exc}"
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            self.results.append((kind, time.perf_counter() - start, problem))
        if self.conn is not None:
            self.conn.close()


def parse_mix(text: str) -> list[str]:
    """``text=2,similar=2,upload=1`` -> the cycle of request kinds."""
    cycle: list[str] = []
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind.strip() not in KINDS or not weight.strip().isdigit():
            raise SystemExit(f"--mix {text!r}: give KIND=WEIGHT pairs with KIND one of {', '.join(KINDS)}")
        cycle += [kind.strip()] * int(weight)
    if not cycle:
        raise SystemExit(f"--mix {text!r}: every weight is 0")
    return cycle


def run_concurrent(args: argparse.Namespace) -> dict[str, Any]:
    """Start the app in a child process on 127.0.0.1, warm it up, then load it with ``args.concurrent``
    clients until ``args.requests`` requests or ``args.seconds`` seconds."""
    kinds = parse_mix(args.mix)
    cpu = cpu_description()
    flags = " ".join(cpu["simd_flags"]) or "none of " + ", ".join(SIMD_FLAGS)
    print(f"CPU: {cpu['model']}; {cpu['cores']} cores; flags: {flags}; load average {cpu['load_average']}", flush=True)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    child_args = (args.model, args.tracks, args.kind, torch.get_num_threads(), child, args.dtype)
    server = context.Process(target=_serve_child, args=child_args, daemon=True)
    server.start()
    try:
        if not parent.poll(600):
            raise SystemExit("the app did not start within 10 minutes")
        started = parent.recv()
        port = started["port"]
        deadline = time.monotonic() + 60
        while True:  # uvicorn listens a moment after the port is bound
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/api/info", timeout=5) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise SystemExit("the app does not answer") from None
                time.sleep(0.1)
        plan: dict[str, Any] = {"tracks": args.tracks, "upload": upload_wav(args.upload_seconds), "timeout": 300.0,
                                "lock": threading.Lock(), "next": 0, "kinds": kinds}  # fmt: skip
        warm: list[tuple[str, float, str | None]] = []
        plan.update(requests=2 * len(kinds), deadline=time.monotonic() + 120)
        LoadClient(port, plan, warm).run()  # one pass in this thread: the first calls of each kind
        before = memory_mb(server.pid)
        results: list[tuple[str, float, str | None]] = []
        plan.update(requests=args.requests, next=0, deadline=time.monotonic() + args.seconds)
        clients = [LoadClient(port, plan, results) for _ in range(args.concurrent)]
        start = time.perf_counter()
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.perf_counter() - start
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.join(30)
    per_kind = {}
    for kind in dict.fromkeys(kinds):
        times = sorted(t for k, t, _ in results if k == kind)
        per_kind[kind] = {"requests": len(times), "errors": sum(1 for k, _, p in results if k == kind and p),
                          "p50_ms": round(1000 * percentile(times, 0.5), 1) if times else None,
                          "p99_ms": round(1000 * percentile(times, 0.99), 1) if times else None,
                          "max_ms": round(1000 * times[-1], 1) if times else None}  # fmt: skip
    problems = [p for _, _, p in results if p]
    return {
        "mode": "concurrent", "model": args.model, "tracks": args.tracks, "dim": started["dim"],
        "index": started["index"], "threads": torch.get_num_threads(), "clients": args.concurrent,
        "requests_bound": args.requests, "seconds_bound": args.seconds, "mix": args.mix,
        "upload_seconds": args.upload_seconds, "requests": len(results), "wall_s": round(wall, 1),
        "throughput_rps": round(len(results) / wall, 2) if wall else None, "errors": len(problems),
        "error_samples": sorted(set(problems))[:5], "kinds": per_kind,
        "warm_up_errors": sum(1 for *_, p in warm if p),
        "server_rss_mb": {"before_load": before.get("VmRSS"), "peak_before_load": before.get("VmHWM"),
                          "after_load": after.get("VmRSS"), "peak": after.get("VmHWM")},
        "cpu": {**cpu, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)"),
                             "python", *sys.argv]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="passes over the 12 queries (after one warm-up pass)")
    parser.add_argument("--kind", choices=("auto", "flat", "ivfpq", "hnsw"), default="auto", help="FAISS index kind")
    parser.add_argument("--json", default=None, help="also append the result to this JSON-lines file")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "int8", "auto"),
        default="float32",
        help="the model's precision, as muqkit serve --dtype",
    )
    parser.add_argument(
        "--concurrent",
        type=int,
        default=0,
        metavar="N",
        help="N clients at once against the app on 127.0.0.1 (0: one client, the sequential mode)",
    )
    parser.add_argument("--requests", type=int, default=500, help="concurrent mode: requests in all (a bound)")
    parser.add_argument("--seconds", type=float, default=120.0, help="concurrent mode: no request starts after this")
    parser.add_argument("--mix", default="text=2,similar=2,upload=1", help="concurrent mode: ratio of request kinds")
    parser.add_argument("--upload-seconds", type=float, default=5.0, help="concurrent mode: the uploaded audio's span")
    args = parser.parse_args()
    if args.concurrent < 0 or args.requests < 1 or args.seconds <= 0 or args.upload_seconds <= 0:
        raise SystemExit("--concurrent must be 0 or more; --requests, --seconds and --upload-seconds positive")

    if args.concurrent:
        result = run_concurrent(args)
    else:
        result = run_sequential(args)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")


def run_sequential(args: argparse.Namespace) -> dict[str, Any]:
    """One client's text searches over loopback HTTP, and the text tower and the index search alone.

    Every query of the timed API rounds is a text not asked before (the app keeps recent queries' latents),
    so ``api`` times the text tower, tokenisation included; ``api_repeated`` then asks the first round's
    queries again: answers from the app's query cache."""
    from muqkit.serve.app import create_app
    from muqkit.serve.testing import running_server

    cpu = cpu_description()
    print(f"CPU: {cpu['model']}; {cpu['cores']} cores; flags: {' '.join(cpu['simd_flags'])}; "
          f"load average {cpu['load_average']}", flush=True)  # fmt: skip
    backend = build_backend(args.model, args.tracks, args.kind, args.dtype)
    index, model, dim = backend.index, backend.embedder.model, backend.index.dim

    def texts(round_: int) -> list[str]:  # round 0 is the warm-up; each round's texts are new
        return [f"{q}, take {round_}" if round_ else q for q in QUERIES]

    text_times, search_times, api_times, repeated_times = [], [], [], []
    with torch.no_grad():
        for round_ in range(args.rounds + 1):
            for q in texts(round_):
                start = time.perf_counter()
                query = model.extract_text_latents([q])
                middle = time.perf_counter()
                index.search(query, 10)
                end = time.perf_counter()
                if round_:
                    text_times.append(middle - start)
                    search_times.append(end - middle)

    def ask(url: str, q: str) -> float:
        start = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/search?{urllib.parse.urlencode({'q': q, 'k': 10})}") as r:
            hits = json.load(r)["hits"]
        assert len(hits) == 10
        return time.perf_counter() - start

    with running_server(create_app(backend)) as url:
        for q in texts(0):
            ask(url, f"{q} (warm-up)")
        for round_ in range(1, args.rounds + 1):
            api_times += [ask(url, f"{q} (api)") for q in texts(round_)]
        repeated_times = [ask(url, f"{q} (api)") for q in texts(1)]
    return {"model": args.model, "dtype": args.dtype, "tracks": args.tracks, "dim": dim, "index": index.kind,
            "threads": torch.get_num_threads(), "queries": len(api_times), "api": millis(api_times),
            "api_repeated": millis(repeated_times), "text_tower": millis(text_times), "search": millis(search_times),
            "cpu": {**cpu, "load_average_after": [round(x, 2) for x in os.getloadavg()]},
            "command": " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)"),
                                 "python", *sys.argv])}  # fmt: skip


if __name__ == "__main__":
    main()
