"""``muqkit embed --devices N``: the same embedding run on N processes (CPU, or one GPU each), on one machine
or across machines under ``torchrun`` or SLURM, through ``torch.distributed``.

Every rank finds the same inputs and reads their durations from the file headers; the files are shared
out by duration (longest first, each to the rank with the least audio so far, ties to the lower rank), so
the sharding is deterministic and balanced. Each rank embeds its share exactly as a single process does
(skip of up-to-date outputs, bad files recorded and skipped, atomic outputs) and appends its records to
its own ``.index.rank-<r>.jsonl``. After a barrier rank 0 merges them into ``index.jsonl``. A rank that
is killed leaves complete outputs and complete index lines only; the next run (with any number of
processes) reads the unmerged rank files, skips what they record and merges them.

Without ``torchrun`` / SLURM variables, :func:`embed_distributed` starts ``devices`` local processes
itself (a gloo or NCCL group on 127.0.0.1) and stops them all when one dies.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from muqkit.embed.api import (
    EmbedSummary,
    FileFailure,
    InputFile,
    check_out_dir,
    find_inputs,
    header_seconds,
    prepare_run,
)
from muqkit.embed.index import INDEX_NAME, consolidate_index, merge_index, rank_index_path

log = logging.getLogger(__name__)

_FAULT_ENV = "MUQKIT_FAULT_KILL_RANK"  # "RANK:N": that rank kills itself (SIGKILL) after N outputs; for tests


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in a distributed run.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        launcher: ``"torchrun"``, ``"slurm"`` or ``"local"`` (started by :func:`embed_distributed`).
    """

    rank: int
    world_size: int
    local_rank: int
    launcher: str


def launched_rank() -> RankInfo | None:
    """This process's rank when a launcher started it: ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)
    or SLURM (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, with more than one task); else ``None``."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return RankInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)), "torchrun")
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return RankInfo(int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0)), "slurm")
    return None


def shard_by_duration(inputs: Sequence[InputFile], durations: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of ``inputs`` per rank, balanced by total duration; each rank's indices in input order.

    Longest first (ties by input order), each file to the rank with the least audio so far (ties to the
    lower rank): the same inputs always give the same shards.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    totals = [0.0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(inputs)), key=lambda i: (-durations[i], i)):
        rank = min(range(world_size), key=lambda r: (totals[r], r))
        shards[rank].append(i)
        totals[rank] += durations[i]
    return [sorted(s) for s in shards]


def embed_distributed(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    devices: int,
    device: str = "cpu",
    **options: Any,
) -> EmbedSummary:
    """Embed like :func:`muqkit.embed.embed_paths`, on ``devices`` processes.

    Under ``torchrun`` or SLURM this process is one rank and ``devices`` is ignored (the launcher sets the
    world size); otherwise ``devices`` local processes are started. With ``device="cuda"`` each rank uses
    GPU ``local_rank`` (NCCL); on CPU the ranks share the cores (gloo).

    Args:
        paths: audio files and folders.
        out_dir: output folder.
        devices: processes to start (without a launcher).
        device: ``"cpu"`` or ``"cuda"``.
        **options: the other keyword arguments of :func:`~muqkit.embed.embed_paths` (``model`` must be a Hub
            id or folder when processes are started).

    Returns:
        The summary of the whole run (on every rank under a launcher: all ranks' counts).

    Raises:
        RuntimeError: a rank died (its finished outputs are kept; rerun to resume).
    """
    if devices < 1:
        raise ValueError(f"--devices must be at least 1, got {devices}")
    if str(device).startswith("cuda") and ":" in str(device):
        raise ValueError(f"--device {device}: give 'cuda' with --devices; rank r uses GPU r of its machine")
    info = launched_rank()
    if info is not None:
        return _run_rank(info, list(map(str, paths)), str(out_dir), device, options)
    if devices == 1:
        info = RankInfo(0, 1, 0, "local")
        return _run_rank(info, list(map(str, paths)), str(out_dir), device, options)
    # What one process refuses up front (two spellings of one file, an unusable --out) is refused here too,
    # once, before any rank starts: otherwise each rank meets it and the first to die decides the exit status.
    find_inputs(paths)
    check_out_dir(out_dir)
    return _spawn(devices, list(map(str, paths)), str(out_dir), device, options)


def _run_rank(info: RankInfo, paths: list[str], out_dir: str, device: str, options: dict[str, Any]) -> EmbedSummary:
    import torch.distributed as dist

    started = time.perf_counter()
    if device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
    owns_group = info.world_size > 1 and not dist.is_initialized()
    if owns_group and info.launcher == "slurm":  # srun sets no rendezvous address: the launching node's, a job port
        os.environ.setdefault("MASTER_ADDR", os.environ.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        os.environ.setdefault("MASTER_PORT", str(10000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000))
    if owns_group:
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(
            backend, rank=info.rank, world_size=info.world_size, timeout=datetime.timedelta(hours=24)
        )
    try:
        if info.rank == 0:  # before any rank writes: the records a killed run left become the oldest
            consolidate_index(out_dir)
        if info.world_size > 1:
            dist.barrier()
        progress = bool(options.pop("progress", True)) and info.rank == 0
        batch_size = int(options.get("batch_size", 8))
        run, inputs = prepare_run(paths, out_dir, device=device, **_prepare_options(options))
        durations = [header_seconds(item.path) for item in inputs]
        shard = [inputs[i] for i in shard_by_duration(inputs, durations, info.world_size)[info.rank]]
        log.info("rank %d of %d: %d of %d files", info.rank, info.world_size, len(shard), len(inputs))
        _arm_fault(info.rank, run)
        index_path = rank_index_path(out_dir, info.rank) if info.world_size > 1 else run.out_dir / INDEX_NAME
        run.run(shard, index_path=index_path, batch_size=batch_size, progress=progress)
        mine = run.summary(len(shard), started)
        if info.world_size == 1:
            merge_index(out_dir)
            return mine
        gathered: list[Any] = [None] * info.world_size
        dist.all_gather_object(gathered, asdict(mine))
        if info.rank == 0:
            merge_index(out_dir)
        dist.barrier()
        return _combine(gathered, num_files=len(inputs), out_dir=out_dir, elapsed=time.perf_counter() - started)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _prepare_options(options: dict[str, Any]) -> dict[str, Any]:
    defaults = {
        "model": None,
        "revision": None,
        "cache_dir": None,
        "layers": "all",
        "pooling": "none",
        "chunk_seconds": 30.0,
        "batch_size": 8,
        "dtype": "float32",
        "fmt": "safetensors",
        "overwrite": False,
    }
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown embedding options: {', '.join(sorted(unknown))}")
    return {**defaults, **options}


def _combine(parts: list[dict[str, Any]], *, num_files: int, out_dir: str, elapsed: float) -> EmbedSummary:
    failures = tuple(FileFailure(**f) for part in parts for f in part["failures"])
    return EmbedSummary(
        out_dir=out_dir,
        index_path=os.path.join(out_dir, INDEX_NAME),
        num_files=num_files,
        num_embedded=sum(p["num_embedded"] for p in parts),
        num_skipped=sum(p["num_skipped"] for p in parts),
        num_failed=len(failures),
        audio_seconds=sum(p["audio_seconds"] for p in parts),
        elapsed_seconds=elapsed,
        failures=tuple(sorted(failures, key=lambda f: f.input)),
    )


def _arm_fault(rank: int, run: Any) -> None:
    """Test hook: with ``MUQKIT_FAULT_KILL_RANK=R:N``, rank R kills itself with SIGKILL after N outputs."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return
    target, count = (int(part) for part in spec.split(":"))
    if rank != target:
        return
    finish = run._finish

    def finish_then_maybe_die(key: int) -> None:
        finish(key)
        if run.num_embedded >= count:
            os.kill(os.getpid(), signal.SIGKILL)

    run._finish = finish_then_maybe_die


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(devices: int, paths: list[str], out_dir: str, device: str, options: dict[str, Any]) -> EmbedSummary:
    """Start ``devices`` local ranks, wait for them, stop them all if one dies."""
    import torch.multiprocessing as mp

    if isinstance(options.get("model"), torch.nn.Module):
        raise ValueError("give the model as a Hub id or folder to embed on several processes")
    if device.startswith("cuda") and torch.cuda.device_count() < devices:
        raise ValueError(f"--devices {devices}: only {torch.cuda.device_count()} GPU(s) visible")
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    port = _free_port()
    threads = max(1, torch.get_num_threads() // devices) if device == "cpu" else torch.get_num_threads()
    processes = [
        context.Process(
            target=_child, args=(rank, devices, port, threads, paths, out_dir, device, options, results), daemon=False
        )
        for rank in range(devices)
    ]
    for process in processes:
        process.start()
    try:
        while any(p.exitcode is None for p in processes):
            dead = [(r, p.exitcode) for r, p in enumerate(processes) if p.exitcode not in (None, 0)]
            killed = [(r, code) for r, code in dead if code is not None and code < 0]
            if dead and not killed and not results.empty():  # a rank raised: its error (unless one was killed,
                _raise(results.get())  # which makes the others fail on their next collective)
            if dead:
                dead = killed or dead
                rank, code = dead[0]
                how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                raise RuntimeError(
                    f"rank {rank} of {devices} died ({how}); the outputs it finished are kept, the others' too: "
                    "run the same command again to resume"
                )
            time.sleep(0.2)
        bad = [(r, p.exitcode) for r, p in enumerate(processes) if p.exitcode != 0]
        if bad:
            raise RuntimeError(f"rank {bad[0][0]} of {devices} failed (exit status {bad[0][1]}); rerun to resume")
        if results.empty():
            raise RuntimeError("rank 0 finished without a summary")
        return _raise(results.get())
    finally:
        for process in processes:
            if process.exitcode is None:
                process.terminate()
        for process in processes:
            process.join(timeout=30)


def _raise(item: Any) -> EmbedSummary:
    if isinstance(item, BaseException):
        raise item
    return item


def _child(
    rank: int,
    world_size: int,
    port: int,
    threads: int,
    paths: list[str],
    out_dir: str,
    device: str,
    options: dict[str, Any],
    results: Any,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank{rank} %(name)s: %(message)s")
    try:
        summary = _run_rank(RankInfo(rank, world_size, rank, "local"), paths, out_dir, device, options)
    except (ValueError, OSError) as exc:  # a user error (every rank meets it): one line, as in one process
        results.put(ValueError(str(exc)))
        raise SystemExit(3) from None
    except BaseException as exc:
        results.put(RuntimeError(f"rank {rank}: {type(exc).__name__}: {exc}"))
        raise
    if rank == 0:
        results.put(summary)
