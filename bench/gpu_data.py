"""A small corpus for the GPU check (``bench/gpu_prepare.sh``): a subset of a built corpus, re-encoded as
Ogg Vorbis so that it travels with the working tree (at most ``--max-mb``).

Every split is kept in proportion (groups stay whole, so no score leaks across splits); the manifests
keep their names (``scores.jsonl``, ``notes.jsonl``) so ``muqkit claims`` and the probes read it as a
corpus.

    .venv/bin/python bench/gpu_data.py runs/bench-small/corpus .gpu/data --max-mb 22
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from muqkit.data.manifest import read_manifest, write_manifest

SHARE = {"scores.jsonl": 0.65, "notes.jsonl": 0.35}  # of the byte budget
BYTES_PER_SECOND = 5200  # Ogg Vorbis at the lowest quality, 24 kHz mono (measured: about 40 kbit/s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("--max-mb", type=float, default=22.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus, out = Path(args.corpus), Path(args.out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    total = 0
    for name, share in SHARE.items():
        path = corpus / name
        records = read_manifest(path)
        groups: dict[str, list] = defaultdict(list)
        for r in records:
            groups[r.group].append(r)
        order = sorted(groups)
        random.Random(args.seed).shuffle(order)
        budget = share * args.max_mb * 1e6 / BYTES_PER_SECOND  # seconds of audio
        kept, seconds = [], 0.0
        for group in order:
            duration = sum(r.duration for r in groups[group])
            if seconds + duration > budget:
                continue
            kept += groups[group]
            seconds += duration
        written = []
        for r in kept:
            audio, rate = sf.read(corpus / r.path, dtype="float32")
            target = Path("audio") / f"{r.id}.ogg"
            sf.write(out / target, audio, rate, format="OGG", subtype="VORBIS", compression_level=1.0)
            total += (out / target).stat().st_size
            written.append(dataclasses.replace(r, path=str(target)))
        write_manifest(out / name, written)
        splits = {s: sum(r.split == s for r in written) for s in ("train", "valid", "test", "pool")}
        print(f"{name}: {len(written)} items, {seconds / 60:.1f} min, splits {splits}")
    print(f"{out}: {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
